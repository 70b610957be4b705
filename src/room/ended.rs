//! What remains of a room that has ended and emptied: its final document,
//! answered without a task. Keeps "Room is no longer active" (rather than
//! "not found") for late joiners while releasing the actor and its memory.

use super::actor::RoomCommand;
use super::{RoomError, RoomRoles, RoomType};
use crate::permissions::{Permission, allowed};
use serde_json::Value;

#[derive(Debug)]
pub struct EndedRoom {
    pub doc: Value,
    pub t: RoomType,
    pub archived: bool,
    pub guest_access: bool,
}

impl EndedRoom {
    /// Answers `cmd` as the ended, empty room would have.
    pub fn answer(&self, cmd: RoomCommand) {
        use RoomCommand as C;
        let public = self.t == RoomType::Channel;
        match cmd {
            // The same checks, in the same order, as a live room's joins.
            C::JoinSelf { who, respond_to, .. } => {
                let e = match () {
                    _ if !public || who.guest => RoomError::NotAllowed,
                    _ if self.archived => RoomError::Archived,
                    _ => RoomError::Inactive,
                };
                let _ = respond_to.send(Err(e));
            }
            C::JoinByCode { who, respond_to, .. } => {
                let e = match () {
                    _ if who.guest && !self.guest_access => RoomError::GuestsNotAllowed,
                    _ if self.t == RoomType::Direct => RoomError::NotAllowed,
                    _ if self.archived => RoomError::Archived,
                    _ => RoomError::Inactive,
                };
                let _ = respond_to.send(Err(e));
            }
            C::ResumeGuest { respond_to, .. } => {
                let _ = respond_to.send(Ok(None));
            }
            C::Leave { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotInRoom));
            }
            C::End { who, respond_to } => {
                // Nobody holds a room role any more; only admins may end rooms.
                let e = if allowed(Permission::EndRoom, &who, RoomRoles::NONE) {
                    RoomError::Inactive
                } else {
                    RoomError::ActionNotAllowed("Ending the room")
                };
                let _ = respond_to.send(Err(e));
            }
            C::Settings { respond_to, .. }
            | C::SetRole { respond_to, .. }
            | C::SetMuted { respond_to, .. }
            | C::SetArchived { respond_to, .. }
            | C::RemoveMember { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::Inactive));
            }
            C::AddMember { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::Inactive));
            }
            C::SetFlag { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotInRoom));
            }
            C::Doc { respond_to } => {
                let _ = respond_to.send(Ok(self.doc.clone()));
            }
            C::DocFor { uid, respond_to } => {
                let r =
                    if public && !uid.is_guest() { Ok(self.doc.clone()) } else { Err(RoomError::NotAllowed) };
                let _ = respond_to.send(r);
            }
            C::SubscriptionDoc { respond_to, .. } => {
                let _ = respond_to.send(Ok(None));
            }
            C::Roles { uid, respond_to } | C::History { uid, respond_to, .. } => {
                // Readable as a live room would be: public channels for any
                // signed-in user. Nobody holds roles; history stays on disk
                // but is not kept in memory for a released room.
                let r = if public && !uid.is_guest() { Ok(Vec::new()) } else { Err(RoomError::NotAllowed) };
                let _ = respond_to.send(r);
            }
            C::Subscribe { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotAllowed));
            }
            C::Unsubscribe { respond_to, .. } => {
                let _ = respond_to.send(Ok(()));
            }
            C::Send { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotInRoom));
            }
            C::ConnClosed { .. } | C::GuestExpired { .. } | C::Notify { .. } => {}
        }
    }
}
