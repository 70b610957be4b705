//! Cluster mode: many roomd nodes share their rooms through one NATS
//! JetStream stream (`--cluster`). See docs/cluster.md for the design and
//! how to run it.
//!
//! In one sentence: every room is a replicated state machine whose log is
//! the subject `roomlog.<rid>` of the stream `ROOMLOG`. A node that gets a
//! call which changes a room appends the command to the log; every node
//! (the caller's included) applies the log in order through the same room
//! rules, and the caller's node answers once it has applied the entry.
//! JetStream orders the entries (one Raft group, replicated and fsynced
//! before they are delivered), so capacity, locks and codes are decided
//! exactly once, in one order, whichever node a client talks to; no node
//! owns a room, so none has to be taken over when one dies.
//!
//! Facts that must be unique across the cluster (room names, usernames) are
//! claimed first with a create-only append (`Nats-Expected-Last-Subject-
//! Sequence: 0`) on a subject of their own.

mod apply;
mod compact;
pub mod entry;
mod liveness;
mod notices;
mod presence;

pub(crate) use apply::spawn_applier;
pub use compact::DEFAULT_SNAPSHOT_EVERY;
pub(crate) use compact::{SnapshotJob, read_chunk, write_snapshot};

use crate::durability::{BoxFuture, Committed, Durability, DurabilityError, Fact, RoomBatch, Snapshot};
use crate::ids::{MessageId, RoomId};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage as Publish, stream};
use bytes::Bytes;
use dashmap::DashMap;
use entry::FactV1;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The stream every node reads and writes.
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
    #[error("stream {STREAM} is not usable: {0}")]
    Stream(String),
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
    stream: stream::Stream,
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
}

/// How a starting node waits for NATS (`Cluster::connect`).
pub struct StartOptions<'a> {
    pub urls: &'a [String],
    pub node: &'a str,
    pub replicas: usize,
    /// `--cluster-snapshot-every`: entries of a room between snapshots.
    pub snapshot_every: u64,
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
        let StartOptions { urls, node, replicas, snapshot_every, timeout, waiting } = opts;
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
                match Self::try_connect(urls, node, replicas, snapshot_every).await {
                    Ok(c) => return Ok(c),
                    Err(e @ (ClusterError::OldServer(_) | ClusterError::Stream(_))) => return Err(e),
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
        snapshot_every: u64,
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
        let wanted = stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["roomlog.>".into(), "roomname.>".into(), "roomfacts.>".into()],
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        };
        // Temporary failures (a create racing another node's, no leader
        // yet) are `Unavailable`: retried by `connect`.
        let mut stream = js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let info = stream.info().await.map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let have = &info.config;
        if have.storage != stream::StorageType::File || have.num_replicas != wanted.num_replicas {
            return Err(ClusterError::Stream(format!(
                "it has {:?} storage and {} replicas; roomd needs file storage and {} (--cluster-replicas)",
                have.storage, have.num_replicas, wanted.num_replicas
            )));
        }
        if have.max_age != Duration::ZERO || have.max_messages_per_subject > 0 {
            return Err(ClusterError::Stream("it expires entries; the room logs must be kept".into()));
        }
        // An append whose ack was lost is sent again with the same
        // `Nats-Msg-Id` for up to APPEND_DEADLINE; JetStream drops the
        // repeat only while the first is inside the window. Outside it a
        // settings, role or message command would be applied twice.
        if have.duplicate_window < APPEND_DEADLINE {
            return Err(ClusterError::Stream(format!(
                "its duplicate_window is {:?}, shorter than the {:?} roomd retries an append with the \
                 same id, so a retried command could be applied twice; raise it to at least {:?} \
                 (roomd creates the stream with 2m), e.g. `nats stream edit {STREAM} --dupe-window 2m`",
                have.duplicate_window, APPEND_DEADLINE, APPEND_DEADLINE
            )));
        }
        let nodes = Some(liveness::bucket(&js, replicas).await?);
        let compaction = compact::Compaction::open(&js, replicas, snapshot_every).await?;
        // The boot suffix tells this run from the node's earlier ones: their
        // guests are not this run's.
        let origin = format!("{node}/{}", crate::ids::secret(8).replace(['-', '_'], "x"));
        Ok(Arc::new(Cluster {
            js,
            stream,
            origin,
            creations: DashMap::new(),
            starts: DashMap::new(),
            nodes,
            compaction,
        }))
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

    /// The subject of a room's log.
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
