//! What remains of a room that has ended and emptied: its final document,
//! answered without a task. Keeps "Room is no longer active" (rather than
//! "not found") for late joiners while releasing the actor and its memory.

use super::actor::RoomCommand;
use super::{RoomError, RoomType};
use serde_json::Value;

#[derive(Debug)]
pub struct EndedRoom {
    pub doc: Value,
    pub t: RoomType,
}

impl EndedRoom {
    /// Answers `cmd` as the ended, empty room would have.
    pub fn answer(&self, cmd: RoomCommand) {
        use RoomCommand as C;
        let public = self.t == RoomType::Channel;
        match cmd {
            C::JoinSelf { respond_to, .. } => {
                let _ = respond_to.send(Err(if public { RoomError::Inactive } else { RoomError::NotAllowed }));
            }
            C::JoinByCode { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::Inactive));
            }
            C::ResumeGuest { respond_to, .. } => {
                let _ = respond_to.send(Ok(None));
            }
            C::Leave { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotInRoom));
            }
            C::End { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::Inactive));
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
                let r = if public && !uid.is_guest() { Ok(self.doc.clone()) } else { Err(RoomError::NotAllowed) };
                let _ = respond_to.send(r);
            }
            C::SubscriptionDoc { respond_to, .. } => {
                let _ = respond_to.send(Ok(None));
            }
            C::Roles { respond_to, .. } => {
                let _ = respond_to.send(Ok(Vec::new()));
            }
            C::History { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotAllowed));
            }
            C::Subscribe { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotAllowed));
            }
            C::Unsubscribe { respond_to, .. } => {
                let _ = respond_to.send(Ok(()));
            }
            C::Send { respond_to, .. } => {
                let _ = respond_to.send(Err(RoomError::NotAllowed));
            }
            C::ConnClosed { .. } | C::GuestExpired { .. } | C::Notify { .. } => {}
        }
    }
}
