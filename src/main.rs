//! Thin entry point: parse configuration, set up logging, bind, run.

use clap::Parser;
use roomd::auth::{self, Authenticator, Claims, MintOptions, SecretSource};
use roomd::cluster::{Cluster, StartOptions};
use roomd::config::{
    BackupArgs, Cli, Command, FreeUsernameArgs, LogFormat, RestoreArgs, SecretArgs, TokenArgs,
};
use roomd::durability::Durability;
use roomd::server::{self, RunConfig, ServerParts, ServerState, StartStatus};
use roomd::store::SqliteStore;
use std::process::ExitCode;
use std::sync::Arc;

// mimalloc returns more of a burst's freed memory to the OS than glibc
// malloc, which keeps it in its arenas. Built with `no_thp`: with
// transparent huge pages a partly used 2 MiB page stays resident whole,
// which cost idle connections ~7% and kept twice the RSS after a burst
// (BENCHMARKS.md, Memory).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => token(args),
        Some(Command::FreeUsername(args)) => free_username(args),
        Some(Command::Backup(args)) => backup(args),
        Some(Command::Restore(args)) => restore(args),
        None => serve(cli.serve),
    }
}

fn load_secret(args: &SecretArgs) -> Result<(Vec<u8>, SecretSource), String> {
    auth::load_secret(args.jwt_secret.as_deref(), args.jwt_secret_file.as_deref(), &args.data_dir)
        .map_err(|e| format!("cannot load the JWT secret: {e}"))
}

fn token(args: TokenArgs) -> ExitCode {
    let (secret, _) = match load_secret(&args.secret) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roomd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = auth::now_secs();
    let claims = Claims {
        sub: args.user_id,
        username: args.username,
        name: args.name,
        roles: Some(args.role),
        exp: now + args.ttl.as_secs().max(1),
        nbf: None,
        iat: Some(now),
    };
    let options = MintOptions { audience: args.audience, issuer: args.issuer };
    println!("{}", Authenticator::hs256(&secret).mint_with(&claims, &options));
    ExitCode::SUCCESS
}

fn free_username(args: FreeUsernameArgs) -> ExitCode {
    match roomd::store::sqlite::free_username(&args.secret.data_dir, &args.username) {
        Ok(Some(uid)) => {
            println!("username {:?} freed (it belonged to user {uid})", args.username.trim());
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("username {:?} was not taken", args.username.trim());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roomd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backup(args: BackupArgs) -> ExitCode {
    match roomd::store::backup::backup(&args.secret.data_dir, &args.to) {
        Ok(info) => {
            println!(
                "backup written to {} ({} bytes, schema v{}, roomd {}, taken at {} ms since the epoch)",
                args.to.display(),
                info.bytes,
                info.schema_version,
                info.roomd_version,
                info.taken_at_ms
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roomd: backup failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn restore(args: RestoreArgs) -> ExitCode {
    match roomd::store::backup::restore(&args.from, &args.secret.data_dir, args.force) {
        Ok(r) => {
            let what = match &r.info {
                Some(i) => format!(
                    "backup taken by roomd {} at {} ms since the epoch",
                    i.roomd_version, i.taken_at_ms
                ),
                None => "plain database copy".to_owned(),
            };
            println!(
                "restored {} into {} ({what}; schema v{} upgraded to v{})",
                args.from.display(),
                args.secret.data_dir.display(),
                r.from_schema,
                roomd::store::LATEST_SCHEMA
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roomd: restore failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: roomd::config::ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    // Only with the generated development secret: a sign-in link for the web
    // app, so a newcomer is in without minting a token.
    let mut dev_token = None;
    let auth = match &args.jwt_public_key {
        // Tokens from an identity provider: no shared secret at all.
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| Authenticator::public_key(&pem))
        {
            Ok(a) => {
                tracing::info!(path = %path.display(), "verifying tokens with a public key");
                a
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot use the JWT public key");
                return ExitCode::FAILURE;
            }
        },
        None => {
            let (secret, source) = match load_secret(&args.secret) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let auth = Authenticator::hs256(&secret);
            if let SecretSource::DevFile(path) = &source {
                tracing::warn!(
                    path,
                    "using a development JWT secret generated on first start; set ROOMD_JWT_SECRET or --jwt-secret-file in production"
                );
                // A minted token carries no audience or issuer: no link
                // when those are required.
                if args.jwt_audience.is_empty() && args.jwt_issuer.is_empty() {
                    dev_token = Some(dev_sign_in_token(&auth));
                }
            }
            auth
        }
    };
    let auth = auth.with_claim_checks(&args.jwt_audience, &args.jwt_issuer);
    // Before any socket or file is opened, so the raised limit covers them.
    let max_connections = server::connection_capacity(args.limits.max_connections);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Before the address is printed: whoever reads it may signal at
        // once, and a signal that finds no handler kills the process
        // without a clean stop (the store unflushed, exit status lost).
        let mut stop = match Stop::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the signal handlers");
                return ExitCode::FAILURE;
            }
        };
        let listener = match listen(args.listen) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(addr = %args.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%addr, "roomd listening; DDP endpoint ws://{addr}/websocket");
        if let (Some(token), Ok(local)) = (&dev_token, listener.local_addr()) {
            tracing::info!(
                "sign in to the web app (development secret; link valid 24 h): open http://{}/#token={token}",
                browsable(local)
            );
        }
        if !args.cluster.is_empty() {
            let mut run_cfg = RunConfig::from_limits(&args.limits);
            run_cfg.max_connections = max_connections;
            let servers = args.cluster.join(",");
            // The port answers from now on: /healthz yes, /readyz no with
            // the reason, everything else 503 until the node is ready.
            let status = StartStatus::new(format!("waiting for NATS at {servers}"));
            let waiting = {
                let status = status.clone();
                move |why: String| status.set(why)
            };
            let connect = Cluster::connect(StartOptions {
                urls: &args.cluster,
                node: &args.node_id,
                replicas: args.cluster_replicas,
                partitions: args.cluster_partitions.map(|n| n as usize),
                snapshot_every: args.cluster_snapshot_every,
                interest: (args.cluster_rooms == roomd::config::ClusterRooms::Interest)
                    .then_some(args.cluster_unload_after),
                timeout: args.cluster_start_timeout,
                waiting: &waiting,
            });
            let started = server::serve_while_starting(&listener, &run_cfg, status, async {
                tokio::select! {
                    c = connect => Some(c),
                    _ = stop.wait() => None,
                }
            })
            .await;
            let cluster = match started {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::error!(
                        error = %e,
                        servers = %servers,
                        "cannot start in cluster mode; exiting with status 1 (docs/cluster.md, Start and readiness)"
                    );
                    return ExitCode::FAILURE;
                }
                None => {
                    tracing::info!("stopped while waiting for NATS");
                    return ExitCode::SUCCESS;
                }
            };
            tracing::info!(node = %args.node_id, servers = %servers, "cluster mode: rooms live in the NATS streams ROOMLOG*");
            cluster.check_limits(args.limits.max_frame_bytes, args.limits.max_message_len);
            let state = Arc::new(ServerState::clustered(auth, &args.limits, cluster.clone()));
            state.start_applier();
            server::run(listener, state.clone(), run_cfg, stop.wait()).await;
            cluster.shutdown().await;
            tracing::info!("stopped");
            return ExitCode::SUCCESS;
        }
        let store = if args.in_memory {
            tracing::info!("in-memory mode: nothing will survive a restart");
            None
        } else {
            let dir = &args.secret.data_dir;
            let opened: Arc<dyn Durability> =
                match SqliteStore::open(dir, args.sync, args.limits.history_cache()) {
                    Ok(store) => {
                        store.start_retention(args.limits.retention(), args.limits.history_prune_interval);
                        Arc::new(store)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open the store");
                        return ExitCode::FAILURE;
                    }
                };
            match opened.restore().await {
                Ok(snapshot) => {
                    tracing::info!(dir = %dir.display(), "store open");
                    Some((opened, snapshot))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the store");
                    return ExitCode::FAILURE;
                }
            }
        };
        // Kept to flush and close the store once the server has stopped.
        let store_handle = store.as_ref().map(|(handle, _)| handle.clone());
        let state = Arc::new(ServerState::new(ServerParts { auth, limits: &args.limits, store }));
        let mut run_cfg = RunConfig::from_limits(&args.limits);
        run_cfg.max_connections = max_connections;
        server::run(listener, state.clone(), run_cfg, stop.wait()).await;
        if let Some(store) = store_handle {
            store.shutdown().await;
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// A token for the development user `host` (id `dev`), valid for a day.
fn dev_sign_in_token(auth: &Authenticator) -> String {
    let now = auth::now_secs();
    let claims = Claims {
        sub: "dev".to_owned(),
        username: "host".to_owned(),
        name: Some("Host".to_owned()),
        roles: Some(vec!["user".to_owned()]),
        exp: now + 24 * 3600,
        nbf: None,
        iat: Some(now),
    };
    auth.mint(&claims)
}

/// The address to print in a link: a wildcard listen address is reachable
/// locally as loopback.
fn browsable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip: std::net::IpAddr = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

/// Binds with a deep accept backlog: connection storms (reconnects after a
/// restart, load tests) otherwise overflow the default and clients wait for
/// SYN retries.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// SIGTERM and SIGINT, registered once for the whole life of the process:
/// a signal that arrives while the store opens or the cluster connects is
/// kept and ends the run as soon as it starts.
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Stop { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Stop {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
