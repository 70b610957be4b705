//! Durable state: an embedded SQLite database (WAL) in the data directory,
//! written by one writer thread that group-commits the changes of all rooms.
//!
//! Why SQLite: one file, no server, decades of crash-safety testing, and the
//! `bundled` feature compiles it in, so a fresh machine needs nothing
//! installed. Why one writer: SQLite allows one writer at a time anyway; a
//! single thread that takes every change queued while the previous commit
//! was running and commits them in one transaction turns N fsyncs into one.
//!
//! The contract with callers: [`StoreHandle::submit`] returns a receiver that
//! resolves once the change is committed. Room actors send their replies and
//! events only after that, so nothing is acknowledged before it is durable.

pub mod sqlite;

use crate::auth::User;
use crate::ids::{MessageId, RoomId, UserId};
use crate::room::{Member, Message, RoomState, UserRef};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

pub use sqlite::{LATEST_SCHEMA, Snapshot};

/// How hard a commit pushes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at WAL checkpoints only: survives a process crash (SIGKILL),
    /// may lose the last commits on power loss.
    Normal,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("data directory schema v{found} is newer than this roomd supports (v{supported}); upgrade roomd")]
    TooNew { found: i64, supported: i64 },
    #[error("store is closed")]
    Closed,
    #[error("cannot open data directory {path}: {reason}")]
    Open { path: String, reason: String },
}

/// One change to durable state. Documents are serialised when the op is
/// made (serde skips a room's members), so the writer thread only executes
/// SQL and nothing needs copying into the op.
#[derive(Debug)]
pub enum StoreOp {
    /// The room's settings and metadata (members and messages are separate).
    PutRoom {
        id: RoomId,
        doc: String,
    },
    PutMember {
        rid: RoomId,
        uid: UserId,
        doc: String,
    },
    DeleteMember {
        rid: RoomId,
        uid: UserId,
    },
    PutMessage {
        rid: RoomId,
        id: MessageId,
        doc: String,
    },
    PutUser {
        id: UserId,
        doc: String,
    },
    /// `uid` owns the normalised username `name` from now on.
    ClaimUsername {
        name: String,
        uid: UserId,
    },
    /// A token ended by `logout`, kept until `exp` (seconds).
    RevokeToken {
        key: String,
        exp: u64,
    },
}

/// Serialising our own types cannot fail (no non-string keys, no failing
/// `Serialize` impls).
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl StoreOp {
    pub fn room(state: &RoomState) -> Self {
        StoreOp::PutRoom { id: state.id.clone(), doc: json(state) }
    }

    pub fn member(rid: &RoomId, m: &Member) -> Self {
        StoreOp::PutMember { rid: rid.clone(), uid: m.user.id.clone(), doc: json(m) }
    }

    pub fn message(m: &Message) -> Self {
        StoreOp::PutMessage { rid: m.rid.clone(), id: m.id.clone(), doc: json(m) }
    }
}

pub(crate) enum Request {
    Commit { ops: Vec<StoreOp>, done: oneshot::Sender<Result<(), StoreError>> },
    Shutdown { done: oneshot::Sender<()> },
}

/// Cheap, cloneable access to the writer thread, and to a few read-only
/// connections for lookups that memory does not answer.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Request>,
    /// Striped by room: rooms share a connection only when they hash to the
    /// same stripe, so there is no server-wide lock on the message path.
    readers: Arc<[Mutex<rusqlite::Connection>]>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle { .. }")
    }
}

/// Read-only connections per store.
const READERS: usize = 4;

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Commit { ops, .. } => write!(f, "Commit({} ops)", ops.len()),
            Request::Shutdown { .. } => f.write_str("Shutdown"),
        }
    }
}

/// A commit in flight; resolves when durable.
pub type Committed = oneshot::Receiver<Result<(), StoreError>>;

impl StoreHandle {
    /// Opens (creating or migrating) the database in `dir`, loads everything
    /// needed to rebuild rooms (the last `history` messages per room), and
    /// starts the writer thread.
    pub fn open(dir: &Path, sync: SyncMode, history: usize) -> Result<(StoreHandle, Snapshot), StoreError> {
        let (conn, snapshot) = sqlite::open(dir, sync, history)?;
        let readers =
            (0..READERS).map(|_| sqlite::reader(dir).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        // Bounded: when the disk falls behind, rooms wait for space instead
        // of queueing without limit.
        let (tx, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("roomd-store".into())
            .spawn(move || sqlite::writer(conn, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok((StoreHandle { tx, readers: readers.into() }, snapshot))
    }

    /// Whether room `rid` has a committed message `id`. Synchronous: an
    /// indexed point lookup in a page cache that is normally warm takes
    /// microseconds, less than a round trip to another thread would; rooms
    /// call it only for client-chosen ids that memory cannot vouch for.
    pub fn message_exists(&self, rid: &RoomId, id: &MessageId) -> Result<bool, StoreError> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(rid.as_str()) as usize;
        let conn = self.readers[stripe % self.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
        sqlite::message_exists(&conn, rid.as_str(), id.as_str())
    }

    /// Queues `ops` for the next group commit.
    pub async fn submit(&self, ops: Vec<StoreOp>) -> Committed {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Request::Commit { done, .. })) =
            self.tx.send(Request::Commit { ops, done }).await
        {
            let _ = done.send(Err(StoreError::Closed));
        }
        rx
    }

    /// Submits and waits for the commit.
    pub async fn commit(&self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        self.submit(ops).await.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Commits everything queued so far, then stops the writer.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown { done }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The user directory row for `u`.
pub fn user_op(u: &User) -> StoreOp {
    let r = UserRef { id: u.id.clone(), username: u.username.clone(), name: u.name.clone() };
    StoreOp::PutUser { id: u.id.clone(), doc: json(&r) }
}

/// The ownership row of `u`'s (normalised) username.
pub fn claim_op(name: &str, uid: &UserId) -> StoreOp {
    StoreOp::ClaimUsername { name: name.to_owned(), uid: uid.clone() }
}

/// Reports a group commit to the metrics layer.
pub fn record_commit(requests: usize, ops: usize, secs: f64) {
    tracing::trace!(requests, ops, secs, "group commit");
    crate::metrics::record_commit(requests, secs);
}
