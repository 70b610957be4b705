//! The SQLite side of the store: schema and migrations, loading at start,
//! and the writer thread's group-commit loop.

use super::rows::{GuestSeatRowV1, MemberRowV1, MessageRowV1, RoomRowV1, UserRowV1, encode};
use super::{Request, StoreError, SyncMode, Work};
use crate::durability::{DurabilityError, Fact, RoomChange, Snapshot};
use crate::ids::UserId;
use crate::room::RoomState;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::time::Instant;
use tokio::sync::mpsc;

/// Schema migrations, in order; entry `i` takes the database from version
/// `i` to `i + 1`. `PRAGMA user_version` records the version reached.
pub const MIGRATIONS: &[&str] = &[
    // v1: rooms, members, messages, users.
    "CREATE TABLE rooms (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
     CREATE TABLE members (rid TEXT NOT NULL, uid TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (rid, uid));
     CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, rid TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE users (id TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    // v2: per-room history reads and duplicate-id checks by index.
    "CREATE INDEX messages_by_room ON messages (rid, seq);
     CREATE UNIQUE INDEX messages_by_id ON messages (rid, id);",
    // v3: who owns each username (normalised: trimmed, lowercase), and the
    // tokens ended by `logout` until they expire. `backfill` fills the
    // owners of older data directories (first stored user wins).
    "CREATE TABLE usernames (name TEXT PRIMARY KEY, uid TEXT NOT NULL);
     CREATE TABLE revoked_tokens (key TEXT PRIMARY KEY, exp INTEGER NOT NULL);",
    // v4: guests' seats (`GuestSeatRowV1`), so a guest reclaims its seat
    // after a restart. Apart from `members`: a seat holds a token digest
    // and is released by the guest grace, a membership is a user's. Older
    // roomd refuses a v4 directory (newer schema) rather than dropping
    // seats it does not know.
    "CREATE TABLE guest_seats (rid TEXT NOT NULL, uid TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (rid, uid));",
    // v5: each message's `ts` beside its document, indexed per room, so
    // `loadHistory` pages older than the in-memory window are an index
    // range read (`ts < end`) and retention deletes by time. Older rows get
    // theirs from the document (`{"$date": ms}`); an unreadable one (which
    // `load` skips anyway) gets 0 rather than failing the migration.
    "ALTER TABLE messages ADD COLUMN ts INTEGER NOT NULL DEFAULT 0;
     UPDATE messages SET ts = CASE WHEN json_valid(doc)
         THEN COALESCE(json_extract(doc, '$.ts.\"$date\"'), 0) ELSE 0 END;
     CREATE INDEX messages_by_room_ts ON messages (rid, ts);",
];

pub const LATEST_SCHEMA: i64 = MIGRATIONS.len() as i64;

/// Largest number of queued requests folded into one transaction.
const MAX_GROUP: usize = 1024;

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

pub(crate) fn open(dir: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Open { path: dir.display().to_string(), reason: e.to_string() })?;
    let path = dir.join("roomd.sqlite3");
    let mut conn = Connection::open(&path)
        .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
    let sync = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db_err)?;
    migrate(&mut conn)?;
    // Tokens past their expiry are refused anyway; forget them.
    let now = crate::auth::now_secs() as i64;
    conn.execute("DELETE FROM revoked_tokens WHERE exp < ?1", [now]).map_err(db_err)?;
    Ok(conn)
}

/// Brings the schema to [`LATEST_SCHEMA`], refusing a newer one.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
    if found > LATEST_SCHEMA {
        return Err(StoreError::TooNew { found, supported: LATEST_SCHEMA });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        backfill(&tx, i + 1)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

/// Data steps of migrations that SQL alone cannot do (Unicode-aware
/// lowercase), run in the migration's transaction.
fn backfill(tx: &rusqlite::Transaction<'_>, version: usize) -> Result<(), StoreError> {
    if version == 3 {
        // Users stored before usernames had owners: the earliest row keeps
        // a name several users shared.
        let mut users = tx.prepare("SELECT id, doc FROM users ORDER BY rowid").map_err(db_err)?;
        let rows: Vec<(String, String)> = users
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let mut claim =
            tx.prepare("INSERT OR IGNORE INTO usernames (name, uid) VALUES (?1, ?2)").map_err(db_err)?;
        for (id, doc) in rows {
            if let Ok(u) = serde_json::from_str::<UserRowV1>(&doc) {
                claim.execute(params![crate::users::normalize(&u.username), id]).map_err(db_err)?;
            }
        }
    }
    Ok(())
}

/// Frees a username so another user may take it (`roomd free-username`).
/// Returns the id of the user that held it, if any.
pub fn free_username(dir: &Path, username: &str) -> Result<Option<String>, StoreError> {
    let path = dir.join("roomd.sqlite3");
    if !path.exists() {
        return Err(StoreError::Open { path: path.display().to_string(), reason: "no database here".into() });
    }
    let mut conn = Connection::open(&path)
        .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
    migrate(&mut conn)?;
    let name = crate::users::normalize(username);
    let owner: Option<String> = conn
        .query_row("SELECT uid FROM usernames WHERE name = ?1", [&name], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    conn.execute("DELETE FROM usernames WHERE name = ?1", [&name]).map_err(db_err)?;
    Ok(owner)
}

/// Whether room `rid` has a stored message `id` (by the unique index).
pub(crate) fn message_exists(conn: &Connection, rid: &str, id: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM messages WHERE rid = ?1 AND id = ?2")
        .and_then(|mut st| st.exists(params![rid, id]))
        .map_err(db_err)
}

/// Up to `limit` stored messages of room `rid` with `floor <= ts < before`,
/// newest first (by the `(rid, ts)` index). Unreadable rows are logged and
/// skipped.
pub(crate) fn messages_before(
    conn: &Connection,
    rid: &str,
    before: i64,
    floor: i64,
    limit: usize,
) -> Result<Vec<crate::room::Message>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT doc FROM messages WHERE rid = ?1 AND ts < ?2 AND ts >= ?3 ORDER BY ts DESC LIMIT ?4",
        )
        .map_err(db_err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for doc in st.query_map(params![rid, before, floor, limit], |r| r.get::<_, String>(0)).map_err(db_err)? {
        let doc = doc.map_err(db_err)?;
        match serde_json::from_str::<MessageRowV1>(&doc) {
            Ok(m) => out.push(m.into()),
            Err(e) => tracing::error!(room = %rid, error = %e, "skipping unreadable message row"),
        }
    }
    Ok(out)
}

/// The `ts` below which room `rid`'s messages fall outside `policy`
/// (too old, or older than the `count` newest); `None` if none do.
pub(crate) fn prune_cutoff(
    conn: &Connection,
    rid: &str,
    policy: &super::Retention,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let mut cutoff =
        policy.max_age.map(|age| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    if let Some(count) = policy.max_count {
        // The oldest message kept: the `count`-th newest.
        let kept: Option<i64> = conn
            .prepare_cached("SELECT ts FROM messages WHERE rid = ?1 ORDER BY ts DESC LIMIT 1 OFFSET ?2")
            .and_then(|mut st| {
                st.query_row(params![rid, i64::try_from(count.saturating_sub(1)).unwrap_or(i64::MAX)], |r| {
                    r.get(0)
                })
                .optional()
            })
            .map_err(db_err)?;
        if let Some(kept) = kept {
            cutoff = Some(cutoff.map_or(kept, |c| c.max(kept)));
        }
    }
    let Some(cutoff) = cutoff else { return Ok(None) };
    let any = conn
        .prepare_cached("SELECT 1 FROM messages WHERE rid = ?1 AND ts < ?2 LIMIT 1")
        .and_then(|mut st| st.exists(params![rid, cutoff]))
        .map_err(db_err)?;
    Ok(any.then_some(cutoff))
}

/// The rooms that have stored messages, for the pruner's rounds.
pub(crate) fn rooms_with_messages(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached("SELECT id FROM rooms").map_err(db_err)?;
    st.query_map([], |r| r.get::<_, String>(0)).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)
}

/// Deletes at most `batch` messages of room `rid` older than `before`, in a
/// transaction of its own; returns how many went.
fn prune(conn: &mut Connection, rid: &str, before: i64, batch: usize) -> Result<usize, StoreError> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "DELETE FROM messages WHERE seq IN \
         (SELECT seq FROM messages WHERE rid = ?1 AND ts < ?2 ORDER BY ts LIMIT ?3)",
    )
    .and_then(|mut st| st.execute(params![rid, before, batch]))
    .map_err(db_err)
}

/// A read-only connection to the database in `dir` (WAL: reads never wait
/// for the writer).
pub(crate) fn reader(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join("roomd.sqlite3");
    Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })
}

/// Reads everything needed to rebuild rooms and users (the last `history`
/// messages of each room). Unreadable rows are logged and skipped.
pub(crate) fn load(conn: &Connection, history: usize) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    let mut names = conn.prepare("SELECT name, uid FROM usernames").map_err(db_err)?;
    snap.usernames = names
        .query_map([], |r| Ok((r.get(0)?, UserId(r.get(1)?))))
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let now = crate::auth::now_secs() as i64;
    let mut revoked = conn.prepare("SELECT key, exp FROM revoked_tokens WHERE exp >= ?1").map_err(db_err)?;
    snap.revoked = revoked
        .query_map([now], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let mut users = conn.prepare("SELECT doc FROM users").map_err(db_err)?;
    for doc in users.query_map([], |r| r.get::<_, String>(0)).map_err(db_err)? {
        let doc = doc.map_err(db_err)?;
        match serde_json::from_str::<UserRowV1>(&doc) {
            Ok(u) => snap.users.push(u.into()),
            Err(e) => tracing::error!(error = %e, "skipping unreadable user row"),
        }
    }
    let mut rooms = conn.prepare("SELECT id, doc FROM rooms").map_err(db_err)?;
    let mut members = conn.prepare("SELECT doc FROM members WHERE rid = ?1").map_err(db_err)?;
    let mut guests = conn.prepare("SELECT doc FROM guest_seats WHERE rid = ?1").map_err(db_err)?;
    let mut messages =
        conn.prepare("SELECT doc FROM messages WHERE rid = ?1 ORDER BY seq DESC LIMIT ?2").map_err(db_err)?;
    let mut count = conn.prepare("SELECT COUNT(*) FROM messages WHERE rid = ?1").map_err(db_err)?;
    let rows: Vec<(String, String)> = rooms
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    for (id, doc) in rows {
        let mut state: RoomState = match serde_json::from_str::<RoomRowV1>(&doc) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(room = %id, error = %e, "skipping unreadable room row");
                continue;
            }
        };
        for doc in members.query_map([&id], |r| r.get::<_, String>(0)).map_err(db_err)? {
            let doc = doc.map_err(db_err)?;
            match serde_json::from_str::<MemberRowV1>(&doc) {
                Ok(m) => {
                    state.members.insert(m.user.id.clone(), m.into());
                }
                Err(e) => tracing::error!(room = %id, error = %e, "skipping unreadable member row"),
            }
        }
        for doc in guests.query_map([&id], |r| r.get::<_, String>(0)).map_err(db_err)? {
            let doc = doc.map_err(db_err)?;
            match serde_json::from_str::<GuestSeatRowV1>(&doc) {
                Ok(g) => {
                    state.members.insert(g.user.id.clone(), g.into());
                }
                Err(e) => tracing::error!(room = %id, error = %e, "skipping unreadable guest seat row"),
            }
        }
        let mut msgs = Vec::new();
        for doc in
            messages.query_map(params![&id, history as i64], |r| r.get::<_, String>(0)).map_err(db_err)?
        {
            let doc = doc.map_err(db_err)?;
            match serde_json::from_str::<MessageRowV1>(&doc) {
                Ok(m) => msgs.push(m.into()),
                Err(e) => tracing::error!(room = %id, error = %e, "skipping unreadable message row"),
            }
        }
        msgs.reverse();
        state.message_count =
            count.query_row([&id], |r| r.get::<_, i64>(0)).optional().map_err(db_err)?.unwrap_or(0) as u64;
        snap.rooms.push((state, msgs));
    }
    Ok(snap)
}

/// The writer thread: waits for a request, folds in every request already
/// queued behind it, commits them in one transaction, then answers them all.
pub(crate) fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Request>) {
    let mut group = Vec::new();
    let mut prunes = Vec::new();
    let mut shutdown = None;
    while let Some(first) = rx.blocking_recv() {
        group.clear();
        let push = |r: Request, group: &mut Vec<_>, prunes: &mut Vec<_>, shutdown: &mut Option<_>| match r {
            Request::Commit { work, done } => group.push((work, done)),
            Request::Prune(p) => prunes.push(p),
            Request::Shutdown { done } => *shutdown = Some(done),
        };
        push(first, &mut group, &mut prunes, &mut shutdown);
        while group.len() < MAX_GROUP && shutdown.is_none() {
            match rx.try_recv() {
                Ok(r) => push(r, &mut group, &mut prunes, &mut shutdown),
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            let started = Instant::now();
            let n_ops: usize = group.iter().map(|(work, _)| work.len()).sum();
            let result = commit(&mut conn, &group).map_err(DurabilityError::Store);
            crate::store::record_commit(group.len(), n_ops, started.elapsed().as_secs_f64());
            if let Err(e) = &result {
                // Fail-stop, as databases do on a failed fsync: memory is now
                // ahead of disk, and continuing would acknowledge changes
                // that a restart loses. The requests in this group get an
                // internal error; a supervisor restarts roomd from the last
                // commit, which is consistent.
                tracing::error!(error = %e, "store commit failed; stopping");
                for (_, done) in group.drain(..) {
                    let _ = done.send(result.clone());
                }
                std::process::exit(70);
            }
            for (_, done) in group.drain(..) {
                let _ = done.send(result.clone());
            }
        }
        // After the group's commit, so a retention batch (small, in its own
        // transaction) never holds up the changes queued beside it.
        for p in prunes.drain(..) {
            let r = prune(&mut conn, &p.rid, p.before, p.batch);
            if let Err(e) = &r {
                tracing::error!(room = %p.rid, error = %e, "history retention delete failed");
            }
            let _ = p.done.send(r.unwrap_or(0));
        }
        if let Some(done) = shutdown.take() {
            rx.close();
            // Answer anything that raced in behind the shutdown request
            // (a dropped prune's pruner sees its channel closed).
            while let Ok(r) = rx.try_recv() {
                if let Request::Commit { done, .. } = r {
                    let _ = done.send(Err(DurabilityError::Closed));
                }
            }
            let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
            let _ = done.send(());
            tracing::info!("store closed");
            return;
        }
    }
}

type Group = Vec<(Work, tokio::sync::oneshot::Sender<Result<(), DurabilityError>>)>;

fn commit(conn: &mut Connection, group: &Group) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(db_err)?;
    for (work, _) in group {
        match work {
            Work::Room(batch) => {
                for change in &batch.changes {
                    apply_room(&tx, batch.rid.as_str(), change).map_err(db_err)?;
                }
            }
            Work::Facts(facts) => {
                for fact in facts {
                    apply_fact(&tx, fact).map_err(db_err)?;
                }
            }
        }
    }
    tx.commit().map_err(db_err)
}

fn apply_room(tx: &rusqlite::Transaction<'_>, rid: &str, change: &RoomChange) -> rusqlite::Result<()> {
    match change {
        RoomChange::Room(row) => {
            tx.prepare_cached("INSERT OR REPLACE INTO rooms (id, doc) VALUES (?1, ?2)")?
                .execute(params![rid, encode(row)])?;
        }
        RoomChange::Member(row) => {
            tx.prepare_cached("INSERT OR REPLACE INTO members (rid, uid, doc) VALUES (?1, ?2, ?3)")?
                .execute(params![rid, row.user.id.as_str(), encode(row)])?;
        }
        RoomChange::GuestSeat(row) => {
            tx.prepare_cached("INSERT OR REPLACE INTO guest_seats (rid, uid, doc) VALUES (?1, ?2, ?3)")?
                .execute(params![rid, row.user.id.as_str(), encode(row)])?;
        }
        RoomChange::MemberLeft(uid) => {
            let sql = if uid.is_guest() {
                "DELETE FROM guest_seats WHERE rid = ?1 AND uid = ?2"
            } else {
                "DELETE FROM members WHERE rid = ?1 AND uid = ?2"
            };
            tx.prepare_cached(sql)?.execute(params![rid, uid.as_str()])?;
        }
        RoomChange::Message(row) => {
            // Never overwrite someone's message. The room refuses a repeated
            // `_id` before it gets here (window, in-flight set, then this
            // table's index), so this only guards against a bug.
            tx.prepare_cached("INSERT OR IGNORE INTO messages (rid, id, ts, doc) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![rid, row.id.as_str(), row.ts.0, encode(row)])?;
        }
    }
    Ok(())
}

fn apply_fact(tx: &rusqlite::Transaction<'_>, fact: &Fact) -> rusqlite::Result<()> {
    match fact {
        Fact::User(row) => {
            tx.prepare_cached("INSERT OR REPLACE INTO users (id, doc) VALUES (?1, ?2)")?
                .execute(params![row.id.as_str(), encode(row)])?;
        }
        Fact::UsernameOwner { name, uid } => {
            // The directory grants each name once; a row already there
            // belongs to the same user.
            tx.prepare_cached("INSERT OR IGNORE INTO usernames (name, uid) VALUES (?1, ?2)")?
                .execute(params![name, uid.as_str()])?;
        }
        Fact::RevokedToken { key, exp } => {
            tx.prepare_cached("INSERT OR REPLACE INTO revoked_tokens (key, exp) VALUES (?1, ?2)")?
                .execute(params![key, i64::try_from(*exp).unwrap_or(i64::MAX)])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;
    use std::time::Duration;

    /// A migrated in-memory database with messages `ts` = 1..=n in room `r`.
    fn db(n: i64) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        for ts in 1..=n {
            conn.execute(
                "INSERT INTO messages (rid, id, ts, doc) VALUES ('r', ?1, ?2, '{}')",
                params![format!("m{ts}"), ts],
            )
            .unwrap();
        }
        conn
    }

    fn left(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn v5_backfills_ts_from_older_message_documents() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO messages (rid, id, doc) VALUES ('r', 'a', '{\"ts\":{\"$date\":1234}}'), ('r', 'b', 'junk')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let ts: Vec<i64> = conn
            .prepare("SELECT ts FROM messages ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ts, vec![1234, 0]);
    }

    #[test]
    fn retention_cutoffs_by_age_by_count_and_both() {
        let conn = db(1000);
        let keep_all = Retention::default();
        assert_eq!(prune_cutoff(&conn, "r", &keep_all, 2000).unwrap(), None);
        let by_age = Retention { max_age: Some(Duration::from_millis(1500)), max_count: None };
        // now 2000, 1.5 s: keep ts >= 500.
        assert_eq!(prune_cutoff(&conn, "r", &by_age, 2000).unwrap(), Some(500));
        let by_count = Retention { max_age: None, max_count: Some(100) };
        assert_eq!(prune_cutoff(&conn, "r", &by_count, 2000).unwrap(), Some(901));
        assert_eq!(
            prune_cutoff(&conn, "r", &Retention { max_count: Some(5000), ..by_count }, 0).unwrap(),
            None
        );
        let both = Retention { max_age: Some(Duration::from_millis(1950)), max_count: Some(100) };
        assert_eq!(prune_cutoff(&conn, "r", &both, 2000).unwrap(), Some(901));
        assert_eq!(prune_cutoff(&conn, "other", &both, 2000).unwrap(), None);
    }

    #[test]
    fn prune_deletes_in_batches_oldest_first() {
        let mut conn = db(1200);
        assert_eq!(prune(&mut conn, "r", 1001, 500).unwrap(), 500);
        assert_eq!(prune(&mut conn, "r", 1001, 500).unwrap(), 500);
        assert_eq!(prune(&mut conn, "r", 1001, 500).unwrap(), 0);
        assert_eq!(left(&conn), 200);
        let kept = messages_before(&conn, "r", i64::MAX, 0, 10_000).unwrap_or_default();
        // Documents are `{}` (unreadable as messages) so none decode; the
        // index range still has exactly ts 1001..=1200.
        assert!(kept.is_empty());
        let min: i64 = conn.query_row("SELECT min(ts) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(min, 1001);
    }
}
