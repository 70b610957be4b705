//! The `idle` scenario (see the list in main.rs).

use super::*;

pub(crate) struct IdleArgs {
    pub n: usize,
    pub guests: f64,
    pub shard: (usize, usize),
    pub room_size: usize,
    pub room_capacity: Option<u64>,
    pub settle: Duration,
    pub hold: Option<Duration>,
    pub baseline_rss_kb: Option<u64>,
    pub door: IdleDoor,
}

/// Which door the idle connections come through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IdleDoor {
    /// DDP: signed-in users, or guests (`--guests`), joined and subscribed.
    Ddp,
    /// Socket.IO guests (websocket transport): CONNECT without auth,
    /// `join-room {code, guestName}`; `--guests` does not apply.
    Sio,
}

/// One idle connection, whichever door it came through.
enum Idler {
    Ddp(Client),
    /// The task that keeps the socket (answers pings); aborted on drop,
    /// which closes the socket.
    Sio(tokio::task::JoinHandle<()>),
}

impl Idler {
    fn is_alive(&self) -> bool {
        match self {
            Idler::Ddp(c) => c.is_alive(),
            Idler::Sio(t) => !t.is_finished(),
        }
    }
}

impl Drop for Idler {
    fn drop(&mut self) {
        if let Idler::Sio(t) = self {
            t.abort();
        }
    }
}

/// Socket.IO guests `mine[j]` each join `rooms[j % rooms.len()]` by code,
/// `ctx.concurrency` at a time, recording setup latency and failures.
async fn setup_sio(
    ctx: &Ctx,
    mine: &[usize],
    rooms: &[Room],
    lat: &SharedLat,
    failures: &Arc<Tally>,
) -> Vec<Option<Idler>> {
    let jobs: Vec<(usize, Room)> =
        mine.iter().enumerate().map(|(j, &i)| (i, rooms[j % rooms.len()].clone())).collect();
    bounded(jobs.len(), ctx.concurrency, |j| {
        let (i, room) = jobs[j].clone();
        let ep = ctx.eps[i % ctx.eps.len()].clone();
        let lat = lat.clone();
        let failures = failures.clone();
        async move {
            let t0 = Instant::now();
            let r = async {
                let mut s = super::sio::Sio::open(&ep, i).await.map_err(|e| ("connect", e))?;
                s.ask("join-room", json!({"code": room.code, "guestName": format!("Guest {i}")}))
                    .await
                    .map_err(|e| ("join", e))?;
                Ok::<_, (&str, DdpError)>(s)
            }
            .await;
            match r {
                Ok(s) => {
                    lat.lock().unwrap().record(t0.elapsed());
                    Some(Idler::Sio(tokio::spawn(s.keep())))
                }
                Err((stage, e)) => {
                    if failures.total() < 3 {
                        eprintln!("[loadgen] setup failed at {stage}: {e}");
                    }
                    failures.add(format!("{stage}:{}", e.code()));
                    None
                }
            }
        }
    })
    .await
}

pub(crate) async fn idle(ctx: &Ctx, a: IdleArgs) -> Result<bool, String> {
    let (k, m) = a.shard;
    let mine: Vec<usize> = (0..a.n).filter(|i| i % m == k - 1).collect();
    let sio = a.door == IdleDoor::Sio;
    let is_guest = |i: usize| sio || ((i + 1) as f64 * a.guests).floor() > (i as f64 * a.guests).floor();
    let n_rooms = mine.len().div_ceil(a.room_size.max(1)).max(1);
    procfs::check_fd_budget(mine.len() + ctx.creator_bots(n_rooms))?;
    let guests = mine.iter().filter(|&&i| is_guest(i)).count();
    let (soft, hard) = procfs::open_files_limit();
    let lim = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("unlimited".into());
    ctx.progress(format!(
        "idle: {} connections ({guests} guests) into {n_rooms} rooms, shard {k}/{m}; \
         open-files limit {} (hard {})",
        mine.len(),
        lim(soft),
        lim(hard)
    ));
    let mut creators = Creators::new(ctx);
    let mut extra = json!({"guestAccess": true});
    if let Some(c) = a.room_capacity {
        extra["maxParticipants"] = json!(c as usize + ctx.creator_seats);
    }
    let rooms = creators.create_many(ctx, n_rooms, &format!("idle{k}"), extra).await?;

    let mut plans = Vec::with_capacity(if sio { 0 } else { mine.len() });
    for (j, &i) in mine.iter().enumerate().filter(|_| !sio) {
        let guest = is_guest(i);
        let token = if guest { None } else { Some(ctx.token("u", i, "user")?) };
        let guest_name = guest.then(|| format!("Guest {i}"));
        plans.push(Plan::signed_in(i, token).joins(&rooms[j % n_rooms], guest_name).subscribed());
    }
    let lat = shared_lat();
    let failures = Arc::new(Tally::default());
    let before = ctx.snap();
    let clients: Vec<Option<Idler>> = if sio {
        setup_sio(ctx, &mine, &rooms, &lat, &failures).await
    } else {
        setup_many(ctx, plans, &lat, &failures).await.into_iter().map(|c| c.map(Idler::Ddp)).collect()
    };
    let after_setup = ctx.snap();
    let ok = clients.iter().flatten().count();
    ctx.progress(format!("{ok} connections settled; waiting {:?}", a.settle));
    tokio::time::sleep(a.settle).await;
    let settled = ctx.snap();
    let alive = clients.iter().flatten().filter(|c| c.is_alive()).count();

    let setup = Usage::between(&before, &after_setup);
    let lat = take(&lat);
    let base_kb = a.baseline_rss_kb.or(setup.rss_before_kb);
    let now_kb = settled.server.map(|s| s.rss_kb);
    let divisor = if a.baseline_rss_kb.is_some() { a.n } else { ok };
    let delta_kb = match (base_kb, now_kb) {
        (Some(b), Some(n)) => Some(n as i64 - b as i64),
        _ => None,
    };
    let per_conn = delta_kb.map(|d| d as f64 * 1024.0 / divisor.max(1) as f64);

    ctx.say(format!(
        "== idle: {} {} connections ({guests} guests) in {n_rooms} rooms, shard {k}/{m} ==",
        mine.len(),
        if sio { "Socket.IO" } else { "DDP" }
    ));
    ctx.say(format!(
        "setup       {ok} ok, {} failed in {:.2} s = {} setups/s wall, {} setups per server CPU-s",
        mine.len() - ok,
        setup.wall,
        fmt_rate(ok as f64 / setup.wall.max(1e-9)),
        opt_rate(setup.per_cpu(ok as f64)),
    ));
    ctx.say(format!("            {}", setup.text()));
    let stages = if sio { "connect+join" } else { "connect+login+join+subscribe" };
    ctx.say(format!("latency     {stages} {}", lat.text()));
    match (base_kb, now_kb, delta_kb, per_conn) {
        (Some(b), Some(n), Some(d), Some(p)) => ctx.say(format!(
            "server RSS  {} {:.1} MiB -> {:.1} MiB after {:.0} s settle: delta {:+.1} MiB = {:.0} bytes/connection (over {divisor}{})",
            if a.baseline_rss_kb.is_some() { "baseline" } else { "before" },
            mib(b),
            mib(n),
            a.settle.as_secs_f64(),
            d as f64 / 1024.0,
            p,
            if a.baseline_rss_kb.is_some() { " = N of all shards, assumed all up" } else { "" }
        )),
        _ => ctx.say("server RSS  n/a (server pid unknown)"),
    }
    ctx.say(format!("alive       {alive}/{ok} connections still open after settling"));
    ctx.say(format!("failures    {}", failures.text()));
    let mut hold_rss = None;
    if let Some(h) = a.hold {
        ctx.progress(format!("holding connections for {h:?}"));
        tokio::time::sleep(h).await;
        hold_rss = ctx.snap().server.map(|s| s.rss_kb);
        let still = clients.iter().flatten().filter(|c| c.is_alive()).count();
        ctx.say(format!(
            "after hold  server RSS {} MiB, {still}/{ok} connections open",
            hold_rss.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into())
        ));
    }
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "idle",
                "door": if sio { "sio" } else { "ddp" },
                "connections": mine.len(),
                "total_n": a.n,
                "shard": format!("{k}/{m}"),
                "guests": guests,
                "rooms": n_rooms,
                "ok": ok,
                "failed": mine.len() - ok,
                "alive_after_settle": alive,
                "setups_per_s": ok as f64 / setup.wall.max(1e-9),
                "setups_per_server_cpu_s": setup.per_cpu(ok as f64),
                "setup": setup.json(),
                "setup_latency": lat.json(),
                "rss_base_kb": base_kb,
                "rss_settled_kb": now_kb,
                "rss_delta_kb": delta_kb,
                "rss_per_conn_bytes": per_conn,
                "rss_after_hold_kb": hold_rss,
                "failures": failures.json(),
                "health": health,
            })
        );
    }
    drop(creators);
    Ok(ok == mine.len() && alive == ok)
}
