//! How the rest of the server talks to a room: the cloneable [`RoomHandle`]
//! and the [`RoomCommand`]s it carries to the room's actor (or, once the
//! room has ended and emptied, to its [`EndedRoom`] summary).

use super::actor;
use super::ended::EndedRoom;
use super::state::{Flag, Joined, RoleKind, RoomState, Setting};
use super::view::Seated;
use super::view::{ChannelEntry, ChannelRoom, Participants, RoleEntry, RoomInfo, SubscriptionInfo};
use super::{Message, RoomError, RoomListener, RoomSink, UserRef};
use crate::durability::Durability;
use crate::hub::UserHub;
use crate::ids::{ConnId, MessageId, RoomId, UserId};
use crate::permissions::Principal;
use crate::registry::Registry;
use crate::time::Millis;
use crate::users::Directory;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Which of a room's streams a connection listens to. One connection holds
/// each topic at most once, however many DDP subs it opened for it, so no
/// event is delivered twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `stream-room-messages` / `<rid>`.
    Messages = 1,
    /// `stream-notify-room` / `<rid>/participants`.
    Participants = 2,
    /// `stream-notify-room` / `<rid>/typing`.
    Typing = 4,
    /// `stream-notify-room` / `<rid>/user-activity`.
    UserActivity = 8,
    /// `stream-notify-room` / `<rid>/deleteMessage`.
    DeleteMessage = 16,
}

impl Topic {
    pub(super) fn bit(self) -> u8 {
        self as u8
    }
}

/// Parameters of `sendMessage`, validated by the method layer.
#[derive(Debug)]
pub struct SendParams {
    /// A client-chosen message id (refused if the room already has it).
    pub id: Option<MessageId>,
    pub msg: String,
    /// The thread's parent message, passed through.
    pub tmid: Option<String>,
}

/// How a joining connection will hear the room (`join-room`, and a guest's
/// resume).
#[derive(Debug)]
pub struct JoinParams {
    /// The joining connection; for a guest it becomes the seat's holder.
    pub conn: ConnId,
    /// A door that hears the room as events (Socket.IO) starts listening
    /// with the join, in the same step: it misses nothing.
    pub listener: Option<Arc<dyn RoomListener>>,
    /// The listener's last heard position: replay what followed.
    pub since: Option<u64>,
}

/// A reconnecting guest's token, presented from connection `join.conn`;
/// `current` is the connection's own guest id, if it has one (it must match
/// the token's guest).
#[derive(Debug)]
pub struct ResumeParams {
    pub token: String,
    pub current: Option<UserId>,
    pub join: JoinParams,
}

/// A connection's request to listen to `topic`.
#[derive(Debug)]
pub struct SubscribeParams {
    /// The connection; it holds this room's topics in one entry.
    pub sink: Arc<dyn RoomSink>,
    pub uid: UserId,
    /// Signed-in non-members may read public channels' messages.
    pub signed_in: bool,
    pub topic: Topic,
    /// The DDP sub id, so the room can end it with `nosub` itself.
    pub sub_id: String,
}

/// A `loadHistory` page: the newest messages before `end`.
#[derive(Debug)]
pub struct HistoryParams {
    pub uid: UserId,
    pub end: Option<Millis>,
    /// Only messages after this time (`loadMissedMessages`).
    pub after: Option<Millis>,
    pub limit: usize,
    /// The page stops before the message that would take its JSON past
    /// this size (the first message always fits).
    pub max_bytes: usize,
}

/// A `stream-notify-room` typing/user-activity notice from `uid` on
/// connection `from` (0: relayed from another node).
#[derive(Debug)]
pub struct NotifyParams {
    pub from: ConnId,
    pub uid: UserId,
    pub topic: Topic,
    pub event: String,
    pub args: Value,
}

/// Where a room sends a command's answer.
pub type Reply<T> = oneshot::Sender<Result<T, RoomError>>;

/// What a room can be asked to do. Every room's mailbox is a tokio channel
/// whose blocks hold 32 commands each, allocated as the room starts: each
/// byte of this enum is 32 bytes of every room's idle memory. So a variant's
/// payload is boxed where it is large and the command is rare next to the
/// room's life (joins, subscriptions, history pages, typing notices), and
/// the enum stays within 48 bytes (a test holds it there). `who` is the caller as permissions see it;
/// `uid` where only the identity matters.
#[derive(Debug)]
pub enum RoomCommand {
    /// `joinRoom`; `code` is the join code the caller gave, if any.
    JoinSelf { who: Box<Principal>, code: Option<String>, respond_to: Reply<Joined> },
    /// `join-room`; replies with the participant object.
    JoinByCode { who: Box<Principal>, params: Box<JoinParams>, respond_to: Reply<Seated> },
    /// A reconnecting guest presents its token: the participant and the
    /// guest's id if the token is known and `current` matches (see
    /// [`ResumeParams`]), `None` otherwise.
    ResumeGuest { params: Box<ResumeParams>, respond_to: Reply<Option<(UserId, Seated)>> },
    /// `leaveRoom`.
    Leave { uid: UserId, respond_to: Reply<()> },
    /// `endRoom`.
    End { who: Box<Principal>, respond_to: Reply<()> },
    /// `saveRoomSettings`, all settings of one call (all or nothing).
    Settings { who: Box<Principal>, settings: Vec<Setting>, respond_to: Reply<()> },
    /// The whole room document, unfiltered, for server-side callers that
    /// already decided the caller may see it (a new direct message).
    Doc { respond_to: Reply<RoomInfo> },
    /// Room doc only if `uid` may see it (member, or public channel).
    DocFor { uid: UserId, respond_to: Reply<RoomInfo> },
    /// The room doc for a user's room list: `None` unless `uid` is a member
    /// (then the room also drops a stale note of `uid` in the users'
    /// membership index, as [`SubscriptionDoc`](Self::SubscriptionDoc) does).
    MemberDoc { uid: UserId, respond_to: Reply<Option<RoomInfo>> },
    /// A connection starts listening to `topic`, if `uid` may read it.
    Subscribe { params: Box<SubscribeParams>, respond_to: Reply<()> },
    /// A connection stops one DDP sub on this room.
    Unsubscribe {
        sub_id: String,
        /// Whether no other sub of this connection wants `topic` here.
        last: bool,
        conn: ConnId,
        topic: Topic,
        respond_to: Reply<()>,
    },
    /// The connection is gone: drop its subscriptions; if it carried a guest
    /// member of this room, start that guest's grace period.
    ConnClosed { conn: ConnId, guest: Option<UserId> },
    /// A guest's grace timer fired; `epoch` tells whether it is still the
    /// current one (the guest may have come back and left again since).
    GuestExpired { uid: UserId, epoch: u64 },
    /// `sendMessage`; replies with the stored message.
    Send { who: Box<Principal>, params: Box<SendParams>, respond_to: Reply<Message> },
    /// `loadHistory`: a page of the newest messages, newest first.
    History { params: Box<HistoryParams>, respond_to: Reply<Vec<Arc<Message>>> },
    /// `addUserToRoom` / `addUsersToRoom` (one target each); `false` if the
    /// target was already a member.
    AddMember { who: Box<Principal>, target: Box<UserRef>, respond_to: Reply<bool> },
    /// `removeUserFromRoom`.
    RemoveMember { who: Box<Principal>, target: UserId, respond_to: Reply<()> },
    /// The six role methods: grant (`add`) or revoke `role`.
    SetRole { who: Box<Principal>, target: UserId, role: RoleKind, add: bool, respond_to: Reply<()> },
    /// `muteUserInRoom` / `unmuteUserInRoom`.
    SetMuted { who: Box<Principal>, target: UserId, muted: bool, respond_to: Reply<()> },
    /// `archiveRoom` / `unarchiveRoom`.
    SetArchived { who: Box<Principal>, archived: bool, respond_to: Reply<()> },
    /// `toggleFavorite`, `hideRoom`, `openRoom` on the caller's membership.
    SetFlag { uid: UserId, flag: Flag, respond_to: Reply<()> },
    /// The caller's subscription document, `None` if not a member (then
    /// the room drops a stale note of `uid` in the users' membership index:
    /// a log that delivers entries of rooms a node does not hold notes
    /// joins before the room decides them, and no leaves).
    SubscriptionDoc { uid: UserId, respond_to: Reply<Option<SubscriptionInfo>> },
    /// `getRoomRoles` entries, if `uid` may read the room.
    Roles { uid: UserId, respond_to: Reply<Vec<RoleEntry>> },
    /// `getRoomParticipants`: the summary and current participants, for
    /// members (guests included) only.
    Participants { uid: UserId, respond_to: Reply<Participants> },
    /// `stream-notify-room` typing/user-activity, re-emitted to others.
    Notify(Box<NotifyParams>),
    /// A delivered log: the nodes alive now (origins); guests held by any
    /// other node for longer than the guest grace are removed.
    ReapGuests { alive: Arc<std::collections::HashSet<String>> },
    /// A delivered log: an entry of this room's log, to apply (every node
    /// applies every entry, in log order).
    Apply(Box<super::log::Entry>),
    /// A delivered log: a snapshot entry in its place in the log. Applied,
    /// answering `true`, if this replica applied everything it covers;
    /// otherwise nothing is applied and the answer is `false` (the applier
    /// then sends `Reseed`).
    ApplySnapshot { entry: Box<super::log::Entry>, respond_to: Reply<bool> },
    /// A delivered log: start over from a snapshot entry, the room state it
    /// holds, and the room's entries between what it covers and itself.
    Reseed {
        state: Box<super::state::RoomState>,
        snapshot: Box<super::log::Entry>,
        entries: Vec<super::log::Entry>,
    },
    /// A delivered log: a room this node just started from its creation or
    /// its latest snapshot (`snapshot`) catches up with the entries after
    /// it, applied silently (a log holding rooms by interest: they happened
    /// before this node held the room).
    Load { snapshot: Option<Box<super::log::Entry>>, entries: Vec<super::log::Entry> },
    /// A log holding rooms by interest sweeps them: the room lets itself go if
    /// nothing on this node has needed it for two sweeps in a row (see
    /// `RoomActor::sweep`).
    Sweep,
    /// A delivered log: this node's entry `id` could not be appended; its
    /// caller gets `error`.
    Unlogged { id: String, error: Box<RoomError> },
}

/// Cheap, cloneable way to talk to a room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    pub id: RoomId,
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    /// The mailbox, and where the actor leaves its summary when it retires
    /// (for callers that still hold this handle).
    Live(mpsc::Sender<RoomCommand>, Arc<OnceLock<Arc<EndedRoom>>>),
    /// Ended and empty: answered from a summary, no task.
    Ended(Arc<EndedRoom>),
}

/// Room-wide knobs from the server config.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub mailbox: usize,
    /// Recent messages per room cached in memory (`--history-limit`).
    pub history_limit: usize,
    /// Retention by age: older messages are no longer served (the store's
    /// pruner deletes them in the background).
    pub history_max_age: Option<Duration>,
    pub guest_grace: Duration,
    pub max_message_len: usize,
    /// The replay window's limits (`--replay-*`), shared by every room.
    pub replay: Arc<super::replay::ReplayLimits>,
}

/// Shared services a room actor uses besides its own state.
#[derive(Clone, Debug)]
pub struct RoomDeps {
    pub registry: Arc<Registry>,
    pub users: Arc<Directory>,
    pub hub: Arc<UserHub>,
    /// Where changes become durable; `None` runs in memory only (or with a
    /// delivered log, which is itself durable).
    pub store: Option<Arc<dyn Durability>>,
    /// Where changes are put in order: applied at once, or appended and
    /// applied when the log delivers them (`room/log.rs`).
    pub log: Arc<dyn super::log::RoomLog>,
}

impl RoomHandle {
    /// Spawns the actor for `state` and returns its handle.
    pub fn spawn(state: RoomState, cfg: Arc<RoomConfig>, deps: RoomDeps) -> Self {
        Self::spawn_with_history(state, Vec::new(), cfg, deps)
    }

    /// Spawns the actor of a restored room with its recent `history`
    /// (oldest first).
    pub fn spawn_with_history(
        state: RoomState,
        history: Vec<Message>,
        cfg: Arc<RoomConfig>,
        deps: RoomDeps,
    ) -> Self {
        let (tx, rx) = mpsc::channel(cfg.mailbox);
        let summary = Arc::new(OnceLock::new());
        let handle = RoomHandle { id: state.id.clone(), inner: Inner::Live(tx.clone(), summary.clone()) };
        actor::spawn(state, history, cfg, deps, rx, tx.downgrade(), summary);
        handle
    }

    /// Sends a command built around a reply channel and waits for the reply.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> RoomCommand) -> Result<T, RoomError> {
        let (tx, rx) = oneshot::channel();
        self.tell(make(tx)).await;
        rx.await.map_err(|_| RoomError::Unavailable)?
    }

    /// Joins the public channel this room is, as `who` (no join code): the
    /// room refuses a private one or an archived one before any join is
    /// tried, then its join rules decide (lock, capacity, join code).
    pub async fn join_channel(&self, who: Principal) -> Result<ChannelEntry, RoomError> {
        let uid = who.id.clone();
        let before = match self.ask(|tx| RoomCommand::DocFor { uid: uid.clone(), respond_to: tx }).await {
            Ok(r) if r.kind == super::RoomType::Channel => r,
            // Refused as errors, so the join counts as refused too.
            Ok(_) | Err(RoomError::NotAllowed) => return Err(RoomError::NotAChannel),
            Err(e) => return Err(e),
        };
        if before.archived {
            return Err(RoomError::Archived);
        }
        let joined =
            self.ask(|tx| RoomCommand::JoinSelf { who: Box::new(who), code: None, respond_to: tx }).await?;
        let now = self.channel_room(&uid).await?;
        Ok(match joined {
            Joined::New(_) => ChannelEntry::Joined(now),
            Joined::Existing(_) => ChannelEntry::AlreadyIn { before: Box::new(before), now },
        })
    }

    /// The channel as member `uid` sees it, with its signed-in members.
    pub async fn channel_room(&self, uid: &UserId) -> Result<ChannelRoom, RoomError> {
        let room = self.ask(|tx| RoomCommand::DocFor { uid: uid.clone(), respond_to: tx }).await?;
        let list = self.ask(|tx| RoomCommand::Participants { uid: uid.clone(), respond_to: tx }).await?;
        let members = list.participants.into_iter().filter_map(|p| p.user).collect();
        Ok(ChannelRoom { room, members })
    }

    /// Fire-and-forget for notices that need no answer. Waits for mailbox
    /// space (bounded), never drops.
    /// Hands `cmd` over only if the mailbox has room at once (a busy room
    /// skips it); ended rooms ignore it.
    pub(crate) fn try_tell(&self, cmd: RoomCommand) {
        if let Inner::Live(tx, _) = &self.inner {
            let _ = tx.try_send(cmd);
        }
    }

    pub async fn tell(&self, cmd: RoomCommand) {
        match &self.inner {
            Inner::Live(tx, summary) => {
                if let Err(mpsc::error::SendError(cmd)) = tx.send(cmd).await {
                    // The actor retired after this handle was looked up.
                    match summary.get() {
                        Some(e) => e.answer(cmd),
                        None => Self::retired(&self.id, cmd),
                    }
                }
            }
            Inner::Ended(e) => e.answer(cmd),
        }
    }

    fn retired(id: &RoomId, cmd: RoomCommand) {
        // Only possible for a caller that fetched the live handle just before
        // the actor retired; dropping the reply sender answers Unavailable.
        tracing::debug!(room = %id, "command reached a retired actor");
        drop(cmd);
    }

    /// The handle of a room that ended and emptied: no task behind it.
    /// Whether this is the only handle of a live room left (the
    /// registry's): no caller, subscription or seat holds another.
    pub(crate) fn unshared(&self) -> bool {
        match &self.inner {
            Inner::Live(tx, _) => tx.strong_count() == 1,
            Inner::Ended(_) => false,
        }
    }

    pub(super) fn ended(id: RoomId, e: Arc<EndedRoom>) -> Self {
        RoomHandle { id, inner: Inner::Ended(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every room allocates its mailbox's first block of 32 slots as it
    /// starts, so the command's size is paid 32 times per room, idle or
    /// not (104 B was 3,328 B a room). A new variant that grows it boxes
    /// its payload instead (see `RoomCommand`).
    #[test]
    fn a_command_fits_in_48_bytes() {
        assert!(std::mem::size_of::<RoomCommand>() <= 48, "{} B", std::mem::size_of::<RoomCommand>());
    }
}
