//! Stored rows stay what older roomd wrote: a data directory of today's
//! schema (tests/fixtures/schema-v3.sql, rows written by roomd before the
//! row types existed) restores whole, and re-encoding its rows gives the
//! same bytes, so no data migration is needed.

use roomd::durability::{Durability, Snapshot};
use roomd::ids::{RoomId, UserId};
use roomd::room::{Member, Message, RoomRoles, RoomState, RoomType, SeatToken, UserRef};
use roomd::store::rows::{MemberRowV1, MessageRowV1, RoomRowV1, UserRowV1};
use roomd::store::{SqliteStore, SyncMode};
use roomd::time::Millis;
use serde_json::json;
use std::path::PathBuf;

const FIXTURE: &str = include_str!("../fixtures/schema-v3.sql");
const ROOM: &str = "osjNTRi8EughL7cQg";
const GROUP: &str = "mtpbRi9ywTev4fddu";
const DM: &str = "BjPS25qiyu8P2Z3H5";

fn fixture_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "roomd-rows-{}-{}",
        std::process::id(),
        crate::support::unique("d")
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let conn = rusqlite::Connection::open(d.join("roomd.sqlite3")).unwrap();
    conn.execute_batch(FIXTURE).unwrap();
    d
}

fn docs(dir: &std::path::Path, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("roomd.sqlite3")).unwrap();
    let mut st = conn.prepare(&format!("SELECT doc FROM {table}")).unwrap();
    st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn user(id: &str, username: &str, name: Option<&str>) -> UserRef {
    UserRef { id: UserId::from(id), username: username.into(), name: name.map(Into::into) }
}

#[tokio::test]
async fn a_data_dir_of_todays_schema_restores_every_row() {
    let dir = fixture_dir();
    let store = SqliteStore::open(&dir, SyncMode::Normal, 100).unwrap();
    let snap = store.restore().await.unwrap();
    assert_fixture_rows(&snap, true, false);
    store.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asserts `snap` holds the fixture's rows field by field: schema-v3.sql's,
/// and the earlier and later fixtures' that share them (tests/it/backup.rs).
/// `revoked`: the fixture has the v3 revoked tokens; `guest`: the v4 guest
/// seat in the fixture room.
pub(crate) fn assert_fixture_rows(snap: &Snapshot, revoked: bool, guest: bool) {
    let mut users = snap.users.clone();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(users, vec![user("id-ann", "ann", Some("Ann A")), user("id-bob", "bob", None)]);
    let mut owners = snap.usernames.clone();
    owners.sort();
    assert_eq!(owners, vec![("ann".into(), UserId::from("id-ann")), ("bob".into(), UserId::from("id-bob"))]);
    // The expired token is forgotten; the live one is kept.
    if revoked {
        assert_eq!(snap.revoked, vec![("revoked-token-key".to_owned(), 4_102_444_800)]);
    } else {
        assert!(snap.revoked.is_empty(), "{:?}", snap.revoked);
    }

    assert_eq!(snap.rooms.len(), 3);
    let room = |id: &str| -> &(RoomState, Vec<Message>) {
        snap.rooms.iter().find(|(s, _)| s.id == RoomId::from(id)).unwrap_or_else(|| panic!("room {id}"))
    };

    let (s, msgs) = room(ROOM);
    assert_eq!(
        (s.name.as_str(), s.display_name.as_str(), s.kind),
        ("fixture-room", "fixture-room", RoomType::Channel)
    );
    assert_eq!(s.code.as_str(), "qro-jef-cwj");
    assert_eq!(s.creator, user("id-ann", "ann", None));
    assert_eq!(s.host_id, UserId::from("id-ann"));
    assert_eq!((s.created_at, s.updated_at), (Millis(1_796_221_704_114), Millis(1_796_221_704_120)));
    assert_eq!(
        (s.read_only, s.archived, s.locked, s.active, s.guest_access),
        (false, false, false, true, false)
    );
    assert_eq!(s.join_code.as_deref(), Some("s3cret"));
    assert_eq!(s.max_participants, Some(5));
    assert_eq!(serde_json::Value::Object(s.custom_fields.clone()), json!({"dept": {"n": 1}}));
    assert_eq!((s.default, s.system_messages, s.featured), (false, true, false));
    assert_eq!(s.topic.as_deref(), Some("the topic"));
    assert_eq!(s.description, None);
    assert_eq!(s.announcement.as_deref(), Some("hear"));
    // The count of stored messages, not the row's stale `msgs`.
    assert_eq!(s.message_count, 7);
    assert_eq!(s.members.len(), 2 + guest as usize);
    if guest {
        let g = &s.members[&UserId::from("guest-fixture1")];
        assert_eq!(g.user, user("guest-fixture1", "Gina", Some("Gina")));
        assert_eq!((g.participant_id.as_str(), g.joined_at), ("gp1fixtureSeat01", Millis(1_796_221_704_130)));
        assert_eq!((g.guest, g.muted, g.roles), (true, true, RoomRoles::NONE));
        let seat = g.guest_token.as_ref().expect("the seat's token digest");
        assert!(seat.is(&SeatToken::digest("fixture-guest-token-0123456789abc")));
        assert!(!seat.is(&SeatToken::digest("another token")));
    }
    let ann = &s.members[&UserId::from("id-ann")];
    assert_eq!(ann.user, user("id-ann", "ann", Some("Ann A")));
    assert_eq!(ann.roles, RoomRoles::OWNER);
    assert_eq!(ann.participant_id, "3x6x8x4yjiKWkHeif");
    assert_eq!(ann.joined_at, Millis(1_796_221_704_114));
    assert_eq!((ann.guest, ann.muted, ann.favorite, ann.open), (false, false, false, true));
    let bob = &s.members[&UserId::from("id-bob")];
    assert_eq!(bob.roles, RoomRoles::MODERATOR);
    assert_eq!((bob.muted, bob.favorite, bob.open), (true, true, true));
    assert_eq!(bob.guest_token, None);

    // Every message, oldest first, with its optional fields.
    let ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "3s7eacMz6waZ8FjXg",
            "pSEZwAtahD6FTQWLy",
            "jbetmstQFHHKLk8s2",
            "RcwLrrRWLW867a7oB",
            "FF2FshZPKb2aJKag5",
            "fixtureMsgId00001",
            "JRFcCrnJTJ2yPrRZM"
        ]
    );
    let role = &msgs[3];
    assert_eq!(
        (role.t.as_deref(), role.role.as_deref(), role.msg.as_str()),
        (Some("subscription-role-added"), Some("moderator"), "bob")
    );
    assert_eq!(role.groupable, Some(false));
    let text = &msgs[5];
    assert_eq!(text.msg, "hello \"world\" é");
    assert_eq!((text.t.as_deref(), text.groupable, text.urls, text.md), (None, None, Some([]), Some([])));
    assert_eq!(text.u, user("id-ann", "ann", Some("Ann A")));
    assert_eq!((text.ts, text.updated_at), (Millis(1_796_221_704_122), Millis(1_796_221_704_122)));
    assert_eq!(msgs[6].tmid.as_deref(), Some("fixtureMsgId00001"));

    let (g, gmsgs) = room(GROUP);
    assert_eq!(
        (g.kind, g.read_only, g.join_code.as_deref(), g.max_participants),
        (RoomType::Private, true, None, None)
    );
    assert_eq!((g.members.len(), gmsgs.len(), g.message_count), (1, 0, 0));
    let (d, _) = room(DM);
    assert_eq!(d.kind, RoomType::Direct);
    assert!(d.members.values().all(|m| m.roles == RoomRoles::NONE));
    assert_eq!(d.members.len(), 2);
}

/// Decoding an old row and writing it again, through the domain types,
/// gives the bytes roomd wrote before: the stored JSON did not change.
#[test]
fn rows_written_today_are_byte_identical_to_old_rows() {
    let dir = fixture_dir();
    let rooms = docs(&dir, "rooms");
    let members = docs(&dir, "members");
    let messages = docs(&dir, "messages");
    let users = docs(&dir, "users");
    assert_eq!((rooms.len(), members.len(), messages.len(), users.len()), (3, 5, 7, 2));
    for doc in rooms {
        let state = RoomState::from(serde_json::from_str::<RoomRowV1>(&doc).unwrap());
        assert_eq!(serde_json::to_string(&RoomRowV1::from(&state)).unwrap(), doc);
    }
    for doc in members {
        let m = Member::from(serde_json::from_str::<MemberRowV1>(&doc).unwrap());
        assert_eq!(serde_json::to_string(&MemberRowV1::from(&m)).unwrap(), doc);
    }
    for doc in messages {
        let m = Message::from(serde_json::from_str::<MessageRowV1>(&doc).unwrap());
        assert_eq!(serde_json::to_string(&MessageRowV1::from(&m)).unwrap(), doc);
    }
    for doc in users {
        let u = UserRef::from(serde_json::from_str::<UserRowV1>(&doc).unwrap());
        assert_eq!(serde_json::to_string(&UserRowV1::from(&u)).unwrap(), doc);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
