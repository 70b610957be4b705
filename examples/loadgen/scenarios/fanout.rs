//! The `fanout` scenario (see the list in main.rs).

use super::*;

pub(crate) struct FanoutArgs {
    pub rooms: usize,
    pub members: usize,
    pub rate: f64,
    pub duration: Duration,
    pub ramp: bool,
    pub ramp_factor: f64,
    pub step: Duration,
    pub p99_limit: Duration,
    pub max_rate: Option<f64>,
    pub max_steps: usize,
    pub drain: Duration,
    pub senders_per_room: usize,
    pub closed_loop: bool,
}

#[derive(Default)]
struct StepStats {
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    e2e: Mutex<Lat>,
    send_lat: Mutex<Lat>,
    send_ok: AtomicU64,
    rate_limited: AtomicU64,
    send_err: AtomicU64,
}

struct FanoutShared {
    /// `lg:<run>:` — prefix of every message text; then `<step>:<unix µs>`.
    tag: String,
    steps: Vec<StepStats>,
    system: AtomicU64,
    foreign: AtomicU64,
    errors: Tally,
}

struct StepResult {
    rate: f64,
    sent: u64,
    ok: u64,
    rate_limited: u64,
    send_err: u64,
    expected: u64,
    delivered: u64,
    active_wall: f64,
    disconnects: u64,
    usage: Usage,
    e2e: Lat,
    send_lat: Lat,
}

impl StepResult {
    fn delivered_ratio(&self) -> f64 {
        if self.expected == 0 { 0.0 } else { self.delivered as f64 / self.expected as f64 }
    }
    fn deliveries_per_s(&self) -> f64 {
        self.delivered as f64 / self.active_wall.max(1e-9)
    }
    fn json(&self) -> Value {
        json!({
            "rate": self.rate,
            "sent": self.sent,
            "send_ok": self.ok,
            "rate_limited": self.rate_limited,
            "send_errors": self.send_err,
            "expected_deliveries": self.expected,
            "delivered": self.delivered,
            "deliveries_per_s": self.deliveries_per_s(),
            "deliveries_per_server_cpu_s": self.usage.per_cpu(self.delivered as f64),
            "unexpected_disconnects": self.disconnects,
            "e2e": self.e2e.json(),
            "send_latency": self.send_lat.json(),
            "usage": self.usage.json(),
        })
    }
}

impl FanoutShared {
    /// Records a delivery of `<step>:<unix µs>…` (the text after the tag).
    /// Returns false if it does not parse.
    fn record(&self, after_tag: &str) -> bool {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let n = digits(after_tag);
        let Ok(step) = after_tag[..n].parse::<usize>() else { return false };
        let Some(rest) = after_tag[n..].strip_prefix(':') else { return false };
        let Ok(ts) = rest[..digits(rest)].parse::<u64>() else { return false };
        let now = unix_micros();
        if let Some(st) = self.steps.get(step) {
            st.delivered.fetch_add(1, Relaxed);
            st.last_delivery_us.fetch_max(now, Relaxed);
            st.e2e.lock().unwrap().record_us(now.saturating_sub(ts));
        }
        true
    }
}

impl ddp::Listener for FanoutShared {
    /// Fast path: a `changed` frame of stream-room-messages carrying our tag is
    /// one of our messages (system messages never carry it); no JSON parse.
    fn raw(&self, frame: &str) -> bool {
        if !frame.contains("\"stream-room-messages\"") || !frame.contains("\"changed\"") {
            return false;
        }
        match frame.find(self.tag.as_str()) {
            Some(pos) => self.record(&frame[pos + self.tag.len()..]),
            None => false,
        }
    }

    fn event(&self, coll: &str, fields: &Value) {
        if coll != "stream-room-messages" {
            return;
        }
        let Some(msg) = fields.get("args").and_then(|a| a.get(0)) else { return };
        if msg.get("t").is_some_and(|t| !t.is_null()) {
            self.system.fetch_add(1, Relaxed);
            return;
        }
        let text = msg.get("msg").and_then(Value::as_str).unwrap_or("");
        match text.strip_prefix(self.tag.as_str()) {
            Some(rest) if self.record(rest) => {}
            _ => {
                self.foreign.fetch_add(1, Relaxed);
            }
        }
    }
}

/// One measured sending period of the fanout scenario.
/// Counts one `sendMessage` answer of step `st`: its latency if it was
/// acknowledged, a rate-limit refusal, or another error.
fn tally_send(fs: &FanoutShared, st: &StepStats, r: Result<Value, ddp::DdpError>, took: Duration) {
    match r {
        Ok(_) => {
            st.send_lat.lock().unwrap().record(took);
            st.send_ok.fetch_add(1, Relaxed);
        }
        Err(e) if e.is("too-many-requests") => {
            st.rate_limited.fetch_add(1, Relaxed);
        }
        Err(e) => {
            st.send_err.fetch_add(1, Relaxed);
            fs.errors.add(format!("sendMessage:{}", e.code()));
        }
    }
}

struct StepPlan {
    step: usize,
    rate: f64,
    dur: Duration,
    drain: Duration,
    closed_loop: bool,
}

async fn fanout_step(
    ctx: &Ctx,
    fs: &Arc<FanoutShared>,
    senders: &[(Client, Room)],
    members: usize,
    plan: StepPlan,
) -> StepResult {
    let StepPlan { step, rate, dur, drain, closed_loop } = plan;
    let st = &fs.steps[step];
    let outstanding = Arc::new(AtomicI64::new(0));
    let disconnects_before = ddp::DISCONNECTS.load(Relaxed);
    let before = ctx.snap();
    let start = Instant::now();
    let start_us = unix_micros();
    let deadline = start + dur;
    let mut sent: u64 = 0;
    if closed_loop {
        // One call in flight per sender: the offered load adapts to what the
        // server acknowledges, so the count of acks over `dur` is its throughput.
        let mut tasks = Vec::with_capacity(senders.len());
        for (client, room) in senders.iter().cloned() {
            let fs2 = fs.clone();
            tasks.push(tokio::spawn(async move {
                let st = &fs2.steps[step];
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let text = format!("{}{step}:{}", fs2.tag, unix_micros());
                    let r =
                        client.start("sendMessage", json!([{ "rid": room.rid, "msg": text }])).wait().await;
                    n += 1;
                    tally_send(&fs2, st, r, t.elapsed());
                }
                n
            }));
        }
        for t in tasks {
            sent += t.await.unwrap_or(0);
        }
    }
    if !closed_loop {
        loop {
            let el = start.elapsed();
            if el >= dur {
                break;
            }
            // Message k is due at k / rate.
            let due = (el.as_secs_f64() * rate) as u64 + 1;
            while sent < due {
                let (client, room) = &senders[(sent % senders.len() as u64) as usize];
                let t = Instant::now();
                let text = format!("{}{step}:{}", fs.tag, unix_micros());
                let pending = client.start("sendMessage", json!([{ "rid": room.rid, "msg": text }]));
                outstanding.fetch_add(1, Relaxed);
                let (fs2, out2) = (fs.clone(), outstanding.clone());
                tokio::spawn(async move {
                    let r = pending.wait().await;
                    let st = &fs2.steps[step];
                    tally_send(&fs2, st, r, t.elapsed());
                    out2.fetch_sub(1, Relaxed);
                });
                sent += 1;
            }
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(next.min(deadline).into()).await;
        }
    }
    // Drain: wait for replies and deliveries (or give up after `drain`).
    let drain_end = Instant::now() + drain;
    loop {
        let expected = st.send_ok.load(Relaxed) * members as u64;
        let settled = outstanding.load(Relaxed) == 0 && st.delivered.load(Relaxed) >= expected;
        if settled || Instant::now() >= drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = ctx.snap();
    let last = st.last_delivery_us.load(Relaxed);
    let active = (last.saturating_sub(start_us) as f64 / 1e6).max(dur.as_secs_f64());
    let ok = st.send_ok.load(Relaxed);
    StepResult {
        rate,
        sent,
        ok,
        rate_limited: st.rate_limited.load(Relaxed),
        send_err: st.send_err.load(Relaxed),
        expected: ok * members as u64,
        delivered: st.delivered.load(Relaxed),
        active_wall: active,
        disconnects: ddp::DISCONNECTS.load(Relaxed) - disconnects_before,
        usage: Usage::between(&before, &after),
        e2e: st.e2e.lock().unwrap().clone(),
        send_lat: st.send_lat.lock().unwrap().clone(),
    }
}

pub(crate) async fn fanout(ctx: &Ctx, a: FanoutArgs) -> Result<bool, String> {
    if a.rooms == 0 || a.members == 0 || a.rate <= 0.0 {
        return Err("R, M and RATE must be positive".into());
    }
    let n_members = a.rooms * a.members;
    let n_senders = a.rooms * a.senders_per_room.max(1);
    procfs::check_fd_budget(n_members + n_senders + ctx.creator_bots(a.rooms))?;
    let steps_cap = if a.ramp { a.max_steps.max(1) } else { 1 };
    let fs = Arc::new(FanoutShared {
        tag: format!("lg:{}:", ctx.run),
        steps: (0..steps_cap).map(|_| StepStats::default()).collect(),
        system: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        errors: Tally::default(),
    });
    ctx.progress(format!("fanout: {} rooms x {} members, setting up", a.rooms, a.members));
    let mut creators = Creators::new(ctx);
    // Room for the members plus the sender bots.
    let extra = ctx.capacity_extra(a.members + a.senders_per_room.max(1));
    let rooms = creators.create_many(ctx, a.rooms, "fanout", extra).await?;

    let mut plans = Vec::with_capacity(n_members + n_senders);
    for i in 0..n_members {
        plans.push(Plan::user(ctx, i)?.heard_by(fs.clone()).joins(&rooms[i / a.members], None).subscribed());
    }
    // Sender k sits in room k % R, so message k (sent by sender k % (R*S)) goes
    // to room k % R: round-robin over rooms, and over a room's senders.
    let mut sender_plans = Vec::with_capacity(n_senders);
    for k in 0..n_senders {
        let bot = Plan::signed_in(n_members + k, Some(ctx.token("bot", k, "bot")?));
        sender_plans.push(bot.joins(&rooms[k % a.rooms], None));
    }
    let lat = shared_lat();
    let fail = Arc::new(Tally::default());
    let s0 = ctx.snap();
    let mut clients = setup_many(ctx, plans, &lat, &fail).await;
    clients.extend(setup_many_on(ctx, &ctx.sender_eps, sender_plans, &lat, &fail).await);
    let setup = Usage::between(&s0, &ctx.snap());
    let ok = clients.iter().flatten().count();
    if ok != clients.len() {
        return Err(format!(
            "setup failed for {} of {} connections: {}",
            clients.len() - ok,
            clients.len(),
            fail.text()
        ));
    }
    let clients: Vec<Client> = clients.into_iter().flatten().collect();
    let senders: Vec<(Client, Room)> =
        clients[n_members..].iter().cloned().zip(rooms.iter().cloned().cycle()).collect();
    let rss_setup = setup.rss_after_kb;

    ctx.say(format!(
        "== fanout: {} rooms x {} members, {} ==",
        a.rooms,
        a.members,
        if a.ramp {
            format!("ramp from {} msgs/s x{} every {:?}", a.rate, a.ramp_factor, a.step)
        } else {
            format!("{} msgs/s for {:?}", a.rate, a.duration)
        }
    ));
    ctx.say(format!(
        "setup       {ok} connections (members joined+subscribed, {n_senders} sender bots joined) in {:.2} s; latency {}",
        setup.wall,
        take(&lat).text()
    ));
    ctx.say(format!("            {}", setup.text()));

    let mut results = Vec::new();
    let mut best: Option<f64> = None;
    let mut stop_reason = String::new();
    let mut rate = a.rate;
    for step in 0..steps_cap {
        let dur = if a.ramp { a.step } else { a.duration };
        ctx.progress(format!("step {step}: {rate:.0} msgs/s for {dur:?}"));
        let plan = StepPlan { step, rate, dur, drain: a.drain, closed_loop: a.closed_loop };
        let r = fanout_step(ctx, &fs, &senders, a.members, plan).await;
        let p99_ok = r.e2e.q_ms(0.99) <= a.p99_limit.as_secs_f64() * 1e3;
        let keeping_up = r.delivered_ratio() >= 0.95;
        let limited = r.rate_limited as f64 > 0.01 * r.sent as f64;
        let mut flags = String::new();
        if r.rate_limited > 0 {
            flags += &format!(" rate-limited {}", r.rate_limited);
        }
        if r.disconnects > 0 {
            flags += &format!(" DISCONNECTS {}", r.disconnects);
        }
        let errors = r.send_err as f64 > 0.01 * r.sent as f64;
        if a.ramp {
            ctx.say(format!(
                "step {step:<3} rate {:>8.0}/s sent {:>7} delivered {:>9} ({:>5.1}%) {:>9} deliv/s {:>9} deliv/CPU-s  e2e p50 {:.3} p99 {:.3} max {:.3} ms  send p99 {:.3} ms  CPU server {} loadgen {}{}",
                r.rate,
                r.sent,
                r.delivered,
                100.0 * r.delivered_ratio(),
                fmt_rate(r.deliveries_per_s()),
                opt_rate(r.usage.per_cpu(r.delivered as f64)),
                r.e2e.q_ms(0.5),
                r.e2e.q_ms(0.99),
                r.e2e.max_ms(),
                r.send_lat.q_ms(0.99),
                pct(r.usage.server_cpu, r.usage.wall),
                pct(r.usage.self_cpu, r.usage.wall),
                flags
            ));
        }
        let dropped = r.disconnects > 0;
        let passed = p99_ok && keeping_up && !limited && !errors && !dropped;
        results.push(r);
        if !a.ramp {
            break;
        }
        if passed {
            best = Some(rate);
        } else {
            stop_reason = if dropped {
                "server disconnected subscribers (slow consumers?)".into()
            } else if limited {
                "server rate-limited sendMessage (too-many-requests)".into()
            } else if errors {
                "sendMessage errors".into()
            } else if !keeping_up {
                "deliveries fell behind (< 95% of expected)".into()
            } else {
                format!("p99 e2e above {:?}", a.p99_limit)
            };
            break;
        }
        rate *= a.ramp_factor;
        if a.max_rate.is_some_and(|m| rate > m) {
            stop_reason = "reached --max-rate".into();
            break;
        }
        if step + 1 == steps_cap {
            stop_reason = "reached --max-steps".into();
        }
    }

    if !a.ramp {
        let r = &results[0];
        if a.closed_loop {
            ctx.say(format!(
                "sent        {} messages ({} ok, {} rate-limited, {} other errors) closed loop: {:.0} acked/s",
                r.sent,
                r.ok,
                r.rate_limited,
                r.send_err,
                r.ok as f64 / a.duration.as_secs_f64()
            ));
        } else {
            ctx.say(format!(
                "sent        {} messages ({} ok, {} rate-limited, {} other errors) at {} msgs/s target",
                r.sent, r.ok, r.rate_limited, r.send_err, a.rate
            ));
        }
        ctx.say(format!(
            "delivered   {} of {} expected ({:.2}%) = {} deliveries/s, {} deliveries per server CPU-s",
            r.delivered,
            r.expected,
            100.0 * r.delivered_ratio(),
            fmt_rate(r.deliveries_per_s()),
            opt_rate(r.usage.per_cpu(r.delivered as f64))
        ));
        ctx.say(format!("            {}", r.usage.text()));
        ctx.say(format!("e2e         {}", r.e2e.text()));
        if r.rate_limited > 0 {
            let per_sender = a.rate / (a.rooms * a.senders_per_room.max(1)) as f64;
            ctx.say(format!(
                "note        {} sendMessage calls were rate-limited (too-many-requests) at {per_sender:.1} \
                 msgs/s per sender connection; add --senders-per-room or run roomd with --no-rate-limits",
                r.rate_limited
            ));
        }
        ctx.say(format!("sendMessage {}", r.send_lat.text()));
    } else {
        ctx.say(format!(
            "ramp        highest sustainable rate: {} msgs/s (stopped: {stop_reason})",
            best.map(|b| format!("{b:.0}")).unwrap_or("none".into())
        ));
    }
    let rss_end = ctx.snap().server.map(|s| s.rss_kb);
    if let (Some(b), Some(e)) = (rss_setup, rss_end) {
        ctx.say(format!("server RSS  {:.1} MiB after setup -> {:.1} MiB at end", mib(b), mib(e)));
    }
    ctx.say(format!(
        "other       system messages seen {}, foreign messages {}, errors: {}",
        fs.system.load(Relaxed),
        fs.foreign.load(Relaxed),
        fs.errors.text()
    ));
    let health = ctx.say_health();
    if ctx.json {
        println!(
            "{}",
            json!({
                "scenario": "fanout",
                "rooms": a.rooms,
                "members": a.members,
                "ramp": a.ramp,
                "closed_loop": a.closed_loop,
                "acked_per_s": results.first().map(|r| r.ok as f64 / a.duration.as_secs_f64()),
                "setup": setup.json(),
                "steps": results.iter().map(StepResult::json).collect::<Vec<_>>(),
                "best_rate": best,
                "stop_reason": stop_reason,
                "errors": fs.errors.json(),
                "health": health,
            })
        );
    }
    let ok = if a.ramp {
        true
    } else {
        let r = &results[0];
        r.send_err == 0 && r.delivered >= r.expected
    };
    Ok(ok)
}
