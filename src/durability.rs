//! The durability seam: the one interface through which rooms, the lobby and
//! logins make changes durable, and through which roomd is rebuilt at start.
//!
//! Why a seam: the room actor's contract is "nothing is acknowledged before
//! it is durable", and it should not care *how* durable happens. Today the
//! answer is one embedded SQLite file with a group-commit writer
//! ([`crate::store::SqliteStore`]); a replicated log (the cluster mode) is
//! another answer, and a fake that delays or fails commits on purpose
//! ([`fake::FakeDurability`]) is a third, for tests.
//!
//! What flows through it are stored rows ([`crate::store::rows`]), never
//! wire frames: the durable shape of a room is versioned on its own.
//!
//! The contract an implementation keeps:
//! - [`Durability::append`] queues one room's batch and returns a
//!   [`Committed`] that resolves once the batch is durable. Batches of one
//!   room become durable in the order they were appended (a later batch
//!   durable implies the earlier ones are). The caller waits for them
//!   oldest first, so the order in which the futures resolve does not
//!   matter.
//! - An error says the batch is **not** durable. [`DurabilityError::Fenced`]
//!   says this node may no longer write the room at all (another owner's
//!   append won); [`DurabilityError::Retryable`] says the caller may try
//!   again later. SQLite returns neither; a replicated log returns both.
//! - `append` waits (asynchronously) for queue space: a store that falls
//!   behind slows its rooms down instead of queueing without bound.

use crate::ids::{MessageId, RoomId, UserId};
use crate::room::{Message, RoomState, UserRef};
use crate::store::StoreError;
use crate::store::rows::{GuestSeatRowV1, MemberRowV1, MessageRowV1, RoomRowV1, UserRowV1};
use crate::time::Millis;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed future, so the trait stays object-safe (`Arc<dyn Durability>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a change is not durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DurabilityError {
    /// The store failed (disk, database); the change is not durable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The room's log moved on under another owner: this node must drop
    /// the room and stop writing it.
    #[error("the room is owned elsewhere now (fenced)")]
    Fenced,
    /// A temporary failure (no quorum, timeout); the same change may be
    /// tried again.
    #[error("durability temporarily unavailable: {0}")]
    Retryable(String),
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
}

/// One change to a room's durable state.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomChange {
    /// The room's settings and metadata (members and messages are separate).
    Room(Box<RoomRowV1>),
    /// A member joined or their row (roles, flags) changed.
    Member(Box<MemberRowV1>),
    /// A guest took a seat or its row (mute) changed: kept so the guest can
    /// reclaim it after a restart.
    GuestSeat(Box<GuestSeatRowV1>),
    /// A member (user or guest) left.
    MemberLeft(UserId),
    /// A message was posted. Never overwrites an existing message.
    Message(Box<MessageRowV1>),
}

impl RoomChange {
    pub fn room(state: &RoomState) -> Self {
        RoomChange::Room(Box::new(RoomRowV1::from(state)))
    }

    /// A member's row: a guest's seat or a user's membership.
    pub fn member(m: &crate::room::Member) -> Self {
        if m.guest {
            RoomChange::GuestSeat(Box::new(GuestSeatRowV1::from(m)))
        } else {
            RoomChange::Member(Box::new(MemberRowV1::from(m)))
        }
    }

    pub fn message(m: &Message) -> Self {
        RoomChange::Message(Box::new(MessageRowV1::from(m)))
    }

    /// The id of the message this change stores, if it stores one.
    pub fn message_id(&self) -> Option<&MessageId> {
        match self {
            RoomChange::Message(m) => Some(&m.id),
            _ => None,
        }
    }
}

/// What one room command (or a room's creation) changed, made durable as a
/// unit.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomBatch {
    pub rid: RoomId,
    pub changes: Vec<RoomChange>,
}

/// A fact that belongs to no room.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A user's directory record.
    User(UserRowV1),
    /// `uid` owns the normalised username `name` from now on (first claim
    /// wins; repeating a claim is harmless).
    UsernameOwner { name: String, uid: UserId },
    /// A token ended by `logout`, refused until `exp` (seconds).
    RevokedToken { key: String, exp: u64 },
}

impl Fact {
    pub fn user(u: &UserRef) -> Self {
        Fact::User(UserRowV1::from(u))
    }
}

/// Everything needed to rebuild the in-memory state at start. Room names,
/// codes and DM pairs are not stored apart: they are rebuilt from the rooms.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each room with its members (guests' seats included) and its most
    /// recent messages, oldest first.
    pub rooms: Vec<(RoomState, Vec<Message>)>,
    pub users: Vec<UserRef>,
    /// Normalised username → the user id that owns it.
    pub usernames: Vec<(String, UserId)>,
    /// Token keys ended by `logout`, with their expiry (seconds).
    pub revoked: Vec<(String, u64)>,
}

/// A batch in flight; resolves when durable (or with why it is not).
pub struct Committed(BoxFuture<'static, Result<(), DurabilityError>>);

impl Committed {
    /// Resolves with what `rx` receives; a dropped sender means the store
    /// went away.
    pub fn from_receiver(rx: tokio::sync::oneshot::Receiver<Result<(), DurabilityError>>) -> Self {
        Committed(Box::pin(async move { rx.await.unwrap_or(Err(DurabilityError::Closed)) }))
    }

    /// Already decided (e.g. the store is closed).
    pub fn ready(r: Result<(), DurabilityError>) -> Self {
        Committed(Box::pin(std::future::ready(r)))
    }
}

impl Future for Committed {
    type Output = Result<(), DurabilityError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Committed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committed { .. }")
    }
}

/// Where durable state goes. See the module docs for the contract.
pub trait Durability: Send + Sync + std::fmt::Debug {
    /// Queues a room's batch; the returned [`Committed`] resolves once it is
    /// durable. Awaiting this call itself only waits for queue space.
    fn append(&self, batch: RoomBatch) -> BoxFuture<'_, Committed>;

    /// Makes global facts durable; returns once they are.
    fn record(&self, facts: Vec<Fact>) -> BoxFuture<'_, Result<(), DurabilityError>>;

    /// Whether room `rid` has a durable message `id`, however old. Called
    /// from a room actor for client-chosen ids memory cannot vouch for, so
    /// it must be a quick local lookup.
    fn message_exists(&self, rid: &RoomId, id: &MessageId) -> Result<bool, DurabilityError>;

    /// Up to `limit` durable messages of room `rid` with
    /// `floor <= ts < before`, newest first: `loadHistory` pages older than
    /// the room's in-memory window. Called off the room's loop (the actor
    /// spawns it), so it may take a while. A store that keeps no messages
    /// (the test fake) has none.
    fn history_before(
        &self,
        _rid: &RoomId,
        _before: Millis,
        _floor: Millis,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Message>, DurabilityError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Reads back everything durable, to rebuild rooms and users at start.
    fn restore(&self) -> BoxFuture<'_, Result<Snapshot, DurabilityError>>;

    /// Makes everything queued so far durable, then stops accepting work.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

#[doc(hidden)]
pub mod fake {
    //! A [`Durability`] for tests: keeps nothing, but delays each room batch
    //! by a chosen amount and fails chosen batches, so tests can check what
    //! rooms do under slow and failing commits. Not for production use.

    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Debug, Default)]
    struct Plan {
        /// Each batch waits a duration drawn from this range (inclusive).
        delay: (Duration, Duration),
        /// How many of the next room batches fail.
        fail_next: usize,
    }

    #[derive(Debug, Default)]
    pub struct FakeDurability {
        plan: Mutex<Plan>,
        /// Messages of batches that "committed", for duplicate-id lookups.
        messages: Mutex<HashSet<(RoomId, MessageId)>>,
        appended: AtomicUsize,
        failed: AtomicUsize,
    }

    impl FakeDurability {
        pub fn new() -> Self {
            Self::default()
        }

        /// Every later room batch resolves after a random delay in
        /// `min..=max`, so batches of different commands finish in varying
        /// order.
        pub fn set_delay(&self, min: Duration, max: Duration) {
            self.plan.lock().unwrap_or_else(|p| p.into_inner()).delay = (min, max.max(min));
        }

        /// The next `n` room batches fail (with a store error).
        pub fn fail_next(&self, n: usize) {
            self.plan.lock().unwrap_or_else(|p| p.into_inner()).fail_next = n;
        }

        /// Room batches appended so far.
        pub fn appended(&self) -> usize {
            self.appended.load(Ordering::SeqCst)
        }

        /// Room batches failed on purpose so far.
        pub fn failed(&self) -> usize {
            self.failed.load(Ordering::SeqCst)
        }
    }

    impl Durability for FakeDurability {
        #[allow(clippy::async_yields_async)] // see `SqliteStore::append`
        fn append(&self, batch: RoomBatch) -> BoxFuture<'_, Committed> {
            self.appended.fetch_add(1, Ordering::SeqCst);
            let (delay, fail) = {
                let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
                let (min, max) = plan.delay;
                let delay = if max > min { rand::random_range(min..=max) } else { min };
                let fail = plan.fail_next > 0;
                plan.fail_next = plan.fail_next.saturating_sub(1);
                (delay, fail)
            };
            if fail {
                self.failed.fetch_add(1, Ordering::SeqCst);
            } else {
                let mut known = self.messages.lock().unwrap_or_else(|p| p.into_inner());
                for id in batch.changes.iter().filter_map(RoomChange::message_id) {
                    known.insert((batch.rid.clone(), id.clone()));
                }
            }
            Box::pin(async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let r = if fail {
                        Err(DurabilityError::Store(StoreError::Db("commit failed on purpose".into())))
                    } else {
                        Ok(())
                    };
                    let _ = tx.send(r);
                });
                Committed::from_receiver(rx)
            })
        }

        fn record(&self, _facts: Vec<Fact>) -> BoxFuture<'_, Result<(), DurabilityError>> {
            Box::pin(std::future::ready(Ok(())))
        }

        fn message_exists(&self, rid: &RoomId, id: &MessageId) -> Result<bool, DurabilityError> {
            let known = self.messages.lock().unwrap_or_else(|p| p.into_inner());
            Ok(known.contains(&(rid.clone(), id.clone())))
        }

        fn restore(&self) -> BoxFuture<'_, Result<Snapshot, DurabilityError>> {
            Box::pin(std::future::ready(Ok(Snapshot::default())))
        }

        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
    }
}
