//! The `failover` scenario (see the list in main.rs).

use super::*;

pub(crate) struct FailoverArgs {
    pub clients: usize,
    pub room_size: usize,
    pub interval: Duration,
    pub kill_pid: u32,
    pub kill_after: Duration,
    pub after_kill: Duration,
}

/// A failover client's patience for one call before it tries another node.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What one failover client saw.
#[derive(Default)]
struct FailoverClient {
    ok_before: u64,
    ok_after: u64,
    /// First successful sendMessage on a surviving node, after the kill.
    recovered_at: Option<Instant>,
    /// First failed call or reconnect attempt.
    failed_at: Option<Instant>,
    reconnects: u64,
}

/// Clients all on the first --url send messages; the first node is killed
/// (SIGKILL) and each client reconnects to a survivor (client i to
/// survivor i mod n-1, then the next one on each failed attempt), logs in,
/// joins again and sends. Measures kill -> first success per client.
pub(crate) async fn failover(ctx: &Ctx, a: FailoverArgs) -> Result<bool, String> {
    if ctx.eps.len() < 2 {
        return Err("failover needs --url with two or more nodes; the first is the one killed".into());
    }
    if a.clients == 0 || a.room_size == 0 {
        return Err("--clients and --room-size must be positive".into());
    }
    procfs::check_fd_budget(a.clients + a.clients.div_ceil(a.room_size))?;
    ctx.progress(format!(
        "failover: {} clients on {}, node pid {} killed after {:?}",
        a.clients, ctx.ep.url, a.kill_pid, a.kill_after
    ));
    let n_rooms = a.clients.div_ceil(a.room_size);
    let mut creators = Creators::new(ctx);
    let rooms = creators.create_many(ctx, n_rooms, "failover", ctx.capacity_extra(a.room_size)).await?;
    let mut plans = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        plans.push(Plan::user(ctx, i)?.joins(&rooms[i % n_rooms], None));
    }
    let (lat, fail) = (shared_lat(), Arc::new(Tally::default()));
    let victim = std::slice::from_ref(&ctx.ep);
    let clients = setup_many_on(ctx, victim, plans, &lat, &fail).await;
    if clients.iter().any(Option::is_none) {
        return Err(format!("setup on {} failed: {}", ctx.ep.url, fail.text()));
    }
    let survivors: Arc<Vec<Endpoint>> = Arc::new(ctx.eps[1..].to_vec());
    let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let send_before = shared_lat();
    let send_after = shared_lat();
    let errors = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + a.kill_after + a.after_kill;
    let mut set = JoinSet::new();
    for (i, client) in clients.into_iter().flatten().enumerate() {
        let token = ctx.token("u", i, "user")?;
        let room = rooms[i % n_rooms].clone();
        let (survivors, killed_at, errors) = (survivors.clone(), killed_at.clone(), errors.clone());
        let (send_before, send_after) = (send_before.clone(), send_after.clone());
        let interval = a.interval;
        set.spawn(async move {
            let mut me = FailoverClient::default();
            let mut client = Some(client);
            let mut next_node = i % survivors.len();
            // Spread the clients' calls over the interval.
            let mut due = start + interval.mul_f64((i as f64 * 0.618_034).fract());
            while Instant::now() < end {
                let Some(c) = client.clone() else {
                    // Reconnect to a survivor, log in, join again.
                    let ep = survivors[next_node].clone();
                    next_node = (next_node + 1) % survivors.len();
                    me.reconnects += 1;
                    let plan = Plan::signed_in(i, Some(token.clone())).joins(&room, None);
                    match setup_client(ep, plan).await {
                        Ok(c) => client = Some(c),
                        Err((stage, e)) => {
                            errors.add(format!("reconnect {stage}:{}", e.code()));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    continue;
                };
                if me.failed_at.is_none() {
                    // Like a browser's onclose: a dropped socket ends the
                    // pause at once and the next call goes out (and fails).
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => due += interval,
                        _ = c.closed() => {}
                    }
                }
                let t = Instant::now();
                // A browser learns of a reset socket at once: a call on a
                // connection already seen dead fails without waiting.
                let call = c.call("sendMessage", json!([{ "rid": room.rid, "msg": format!("fo {i}") }]));
                let r = if !c.is_alive() {
                    Err(DdpError::Closed)
                } else {
                    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or(Err(DdpError::Timeout))
                };
                match r {
                    Ok(_) => {
                        let done = Instant::now();
                        match killed_at.get() {
                            Some(k) if t > *k && me.failed_at.is_some() => {
                                me.recovered_at.get_or_insert(done);
                                me.failed_at = None;
                                me.ok_after += 1;
                                send_after.lock().unwrap().record(done - t);
                            }
                            Some(_) if me.recovered_at.is_some() => {
                                me.ok_after += 1;
                                send_after.lock().unwrap().record(done - t);
                            }
                            _ => {
                                me.ok_before += 1;
                                send_before.lock().unwrap().record(done - t);
                            }
                        }
                    }
                    Err(e) => {
                        errors.add(format!("sendMessage:{}", e.code()));
                        me.failed_at.get_or_insert(t);
                        if !c.is_alive() || matches!(e, DdpError::Closed | DdpError::Timeout) {
                            client = None;
                        } else {
                            // A refusal on a live connection: retry it soon, not in a hot loop.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            me
        });
    }
    tokio::time::sleep_until((start + a.kill_after).into()).await;
    // The instant before `kill` runs: the figure includes fork+exec of kill(1).
    let _ = killed_at.set(Instant::now());
    let status = std::process::Command::new("kill")
        .args(["-9", &a.kill_pid.to_string()])
        .status()
        .map_err(|e| format!("running kill: {e}"))?;
    if !status.success() {
        return Err(format!("kill -9 {} failed ({status})", a.kill_pid));
    }
    ctx.progress(format!("killed pid {}", a.kill_pid));
    let kill = *killed_at.get().expect("set above");
    let mut from_kill = Lat::default();
    let (mut recovered, mut ok_before, mut ok_after, mut reconnects) = (0, 0, 0, 0);
    while let Some(r) = set.join_next().await {
        let me = r.map_err(|e| format!("client task: {e}"))?;
        if let Some(at) = me.recovered_at {
            recovered += 1;
            from_kill.record(at - kill);
        }
        ok_before += me.ok_before;
        ok_after += me.ok_after;
        reconnects += me.reconnects;
    }
    let (send_before, send_after) = (take(&send_before), take(&send_after));
    ctx.say(format!(
        "== failover: {} clients on {} in {n_rooms} rooms, a sendMessage each every {:?}; kill -9 pid {} at {:?} ==",
        a.clients, ctx.ep.url, a.interval, a.kill_pid, a.kill_after
    ));
    ctx.say(format!(
        "recovered   {recovered} of {} clients succeeded on a surviving node ({reconnects} reconnect attempts)",
        a.clients
    ));
    ctx.say(format!("kill->ok    {}", from_kill.text()));
    ctx.say(format!("sendMessage before the kill {}", send_before.text()));
    ctx.say(format!("            after recovery  {}", send_after.text()));
    ctx.say(format!("calls       ok before {ok_before}, ok after {ok_after}; errors: {}", errors.text()));
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "failover",
                "clients": a.clients,
                "recovered": recovered,
                "reconnect_attempts": reconnects,
                "kill_to_ok": from_kill.json(),
                "send_before": send_before.json(),
                "send_after": send_after.json(),
                "ok_before": ok_before,
                "ok_after": ok_after,
                "errors": errors.json(),
                "health": health,
            })
        );
    }
    drop(creators);
    Ok(recovered == a.clients)
}
