//! What remains of a room that has ended and emptied: its final
//! [`RoomState`], answered without a task. Keeps "Room is no longer active"
//! (rather than "not found") for late joiners while releasing the actor and
//! its memory.
//!
//! Every answer comes from the same checks a live room runs
//! ([`RoomState::check_join_self`] and its siblings), on the final state
//! where nobody is a member or holds a room role, so the two cannot drift
//! apart. What those checks would let through is refused as inactive: an
//! ended room never changes again.

use super::handle::RoomCommand;
use super::view::RoomInfo;
use super::{RoomError, RoomState};

#[derive(Debug)]
pub struct EndedRoom {
    state: RoomState,
}

impl EndedRoom {
    /// The summary of `state`, a room that has ended and has no members.
    pub fn new(state: RoomState) -> Self {
        debug_assert!(!state.active && state.members.is_empty(), "only ended, empty rooms retire");
        EndedRoom { state }
    }

    /// The final room (unfiltered, as `RoomCommand::Doc` answers).
    pub fn info(&self) -> RoomInfo {
        self.state.info()
    }

    /// Answers `cmd` as the ended, empty room would have.
    pub fn answer(&self, cmd: RoomCommand) {
        use RoomCommand as C;
        let s = &self.state;
        match cmd {
            C::JoinSelf { who, code, respond_to } => {
                let r = s.check_join_self(&who, code.as_deref()).and(Err(RoomError::Inactive));
                let _ = respond_to.send(r);
            }
            C::JoinByCode { who, respond_to, .. } => {
                let r = s.check_join_by_code(&who).and(Err(RoomError::Inactive));
                let _ = respond_to.send(r);
            }
            C::ResumeGuest { respond_to, .. } => {
                // No members, so no guest seat to resume.
                let _ = respond_to.send(Ok(None));
            }
            C::Leave { uid, respond_to } => {
                let r = s.check_leave(&uid).and(Err(RoomError::Inactive));
                let _ = respond_to.send(r);
            }
            C::End { who, respond_to } => {
                let r = s.check_end(&who).and(Err(RoomError::Inactive));
                let _ = respond_to.send(r);
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
            C::SetFlag { uid, respond_to, .. } => {
                let r = s.check_flag(&uid).and(Err(RoomError::Inactive));
                let _ = respond_to.send(r);
            }
            C::Doc { respond_to } => {
                let _ = respond_to.send(Ok(self.info()));
            }
            C::DocFor { uid, respond_to } => {
                let _ = respond_to.send(s.info_for(&uid));
            }
            C::SubscriptionDoc { uid, respond_to } => {
                let _ = respond_to.send(Ok(s.subscription_info(&uid)));
            }
            C::MemberDoc { uid, respond_to } => {
                let _ = respond_to.send(Ok(s.member_info(&uid)));
            }
            C::Roles { uid, respond_to } => {
                let _ = respond_to.send(s.role_entries(&uid));
            }
            C::Participants { uid, respond_to } => {
                let _ = respond_to.send(s.participants(&uid));
            }
            C::History { params, respond_to } => {
                let uid = params.uid;
                // Readable as the live room would be; the history stays on
                // disk but is not kept in memory for a released room.
                let r = if s.can_read(&uid, true) { Ok(Vec::new()) } else { Err(RoomError::NotAllowed) };
                let _ = respond_to.send(r);
            }
            C::Subscribe { respond_to, .. } => {
                // Nothing will ever be published here.
                let _ = respond_to.send(Err(RoomError::NotAllowed));
            }
            C::Unsubscribe { respond_to, .. } => {
                let _ = respond_to.send(Ok(()));
            }
            // Nothing left to reload.
            C::ApplySnapshot { respond_to, .. } => {
                let _ = respond_to.send(Ok(true));
            }
            C::Send { who, params, respond_to } => {
                // No member, so no id lookup is reached.
                let r = s.check_send(&who, params.id.as_ref(), |_| Ok(false));
                let _ = respond_to.send(r.and(Err(RoomError::Inactive)));
            }
            // A log entry that reaches an ended, empty room cannot change
            // it: every rule refuses an ended room (the live room's replicas
            // on other nodes decide the same).
            C::ConnClosed { .. }
            | C::GuestExpired { .. }
            | C::ReapGuests { .. }
            | C::Apply(_)
            | C::Reseed { .. }
            | C::Load { .. }
            | C::Unlogged { .. }
            | C::Sweep
            | C::Notify(_) => {}
        }
    }
}
