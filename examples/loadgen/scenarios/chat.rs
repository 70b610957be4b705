//! The `chat` scenario (see the list in main.rs).

use super::*;

pub(crate) struct ChatArgs {
    pub clients: usize,
    pub duration: Duration,
    pub room_size: usize,
    pub think: Duration,
    pub sample: Duration,
}

#[derive(Clone, Copy)]
enum Op {
    Join,
    Subscribe,
    Leave,
    Send,
    Typing,
    History,
}
const OPS: [(&str, Op); 6] = [
    ("join", Op::Join),
    ("subscribe", Op::Subscribe),
    ("leave", Op::Leave),
    ("send", Op::Send),
    ("typing", Op::Typing),
    ("history", Op::History),
];

struct ChatShared {
    lats: Vec<Mutex<Lat>>,
    errors: Tally,
    ops: AtomicU64,
    deliveries: AtomicU64,
    system: AtomicU64,
}

impl ddp::Listener for ChatShared {
    fn event(&self, coll: &str, fields: &Value) {
        if coll != "stream-room-messages" {
            return;
        }
        let msg = fields.get("args").and_then(|a| a.get(0));
        if msg.and_then(|m| m.get("t")).is_some_and(|t| !t.is_null()) {
            self.system.fetch_add(1, Relaxed);
        } else {
            self.deliveries.fetch_add(1, Relaxed);
        }
    }
}

impl ChatShared {
    async fn timed(
        &self,
        op: Op,
        fut: impl Future<Output = Result<Value, DdpError>>,
    ) -> Result<Value, DdpError> {
        let t = Instant::now();
        let r = fut.await;
        self.ops.fetch_add(1, Relaxed);
        match &r {
            Ok(_) => self.lats[op as usize].lock().unwrap().record(t.elapsed()),
            Err(e) => self.errors.add(format!("{}:{}", OPS[op as usize].0, e.code())),
        }
        r
    }
}

async fn chat_client(
    i: usize,
    client: Client,
    username: String,
    rooms: Arc<Vec<Room>>,
    cs: Arc<ChatShared>,
    deadline: Instant,
    think: Duration,
) {
    let mut rng = Rng::new(unix_micros() ^ ((i as u64) << 20));
    let mut current: Option<(usize, Option<u64>)> = None;
    let mut n = 0u64;
    let pause = |rng: &mut Rng| think.mul_f64(0.5 + rng.unit());
    tokio::time::sleep(think.mul_f64(rng.unit())).await;
    while Instant::now() < deadline {
        match current {
            None => {
                let ri = rng.below(rooms.len());
                let via = if rng.below(2) == 0 { Via::Code } else { Via::Rid };
                let joined = cs.timed(Op::Join, join_room(&client, &rooms[ri], via, None)).await;
                if joined.is_ok() {
                    let sid = cs
                        .timed(Op::Subscribe, async {
                            subscribe_room(&client, &rooms[ri].rid).await.map(Value::from)
                        })
                        .await
                        .ok()
                        .and_then(|v| v.as_u64());
                    current = Some((ri, sid));
                }
            }
            Some((ri, sid)) => {
                let rid = rooms[ri].rid.as_str();
                let roll = rng.below(100);
                if roll < 50 {
                    n += 1;
                    let msg = json!([{ "rid": rid, "msg": format!("chat {username} #{n}") }]);
                    let _ = cs.timed(Op::Send, client.call("sendMessage", msg)).await;
                } else if roll < 75 {
                    let params = json!([format!("{rid}/user-activity"), username, ["user-typing"], {}]);
                    let _ = cs.timed(Op::Typing, client.call("stream-notify-room", params)).await;
                } else if roll < 87 {
                    let params = json!([rid, null, 50, null]);
                    let _ = cs.timed(Op::History, client.call("loadHistory", params)).await;
                } else {
                    if let Some(sid) = sid {
                        client.unsubscribe(sid);
                    }
                    let _ = cs.timed(Op::Leave, client.call("leaveRoom", json!([rid]))).await;
                    current = None;
                }
            }
        }
        let wake = (Instant::now() + pause(&mut rng)).min(deadline);
        tokio::time::sleep_until(wake.into()).await;
    }
    if let Some((ri, sid)) = current {
        if let Some(sid) = sid {
            client.unsubscribe(sid);
        }
        let _ = client.call("leaveRoom", json!([rooms[ri].rid])).await;
    }
}

/// One point of the chat series: t (s), server RSS (kB), server CPU % over the
/// interval, ops/s, deliveries/s, connections alive.
struct Sample(f64, Option<u64>, Option<f64>, f64, f64, usize);

pub(crate) async fn chat(ctx: &Ctx, a: ChatArgs) -> Result<bool, String> {
    let n_rooms = a.clients.div_ceil(a.room_size.max(1)).max(1);
    procfs::check_fd_budget(a.clients + ctx.creator_bots(n_rooms))?;
    let mut creators = Creators::new(ctx);
    let rooms = Arc::new(creators.create_many(ctx, n_rooms, "chat", json!({})).await?);
    let cs = Arc::new(ChatShared {
        lats: OPS.iter().map(|_| Mutex::new(Lat::default())).collect(),
        errors: Tally::default(),
        ops: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        system: AtomicU64::new(0),
    });
    let handler: Handler = cs.clone();
    let mut plans = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        plans.push(Plan::user(ctx, i)?.heard_by(handler.clone()));
    }
    ctx.progress(format!("chat: connecting {} clients ({n_rooms} rooms)", a.clients));
    let s_before = ctx.snap();
    let lat = shared_lat();
    let fail = Arc::new(Tally::default());
    let clients = setup_many(ctx, plans, &lat, &fail).await;
    let connected = clients.iter().flatten().count();
    ctx.progress(format!("{connected} connected; running mixed workload for {:?}", a.duration));

    let start = Instant::now();
    let deadline = start + a.duration;
    let mut set = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        if let Some(c) = c {
            set.spawn(chat_client(
                i,
                c.clone(),
                ctx.username("u", i),
                rooms.clone(),
                cs.clone(),
                deadline,
                a.think,
            ));
        }
    }
    let mut series: Vec<Sample> = Vec::new();
    let mut prev = ctx.snap();
    let (mut prev_ops, mut prev_del) = (0u64, 0u64);
    let push = |series: &mut Vec<_>, prev: &mut Snap, prev_ops: &mut u64, prev_del: &mut u64| {
        let now = ctx.snap();
        let u = Usage::between(prev, &now);
        let ops = cs.ops.load(Relaxed);
        let del = cs.deliveries.load(Relaxed);
        let alive = clients.iter().flatten().filter(|c| c.is_alive()).count();
        let row = Sample(
            now.at.duration_since(start).as_secs_f64(),
            now.server.map(|s| s.rss_kb),
            u.server_cpu.map(|c| 100.0 * c / u.wall.max(1e-9)),
            (ops - *prev_ops) as f64 / u.wall.max(1e-9),
            (del - *prev_del) as f64 / u.wall.max(1e-9),
            alive,
        );
        eprintln!(
            "[loadgen]   t={:>5.0}s rss {} MiB cpu {}% ops/s {:.0} deliveries/s {:.0} alive {}",
            row.0,
            row.1.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
            row.2.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
            row.3,
            row.4,
            row.5
        );
        series.push(row);
        *prev = now;
        *prev_ops = ops;
        *prev_del = del;
    };
    push(&mut series, &mut prev, &mut prev_ops, &mut prev_del);
    loop {
        let next = (prev.at + a.sample).min(deadline);
        tokio::time::sleep_until(next.into()).await;
        push(&mut series, &mut prev, &mut prev_ops, &mut prev_del);
        if Instant::now() >= deadline {
            break;
        }
    }
    while set.join_next().await.is_some() {}
    let total = Usage::between(&s_before, &ctx.snap());

    ctx.say(format!(
        "== chat: {} clients, {n_rooms} rooms, {:?}, think {:?} ==",
        a.clients, a.duration, a.think
    ));
    ctx.say(format!(
        "setup       {connected} connected, failures: {}; connect+login {}",
        fail.text(),
        take(&lat).text()
    ));
    ctx.say("series      t(s)   RSS(MiB)  CPU%   ops/s  deliveries/s  alive");
    for r in &series {
        ctx.say(format!(
            "            {:>5.0}  {:>8}  {:>4}  {:>6.0}  {:>12.0}  {:>5}",
            r.0,
            r.1.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
            r.2.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
            r.3,
            r.4,
            r.5
        ));
    }
    let rss: Vec<u64> = series.iter().filter_map(|r| r.1).collect();
    let mut rss_json = Value::Null;
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        let (min, max) = (rss.iter().min().unwrap(), rss.iter().max().unwrap());
        let drift = *last as f64 - *first as f64;
        ctx.say(format!(
            "RSS         start {:.1} MiB, end {:.1} MiB, min {:.1}, max {:.1}; drift {:+.1} MiB ({:+.1}%)",
            mib(*first),
            mib(*last),
            mib(*min),
            mib(*max),
            drift / 1024.0,
            100.0 * drift / (*first as f64).max(1.0)
        ));
        rss_json = json!({"start_kb": first, "end_kb": last, "min_kb": min, "max_kb": max});
    }
    let ops_total = cs.ops.load(Relaxed);
    ctx.say(format!(
        "ops         {ops_total} in {:.1} s = {:.0} ops/s, {} ops per server CPU-s; deliveries {}, system messages {}",
        total.wall,
        ops_total as f64 / a.duration.as_secs_f64().max(1e-9),
        opt_rate(total.per_cpu(ops_total as f64)),
        cs.deliveries.load(Relaxed),
        cs.system.load(Relaxed)
    ));
    ctx.say(format!("            {}", total.text()));
    let mut lat_json = serde_json::Map::new();
    for (name, op) in OPS {
        let l = cs.lats[op as usize].lock().unwrap().clone();
        ctx.say(format!("  {name:<10} {}", l.text()));
        lat_json.insert(name.to_string(), l.json());
    }
    ctx.say(format!("errors      {}", cs.errors.text()));
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "chat",
                "clients": a.clients,
                "connected": connected,
                "rooms": n_rooms,
                "duration_s": a.duration.as_secs_f64(),
                "ops": ops_total,
                "ops_per_server_cpu_s": total.per_cpu(ops_total as f64),
                "deliveries": cs.deliveries.load(Relaxed),
                "latency": lat_json,
                "errors": cs.errors.json(),
                "rss": rss_json,
                "series": series.iter().map(|r| json!({
                    "t_s": r.0, "rss_kb": r.1, "cpu_pct": r.2, "ops_per_s": r.3,
                    "deliveries_per_s": r.4, "alive": r.5,
                })).collect::<Vec<_>>(),
                "usage": total.json(),
                "health": health,
            })
        );
    }
    drop(creators);
    Ok(connected == a.clients)
}
