//! Cluster mode: many roomd nodes share their rooms through NATS JetStream
//! streams (`--cluster`). See docs/cluster.md for the design and how to run
//! it.
//!
//! In one sentence: every room is a replicated state machine whose log is
//! one subject of one of a fixed number of partition streams (`ROOMLOG`,
//! `ROOMLOG_1`, …; see `partition`). A node that gets a
//! call which changes a room appends the command to the log; every node
//! (the caller's included) applies the log in order through the same room
//! rules, and the caller's node answers once it has applied the entry.
//! JetStream orders each room's entries (one Raft group per partition,
//! replicated and fsynced before they are delivered), so capacity, locks and codes are decided
//! exactly once, in one order, whichever node a client talks to; no node
//! owns a room, so none has to be taken over when one dies.
//!
//! Facts that must be unique across the cluster (room names, usernames) are
//! claimed first with a create-only append (`Nats-Expected-Last-Subject-
//! Sequence: 0`) on a subject of their own.

mod apply;
mod compact;
pub mod entry;
mod interest;
mod liveness;
mod notices;
pub mod partition;
mod presence;
pub mod room_log;

pub(crate) use apply::spawn_applier;
pub use compact::DEFAULT_SNAPSHOT_EVERY;
pub(crate) use compact::{SnapshotJob, read_chunk, write_snapshot};

use crate::durability::{BoxFuture, Committed, Durability, DurabilityError, Fact, RoomBatch, Snapshot};
use crate::ids::{MessageId, RoomId};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage as Publish, stream};
use bytes::Bytes;
use dashmap::DashMap;
use entry::FactV1;
use partition::{Layout, PartitionsV1};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The stream of names, facts, the partition record and partition 0's
/// room logs.
pub const STREAM: &str = "ROOMLOG";
/// Oldest NATS server roomd accepts: 2.10.20–2.10.22 could lose whole
/// streams when a server process crashed. Kept in one file that the tests
/// and `scripts/test-all.sh` read too, so they can never disagree.
pub const MIN_NATS_VERSION: &str = include_str!("nats-min-version").trim_ascii();
/// How long an append is retried (same idempotency key, so a retry never
/// applies twice) while the stream elects a leader or regains its quorum.
/// The stream's `duplicate_window` must cover it (checked at start).
pub const APPEND_DEADLINE: Duration = Duration::from_secs(15);
/// What an entry adds to the caller's own data (entry id, origin, clock,
/// the caller's identity, JSON keys): a call of `--max-frame-bytes` makes
/// an entry of at most that much more. Strings are never longer in an
/// entry than in the frame they came in (both escape the same characters).
pub const ENTRY_OVERHEAD: usize = 2 * 1024;

/// Why the cluster cannot start or a write did not land.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS ({0}): {1}")]
    Connect(String, String),
    #[error("NATS server {0} is too old: roomd needs {min} or later", min = MIN_NATS_VERSION)]
    OldServer(String),
    #[error("JetStream is not available on the NATS servers: {0}")]
    NoJetStream(String),
    #[error("stream {0} is not usable: {1}")]
    Stream(String, String),
    /// `--cluster-partitions` disagrees with the count the cluster was
    /// created with.
    #[error("{0}")]
    Partitions(String),
    #[error("the room log is unavailable: {0}")]
    Unavailable(String),
    /// The entry is larger than the NATS servers' `max_payload`: retrying
    /// cannot help; the caller is told it is too large.
    #[error("entry of {size} bytes exceeds the NATS max_payload of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("gave up after {0:?} (--cluster-start-timeout); last error: {1}")]
    StartTimeout(Duration, String),
    /// A create-only claim lost: another value holds the subject.
    #[error("already claimed")]
    Taken,
}

/// This node's link to the cluster: appends, claims, and the callers
/// waiting for their entry to be applied.
pub struct Cluster {
    js: jetstream::Context,
    /// `ROOMLOG`, where claims are read back.
    stream: stream::Stream,
    /// Which partition stream holds each room's log.
    layout: Layout,
    /// `<node-id>/<boot>`: tells this incarnation's entries from others'.
    origin: String,
    /// Room creations waiting for the applier to start their room.
    creations: DashMap<String, oneshot::Sender<()>>,
    /// Callers waiting for a room to be started here (another node created
    /// it), by room id.
    starts: DashMap<RoomId, Vec<oneshot::Sender<()>>>,
    /// The node heartbeat bucket (see `liveness`).
    nodes: Option<async_nats::jetstream::kv::Store>,
    /// Snapshots and history chunks (see `compact`).
    compaction: compact::Compaction,
    /// `--cluster-rooms interest`: hold only the rooms used here, and let
    /// one go after this long unused (see `interest`).
    interest: Option<Duration>,
    /// Room loads asked of each partition's applier (see `interest`).
    loads: interest::Loads,
}

/// How a starting node waits for NATS (`Cluster::connect`).
pub struct StartOptions<'a> {
    pub urls: &'a [String],
    pub node: &'a str,
    pub replicas: usize,
    /// `--cluster-partitions`: `None` adopts the cluster's recorded count
    /// (or the default for a new cluster).
    pub partitions: Option<usize>,
    /// `--cluster-snapshot-every`: entries of a room between snapshots.
    pub snapshot_every: u64,
    /// `--cluster-rooms interest`: hold only the rooms used through this
    /// node, letting a room go once unused for this long
    /// (`--cluster-unload-after`).
    pub interest: Option<Duration>,
    /// `--cluster-start-timeout`: the whole wait, from the first attempt.
    pub timeout: Duration,
    /// Told why the node is still waiting, after each failed attempt (for
    /// `/readyz`, which answers meanwhile).
    pub waiting: &'a (dyn Fn(String) + Sync),
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects, checks the servers, and creates or checks the stream,
    /// retrying until `opts.timeout` has passed.
    pub async fn connect(opts: StartOptions<'_>) -> Result<Arc<Cluster>, ClusterError> {
        let StartOptions { urls, node, replicas, partitions, snapshot_every, interest, timeout, waiting } =
            opts;
        let joined = urls.join(",");
        if node.is_empty() || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ClusterError::Connect(joined, format!("bad --node-id {node:?}")));
        }
        // Nodes and NATS servers often start together: a server still
        // electing its JetStream leaders, or two nodes creating the stream
        // at once, is worth waiting for. A wrong setup is not.
        let mut last = format!("no answer from NATS at {joined} yet");
        let attempts = async {
            let mut pause = Duration::from_millis(250);
            loop {
                match Self::try_connect(urls, node, replicas, partitions, snapshot_every, interest).await {
                    Ok(c) => return Ok(c),
                    Err(
                        e @ (ClusterError::OldServer(_)
                        | ClusterError::Stream(..)
                        | ClusterError::Partitions(_)),
                    ) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster not reachable yet; retrying");
                        last = e.to_string();
                        waiting(format!("waiting for NATS at {joined}: {e}"));
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
        };
        // One attempt can itself take seconds (connect and request
        // timeouts): the deadline bounds the whole wait, not the pauses.
        match tokio::time::timeout(timeout, attempts).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::StartTimeout(timeout, last)),
        }
    }

    async fn try_connect(
        urls: &[String],
        node: &str,
        replicas: usize,
        partitions: Option<usize>,
        snapshot_every: u64,
        interest: Option<Duration>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let joined = urls.join(",");
        let client = async_nats::ConnectOptions::new()
            .name(format!("roomd {node}"))
            .connection_timeout(Duration::from_secs(2))
            // A server that stops answering (paused, cut off) is noticed in
            // about 3 s instead of the default 2 minutes, and the client
            // moves to another server of the list.
            .ping_interval(Duration::from_secs(1))
            .connect(urls.iter().map(String::as_str).collect::<Vec<_>>().as_slice())
            .await
            .map_err(|e| ClusterError::Connect(joined.clone(), e.to_string()))?;
        let version = client.server_info().version;
        if parse_version(&version) < parse_version(MIN_NATS_VERSION) {
            return Err(ClusterError::OldServer(version));
        }
        // Acks normally take milliseconds; a missing one means the server
        // we talk to is stuck, and waiting the default 5 s for it delays the
        // move to another server (see `publish_retrying`).
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client);
        js.query_account().await.map_err(|e| ClusterError::NoJetStream(e.to_string()))?;
        let (stream, before) = Self::partition_stream(&js, 0, replicas).await?;
        let layout = Layout::new(Self::partition_count(&js, &stream, before, partitions).await?);
        for p in 1..layout.count() {
            Self::partition_stream(&js, p, replicas).await?;
        }
        partition::spread_leaders(js.clone(), layout.clone());
        let nodes = Some(liveness::bucket(&js, replicas).await?);
        let compaction = compact::Compaction::open(&js, replicas, snapshot_every).await?;
        // The boot suffix tells this run from the node's earlier ones: their
        // guests are not this run's.
        let origin = format!("{node}/{}", crate::ids::secret(8).replace(['-', '_'], "x"));
        let layout_count = layout.count();
        Ok(Arc::new(Cluster {
            js,
            stream,
            layout,
            origin,
            creations: DashMap::new(),
            starts: DashMap::new(),
            nodes,
            compaction,
            interest,
            loads: interest::Loads::new(layout_count),
        }))
    }

    /// Creates or checks the stream of partition `p`; with it, how many
    /// entries it held before this call (the partition record is decided
    /// from that, see [`Cluster::partition_count`]).
    async fn partition_stream(
        js: &jetstream::Context,
        p: usize,
        replicas: usize,
    ) -> Result<(stream::Stream, u64), ClusterError> {
        let name = Layout::stream(p);
        let wanted = stream::Config {
            name: name.clone(),
            subjects: Layout::subjects(p),
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        };
        let bad = |why: String| ClusterError::Stream(name.clone(), why);
        // Temporary failures (a create racing another node's, no leader
        // yet) are `Unavailable`: retried by `connect`.
        let mut stream = js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let info = stream.info().await.map_err(|e| ClusterError::Unavailable(e.to_string()))?.clone();
        let have = info.config;
        if have.storage != stream::StorageType::File || have.num_replicas != wanted.num_replicas {
            return Err(bad(format!(
                "it has {:?} storage and {} replicas; roomd needs file storage and {} (--cluster-replicas)",
                have.storage, have.num_replicas, wanted.num_replicas
            )));
        }
        if have.max_age != Duration::ZERO || have.max_messages_per_subject > 0 {
            return Err(bad("it expires entries; the room logs must be kept".into()));
        }
        // An append whose ack was lost is sent again with the same
        // `Nats-Msg-Id` for up to APPEND_DEADLINE; JetStream drops the
        // repeat only while the first is inside the window. Outside it a
        // settings, role or message command would be applied twice.
        if have.duplicate_window < APPEND_DEADLINE {
            return Err(bad(format!(
                "its duplicate_window is {:?}, shorter than the {:?} roomd retries an append with the \
                 same id, so a retried command could be applied twice; raise it to at least {:?} \
                 (roomd creates the stream with 2m), e.g. `nats stream edit {name} --dupe-window 2m`",
                have.duplicate_window, APPEND_DEADLINE, APPEND_DEADLINE
            )));
        }
        // A `ROOMLOG` made before partitions lacks the record's subject:
        // add it (the stream keeps everything it holds).
        let missing: Vec<String> =
            wanted.subjects.iter().filter(|s| !have.subjects.contains(s)).cloned().collect();
        if !missing.is_empty() {
            let mut config = have;
            config.subjects.extend(missing);
            js.update_stream(config).await.map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        }
        Ok((stream, info.state.messages))
    }

    /// The cluster's partition count: the recorded one, or (first start)
    /// the one this node records. `before` is how many entries `ROOMLOG`
    /// held before this start looked at it.
    async fn partition_count(
        js: &jetstream::Context,
        stream: &stream::Stream,
        before: u64,
        flag: Option<usize>,
    ) -> Result<usize, ClusterError> {
        let subject = partition::RECORD_SUBJECT.to_owned();
        let held = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Some(m.payload),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(ClusterError::Unavailable(e.to_string())),
        };
        let held = match held {
            Some(h) => h,
            None => {
                // Entries but no record: a roomd from before partitions made
                // this cluster (a node always records the count before it
                // writes anything else), and all its rooms are in `ROOMLOG`:
                // it is a one-partition cluster.
                let old = before > 0;
                if old && flag.is_some_and(|n| n != 1) {
                    return Err(ClusterError::Partitions(format!(
                        "stream {STREAM} holds a cluster created before partitions: every room's log is in \
                         {STREAM}, so it is one partition; start without --cluster-partitions (or with 1) to \
                         keep serving it (docs/cluster.md, Partitions)"
                    )));
                }
                let n = if old { 1 } else { flag.unwrap_or(partition::DEFAULT_PARTITIONS) };
                let mine = to_bytes(&PartitionsV1 { partitions: n });
                // Two nodes starting a new cluster together: the first
                // record wins and both read it below.
                let held = Self::claim_on(js, stream, subject, mine).await?;
                if old {
                    tracing::warn!(
                        "{STREAM} was made before partitions: recorded as a one-partition cluster"
                    );
                }
                held
            }
        };
        let recorded = serde_json::from_slice::<PartitionsV1>(&held)
            .map_err(|e| ClusterError::Partitions(format!("unreadable partition record in {STREAM}: {e}")))?
            .partitions;
        if !(1..=partition::MAX_PARTITIONS).contains(&recorded) {
            return Err(ClusterError::Partitions(format!(
                "the partition record in {STREAM} says {recorded}"
            )));
        }
        match flag {
            Some(n) if n != recorded => Err(ClusterError::Partitions(format!(
                "--cluster-partitions {n} disagrees with this cluster's {recorded} partitions (fixed when it was \
                 created, recorded in {STREAM}): start without the flag or with {recorded}; a different count \
                 needs a new cluster (docs/cluster.md, Partitions)"
            ))),
            _ => Ok(recorded),
        }
    }

    /// A create-only append to `subject` of `ROOMLOG` at start (retried by
    /// `connect`, not here); returns what holds the subject afterwards.
    async fn claim_on(
        js: &jetstream::Context,
        stream: &stream::Stream,
        subject: String,
        payload: Bytes,
    ) -> Result<Bytes, ClusterError> {
        let publish = Publish::build().payload(payload.clone()).expected_last_subject_sequence(0);
        let err = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => match ack.await {
                Ok(_) => return Ok(payload),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if err.kind() != PublishErrorKind::WrongLastSequence {
            return Err(ClusterError::Unavailable(err.to_string()));
        }
        stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .map(|held| held.payload)
            .map_err(|e| ClusterError::Unavailable(e.to_string()))
    }

    /// Whether the NATS connection is up (`/readyz` says no while it is
    /// not: this node can answer reads but not acknowledge changes).
    pub(crate) fn connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Entries of a room between snapshots (`--cluster-snapshot-every`).
    pub(crate) fn snapshot_every(&self) -> u64 {
        self.compaction.every
    }

    /// Where room `rid`'s log lives: its partition's stream and the subject
    /// there (for the compaction's purge; appends go through
    /// [`Cluster::append`], which places the subject itself).
    async fn room_log(&self, rid: &RoomId) -> Result<(stream::Stream, String), ClusterError> {
        let name = Layout::stream(self.layout.of(rid.as_str()));
        let stream = if name == STREAM {
            self.stream.clone()
        } else {
            self.js.get_stream(&name).await.map_err(|e| ClusterError::Unavailable(e.to_string()))?
        };
        Ok((stream, self.layout.place(&Self::room_subject(rid))))
    }

    /// The subject of a room's log as the rooms name it; [`Cluster::append`]
    /// places it in the room's partition (`partition::Layout::place`).
    pub(crate) fn room_subject(rid: &RoomId) -> String {
        format!("roomlog.{rid}")
    }

    /// The claim subject of a room name (hex: names hold any character),
    /// by its key: names are unique regardless of letter case.
    pub(crate) fn name_subject(name: &str) -> String {
        format!("roomname.{}", hex(crate::registry::name_key(name).as_bytes()))
    }

    /// Appends `payload` to `subject` once (`id` is its idempotency key) and
    /// returns its stream sequence. Retries while the stream has no leader
    /// or quorum, up to a deadline.
    pub(crate) async fn append(
        &self,
        subject: String,
        id: &str,
        payload: Bytes,
    ) -> Result<u64, ClusterError> {
        let started = std::time::Instant::now();
        let subject = self.layout.place(&subject);
        let publish = || Publish::build().payload(payload.clone()).message_id(id);
        let r = self.publish_retrying(&subject, payload.len(), publish).await;
        crate::metrics::cluster_append(r.is_ok(), started.elapsed().as_secs_f64());
        r
    }

    /// Makes `payload` the first and only entry of `subject`. If the subject
    /// is already held, succeeds only when `same` accepts what holds it (a
    /// repeated claim by the same owner).
    pub(crate) async fn claim(
        &self,
        subject: String,
        payload: Bytes,
        same: impl Fn(&[u8]) -> bool,
    ) -> Result<(), ClusterError> {
        let held = self.claim_or_get(subject, payload).await?;
        if same(&held) { Ok(()) } else { Err(ClusterError::Taken) }
    }

    /// Tries to make `payload` the first and only entry of `subject`;
    /// returns what holds the subject afterwards (`payload` if this claim
    /// won).
    pub(crate) async fn claim_or_get(&self, subject: String, payload: Bytes) -> Result<Bytes, ClusterError> {
        let key = format!("claim:{subject}:{}", hex(&payload[..payload.len().min(64)]));
        let publish =
            || Publish::build().payload(payload.clone()).message_id(&key).expected_last_subject_sequence(0);
        match self.publish_retrying(&subject, payload.len(), publish).await {
            Ok(_) => Ok(payload),
            Err(ClusterError::Taken) => self
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .map(|held| held.payload)
                .map_err(|e| ClusterError::Unavailable(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// The claim subject of a direct-message member set (`dm.` is not hex,
    /// so it never meets a room name's subject).
    pub(crate) fn direct_subject(key: &str) -> String {
        format!("roomname.dm.{}", hex(key.as_bytes()))
    }

    /// Resolves once room `rid` has been started on this node by the
    /// applier (at once if it already runs).
    pub(crate) async fn room_started(&self, registry: &crate::registry::Registry, rid: &RoomId) -> bool {
        let rx = {
            let (tx, rx) = oneshot::channel();
            self.starts.entry(rid.clone()).or_default().push(tx);
            rx
        };
        // Registered before this look, so a start in between still wakes us.
        if registry.get(rid).is_some() {
            return true;
        }
        // Holding rooms by interest, its creation may have gone by
        // unapplied: then the log holds it (a load finds it), or it comes
        // later and the applier starts it for this waiter.
        if self.interest.is_some() && self.load(rid).await.unwrap_or(false) {
            return true;
        }
        rx.await.is_ok()
    }

    /// The applier started room `rid`.
    pub(crate) fn started(&self, rid: &RoomId) {
        if let Some((_, waiters)) = self.starts.remove(rid) {
            for tx in waiters {
                let _ = tx.send(());
            }
        }
    }

    /// The largest message the NATS server this node talks to accepts
    /// (`max_payload`, 1 MiB by default), headers included.
    pub fn max_payload(&self) -> usize {
        self.js.client().server_info().max_payload
    }

    /// Warns at start when a call roomd accepts could make an entry the
    /// NATS servers refuse. A warning, not a refusal: such calls are
    /// answered `error-request-too-large` and nothing else is affected, so
    /// a node with a smaller `max_payload` still serves every call that
    /// fits, where refusing to start would take all its rooms down for a
    /// limit most calls never reach.
    pub fn check_limits(&self, max_frame_bytes: usize, max_message_len: usize) {
        let max = self.max_payload();
        // Every entry carries at most one call's frame of caller data; a
        // message of --max-message-len characters takes up to 4 bytes each.
        let largest = max_frame_bytes.saturating_add(ENTRY_OVERHEAD);
        let message = max_message_len.saturating_mul(4).min(max_frame_bytes).saturating_add(ENTRY_OVERHEAD);
        if largest > max {
            tracing::warn!(
                max_payload = max,
                max_frame_bytes,
                max_message_len,
                "the NATS server's max_payload ({max} bytes) is smaller than the largest log entry a call of \
                 --max-frame-bytes can make ({largest} bytes; a message of --max-message-len characters up to \
                 {message}): calls whose entry does not fit are refused with error-request-too-large. Raise \
                 max_payload in the NATS config, or lower --max-frame-bytes below {}",
                max.saturating_sub(ENTRY_OVERHEAD)
            );
        }
    }

    async fn publish_retrying(
        &self,
        subject: &str,
        size: usize,
        publish: impl Fn() -> Publish,
    ) -> Result<u64, ClusterError> {
        self.publish_acked(subject, size, publish).await.map(|ack| ack.sequence)
    }

    /// [`Cluster::publish_retrying`] with the whole acknowledgement (a
    /// snapshot writer needs to know whether its append was a duplicate).
    async fn publish_acked(
        &self,
        subject: &str,
        size: usize,
        publish: impl Fn() -> Publish,
    ) -> Result<async_nats::jetstream::publish::PublishAck, ClusterError> {
        let deadline = tokio::time::Instant::now() + APPEND_DEADLINE;
        let mut pause = Duration::from_millis(50);
        loop {
            let err = match self.js.send_publish(subject.to_owned(), publish()).await {
                Ok(ack) => match ack.await {
                    Ok(ack) => return Ok(ack),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match err.kind() {
                PublishErrorKind::WrongLastSequence => return Err(ClusterError::Taken),
                PublishErrorKind::MaxPayloadExceeded => {
                    return Err(ClusterError::TooLarge { size, max: self.max_payload() });
                }
                _ if tokio::time::Instant::now() + pause > deadline => {
                    return Err(ClusterError::Unavailable(err.to_string()));
                }
                kind => {
                    if kind == PublishErrorKind::TimedOut {
                        // The server we are connected to may be paused or cut
                        // off while the connection still looks alive: move to
                        // another one rather than wait for the ping timeout.
                        let _ = self.js.client().force_reconnect().await;
                    }
                    tracing::debug!(subject, error = %err, "append not acknowledged; retrying");
                    crate::metrics::cluster_append_retry();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Registers a creation waiting for the applier; see [`Cluster::created`].
    pub(crate) fn await_creation(&self, entry_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.creations.insert(entry_id.to_owned(), tx);
        rx
    }

    /// The applier started the room of creation `entry_id`.
    pub(crate) fn created(&self, entry_id: &str) {
        if let Some((_, tx)) = self.creations.remove(entry_id) {
            let _ = tx.send(());
        }
    }

    pub(crate) fn forget_creation(&self, entry_id: &str) {
        self.creations.remove(entry_id);
    }

    async fn record_fact(&self, fact: Fact) -> Result<(), ClusterError> {
        let origin = self.origin.clone();
        let (subject, stored) = match fact {
            Fact::User(user) => (
                format!("roomfacts.user.{}", hex(user.id.as_str().as_bytes())),
                FactV1::User { origin, user },
            ),
            Fact::UsernameOwner { name, uid } => {
                let subject = format!("roomfacts.username.{}", hex(name.as_bytes()));
                let payload = to_bytes(&FactV1::UsernameOwner { origin, name, uid: uid.clone() });
                // First claim wins across the cluster, as on one node.
                return self
                    .claim(subject, payload, |held| match serde_json::from_slice::<FactV1>(held) {
                        Ok(FactV1::UsernameOwner { uid: owner, .. }) => owner == uid,
                        _ => false,
                    })
                    .await;
            }
            Fact::RevokedToken { key, exp } => (
                format!("roomfacts.revoked.{}", hex(key.as_bytes())),
                FactV1::RevokedToken { origin, key, exp },
            ),
        };
        self.append(subject, &crate::ids::secret(22), to_bytes(&stored)).await.map(|_| ())
    }
}

/// Facts (users, username owners, logged-out tokens) go through the same
/// seam as on one node; rooms do not (they append commands, see the module
/// docs), and nothing is read back at start: the applier replays the log.
impl Durability for Cluster {
    fn append(&self, batch: RoomBatch) -> BoxFuture<'_, Committed> {
        tracing::error!(room = %batch.rid, "a room batch reached the cluster seam; rooms append commands");
        Box::pin(std::future::ready(Committed::ready(Err(DurabilityError::Closed))))
    }

    fn record(&self, facts: Vec<Fact>) -> BoxFuture<'_, Result<(), DurabilityError>> {
        Box::pin(async move {
            for fact in facts {
                self.record_fact(fact).await.map_err(|e| match e {
                    ClusterError::Taken => DurabilityError::Fenced,
                    e => DurabilityError::Retryable(e.to_string()),
                })?;
            }
            Ok(())
        })
    }

    fn message_exists(&self, _rid: &RoomId, _id: &MessageId) -> Result<bool, DurabilityError> {
        // Not asked: in cluster mode each room's replica remembers every
        // user message id itself.
        Ok(false)
    }

    fn restore(&self) -> BoxFuture<'_, Result<Snapshot, DurabilityError>> {
        Box::pin(std::future::ready(Ok(Snapshot::default())))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.js.client().flush().await;
        })
    }
}

fn to_bytes<T: serde::Serialize>(v: &T) -> Bytes {
    // Our own stored types always serialise.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

pub(crate) fn entry_bytes(e: &entry::EntryV1) -> Bytes {
    to_bytes(e)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `2.10.23` (or `2.11.0-RC.1`) as a comparable triple; junk is `(0,0,0)`.
fn parse_version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        const MIN_VERSION: (u64, u64, u64) = (2, 10, 23);
        assert_eq!(parse_version(MIN_NATS_VERSION), MIN_VERSION);
        assert!(parse_version("2.10.23") >= MIN_VERSION);
        assert!(parse_version("v2.15.1") >= MIN_VERSION);
        assert!(parse_version("2.10.9") < MIN_VERSION);
        assert!(parse_version("2.9.10") < MIN_VERSION);
        assert!(parse_version("2.11.0-RC.1") >= MIN_VERSION);
        assert!(parse_version("junk") < MIN_VERSION);
    }

    #[test]
    fn names_become_safe_subject_tokens() {
        assert_eq!(Cluster::name_subject("a.b *>"), "roomname.612e62202a3e");
    }
}
