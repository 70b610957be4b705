//! The `race` scenario (see the list in main.rs).

use super::*;

pub(crate) struct RaceArgs {
    pub clients: usize,
    pub seats: usize,
    pub iterations: usize,
    pub pause: Duration,
}

pub(crate) async fn race(ctx: &Ctx, a: RaceArgs) -> Result<bool, String> {
    procfs::check_fd_budget(a.clients + ctx.creator_bots(a.iterations))?;
    let mut creators = Creators::new(ctx);
    let rooms = creators.create_many(ctx, a.iterations, "race", ctx.capacity_extra(a.seats)).await?;
    let mut plans = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        plans.push(Plan::user(ctx, i)?);
    }
    let lat_conn = shared_lat();
    let fail = Arc::new(Tally::default());
    let clients: Vec<Client> = setup_many(ctx, plans, &lat_conn, &fail).await.into_iter().flatten().collect();
    if clients.len() != a.clients {
        return Err(format!("only {}/{} clients connected ({})", clients.len(), a.clients, fail.text()));
    }
    let lat = shared_lat();
    let errors = Tally::default();
    let leave_errors = Tally::default();
    let (mut over, mut under) = (0usize, 0usize);
    let (mut min_acc, mut max_acc) = (usize::MAX, 0usize);
    let mut rate_limited_total = 0usize;
    ctx.progress(format!("race: {} clients x {} iterations for {} seats", a.clients, a.iterations, a.seats));
    let s0 = ctx.snap();
    for (it, room) in rooms.iter().enumerate() {
        if it > 0 {
            tokio::time::sleep(a.pause).await;
        }
        let prepared: Vec<(String, ddp::Pending)> =
            clients.iter().map(|c| c.prepare("join-room", json!([{ "code": room.code }]))).collect();
        let t0 = Instant::now();
        let mut pendings = Vec::with_capacity(prepared.len());
        for (c, (frame, p)) in clients.iter().zip(prepared) {
            c.send_prepared(frame, &p);
            pendings.push(p);
        }
        let results = futures_util::future::join_all(pendings.into_iter().map(|p| async move {
            let r = p.wait().await;
            (r, t0.elapsed())
        }))
        .await;
        let mut winners = Vec::new();
        let mut limited = 0;
        {
            let mut l = lat.lock().unwrap();
            for (ix, (r, d)) in results.iter().enumerate() {
                l.record(*d);
                match r {
                    Ok(_) => winners.push(ix),
                    Err(e) => {
                        limited += usize::from(e.is("too-many-requests"));
                        errors.add(e.code());
                    }
                }
            }
        }
        rate_limited_total += limited;
        // Rate-limited attempts never reached the room: they do not compete.
        let expected = a.seats.min(a.clients - limited);
        let acc = winners.len();
        min_acc = min_acc.min(acc);
        max_acc = max_acc.max(acc);
        if acc > a.seats {
            over += 1;
            ctx.say(format!(
                "iteration {it}: OVER-ADMISSION: {acc} accepted for {} seats (room {})",
                a.seats, room.rid
            ));
        } else if acc < expected {
            under += 1;
            ctx.say(format!(
                "iteration {it}: UNDER-ADMISSION: {acc} accepted, expected {expected} (room {}, {limited} rate-limited)",
                room.rid
            ));
        }
        // Leave again so the next iteration starts from a clean slate.
        let leaves = winners.iter().map(|&ix| clients[ix].call("leaveRoom", json!([room.rid])));
        for r in futures_util::future::join_all(leaves).await {
            if let Err(e) = r {
                leave_errors.add(e.code());
            }
        }
    }
    let usage = Usage::between(&s0, &ctx.snap());
    let lat = take(&lat);
    let ok = over == 0 && under == 0;
    ctx.say(format!(
        "== race: {} clients, {} seats, {} iterations, {:?} apart ==",
        a.clients, a.seats, a.iterations, a.pause
    ));
    ctx.say(format!(
        "admission   accepted per iteration min {min_acc} max {max_acc} (seats {}); over-admission {over}, under-admission {under}: {}",
        a.seats,
        if ok { "OK" } else { "FAILED" }
    ));
    if rate_limited_total > 0 {
        ctx.say(format!(
            "note        {rate_limited_total} join attempts were rate-limited (too-many-requests) and not \
             counted as competitors; raise --pause or run roomd with --no-rate-limits"
        ));
    }
    ctx.say(format!("rejections  {}", errors.text()));
    ctx.say(format!("leaveRoom   errors: {}", leave_errors.text()));
    ctx.say(format!("latency     join-room under contention {}", lat.text()));
    ctx.say(format!("            {}", usage.text()));
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "race",
                "clients": a.clients,
                "seats": a.seats,
                "iterations": a.iterations,
                "min_accepted": min_acc,
                "max_accepted": max_acc,
                "over_admissions": over,
                "under_admissions": under,
                "rate_limited": rate_limited_total,
                "rejections": errors.json(),
                "leave_errors": leave_errors.json(),
                "join_latency": lat.json(),
                "usage": usage.json(),
                "ok": ok,
                "health": health,
            })
        );
    }
    Ok(ok)
}
