//! The room's recent history as the actor keeps it: most messages as the
//! shared `Arc<Message>` pages hand out, but a join or leave notice (a
//! system message whose text is its user's name: `uj`, `ul`) as the few
//! fields that differ from one notice to the next. Every guest's join adds
//! one, and an idle room keeps them for its life: as a full message each
//! was a 256-byte `Arc` plus copies of the room id and the user name
//! (~300 B with its strings); as a [`Notice`] it is 120 B and the user.
//! A page rebuilds the message, equal field for field to the one stored
//! (`Recent::new` keeps only what [`Message::system`] rebuilds exactly).

use super::model::{Message, UserRef};
use crate::ids::{MessageId, RoomId};
use crate::time::Millis;
use std::borrow::Cow;
use std::sync::Arc;

/// One message of the room's recent history.
pub(super) enum Recent {
    /// Shared with pages (and, with a delivered log, the compaction tail).
    Full(Arc<Message>),
    /// A system message `Message::system(id, rid, t, u.username, u, ts)`.
    Notice(Box<Notice>),
}

/// What a join or leave notice holds besides the room: its type, its time
/// and its user.
pub(super) struct Notice {
    id: MessageId,
    t: &'static str,
    ts: Millis,
    u: UserRef,
}

impl Recent {
    /// `m`, a message of room `rid`, compactly if it is a notice.
    pub(super) fn new(m: Message, rid: &RoomId) -> Self {
        // Matched whole, so a field added to `Message` must be considered
        // here before it compiles.
        let Message {
            id: _,
            rid: m_rid,
            msg,
            t,
            ts,
            u,
            updated_at,
            groupable,
            tmid,
            role,
            urls,
            mentions,
            channels,
            md,
        } = &m;
        // Only codes given in `SystemKind::code` (borrowed); a stored
        // message carries an owned code and stays as it is.
        let notice = matches!(t, Some(Cow::Borrowed(code)) if !code.is_empty())
            && m_rid == rid
            && *msg == u.username
            && updated_at == ts
            && *groupable == Some(false)
            && tmid.is_none()
            && role.is_none()
            && urls.is_none()
            && mentions.is_none()
            && channels.is_none()
            && md.is_none();
        match m {
            Message { id, t: Some(Cow::Borrowed(t)), ts, u, .. } if notice => {
                Recent::Notice(Box::new(Notice { id, t, ts, u }))
            }
            m => Recent::Full(Arc::new(m)),
        }
    }

    pub(super) fn ts(&self) -> Millis {
        match self {
            Recent::Full(m) => m.ts,
            Recent::Notice(n) => n.ts,
        }
    }

    pub(super) fn id(&self) -> &MessageId {
        match self {
            Recent::Full(m) => &m.id,
            Recent::Notice(n) => &n.id,
        }
    }

    /// The message as stored and sent, for a page of room `rid`.
    pub(super) fn message(&self, rid: &RoomId) -> Arc<Message> {
        match self {
            Recent::Full(m) => Arc::clone(m),
            Recent::Notice(n) => {
                Arc::new(Message::system(n.id.clone(), rid, n.t, n.u.username.clone(), n.u.clone(), n.ts))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::state::SystemKind;

    fn user() -> UserRef {
        UserRef { id: "guest-abc".into(), username: "Ann".into(), name: Some("Ann".into()) }
    }

    fn rid() -> RoomId {
        RoomId::from("room1")
    }

    /// As `publish` makes a join notice.
    fn joined() -> Message {
        let u = user();
        Message::system(
            MessageId::from("m1"),
            &rid(),
            SystemKind::UserJoined.code(),
            u.username.clone(),
            u,
            Millis(7),
        )
    }

    #[test]
    fn a_join_notice_is_kept_compactly_and_comes_back_the_same() {
        let kept = Recent::new(joined(), &rid());
        assert!(matches!(kept, Recent::Notice(_)));
        assert_eq!(*kept.message(&rid()), joined());
        assert_eq!((kept.ts(), kept.id().as_str()), (Millis(7), "m1"));
    }

    #[test]
    fn anything_a_notice_cannot_rebuild_stays_whole() {
        let mut others = Vec::new();
        let mut m = joined();
        m.role = Some(Cow::Borrowed("owner"));
        others.push(m);
        let mut m = joined();
        m.msg = "something else".into();
        others.push(m);
        let mut m = joined();
        m.t = Some(Cow::Owned("uj".into())); // restored from the store
        others.push(m);
        let mut m = joined();
        m.updated_at = Millis(8);
        others.push(m);
        let mut m = joined();
        m.rid = RoomId::from("room2");
        others.push(m);
        others.push(Message::user(MessageId::from("m2"), &rid(), "Ann".into(), user(), None, Millis(9)));
        for m in others {
            let kept = Recent::new(m.clone(), &rid());
            assert!(matches!(kept, Recent::Full(_)), "{m:?}");
            assert_eq!(*kept.message(&rid()), m);
        }
    }

    /// What a kept join notice costs besides its user's strings: the old
    /// `Arc<Message>` was 256 B, and copied the room id and the user name.
    #[test]
    fn a_notice_is_less_than_half_a_message() {
        let notice = std::mem::size_of::<Notice>();
        let message = std::mem::size_of::<Message>() + 2 * std::mem::size_of::<usize>();
        eprintln!("notice {notice} B, message in its Arc {message} B");
        assert!(notice <= 128 && 2 * notice <= message, "{notice} vs {message}");
        assert_eq!(std::mem::size_of::<Recent>(), 16);
    }
}
