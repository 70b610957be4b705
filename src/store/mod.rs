//! Durable state: an embedded SQLite database (WAL) in the data directory,
//! written by one writer thread that group-commits the changes of all rooms.
//! It is the first implementation of the [`Durability`] seam.
//!
//! Why SQLite: one file, no server, decades of crash-safety testing, and the
//! `bundled` feature compiles it in, so a fresh machine needs nothing
//! installed. Why one writer: SQLite allows one writer at a time anyway; a
//! single thread that takes every change queued while the previous commit
//! was running and commits them in one transaction turns N fsyncs into one.
//! Rows are encoded on that thread, off the rooms' path.
//!
//! Order: requests reach the writer through one FIFO channel and each room
//! appends its batches one after another, so a room's batches commit in
//! order.

pub mod backup;
pub mod rows;
pub mod sqlite;

use crate::durability::{BoxFuture, Committed, Durability, DurabilityError, Fact, RoomBatch, Snapshot};
use crate::ids::{MessageId, RoomId};
use crate::room::Message;
use crate::time::Millis;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub use sqlite::LATEST_SCHEMA;

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
    #[error("cannot open data directory {path}: {reason}")]
    Open { path: String, reason: String },
}

/// What one request asks the writer to make durable.
pub(crate) enum Work {
    Room(RoomBatch),
    Facts(Vec<Fact>),
}

impl Work {
    fn len(&self) -> usize {
        match self {
            Work::Room(b) => b.changes.len(),
            Work::Facts(f) => f.len(),
        }
    }
}

pub(crate) enum Request {
    Commit {
        work: Work,
        done: oneshot::Sender<Result<(), DurabilityError>>,
    },
    /// A retention batch: run by the writer (SQLite's one writer) in a
    /// transaction of its own after the group it arrived with.
    Prune(PruneBatch),
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Delete at most `batch` messages of `rid` older than `before` (ms).
pub(crate) struct PruneBatch {
    rid: String,
    before: i64,
    batch: usize,
    /// How many were deleted (0 on error).
    done: oneshot::Sender<usize>,
}

/// How long stored messages are kept. The default keeps them forever
/// (like Rocket.Chat); either bound (or both) lets the background pruner
/// delete what falls outside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this are deleted.
    pub max_age: Option<Duration>,
    /// Only the newest this many messages of each room are kept.
    pub max_count: Option<u64>,
}

impl Retention {
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.max_count.is_none()
    }
}

/// Messages one retention batch deletes: small, so the writer's next
/// group commit waits a few milliseconds at most.
const PRUNE_BATCH: usize = 500;

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Commit { work, .. } => write!(f, "Commit({} changes)", work.len()),
            Request::Prune(p) => write!(f, "Prune({}, {} before {})", p.rid, p.batch, p.before),
            Request::Shutdown { .. } => f.write_str("Shutdown"),
        }
    }
}

/// The SQLite store: a writer thread, and a few read-only connections for
/// lookups that memory does not answer.
pub struct SqliteStore {
    tx: mpsc::Sender<Request>,
    /// Striped by room: rooms share a connection only when they hash to the
    /// same stripe, so there is no server-wide lock on the message path.
    readers: Arc<[Mutex<rusqlite::Connection>]>,
    dir: PathBuf,
    /// Messages per room that `restore` loads (the in-memory recent window).
    history: usize,
    /// Idle read-only connections for history pages older than a room's
    /// in-memory window, apart from `readers` so a page read (up to
    /// a thousand rows) never holds up a room's id lookup. At most
    /// [`READERS`] exist: `history_reads` hands out that many permits.
    history_conns: Arc<Mutex<Vec<rusqlite::Connection>>>,
    /// Bounds concurrent history reads; more wait (asynchronously) here.
    history_reads: Arc<Semaphore>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore {{ dir: {:?} }}", self.dir)
    }
}

/// Read-only connections per store.
const READERS: usize = 4;

impl SqliteStore {
    /// Opens (creating or migrating) the database in `dir` and starts the
    /// writer thread. [`Durability::restore`] then loads the last `history`
    /// messages of each room.
    pub fn open(dir: &Path, sync: SyncMode, history: usize) -> Result<SqliteStore, StoreError> {
        let conn = sqlite::open(dir, sync)?;
        let readers =
            (0..READERS).map(|_| sqlite::reader(dir).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        // Bounded: when the disk falls behind, rooms wait for space instead
        // of queueing without limit.
        let (tx, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("roomd-store".into())
            .spawn(move || sqlite::writer(conn, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(SqliteStore {
            tx,
            readers: readers.into(),
            dir: dir.to_owned(),
            history,
            history_conns: Arc::default(),
            history_reads: Arc::new(Semaphore::new(READERS)),
        })
    }

    /// Starts the background pruner of `policy` (nothing to do if it keeps
    /// everything): every `every`, it finds each room's cutoff on a
    /// read-only connection and has the writer delete what lies below it
    /// in batches of [`PRUNE_BATCH`], never on a room's path. Stops when
    /// the store shuts down. Call inside the tokio runtime.
    pub fn start_retention(&self, policy: Retention, every: Duration) {
        if policy.keeps_everything() {
            return;
        }
        let (tx, dir) = (self.tx.clone(), self.dir.clone());
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let dir = dir.clone();
                let found = tokio::task::spawn_blocking(move || {
                    let conn = sqlite::reader(&dir)?;
                    let now = Millis::now().0;
                    let mut cut = Vec::new();
                    for rid in sqlite::rooms_with_messages(&conn)? {
                        if let Some(before) = sqlite::prune_cutoff(&conn, &rid, &policy, now)? {
                            cut.push((rid, before));
                        }
                    }
                    Ok::<_, StoreError>(cut)
                })
                .await;
                let cut = match found {
                    Ok(Ok(cut)) => cut,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "history retention: cannot read cutoffs");
                        continue;
                    }
                    Err(_) => return,
                };
                for (rid, before) in cut {
                    loop {
                        let (done, rx) = oneshot::channel();
                        let batch = PruneBatch { rid: rid.clone(), before, batch: PRUNE_BATCH, done };
                        if tx.send(Request::Prune(batch)).await.is_err() {
                            return; // the store is shut down
                        }
                        let Ok(n) = rx.await else { return };
                        crate::metrics::record_pruned(n);
                        if n < PRUNE_BATCH {
                            break;
                        }
                    }
                }
            }
        });
    }

    async fn submit(&self, work: Work) -> oneshot::Receiver<Result<(), DurabilityError>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Request::Commit { done, .. })) =
            self.tx.send(Request::Commit { work, done }).await
        {
            let _ = done.send(Err(DurabilityError::Closed));
        }
        rx
    }
}

impl Durability for SqliteStore {
    // Two stages on purpose: the outer future waits for queue space (so
    // batches enter the queue in the room's order), the inner for the commit.
    #[allow(clippy::async_yields_async)]
    fn append(&self, batch: RoomBatch) -> BoxFuture<'_, Committed> {
        Box::pin(async move { Committed::from_receiver(self.submit(Work::Room(batch)).await) })
    }

    fn record(&self, facts: Vec<Fact>) -> BoxFuture<'_, Result<(), DurabilityError>> {
        Box::pin(async move { Committed::from_receiver(self.submit(Work::Facts(facts)).await).await })
    }

    /// Synchronous: an indexed point lookup in a page cache that is normally
    /// warm takes microseconds, less than a round trip to another thread
    /// would.
    fn message_exists(&self, rid: &RoomId, id: &MessageId) -> Result<bool, DurabilityError> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(rid.as_str()) as usize;
        let conn = self.readers[stripe % self.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
        Ok(sqlite::message_exists(&conn, rid.as_str(), id.as_str())?)
    }

    /// Off the room's thread: waits for one of [`READERS`] permits, then
    /// reads on a blocking-pool thread with a connection of its own.
    fn history_before(
        &self,
        rid: &RoomId,
        before: Millis,
        floor: Millis,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Message>, DurabilityError>> {
        let rid = rid.as_str().to_owned();
        let (dir, conns, permits) =
            (self.dir.clone(), self.history_conns.clone(), self.history_reads.clone());
        Box::pin(async move {
            let _permit = permits.acquire_owned().await.map_err(|_| DurabilityError::Closed)?;
            let read = tokio::task::spawn_blocking(move || {
                let idle = conns.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let conn = match idle {
                    Some(c) => c,
                    None => sqlite::reader(&dir)?,
                };
                let r = sqlite::messages_before(&conn, &rid, before.0, floor.0, limit);
                conns.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
                r
            });
            match read.await {
                Ok(r) => Ok(r?),
                Err(e) => Err(DurabilityError::Store(StoreError::Db(e.to_string()))),
            }
        })
    }

    fn restore(&self) -> BoxFuture<'_, Result<Snapshot, DurabilityError>> {
        // Runs once at start, before any connection is served.
        Box::pin(async move {
            let conn = sqlite::reader(&self.dir)?;
            Ok(sqlite::load(&conn, self.history)?)
        })
    }

    /// Commits everything queued so far, then stops the writer.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (done, rx) = oneshot::channel();
            if self.tx.send(Request::Shutdown { done }).await.is_ok() {
                let _ = rx.await;
            }
        })
    }
}

/// Reports a group commit to the metrics layer.
pub fn record_commit(requests: usize, ops: usize, secs: f64) {
    tracing::trace!(requests, ops, secs, "group commit");
    crate::metrics::record_commit(requests, secs);
}
