//! The `churn` scenario (see the list in main.rs).

use super::*;

/// Which door the churn's sessions come through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Door {
    /// DDP guests: connect, `join-room {code, guestName}`, no login.
    Ddp,
    /// DDP signed-in users (a pool of `--users`): connect + login, `join-room {code}`.
    Users,
    /// REST: `POST /api/v1/channels.join` (+ `channels.leave`) as pool users,
    /// one HTTP request per connection.
    Rest,
    /// Socket.IO guests: CONNECT without auth, `join-room {code, guestName}`,
    /// `leave-room`.
    Sio,
}

pub(crate) struct ChurnArgs {
    pub loops: usize,
    pub rooms: usize,
    pub rounds: usize,
    pub round: Duration,
    pub door: Door,
    pub users: usize,
    pub reference_round: usize,
    pub max_growth_mb: f64,
}

/// How a session ends: half leave and close cleanly, a third are cut (the
/// socket drops without a close frame or a leave), the rest close cleanly
/// without leaving (a guest's seat then waits out `--guest-grace`).
#[derive(Clone, Copy)]
enum Exit {
    Leave,
    Cut,
    Close,
}
const EXITS: [&str; 3] = ["leave+close", "cut", "close"];

fn pick_exit(rng: &mut Rng) -> Exit {
    match rng.below(6) {
        0..=2 => Exit::Leave,
        3 | 4 => Exit::Cut,
        _ => Exit::Close,
    }
}

struct ChurnShared {
    sessions: AtomicU64,
    exits: [AtomicU64; 3],
    errors: Tally,
    lat: Mutex<Lat>,
}

/// One DDP session: connect (+ login), join by code, then leave and close,
/// close, or cut.
async fn churn_ddp(
    ep: &Endpoint,
    index: usize,
    token: Option<&str>,
    room: &Room,
    guest_name: Option<&str>,
    exit: Exit,
) -> Result<(), (&'static str, DdpError)> {
    let client = Client::open(ep, index, token, None).await?;
    join_room(&client, room, Via::Code, guest_name).await.map_err(|e| ("join", e))?;
    match exit {
        Exit::Leave => {
            client.call("leaveRoom", json!([room.rid])).await.map_err(|e| ("leave", e))?;
            client.close().await;
        }
        Exit::Close => client.close().await,
        // Dropping the last handle aborts its tasks: the socket goes without
        // a close frame.
        Exit::Cut => drop(client),
    }
    Ok(())
}

/// One Socket.IO guest session: CONNECT, `join-room` by code, then
/// `leave-room` and close, close, or cut.
async fn churn_sio(
    ep: &Endpoint,
    index: usize,
    room: &Room,
    guest_name: &str,
    exit: Exit,
) -> Result<(), (&'static str, DdpError)> {
    let mut s = super::sio::Sio::open(ep, index).await.map_err(|e| ("connect", e))?;
    s.ask("join-room", json!({"code": room.code, "guestName": guest_name})).await.map_err(|e| ("join", e))?;
    match exit {
        Exit::Leave => {
            s.ask("leave-room", json!({"roomId": room.rid})).await.map_err(|e| ("leave", e))?;
            s.close().await;
        }
        Exit::Close => s.close().await,
        Exit::Cut => drop(s),
    }
    Ok(())
}

/// One `POST` on its own connection (roomd answers `Connection: close`).
/// Without `read`, the socket is dropped once the request is written (a
/// client that gives up). Returns the status; a non-2xx is an error named
/// by the answer's `errorType` (or `http-<status>`).
async fn http_post(
    ep: &Endpoint,
    index: usize,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
    read: bool,
) -> Result<(), DdpError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |e: std::io::Error| DdpError::Io(e.to_string());
    let sock =
        if ep.addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(io)?;
    if let Some(ip) = ep.source_ip(index) {
        sock.bind(SocketAddr::new(ip, 0)).map_err(io)?;
    }
    let mut stream = tokio::time::timeout(ep.timeout, sock.connect(ep.addr))
        .await
        .map_err(|_| DdpError::Timeout)?
        .map_err(io)?;
    let body = body.to_string();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        ep.addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    if !read {
        return Ok(());
    }
    let mut buf = Vec::new();
    tokio::time::timeout(ep.timeout, stream.read_to_end(&mut buf))
        .await
        .map_err(|_| DdpError::Timeout)?
        .map_err(io)?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if (200..300).contains(&status) {
        return Ok(());
    }
    let answer = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let error = serde_json::from_str::<Value>(answer)
        .ok()
        .and_then(|v| v.get("errorType").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| format!("http-{status}"));
    Err(DdpError::Method { error, reason: truncate(answer, 200).to_owned() })
}

/// One REST session: a pool user joins a room by id and leaves it, only
/// joins (stays a member), or sends the join and drops the socket unread.
async fn churn_rest(
    ep: &Endpoint,
    index: usize,
    user: &(String, String),
    room: &Room,
    exit: Exit,
) -> Result<(), (&'static str, DdpError)> {
    let headers = [("X-Auth-Token", user.0.as_str()), ("X-User-Id", user.1.as_str())];
    let body = json!({"roomId": room.rid});
    let read = !matches!(exit, Exit::Cut);
    http_post(ep, index, "/api/v1/channels.join", &headers, &body, read).await.map_err(|e| ("join", e))?;
    if let Exit::Leave = exit {
        http_post(ep, index, "/api/v1/channels.leave", &headers, &body, true)
            .await
            .map_err(|e| ("leave", e))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one call site
async fn churn_loop(
    i: usize,
    a_loops: usize,
    door: Door,
    ep: Endpoint,
    rooms: Arc<Vec<Room>>,
    users: Arc<Vec<(String, String)>>,
    cs: Arc<ChurnShared>,
    deadline: Instant,
) {
    let mut rng = Rng::new(unix_micros() ^ ((i as u64) << 20));
    let mut k = 0usize;
    // Loop i uses pool users i, i + loops, i + 2 loops…: never one user on
    // two loops at once.
    let mine: Vec<&(String, String)> = users.iter().skip(i).step_by(a_loops.max(1)).collect();
    while Instant::now() < deadline {
        let room = &rooms[rng.below(rooms.len())];
        let exit = pick_exit(&mut rng);
        let index = i + a_loops * k;
        let user = (!mine.is_empty()).then(|| mine[k % mine.len()]);
        k += 1;
        let t0 = Instant::now();
        let r = match (door, user) {
            (Door::Ddp, _) => {
                let name = format!("Guest {i}-{k}");
                churn_ddp(&ep, index, None, room, Some(&name), exit).await
            }
            (Door::Sio, _) => {
                let name = format!("Guest {i}-{k}");
                churn_sio(&ep, index, room, &name, exit).await
            }
            (Door::Users, Some(u)) => churn_ddp(&ep, index, Some(&u.0), room, None, exit).await,
            (Door::Rest, Some(u)) => churn_rest(&ep, index, u, room, exit).await,
            (_, None) => Err(("setup", DdpError::Protocol("no pool user for this loop".into()))),
        };
        match r {
            Ok(()) => {
                cs.sessions.fetch_add(1, Relaxed);
                cs.exits[exit as usize].fetch_add(1, Relaxed);
                cs.lat.lock().unwrap().record(t0.elapsed());
            }
            Err((stage, e)) => {
                if cs.errors.total() < 3 {
                    eprintln!("[loadgen] churn session failed at {stage}: {e}");
                }
                cs.errors.add(format!("{stage}:{}", e.code()));
                // Do not spin on a server that refuses.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One point of the churn series: end of round r.
struct ChurnRow {
    round: usize,
    t: f64,
    sessions: u64,
    anon_kb: Option<u64>,
    rss_kb: Option<u64>,
    cpu_pct: Option<f64>,
}

pub(crate) async fn churn(ctx: &Ctx, a: ChurnArgs) -> Result<bool, String> {
    if a.loops == 0 || a.rooms == 0 || a.rounds == 0 {
        return Err("churn needs --loops, --rooms and --rounds of at least 1".into());
    }
    procfs::check_fd_budget(a.loops * 2 + ctx.creator_bots(a.rooms))?;
    let mut creators = Creators::new(ctx);
    let rooms = Arc::new(creators.create_many(ctx, a.rooms, "churn", json!({"guestAccess": true})).await?);
    let users: Vec<(String, String)> = match a.door {
        Door::Ddp | Door::Sio => Vec::new(),
        Door::Users | Door::Rest => (0..a.users.max(a.loops))
            .map(|j| Ok::<_, String>((ctx.token("c", j, "user")?, ctx.username("c", j))))
            .collect::<Result<_, _>>()?,
    };
    let users = Arc::new(users);
    let cs = Arc::new(ChurnShared {
        sessions: AtomicU64::new(0),
        exits: Default::default(),
        errors: Tally::default(),
        lat: Mutex::new(Lat::default()),
    });
    let anon = || -> Option<u64> {
        if ctx.server_pids.is_empty() {
            return None;
        }
        ctx.server_pids.iter().map(|p| procfs::rss_anon_kb(*p)).sum()
    };
    let s_before = ctx.snap();
    let anon_before = anon();
    ctx.progress(format!(
        "churn: {} loops over {} rooms, door {:?}, {} rounds of {:?}; server RssAnon before {}",
        a.loops,
        a.rooms,
        a.door,
        a.rounds,
        a.round,
        anon_before.map(|v| format!("{:.1} MiB", mib(v))).unwrap_or("n/a".into())
    ));
    let start = Instant::now();
    let deadline = start + a.round * a.rounds as u32;
    let mut set = JoinSet::new();
    for i in 0..a.loops {
        let ep = ctx.eps[i % ctx.eps.len()].clone();
        set.spawn(churn_loop(i, a.loops, a.door, ep, rooms.clone(), users.clone(), cs.clone(), deadline));
    }
    let mut rows: Vec<ChurnRow> = Vec::new();
    let mut prev = ctx.snap();
    let round_of = |r: usize, prev: &mut Snap| {
        let now = ctx.snap();
        let u = Usage::between(prev, &now);
        let row = ChurnRow {
            round: r,
            t: now.at.duration_since(start).as_secs_f64(),
            sessions: cs.sessions.load(Relaxed),
            anon_kb: anon(),
            rss_kb: now.server.map(|s| s.rss_kb),
            cpu_pct: u.server_cpu.map(|c| 100.0 * c / u.wall.max(1e-9)),
        };
        eprintln!(
            "[loadgen]   {} t={:>4.0}s sessions {:>8} RssAnon {} MiB (VmRSS {} MiB) server CPU {}%, errors {}",
            if r == 0 { "end+settle".to_string() } else { format!("round {r}") },
            row.t,
            row.sessions,
            row.anon_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
            row.rss_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
            row.cpu_pct.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
            cs.errors.total()
        );
        *prev = now;
        row
    };
    for r in 1..=a.rounds {
        tokio::time::sleep_until((start + a.round * r as u32).into()).await;
        rows.push(round_of(r, &mut prev));
    }
    while set.join_next().await.is_some() {}
    // Grace timers of the last cut guests run out, then the resting point.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = round_of(0, &mut prev);
    let total = Usage::between(&s_before, &ctx.snap());

    ctx.say(format!(
        "== churn: door {:?}, {} loops, {} rooms, {} rounds of {:?} ==",
        a.door, a.loops, a.rooms, a.rounds, a.round
    ));
    let sessions = cs.sessions.load(Relaxed);
    let exits: Vec<String> =
        EXITS.iter().zip(&cs.exits).map(|(n, c)| format!("{n} {}", c.load(Relaxed))).collect();
    ctx.say(format!(
        "sessions    {sessions} ({:.0}/s; {}); errors: {}",
        sessions as f64 / total.wall.max(1e-9),
        exits.join(", "),
        cs.errors.text()
    ));
    ctx.say(format!("  session   {}", cs.lat.lock().unwrap().text()));
    ctx.say(format!(
        "RssAnon     before {}",
        anon_before.map(|v| format!("{:.1} MiB", mib(v))).unwrap_or("n/a".into())
    ));
    ctx.say("series      round  t(s)   sessions   RssAnon(MiB)  VmRSS(MiB)  CPU%");
    for r in rows.iter().chain(std::iter::once(&settled)) {
        ctx.say(format!(
            "            {:>5}  {:>4.0}  {:>9}  {:>12}  {:>10}  {:>4}",
            if r.round == 0 { "end".to_string() } else { r.round.to_string() },
            r.t,
            r.sessions,
            r.anon_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
            r.rss_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
            r.cpu_pct.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
        ));
    }
    // The verdict: once warm (after the reference round), anonymous memory
    // stays within the bound however many more sessions come.
    let reference = rows.iter().find(|r| r.round == a.reference_round);
    let later: Vec<&ChurnRow> = rows.iter().filter(|r| r.round > a.reference_round).collect();
    let mut pass = sessions > 0;
    let mut verdict = Value::Null;
    match (reference.and_then(|r| r.anon_kb.map(|k| (r, k))), later.last()) {
        (Some((rref, ref_kb)), Some(last)) => {
            let max_kb = later.iter().filter_map(|r| r.anon_kb).max().unwrap_or(ref_kb);
            let growth_mb = (max_kb as f64 - ref_kb as f64) / 1024.0;
            let more = last.sessions.saturating_sub(rref.sessions);
            let per_session =
                last.anon_kb.map(|l| (l as f64 - ref_kb as f64) * 1024.0 / (more.max(1) as f64));
            let ok = growth_mb <= a.max_growth_mb;
            pass &= ok;
            ctx.say(format!(
                "verdict     {}: RssAnon peaked {growth_mb:+.1} MiB above round {} ({:.1} MiB) over {more} more sessions \
                 (limit {:.0} MiB); last round {} B per session",
                if ok { "PASS" } else { "FAIL" },
                a.reference_round,
                mib(ref_kb),
                a.max_growth_mb,
                per_session.map(|b| format!("{b:+.0}")).unwrap_or("n/a".into())
            ));
            verdict = json!({"pass": ok, "reference_kb": ref_kb, "max_after_kb": max_kb,
                "growth_mb": growth_mb, "sessions_after_reference": more, "bytes_per_session": per_session});
        }
        _ => {
            ctx.say(format!("verdict     n/a: needs a server pid and more than {} rounds", a.reference_round))
        }
    }
    ctx.say(format!("            {}", total.text()));
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "churn",
                "door": format!("{:?}", a.door).to_lowercase(),
                "loops": a.loops,
                "rooms": a.rooms,
                "round_s": a.round.as_secs_f64(),
                "sessions": sessions,
                "exits": EXITS.iter().zip(&cs.exits).map(|(n, c)| (n.to_string(), json!(c.load(Relaxed)))).collect::<serde_json::Map<_, _>>(),
                "errors": cs.errors.json(),
                "anon_before_kb": anon_before,
                "series": rows.iter().chain(std::iter::once(&settled)).map(|r| json!({
                    "round": r.round, "t_s": r.t, "sessions": r.sessions, "rss_anon_kb": r.anon_kb,
                    "rss_kb": r.rss_kb, "cpu_pct": r.cpu_pct,
                })).collect::<Vec<_>>(),
                "verdict": verdict,
                "usage": total.json(),
                "health": health,
            })
        );
    }
    drop(creators);
    Ok(pass)
}
