//! `roomd backup` and `roomd restore`: a consistent copy of a data
//! directory's database taken while a server runs, and a data directory
//! made from such a copy.
//!
//! Why `VACUUM INTO` rather than the online backup API: it copies inside one
//! read transaction, so the copy is the database as of one commit (every
//! transaction committed before it began, the WAL's included) however fast
//! the server writes; WAL readers never block the writer, so the server
//! keeps committing meanwhile. The backup API instead restarts its page copy
//! whenever another connection writes, and under steady writes may never
//! finish unless it copies everything in one step, which is what `VACUUM
//! INTO` does anyway, compacted.
//!
//! The copy is written under a hidden temporary name beside the target,
//! fsynced, then renamed over it, so the target is either the previous
//! complete file or the new complete file, never a partial one. What it is
//! goes inside it: a one-row table `roomd_backup` (schema version, roomd
//! version, when the copy was taken). `restore` reads and drops that table.

use super::sqlite::{LATEST_SCHEMA, migrate};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

/// The database's file name in a data directory.
const DB_FILE: &str = "roomd.sqlite3";

/// What a backup file records about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// `PRAGMA user_version` of the database copied.
    pub schema_version: i64,
    /// The roomd that took it (`CARGO_PKG_VERSION`).
    pub roomd_version: String,
    /// When the copy began, Unix milliseconds: every change acknowledged
    /// before then is in it.
    pub taken_at_ms: i64,
    /// Size of the finished file.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no roomd database in {0} (is --data-dir right?)")]
    NoDatabase(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("disk full while writing {path}; nothing was left behind")]
    DiskFull { path: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not a roomd backup: {reason}")]
    NotABackup { path: String, reason: String },
    #[error("{path} is damaged (integrity check: {reason}); restore an older backup")]
    Damaged { path: String, reason: String },
    #[error(
        "{path} holds schema v{found}, newer than this roomd supports (v{supported}); restore it with the roomd that wrote it or a newer one"
    )]
    TooNew { path: String, found: i64, supported: i64 },
    #[error("data directory {0} is not empty; pass --force to replace its database")]
    NotEmpty(String),
    #[error("a roomd server seems to have {0} open; stop it before restoring over it")]
    InUse(String),
    #[error("database error in {path}: {reason}")]
    Db { path: String, reason: String },
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// Disk full reaches us as SQLite's `SQLITE_FULL` or as `ENOSPC`.
fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

fn write_err(path: &Path, e: impl std::fmt::Display, full: bool) -> BackupError {
    if full {
        BackupError::DiskFull { path: show(path) }
    } else {
        BackupError::Write { path: show(path), reason: e.to_string() }
    }
}

fn io_write_err(path: &Path, e: std::io::Error) -> BackupError {
    let full = e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28);
    write_err(path, e, full)
}

fn sql_write_err(path: &Path, e: rusqlite::Error) -> BackupError {
    let full = is_full(&e);
    write_err(path, e, full)
}

/// A temporary file that is removed unless [`Partial::keep`] is called:
/// every early return leaves nothing behind.
struct Partial(Option<PathBuf>);

impl Partial {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p);
            // SQLite may have left a journal beside it.
            let mut j = p.into_os_string();
            j.push("-journal");
            let _ = std::fs::remove_file(j);
        }
    }
}

/// Flushes a directory entry (the rename) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The directory holding `file`, for relative names too.
fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Copies the database of data directory `dir` to `to`, consistently, while
/// a server may be running on it and writing.
pub fn backup(dir: &Path, to: &Path) -> Result<BackupInfo, BackupError> {
    let src = dir.join(DB_FILE);
    if !src.is_file() {
        return Err(BackupError::NoDatabase(show(dir)));
    }
    let target_dir = parent_of(to);
    if !target_dir.is_dir() {
        return Err(BackupError::Write { path: show(to), reason: "its directory does not exist".into() });
    }
    let Some(name) = to.file_name() else {
        return Err(BackupError::Write { path: show(to), reason: "not a file name".into() });
    };
    if to.is_dir() {
        return Err(BackupError::Write { path: show(to), reason: "is a directory".into() });
    }
    // Read-write without create: a read-only connection could not open a
    // WAL database whose shared-memory file a stopped server removed. It
    // never writes: `VACUUM INTO` only reads its source.
    let conn = Connection::open_with_flags(
        &src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::Read { path: show(&src), reason: e.to_string() })?;
    let db = |e: rusqlite::Error| BackupError::Db { path: show(&src), reason: e.to_string() };
    // Opening may wait briefly for a checkpoint or recovery in the server.
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".partial-{}", std::process::id()));
    let tmp = target_dir.join(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let partial = Partial(Some(tmp.clone()));
    let taken_at_ms = now_ms();
    // One statement, one read transaction: the schema version is read in
    // the same snapshot as the rows.
    let tmp_str = tmp
        .to_str()
        .ok_or_else(|| BackupError::Write { path: show(to), reason: "path is not valid UTF-8".into() })?;
    conn.execute("VACUUM INTO ?1", [tmp_str]).map_err(|e| sql_write_err(&tmp, e))?;
    drop(conn);

    let copy = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| sql_write_err(&tmp, e))?;
    let schema_version: i64 =
        copy.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| sql_write_err(&tmp, e))?;
    // One self-contained file: no WAL beside it.
    copy.pragma_update(None, "journal_mode", "DELETE").map_err(|e| sql_write_err(&tmp, e))?;
    copy.execute_batch(
        "CREATE TABLE roomd_backup (schema_version INTEGER NOT NULL, roomd_version TEXT NOT NULL, taken_at_ms INTEGER NOT NULL);",
    )
    .map_err(|e| sql_write_err(&tmp, e))?;
    copy.execute(
        "INSERT INTO roomd_backup VALUES (?1, ?2, ?3)",
        rusqlite::params![schema_version, env!("CARGO_PKG_VERSION"), taken_at_ms],
    )
    .map_err(|e| sql_write_err(&tmp, e))?;
    copy.close().map_err(|(_, e)| sql_write_err(&tmp, e))?;
    // `VACUUM INTO` does not fsync its output.
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io_write_err(&tmp, e))?;
    let bytes = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    std::fs::rename(&tmp, to).map_err(|e| io_write_err(to, e))?;
    partial.keep();
    sync_dir(&target_dir).map_err(|e| io_write_err(to, e))?;
    Ok(BackupInfo { schema_version, roomd_version: env!("CARGO_PKG_VERSION").into(), taken_at_ms, bytes })
}

/// What `restore` found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's own record; `None` for a plain copy of a stopped
    /// server's database, which restores too.
    pub info: Option<BackupInfo>,
    /// Schema version of the file (migrated to [`LATEST_SCHEMA`]).
    pub from_schema: i64,
}

/// Makes `dir` a data directory holding the database in `from`. Refuses a
/// directory that holds anything unless `force`, a damaged file, and a file
/// of a newer schema; upgrades an older one.
pub fn restore(from: &Path, dir: &Path, force: bool) -> Result<Restored, BackupError> {
    if !from.is_file() {
        return Err(BackupError::Read { path: show(from), reason: "no such file".into() });
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| BackupError::Write { path: show(dir), reason: e.to_string() })?;
        if entries.next().is_some() && !force {
            return Err(BackupError::NotEmpty(show(dir)));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io_write_err(dir, e))?;
    let tmp = dir.join(".roomd.sqlite3.restoring");
    let _ = std::fs::remove_file(&tmp);
    let partial = Partial(Some(tmp.clone()));
    std::fs::copy(from, &tmp).map_err(|e| io_write_err(&tmp, e))?;

    let mut conn = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| BackupError::NotABackup { path: show(from), reason: e.to_string() })?;
    let not_roomd = |e: rusqlite::Error| BackupError::NotABackup { path: show(from), reason: e.to_string() };
    let report: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(not_roomd)?;
    if report != ["ok"] {
        return Err(BackupError::Damaged { path: show(from), reason: report.join("; ") });
    }
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(not_roomd)?;
    if found > LATEST_SCHEMA {
        return Err(BackupError::TooNew { path: show(from), found, supported: LATEST_SCHEMA });
    }
    let has_rooms: bool = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rooms'", [], |_| Ok(true))
        .optional()
        .map_err(not_roomd)?
        .unwrap_or(false);
    if found < 1 || !has_rooms {
        return Err(BackupError::NotABackup { path: show(from), reason: "no roomd tables in it".into() });
    }
    let db = |e: rusqlite::Error| BackupError::Db { path: show(&tmp), reason: e.to_string() };
    let has_info: bool = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'roomd_backup'", [], |_| {
            Ok(true)
        })
        .optional()
        .map_err(db)?
        .unwrap_or(false);
    let info = if has_info {
        conn.query_row("SELECT schema_version, roomd_version, taken_at_ms FROM roomd_backup", [], |r| {
            Ok(BackupInfo {
                schema_version: r.get(0)?,
                roomd_version: r.get(1)?,
                taken_at_ms: r.get(2)?,
                bytes: 0,
            })
        })
        .optional()
        .map_err(db)?
        .map(|i| BackupInfo { bytes: std::fs::metadata(from).map(|m| m.len()).unwrap_or(0), ..i })
    } else {
        None
    };
    conn.execute_batch("DROP TABLE IF EXISTS roomd_backup;").map_err(|e| sql_write_err(&tmp, e))?;
    // Upgrade here rather than at the first start: a failure shows now, on
    // the operator's terminal, and the directory is left as it was.
    migrate(&mut conn).map_err(|e| BackupError::Db { path: show(&tmp), reason: e.to_string() })?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| sql_write_err(&tmp, e))?;
    conn.close().map_err(|(_, e)| sql_write_err(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io_write_err(&tmp, e))?;

    let live = dir.join(DB_FILE);
    if live.exists() {
        refuse_if_open(&live)?;
    }
    // A WAL left from the replaced database would be replayed into the
    // restored one: remove it and its index before the rename.
    for suffix in ["-wal", "-shm"] {
        let mut side = live.clone().into_os_string();
        side.push(suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::Write { path: show(Path::new(&side)), reason: e.to_string() }),
        }
    }
    std::fs::rename(&tmp, &live).map_err(|e| io_write_err(&live, e))?;
    partial.keep();
    sync_dir(dir).map_err(|e| io_write_err(dir, e))?;
    Ok(Restored { info, from_schema: found })
}

/// Refuses to replace a database a running server holds open. Leaving WAL
/// mode needs the only connection to the file, so a live server makes it
/// fail (`SQLITE_BUSY`) at once; a stopped one lets it succeed, and the
/// file is replaced next anyway.
fn refuse_if_open(live: &Path) -> Result<(), BackupError> {
    let conn = Connection::open_with_flags(live, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| BackupError::Read { path: show(live), reason: e.to_string() })?;
    match conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0)) {
        Ok(m) if m.eq_ignore_ascii_case("wal") => Err(BackupError::InUse(show(live))),
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            Err(BackupError::InUse(show(live)))
        }
        // A damaged file being replaced: nobody serves from it.
        Err(_) => Ok(()),
    }
}
