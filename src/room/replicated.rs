//! Cluster mode in the room actor: a command that changes the room is not
//! applied where it arrives. It is written to the room's log as an entry
//! (`cluster::entry`), and the caller waits. Every node's actor applies
//! every entry when the log delivers it, through the same `handle` as a
//! single node, with the entry's clock and an id generator seeded by the
//! entry: all replicas decide the same. The node holding the caller
//! answers it from its own application of the entry.

use super::RoomError;
use super::actor::RoomActor;
use super::handle::{Reply, RoomCommand, SendParams};
use super::listener::RoomListener;
use super::model::Message;
use super::state::{Flag, Joined, RoleKind, Setting};
use super::view::Seated;
use crate::cluster::entry::{EntryV1, OpV1, WhoV1, user_row};
use crate::cluster::{Cluster, ClusterError, entry_bytes};
use crate::ids::{ConnId, MessageId};
use crate::time::Millis;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// A caller waiting for its entry to come back from the log.
pub(super) enum Waiter {
    Joined(Reply<Joined>),
    /// `join-room`: the joining connection's details stay here; they mean
    /// nothing on other nodes.
    ByCode {
        conn: ConnId,
        listener: Option<Arc<dyn RoomListener>>,
        since: Option<u64>,
        respond_to: Reply<Seated>,
    },
    /// `sendMessage`: the stored message.
    Message(Reply<Message>),
    Unit(Reply<()>),
    Bool(Reply<bool>),
}

impl Waiter {
    fn fail(self, e: RoomError) {
        match self {
            Waiter::Joined(tx) => drop(tx.send(Err(e))),
            Waiter::ByCode { respond_to, .. } => drop(respond_to.send(Err(e))),
            Waiter::Message(tx) => drop(tx.send(Err(e))),
            Waiter::Unit(tx) => drop(tx.send(Err(e))),
            Waiter::Bool(tx) => drop(tx.send(Err(e))),
        }
    }
}

/// A reply channel nobody listens to: other nodes' entries have no caller
/// here.
fn nobody<T>() -> Reply<T> {
    tokio::sync::oneshot::channel().0
}

impl RoomActor {
    /// Cluster mode: turns a command that changes the room into a log entry
    /// (appended by a task; the caller waits in `waiters`). Commands that
    /// only read, or concern this node's connections, come back to be
    /// handled here at once.
    pub(super) fn submit(&mut self, cluster: &Arc<Cluster>, cmd: RoomCommand) -> Option<RoomCommand> {
        let mut claim = None;
        let (op, waiter) = match cmd {
            RoomCommand::JoinSelf { who, code, respond_to } => {
                (OpV1::JoinSelf { who: WhoV1::from(&*who), code }, Some(Waiter::Joined(respond_to)))
            }
            RoomCommand::JoinByCode { who, conn, listener, since, respond_to } => (
                OpV1::JoinByCode { who: WhoV1::from(&*who) },
                Some(Waiter::ByCode { conn, listener, since, respond_to }),
            ),
            RoomCommand::Leave { uid, respond_to } => (OpV1::Leave { uid }, Some(Waiter::Unit(respond_to))),
            RoomCommand::End { who, respond_to } => {
                (OpV1::End { who: WhoV1::from(&*who) }, Some(Waiter::Unit(respond_to)))
            }
            RoomCommand::Settings { who, settings, respond_to } => {
                for s in &settings {
                    if let Setting::RoomName(name) = s
                        && *name != self.state.name
                    {
                        claim = Some(name.clone());
                    }
                }
                // A rename claims its name for good before the entry is
                // written: only a caller who may rename now gets to claim
                // one (the entry's application checks again).
                if claim.is_some()
                    && let Err(e) = self.state.check_settings(&who, &settings)
                {
                    let _ = respond_to.send(Err(e));
                    return None;
                }
                let settings = settings.iter().map(setting_pair).collect();
                (OpV1::Settings { who: WhoV1::from(&*who), settings }, Some(Waiter::Unit(respond_to)))
            }
            RoomCommand::GuestExpired { uid, epoch } => {
                // Only the node holding the guest's connection times it out;
                // the removal itself goes through the log like any leave.
                if self.guest_epoch(&uid) != Some(epoch) || !self.state.is_member(&uid) {
                    return None;
                }
                self.forget_guest(&uid);
                (OpV1::GuestGone { uid }, None)
            }
            RoomCommand::Send { who, params, respond_to } => {
                let SendParams { id, msg, tmid } = *params;
                let id = id.unwrap_or_else(MessageId::generate).to_string();
                (OpV1::Send { who: WhoV1::from(&*who), id, msg, tmid }, Some(Waiter::Message(respond_to)))
            }
            RoomCommand::AddMember { who, target, respond_to } => (
                OpV1::AddMember { who: WhoV1::from(&*who), target: user_row(&target) },
                Some(Waiter::Bool(respond_to)),
            ),
            RoomCommand::RemoveMember { who, target, respond_to } => {
                (OpV1::RemoveMember { who: WhoV1::from(&*who), target }, Some(Waiter::Unit(respond_to)))
            }
            RoomCommand::SetRole { who, target, role, add, respond_to } => (
                OpV1::SetRole { who: WhoV1::from(&*who), target, role: role.name().to_owned(), add },
                Some(Waiter::Unit(respond_to)),
            ),
            RoomCommand::SetMuted { who, target, muted, respond_to } => {
                (OpV1::SetMuted { who: WhoV1::from(&*who), target, muted }, Some(Waiter::Unit(respond_to)))
            }
            RoomCommand::SetArchived { who, archived, respond_to } => {
                (OpV1::SetArchived { who: WhoV1::from(&*who), archived }, Some(Waiter::Unit(respond_to)))
            }
            RoomCommand::SetFlag { uid, flag, respond_to } => {
                let (flag, on) = match flag {
                    Flag::Favorite(on) => ("favorite", on),
                    Flag::Open(on) => ("open", on),
                };
                (OpV1::SetFlag { uid, flag: flag.to_owned(), on }, Some(Waiter::Unit(respond_to)))
            }
            other => return Some(other),
        };
        self.append_entry(cluster, op, waiter, claim);
        None
    }

    /// Writes `op` to the room's log (after claiming the name `claim`, if
    /// any); `waiter` hears the outcome when the entry comes back.
    fn append_entry(
        &mut self,
        cluster: &Arc<Cluster>,
        op: OpV1,
        waiter: Option<Waiter>,
        claim: Option<String>,
    ) {
        if self.waiters.len() >= super::actor::MAX_PENDING {
            // The log is not keeping up with this room's callers here: say
            // so rather than queue without bound.
            if let Some(w) = waiter {
                w.fail(RoomError::Unavailable);
            }
            return;
        }
        let entry = EntryV1 {
            id: crate::ids::secret(22),
            origin: cluster.origin().to_owned(),
            now: Millis::now().0,
            seq: 0,
            op,
        };
        if let Some(w) = waiter {
            self.waiters.insert(entry.id.clone(), w);
        }
        let (cluster, me, rid) = (cluster.clone(), self.me.clone(), self.state.id.clone());
        tokio::spawn(async move {
            let id = entry.id.clone();
            let r = append(&cluster, &rid, &entry, claim).await;
            if let Err(error) = r
                && let Some(tx) = me.upgrade()
            {
                let _ = tx.send(RoomCommand::Unlogged { id, error }).await;
            }
        });
    }

    /// Cluster mode: a guest resumed through this node, which holds its
    /// seat from now on; the log tells the other replicas.
    pub(super) fn now_held_here(&mut self, uid: &crate::ids::UserId) {
        let Some(cluster) = self.cluster.clone() else { return };
        if self.guest_nodes.get(uid).map(String::as_str) != Some(cluster.origin()) {
            self.append_entry(&cluster, OpV1::GuestHeld { uid: uid.clone() }, None, None);
        }
    }

    /// Cluster mode: removes (through the log) guests whose node has been
    /// gone for the guest grace. See `cluster::liveness`.
    pub(super) fn reap_guests(&mut self, alive: &std::collections::HashSet<String>) {
        let Some(cluster) = self.cluster.clone() else { return };
        let now = std::time::Instant::now();
        let grace = self.cfg.guest_grace;
        let mut gone = Vec::new();
        for (uid, m) in &self.state.members {
            if !m.guest {
                continue;
            }
            match self.guest_nodes.get(uid) {
                Some(node) if !alive.contains(node) => {
                    let since = *self.orphaned.entry(uid.clone()).or_insert(now);
                    if now.duration_since(since) >= grace {
                        gone.push(uid.clone());
                    }
                }
                _ => {
                    self.orphaned.remove(uid);
                }
            }
        }
        for uid in gone {
            // Asked again at the next sweep if this append fails.
            self.orphaned.remove(&uid);
            tracing::info!(room = %self.state.id, guest = %uid, "guest's node is gone; seat released");
            self.append_entry(&cluster, OpV1::GuestGone { uid }, None, None);
        }
    }

    /// Applies one entry of this room's log; answers its caller if the
    /// caller is connected here.
    pub(super) fn apply_entry(&mut self, entry: EntryV1) {
        let waiter = self.waiters.remove(&entry.id);
        let now = entry.now();
        match &entry.op {
            OpV1::JoinByCode { who } if who.guest => {
                self.guest_nodes.insert(who.id.clone(), entry.origin.clone());
            }
            OpV1::GuestHeld { uid } => {
                self.guest_nodes.insert(uid.clone(), entry.origin.clone());
                self.orphaned.remove(uid);
                return;
            }
            _ => {}
        }
        let Some(cmd) = command(entry.op, waiter) else { return };
        crate::ids::replayed(&entry.id, || self.handle_at(cmd, now));
        // Guests who left (or never got in) need no holder any more.
        if self.guest_nodes.len() > self.state.members.len() {
            let members = &self.state.members;
            self.guest_nodes.retain(|uid, _| members.contains_key(uid));
            self.orphaned.retain(|uid, _| members.contains_key(uid));
        }
    }

    /// This node's entry `id` did not reach the log: its caller hears why.
    pub(super) fn unlogged(&mut self, id: &str, error: RoomError) {
        if let Some(w) = self.waiters.remove(id) {
            w.fail(error);
        }
    }
}

async fn append(
    cluster: &Cluster,
    rid: &crate::ids::RoomId,
    entry: &EntryV1,
    claim: Option<String>,
) -> Result<(), RoomError> {
    if let Some(name) = claim {
        let mine = Bytes::from(rid.to_string());
        match cluster.claim(Cluster::name_subject(&name), mine.clone(), |held| held == &mine[..]).await {
            Ok(()) => {}
            Err(ClusterError::Taken) => return Err(RoomError::DuplicateName(name)),
            Err(e) => {
                tracing::error!(room = %rid, error = %e, "cannot claim the new room name");
                return Err(RoomError::Unavailable);
            }
        }
    }
    cluster.append(Cluster::room_subject(rid), &entry.id, entry_bytes(entry)).await.map(|_| ()).map_err(|e| {
        match e {
            // The caller's doing (a call near --max-frame-bytes against a
            // smaller max_payload): told so, and nothing is wrong here.
            ClusterError::TooLarge { size, max } => {
                tracing::debug!(room = %rid, size, max, "log entry over the NATS max_payload refused");
                RoomError::TooLarge(max)
            }
            e => {
                tracing::error!(room = %rid, error = %e, "cannot append to the room log");
                RoomError::Unavailable
            }
        }
    })
}

/// The command an entry stands for, answering `waiter` if this node holds
/// the caller (a waiter of another kind cannot happen: entry ids are
/// unique).
fn command(op: OpV1, waiter: Option<Waiter>) -> Option<RoomCommand> {
    use RoomCommand as C;
    let unit = |w: Option<Waiter>| match w {
        Some(Waiter::Unit(tx)) => tx,
        _ => nobody(),
    };
    Some(match op {
        OpV1::Create { .. } | OpV1::GuestHeld { .. } | OpV1::Snapshot(_) => return None,
        OpV1::JoinSelf { who, code } => C::JoinSelf {
            who: Box::new(who.into()),
            code,
            respond_to: match waiter {
                Some(Waiter::Joined(tx)) => tx,
                _ => nobody(),
            },
        },
        OpV1::JoinByCode { who } => {
            let (conn, listener, since, respond_to) = match waiter {
                Some(Waiter::ByCode { conn, listener, since, respond_to }) => {
                    (conn, listener, since, respond_to)
                }
                // Another node's guest: no connection of it here holds the
                // seat (id 0 is never a connection's).
                _ => (ConnId(0), None, None, nobody()),
            };
            C::JoinByCode { who: Box::new(who.into()), conn, listener, since, respond_to }
        }
        OpV1::Leave { uid } => C::Leave { uid, respond_to: unit(waiter) },
        OpV1::End { who } => C::End { who: Box::new(who.into()), respond_to: unit(waiter) },
        OpV1::Settings { who, settings } => {
            let parsed: Result<Vec<Setting>, RoomError> =
                settings.iter().map(|(k, v)| crate::method::parse_setting(k, v)).collect();
            match parsed {
                Ok(settings) => C::Settings { who: Box::new(who.into()), settings, respond_to: unit(waiter) },
                Err(e) => {
                    // Checked before it was logged; only a newer writer's
                    // setting this version does not know lands here.
                    tracing::error!(error = %e, "unknown setting in the room log; entry skipped");
                    if let Some(w) = waiter {
                        w.fail(e);
                    }
                    return None;
                }
            }
        }
        OpV1::GuestGone { uid } => C::GuestGone { uid },
        OpV1::Send { who, id, msg, tmid } => C::Send {
            who: Box::new(who.into()),
            params: Box::new(SendParams { id: Some(MessageId::from(id.as_str())), msg, tmid }),
            respond_to: match waiter {
                Some(Waiter::Message(tx)) => tx,
                _ => nobody(),
            },
        },
        OpV1::AddMember { who, target } => C::AddMember {
            who: Box::new(who.into()),
            target: target.into(),
            respond_to: match waiter {
                Some(Waiter::Bool(tx)) => tx,
                _ => nobody(),
            },
        },
        OpV1::RemoveMember { who, target } => {
            C::RemoveMember { who: Box::new(who.into()), target, respond_to: unit(waiter) }
        }
        OpV1::SetRole { who, target, role, add } => {
            let role = match role.as_str() {
                "owner" => RoleKind::Owner,
                "moderator" => RoleKind::Moderator,
                _ => RoleKind::Leader,
            };
            C::SetRole { who: Box::new(who.into()), target, role, add, respond_to: unit(waiter) }
        }
        OpV1::SetMuted { who, target, muted } => {
            C::SetMuted { who: Box::new(who.into()), target, muted, respond_to: unit(waiter) }
        }
        OpV1::SetArchived { who, archived } => {
            C::SetArchived { who: Box::new(who.into()), archived, respond_to: unit(waiter) }
        }
        OpV1::SetFlag { uid, flag, on } => {
            let flag = if flag == "open" { Flag::Open(on) } else { Flag::Favorite(on) };
            C::SetFlag { uid, flag, respond_to: unit(waiter) }
        }
    })
}

/// A setting as the `saveRoomSettings` pair it was parsed from.
fn setting_pair(s: &Setting) -> (String, Value) {
    let (k, v): (&str, Value) = match s {
        Setting::RoomName(v) => ("roomName", v.as_str().into()),
        Setting::RoomTopic(v) => ("roomTopic", v.as_str().into()),
        Setting::RoomDescription(v) => ("roomDescription", v.as_str().into()),
        Setting::RoomAnnouncement(v) => ("roomAnnouncement", v.as_str().into()),
        Setting::ReadOnly(v) => ("readOnly", (*v).into()),
        Setting::JoinCode(v) => ("joinCode", v.as_str().into()),
        Setting::Locked(v) => ("locked", (*v).into()),
        Setting::MaxParticipants(v) => ("maxParticipants", v.map_or(Value::Null, Value::from)),
        Setting::GuestAccess(v) => ("guestAccess", (*v).into()),
        Setting::GuestChat(v) => ("guestChat", (*v).into()),
        Setting::RoomType(t) => ("roomType", if *t == super::RoomType::Private { "p" } else { "c" }.into()),
        Setting::SystemMessages(v) => ("systemMessages", (*v).into()),
        Setting::Default(v) => ("default", (*v).into()),
        Setting::Favorite(v) => ("favorite", (*v).into()),
    };
    (k.to_owned(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting survives the trip through the log unchanged.
    #[test]
    fn settings_round_trip_through_their_pairs() {
        let all = [
            Setting::RoomName("n".into()),
            Setting::RoomTopic("t".into()),
            Setting::RoomDescription("d".into()),
            Setting::RoomAnnouncement("a".into()),
            Setting::ReadOnly(true),
            Setting::JoinCode("c".into()),
            Setting::Locked(true),
            Setting::MaxParticipants(Some(7)),
            Setting::MaxParticipants(None),
            Setting::GuestAccess(false),
            Setting::GuestChat(true),
            Setting::RoomType(super::super::RoomType::Private),
            Setting::RoomType(super::super::RoomType::Channel),
            Setting::SystemMessages(false),
            Setting::Default(true),
            Setting::Favorite(true),
        ];
        for s in all {
            let (k, v) = setting_pair(&s);
            let back = crate::method::parse_setting(&k, &v).expect("parses");
            assert_eq!(format!("{back:?}"), format!("{s:?}"));
        }
    }
}
