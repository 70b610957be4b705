//! The `join` scenario (see the list in main.rs).

use super::*;

pub(crate) struct JoinArgs {
    pub clients: usize,
    pub rooms: usize,
    pub capacity: usize,
    pub rate: Option<f64>,
}

pub(crate) async fn join(ctx: &Ctx, a: JoinArgs) -> Result<bool, String> {
    if a.rooms == 0 {
        return Err("R must be at least 1".into());
    }
    procfs::check_fd_budget(a.clients + ctx.creator_bots(a.rooms))?;
    ctx.progress(format!("join: {} clients, {} rooms of capacity {}", a.clients, a.rooms, a.capacity));
    let mut creators = Creators::new(ctx);
    let extra = ctx.capacity_extra(a.capacity);
    let rooms = creators.create_many(ctx, a.rooms, "join", extra).await?;

    // Phase 1: connect + login.
    let mut plans = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        plans.push(Plan::user(ctx, i)?);
    }
    let conn_lat = shared_lat();
    let conn_fail = Arc::new(Tally::default());
    let s0 = ctx.snap();
    let clients: Vec<Client> =
        setup_many(ctx, plans, &conn_lat, &conn_fail).await.into_iter().flatten().collect();
    let s1 = ctx.snap();
    let conn = Usage::between(&s0, &s1);
    let conn_lat = take(&conn_lat);

    // Phase 2: joins, client k -> room k % R; even k by code, odd k by rid.
    let c = clients.len();
    let per_room_target: Vec<usize> =
        (0..a.rooms).map(|j| (0..c).filter(|k| k % a.rooms == j).count()).collect();
    let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..a.rooms).map(|_| AtomicU64::new(0)).collect());
    let full = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Tally::default());
    let lat_all = shared_lat();
    let lat_code = shared_lat();
    let lat_rid = shared_lat();
    ctx.progress(format!(
        "{c} clients connected; joining{}",
        a.rate.map(|r| format!(" at {r}/s")).unwrap_or_default()
    ));
    let s2 = ctx.snap();
    let t0 = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for (k, client) in clients.iter().enumerate() {
        let start_at = a.rate.map(|r| t0 + Duration::from_secs_f64(k as f64 / r));
        let room_ix = k % a.rooms;
        let room = rooms[room_ix].clone();
        let via = if k % 2 == 0 { Via::Code } else { Via::Rid };
        let client = client.clone();
        let (accepted, full, errors) = (accepted.clone(), full.clone(), errors.clone());
        let lat_all = lat_all.clone();
        let lat_via = if k % 2 == 0 { lat_code.clone() } else { lat_rid.clone() };
        set.spawn(async move {
            if let Some(at) = start_at {
                tokio::time::sleep_until(at).await;
            }
            let t = Instant::now();
            let r = join_room(&client, &room, via, None).await;
            let d = t.elapsed();
            lat_all.lock().unwrap().record(d);
            lat_via.lock().unwrap().record(d);
            match r {
                Ok(_) => {
                    accepted[room_ix].fetch_add(1, Relaxed);
                }
                Err(e) if e.is("error-room-full") => {
                    full.fetch_add(1, Relaxed);
                }
                Err(e) => errors.add(format!("{via:?}:{}", e.code())),
            }
        });
    }
    while set.join_next().await.is_some() {}
    let s3 = ctx.snap();
    let joins = Usage::between(&s2, &s3);

    let acc_total: u64 = accepted.iter().map(|a| a.load(Relaxed)).sum();
    let expected = a.clients.min(a.rooms * a.capacity) as u64;
    let bad_rooms: Vec<String> = accepted
        .iter()
        .enumerate()
        .filter_map(|(j, got)| {
            let got = got.load(Relaxed);
            let want = per_room_target[j].min(a.capacity) as u64;
            (got != want).then(|| format!("room {j}: {got} != {want}"))
        })
        .collect();
    let full = full.load(Relaxed);
    let lat_all = take(&lat_all);
    let verified = acc_total == expected && bad_rooms.is_empty();

    ctx.say(format!(
        "== join: {} clients -> {} rooms x capacity {}{} ==",
        a.clients,
        a.rooms,
        a.capacity,
        a.rate.map(|r| format!(", joins paced at {r}/s")).unwrap_or_default()
    ));
    ctx.say(format!(
        "connect     {c} ok, {} failed in {:.2} s = {} setups/s wall, {} setups per server CPU-s",
        a.clients - c,
        conn.wall,
        fmt_rate(c as f64 / conn.wall.max(1e-9)),
        opt_rate(conn.per_cpu(c as f64))
    ));
    ctx.say(format!("            {}", conn.text()));
    ctx.say(format!("            connect+login latency {}", conn_lat.text()));
    if conn_fail.total() > 0 {
        ctx.say(format!("            connect failures: {}", conn_fail.text()));
    }
    ctx.say(format!(
        "joins       {c} attempts in {:.2} s = {} joins/s wall, {} joins per server CPU-s",
        joins.wall,
        fmt_rate(c as f64 / joins.wall.max(1e-9)),
        opt_rate(joins.per_cpu(c as f64))
    ));
    ctx.say(format!("            {}", joins.text()));
    ctx.say(format!("latency     all       {}", lat_all.text()));
    let (lat_code, lat_rid) = (take(&lat_code), take(&lat_rid));
    ctx.say(format!("            join-room {}", lat_code.text()));
    ctx.say(format!("            joinRoom  {}", lat_rid.text()));
    ctx.say(format!(
        "outcome     accepted {acc_total}, rejected (error-room-full) {full}, other errors: {}",
        errors.text()
    ));
    ctx.say(format!(
        "verify      accepted {acc_total} vs expected min(C, R*K) = {expected}: {}{}",
        if verified { "OK" } else { "MISMATCH" },
        if bad_rooms.is_empty() {
            String::new()
        } else {
            format!(
                " (per-room: {}{})",
                bad_rooms.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                if bad_rooms.len() > 5 { "; ..." } else { "" }
            )
        }
    ));
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "join",
                "clients": a.clients,
                "rooms": a.rooms,
                "capacity": a.capacity,
                "rate": a.rate,
                "connected": c,
                "connect": conn.json(),
                "connect_per_s": c as f64 / conn.wall.max(1e-9),
                "connect_per_server_cpu_s": conn.per_cpu(c as f64),
                "connect_latency": conn_lat.json(),
                "connect_failures": conn_fail.json(),
                "joins": joins.json(),
                "joins_per_s": c as f64 / joins.wall.max(1e-9),
                "joins_per_server_cpu_s": joins.per_cpu(c as f64),
                "join_latency": lat_all.json(),
                "join_room_latency": lat_code.json(),
                "joinroom_latency": lat_rid.json(),
                "accepted": acc_total,
                "rejected_full": full,
                "other_errors": errors.json(),
                "expected": expected,
                "verified": verified,
                "health": health,
            })
        );
    }
    Ok(verified && c == a.clients)
}
