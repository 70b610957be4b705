//! Shared scenario plumbing: context, tokens, rooms, bounded fan-out of setups.
use super::*;
pub(crate) use ddp::{Client, DdpError, Endpoint, Handler};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
pub(crate) use procfs::{Snap, Usage};
pub(crate) use stats::{Lat, SharedLat, Tally, shared_lat, take};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
pub(crate) use util::*;

pub(crate) struct Minter {
    key: EncodingKey,
    header: Header,
}

impl Minter {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Minter { key: EncodingKey::from_secret(secret), header: Header::new(Algorithm::HS256) }
    }

    pub(crate) fn mint(&self, id: &str, name: &str, role: &str) -> String {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 86_400;
        let claims = json!({
            "sub": id,
            "username": name,
            "name": name,
            "roles": [role],
            "exp": exp,
        });
        jsonwebtoken::encode(&self.header, &claims, &self.key).expect("HS256 signing")
    }
}

pub(crate) struct Ctx {
    /// The first `--url`: room-creating admin bots connect here.
    pub ep: Endpoint,
    /// Every `--url`: client i connects to `eps[i % len]`.
    pub eps: Vec<Endpoint>,
    /// `--sender-url` (fanout's sender bots), else `eps`.
    pub sender_eps: Vec<Endpoint>,
    pub minter: Option<Minter>,
    /// Processes whose CPU and RSS are summed as "server".
    pub server_pids: Vec<u32>,
    pub aux_pids: Vec<u32>,
    /// Random per-process tag, part of every user and room name.
    pub run: String,
    pub json: bool,
    pub concurrency: usize,
    /// Seats the creating admin bot itself occupies in every room it creates.
    pub creator_seats: usize,
    /// Rooms each admin bot creates before another one takes over.
    pub rooms_per_creator: usize,
}

impl Ctx {
    /// Admin bots needed to create `rooms` rooms.
    pub(crate) fn creator_bots(&self, rooms: usize) -> usize {
        rooms.div_ceil(self.rooms_per_creator.max(1))
    }

    /// `extraData` for a room with `seats` places left for loadgen's clients:
    /// roomd counts the creator as a member, so its seat is added on top.
    pub(crate) fn capacity_extra(&self, seats: usize) -> Value {
        json!({"maxParticipants": seats + self.creator_seats})
    }

    /// Token for a loadgen user `lg<run><kind><i>` (id and username alike).
    pub(crate) fn token(&self, kind: &str, i: usize, role: &str) -> Result<String, String> {
        let minter = self.minter.as_ref().ok_or(
            "no JWT secret: set ROOMD_JWT_SECRET or pass --secret-file PATH (the \
             secret roomd was started with)",
        )?;
        let name = format!("lg{}{kind}{i}", self.run);
        Ok(minter.mint(&name, &name, role))
    }

    pub(crate) fn username(&self, kind: &str, i: usize) -> String {
        format!("lg{}{kind}{i}", self.run)
    }

    pub(crate) fn snap(&self) -> Snap {
        Snap {
            at: Instant::now(),
            server: procfs::sample_sum(&self.server_pids),
            aux: procfs::sample_sum(&self.aux_pids),
            me: procfs::sample("self"),
            listen_overflows: procfs::listen_overflows(),
        }
    }

    /// A line of the human summary (stderr when --json keeps stdout for JSON).
    pub(crate) fn say(&self, line: impl fmt::Display) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    pub(crate) fn progress(&self, line: impl fmt::Display) {
        eprintln!("[loadgen] {line}");
    }

    /// Common trailer lines: unexpected disconnects and protocol notes.
    pub(crate) fn say_health(&self) -> Value {
        let disconnects = ddp::DISCONNECTS.load(Relaxed);
        let notes = ddp::notes();
        let notes_text = if notes.is_empty() {
            "none".to_string()
        } else {
            notes.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
        };
        self.say(format!("health      unexpected disconnects {disconnects}; protocol notes: {notes_text}"));
        json!({"unexpected_disconnects": disconnects, "protocol_notes": notes})
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Room {
    pub rid: String,
    pub code: String,
}

/// `createChannel`; warns once if the creator does not hold `creator_seats` seats.
pub(crate) async fn create_room(
    bot: &Client,
    name: &str,
    extra: Value,
    creator_seats: usize,
) -> Result<Room, DdpError> {
    let doc = bot.call("createChannel", json!([name, [], false, {}, extra])).await?;
    let members = doc.get("usersCount").and_then(Value::as_u64);
    if members.is_some_and(|m| m != creator_seats as u64) {
        ddp::note(
            "new room's usersCount differs from --creator-seats",
            &format!("usersCount {members:?}, --creator-seats {creator_seats}"),
        );
    }
    let rid = doc.get("rid").or_else(|| doc.get("_id")).and_then(Value::as_str);
    let code = doc.get("code").and_then(Value::as_str);
    match (rid, code) {
        (Some(rid), Some(code)) => Ok(Room { rid: rid.to_string(), code: code.to_string() }),
        _ => Err(DdpError::Protocol(format!(
            "createChannel result lacks rid/code: {}",
            truncate(&doc.to_string(), 300)
        ))),
    }
}

/// Admin bots that create rooms. roomd limits room creation per user
/// (`--max-rooms-per-minute`, default 10, admins included), so each bot
/// creates at most `--rooms-per-creator` rooms and fresh bots log in for
/// more. The bots stay connected (and members of their rooms) until dropped.
pub(crate) struct Creators {
    bots: Vec<Client>,
    per: usize,
    seats: usize,
}

impl Creators {
    pub(crate) fn new(ctx: &Ctx) -> Self {
        Creators { bots: Vec::new(), per: ctx.rooms_per_creator.max(1), seats: ctx.creator_seats }
    }

    async fn open_bot(ep: &Endpoint, j: usize, token: &str) -> Result<Client, String> {
        Client::open(ep, j, Some(token), None)
            .await
            .map_err(|(stage, e)| format!("admin bot {stage} to {} failed: {e}", ep.url))
    }

    /// `n` rooms named `lg-<run>-<prefix>-<j>`, by n / per bots in parallel.
    pub(crate) async fn create_many(
        &mut self,
        ctx: &Ctx,
        n: usize,
        prefix: &str,
        extra: Value,
    ) -> Result<Vec<Room>, String> {
        let (per, first, seats) = (self.per, self.bots.len(), self.seats);
        let n_bots = n.div_ceil(per);
        let tokens: Vec<String> =
            (0..n_bots).map(|b| ctx.token("admin", first + b, "admin")).collect::<Result<_, _>>()?;
        let names: Vec<String> = (0..n).map(|j| format!("lg-{}-{prefix}-{j}", ctx.run)).collect();
        let results = bounded(n_bots, ctx.concurrency, |b| {
            let ep = ctx.ep.clone();
            let token = tokens[b].clone();
            let names = names[b * per..((b + 1) * per).min(n)].to_vec();
            let extra = extra.clone();
            async move {
                let bot = Self::open_bot(&ep, first + b, &token).await?;
                let mut rooms = Vec::with_capacity(names.len());
                for name in &names {
                    let room = create_room(&bot, name, extra.clone(), seats)
                        .await
                        .map_err(|e| format!("createChannel {name}: {e}"))?;
                    rooms.push(room);
                }
                Ok::<_, String>((bot, rooms))
            }
        })
        .await;
        ctx.progress(format!("created {n} rooms with {n_bots} admin bots"));
        let mut all = Vec::with_capacity(n);
        for r in results {
            let (bot, rooms) = r?;
            self.bots.push(bot);
            all.extend(rooms);
        }
        Ok(all)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    /// `join-room` with `{code}` (plus `guestName` for guests).
    Code,
    /// `joinRoom(rid)`.
    Rid,
}

pub(crate) async fn join_room(
    client: &Client,
    room: &Room,
    via: Via,
    guest_name: Option<&str>,
) -> Result<Value, DdpError> {
    match via {
        Via::Code => {
            let mut arg = json!({"code": room.code});
            if let Some(g) = guest_name {
                arg["guestName"] = json!(g);
            }
            client.call("join-room", json!([arg])).await
        }
        Via::Rid => {
            let r = client.call("joinRoom", json!([room.rid])).await?;
            if r != Value::Bool(true) {
                ddp::note("joinRoom returned something other than true", &r.to_string());
            }
            Ok(r)
        }
    }
}

pub(crate) async fn subscribe_room(client: &Client, rid: &str) -> Result<u64, DdpError> {
    client.subscribe("stream-room-messages", json!([rid, false])).await
}

/// What a client does right after connecting.
pub(crate) struct Plan {
    pub index: usize,
    pub token: Option<String>,
    pub handler: Option<Handler>,
    /// Room, how to join, guest name.
    pub join: Option<(Room, Via, Option<String>)>,
    pub subscribe: bool,
}

impl Plan {
    /// Client `index` signed in with `token` (`None`: a guest); it joins
    /// nothing until [`Plan::joins`] says so.
    pub(crate) fn signed_in(index: usize, token: Option<String>) -> Plan {
        Plan { index, token, handler: None, join: None, subscribe: false }
    }

    /// Client `i` signed in as pool user `u<i>`: the common case.
    pub(crate) fn user(ctx: &Ctx, i: usize) -> Result<Plan, String> {
        Ok(Plan::signed_in(i, Some(ctx.token("u", i, "user")?)))
    }

    /// Then joins `room` by its code (as `guest_name` if a guest).
    pub(crate) fn joins(mut self, room: &Room, guest_name: Option<String>) -> Plan {
        self.join = Some((room.clone(), Via::Code, guest_name));
        self
    }

    /// Then subscribes to the room's messages.
    pub(crate) fn subscribed(mut self) -> Plan {
        self.subscribe = true;
        self
    }

    /// Frames from the server go to `handler`.
    pub(crate) fn heard_by(mut self, handler: Handler) -> Plan {
        self.handler = Some(handler);
        self
    }
}

/// connect (+login) (+join) (+subscribe); the error names the failed stage.
pub(crate) async fn setup_client(ep: Endpoint, plan: Plan) -> Result<Client, (&'static str, DdpError)> {
    let client = Client::open(&ep, plan.index, plan.token.as_deref(), plan.handler).await?;
    if let Some((room, via, guest)) = &plan.join {
        join_room(&client, room, *via, guest.as_deref()).await.map_err(|e| ("join", e))?;
        if plan.subscribe {
            subscribe_room(&client, &room.rid).await.map_err(|e| ("subscribe", e))?;
        }
    }
    Ok(client)
}

/// Runs `f(0..n)` as tasks with at most `limit` in flight; results by index.
pub(crate) async fn bounded<T, F, Fut>(n: usize, limit: usize, mut f: F) -> Vec<T>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let fut = f(i);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            (i, r)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        let (i, r) = res.expect("setup task panicked");
        out[i] = Some(r);
    }
    out.into_iter().map(|o| o.expect("every task ran")).collect()
}

/// Sets up many clients with `bounded`, recording setup latency and failures
/// (as `<stage>:<code>`). Returns the clients in plan order (None = failed).
pub(crate) async fn setup_many(
    ctx: &Ctx,
    plans: Vec<Plan>,
    lat: &SharedLat,
    failures: &Arc<Tally>,
) -> Vec<Option<Client>> {
    setup_many_on(ctx, &ctx.eps, plans, lat, failures).await
}

/// `setup_many` with plan i connecting to `eps[index % eps.len()]`.
pub(crate) async fn setup_many_on(
    ctx: &Ctx,
    eps: &[Endpoint],
    plans: Vec<Plan>,
    lat: &SharedLat,
    failures: &Arc<Tally>,
) -> Vec<Option<Client>> {
    let total = plans.len();
    let mut plans = plans.into_iter();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "[loadgen]   ... {}/{total} set up after {:.0} s",
                    done.load(Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let out = bounded(total, ctx.concurrency, |_| {
        let plan = plans.next().expect("one plan per index");
        let ep = eps[plan.index % eps.len()].clone();
        let lat = lat.clone();
        let failures = failures.clone();
        let done = done.clone();
        async move {
            let t0 = Instant::now();
            let r = setup_client(ep, plan).await;
            done.fetch_add(1, Relaxed);
            match r {
                Ok(c) => {
                    lat.lock().unwrap().record(t0.elapsed());
                    Some(c)
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
    .await;
    reporter.abort();
    out
}
