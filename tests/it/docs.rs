//! `protocol/` stays in step with the code: every wire error code, every
//! method (`roomd::method::Method`), every close code and every permission the code knows
//! must be documented, and every transcript frame in the docs must be valid
//! JSON. Adding a code, a method or a permission without documenting it
//! fails here.
//!
//! The sources are read with `include_str!` (so editing them rebuilds this
//! test); the docs are read at run time (so editing them needs no rebuild).

use roomd::method::Method;
use std::collections::BTreeSet;
use std::path::Path;

const ERROR_RS: &str = include_str!("../../src/error.rs");
const CONN_RS: &str = include_str!("../../src/conn.rs");
const PERMISSIONS_RS: &str = include_str!("../../src/permissions.rs");

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Lines of `doc` that are rows of a Markdown table whose first cell is
/// exactly `` `key` ``.
fn has_row(doc: &str, key: &str) -> bool {
    let cell = format!("`{key}`");
    doc.lines().any(|line| {
        let mut cells = line.trim().strip_prefix('|').unwrap_or("").split('|');
        cells.next().is_some_and(|first| first.trim() == cell)
    })
}

/// Every `Str("…")` and `Num(…)` wire code in `src/error.rs`.
fn error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for (i, _) in ERROR_RS.match_indices("Str(\"") {
        let rest = &ERROR_RS[i + 5..];
        let end = rest.find('"').expect("unterminated Str(\"…\") in src/error.rs");
        codes.insert(rest[..end].to_owned());
    }
    for (i, _) in ERROR_RS.match_indices("Num(") {
        let rest = &ERROR_RS[i + 4..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with(')') {
            codes.insert(digits);
        }
    }
    codes
}

/// The wire name of every [`Method`] roomd dispatches.
pub(crate) fn dispatched_methods() -> BTreeSet<String> {
    Method::ALL.iter().map(|m| m.name().to_owned()).collect()
}

/// Every `` ## `name` `` section heading of `protocol/methods.md`.
fn documented_methods() -> BTreeSet<String> {
    doc("methods.md")
        .lines()
        .filter_map(|l| l.strip_prefix("## `")?.strip_suffix('`').map(str::to_owned))
        .collect()
}

/// The body of `fn <name>` in `src`, up to the next `fn ` (enough for the
/// small `match`-only functions read here).
fn fn_body<'a>(src: &'a str, name: &str) -> &'a str {
    let start = src.find(&format!("fn {name}(")).unwrap_or_else(|| panic!("fn {name} not found"));
    let body = &src[start + 3..];
    let end = body.find("fn ").unwrap_or(body.len());
    &body[..end]
}

/// `(code, text)` of every `CloseReason`, from `code()` and `text()` in
/// `src/conn.rs`.
fn close_reasons() -> Vec<(String, String)> {
    let arms = |body: &str| -> Vec<(String, String)> {
        body.lines()
            .filter_map(|line| {
                let (lhs, rhs) = line.trim().split_once("=>")?;
                let variant = lhs.trim().strip_prefix("CloseReason::")?;
                Some((variant.to_owned(), rhs.trim().trim_end_matches(',').to_owned()))
            })
            .collect()
    };
    let codes = arms(fn_body(CONN_RS, "code"));
    let texts = arms(fn_body(CONN_RS, "text"));
    codes
        .into_iter()
        .map(|(variant, code)| {
            assert!(code.chars().all(|c| c.is_ascii_digit()), "close code of {variant}: {code}");
            let text = texts
                .iter()
                .find(|(v, _)| *v == variant)
                .unwrap_or_else(|| panic!("no text() arm for CloseReason::{variant}"))
                .1
                .trim_matches('"')
                .to_owned();
            (code, text)
        })
        .collect()
}

/// Every permission name in `Permission::name`.
fn permission_names() -> BTreeSet<String> {
    fn_body(PERMISSIONS_RS, "name")
        .lines()
        .filter_map(|line| {
            let (_, rhs) = line.split_once("=>")?;
            Some(rhs.trim().trim_end_matches(',').trim_matches('"').to_owned())
        })
        .collect()
}

#[test]
fn docs_every_error_code_is_in_errors_md() {
    let codes = error_codes();
    for sure in ["error-room-full", "not-allowed", "400", "403", "404"] {
        assert!(codes.contains(sure), "extraction from src/error.rs missed {sure}: {codes:?}");
    }
    let errors = doc("errors.md");
    let missing: Vec<_> = codes.iter().filter(|c| !has_row(&errors, c)).collect();
    assert!(
        missing.is_empty(),
        "error codes with no row (first column `code`) in protocol/errors.md: {missing:?}"
    );
}

#[test]
fn docs_every_method_variant_is_in_methods_md() {
    let methods = dispatched_methods();
    assert_eq!(methods.len(), Method::ALL.len(), "two Method variants share a wire name");
    let headings = documented_methods();
    let missing: Vec<_> = methods.difference(&headings).collect();
    assert!(
        missing.is_empty(),
        "methods without a \"## `name`\" section in protocol/methods.md: {missing:?}"
    );
}

#[test]
fn docs_every_documented_method_parses() {
    let headings = documented_methods();
    for sure in ["login", "join-room", "stream-notify-room", "rooms/get"] {
        assert!(headings.contains(sure), "extraction from protocol/methods.md missed {sure}: {headings:?}");
    }
    for name in &headings {
        let m = Method::parse(name)
            .unwrap_or_else(|e| panic!("protocol/methods.md documents {name:?}, which does not parse: {e}"));
        assert_eq!(m.name(), name, "{name:?} parses to a method with another name");
    }
}

#[test]
fn docs_every_close_code_is_in_readme() {
    let reasons = close_reasons();
    assert!(reasons.len() >= 5, "extraction from src/conn.rs found too little: {reasons:?}");
    let readme = doc("README.md");
    for (code, text) in &reasons {
        assert!(
            has_row(&readme, code),
            "close code {code} has no row (first column `{code}`) in protocol/README.md"
        );
        assert!(
            readme.contains(&format!("`{text}`")),
            "close reason text `{text}` (code {code}) is not in protocol/README.md"
        );
    }
}

#[test]
fn docs_every_permission_is_in_permissions_md() {
    let names = permission_names();
    assert!(
        names.contains("edit-room") && names.len() >= 5,
        "extraction from src/permissions.rs failed: {names:?}"
    );
    let doc = doc("permissions.md");
    let missing: Vec<_> = names.iter().filter(|n| !has_row(&doc, n)).collect();
    assert!(missing.is_empty(), "permissions with no row in protocol/permissions.md: {missing:?}");
}

/// Transcripts are ```` ```ddp ```` blocks: a frame starts with `→ ` or `← `
/// and may continue on the following lines; each must be a JSON object with
/// a string `msg`.
#[test]
fn docs_transcript_frames_are_valid_json() {
    let mut frames = 0;
    for name in ["README.md", "methods.md", "streams.md", "errors.md", "permissions.md"] {
        let text = doc(name);
        let mut in_block = false;
        let mut current: Option<(usize, String)> = None;
        let mut check = |frame: Option<(usize, String)>| {
            if let Some((line, json)) = frame {
                let v: serde_json::Value = serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("protocol/{name}:{line}: invalid JSON ({e}): {json}"));
                assert!(v["msg"].is_string(), "protocol/{name}:{line}: frame without \"msg\": {json}");
                frames += 1;
            }
        };
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if !in_block {
                in_block = trimmed == "```ddp";
                continue;
            }
            if trimmed == "```" {
                check(current.take());
                in_block = false;
            } else if let Some(rest) = trimmed.strip_prefix("→ ").or_else(|| trimmed.strip_prefix("← ")) {
                check(current.take());
                current = Some((i + 1, rest.to_owned()));
            } else if let Some((_, json)) = current.as_mut() {
                json.push_str(trimmed);
            } else if !trimmed.is_empty() {
                panic!("protocol/{name}:{}: line in a ddp block outside a frame: {line}", i + 1);
            }
        }
        assert!(!in_block, "protocol/{name}: unterminated ```ddp block");
    }
    assert!(frames > 50, "only {frames} transcript frames found");
}

/// Every event name in a `### ` heading of `protocol/socketio.md`
/// (`` ### `lock-room` / `unlock-room` `` names two).
fn documented_socketio_events() -> BTreeSet<String> {
    doc("socketio.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .flat_map(|h| h.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn docs_every_socketio_event_is_in_socketio_md_and_back() {
    let code: BTreeSet<String> = roomd::socketio::CLIENT_EVENTS
        .iter()
        .chain(roomd::socketio::SERVER_EVENTS.iter())
        .map(|e| (*e).to_owned())
        .collect();
    let text = doc("socketio.md");
    for e in &code {
        assert!(has_row(&text, e), "Socket.IO event {e} has no table row in protocol/socketio.md");
    }
    assert_eq!(
        documented_socketio_events(),
        code,
        "protocol/socketio.md sections vs the events in src/socketio"
    );
}

/// Socket.IO transcripts: each frame is an Engine.IO message type digit,
/// a Socket.IO packet type, an optional ack id, then JSON.
#[test]
fn docs_socketio_transcript_frames_are_valid() {
    let text = doc("socketio.md");
    let mut frames = 0;
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if !in_block {
            in_block = t == "```ddp-socketio";
            continue;
        }
        if t == "```" {
            in_block = false;
            continue;
        }
        let frame = t.strip_prefix("→ ").or_else(|| t.strip_prefix("← "));
        let frame = frame.unwrap_or_else(|| panic!("protocol/socketio.md:{}: not a frame: {line}", i + 1));
        let json = frame.trim_start_matches(|c: char| c.is_ascii_digit());
        assert!(frame.starts_with('4') && frame.len() - json.len() >= 2, "socketio.md:{}: {frame}", i + 1);
        serde_json::from_str::<serde_json::Value>(&json.replace('…', ""))
            .unwrap_or_else(|e| panic!("protocol/socketio.md:{}: invalid JSON ({e}): {json}", i + 1));
        frames += 1;
    }
    assert!(frames >= 20, "only {frames} Socket.IO frames found");
}

const SLACK_RS: &str = include_str!("../../src/rest/slack.rs");
const ROCKETCHAT_RS: &str = include_str!("../../src/rest/rocketchat.rs");

/// Every `` ## `VERB /api/…` `` heading of `protocol/rest.md`.
fn documented_routes() -> BTreeSet<String> {
    doc("rest.md")
        .lines()
        .filter_map(|l| l.strip_prefix("## `")?.strip_suffix('`').map(str::to_owned))
        .collect()
}

#[test]
fn docs_every_rest_route_is_in_rest_md_and_back() {
    let code: BTreeSet<String> = roomd::rest::ROCKETCHAT_ROUTES
        .iter()
        .chain(roomd::rest::SLACK_ROUTES)
        .map(|r| (*r).to_owned())
        .collect();
    for sure in ["POST /api/v1/channels.setJoinCode", "GET /api/v1/channels.info", "POST /api/channels.join"]
    {
        assert!(code.contains(sure), "route list misses {sure}: {code:?}");
    }
    assert_eq!(
        documented_routes(),
        code,
        "protocol/rest.md \"## `VERB /api/…`\" sections vs the routes in src/rest"
    );
}

/// Every error code the REST doors send themselves: Slack's codes in
/// `src/rest/slack.rs` (the snake_case literals after `=> ` or in
/// `Failure::plain(…)`) and the REST-only Rocket.Chat code.
#[test]
fn docs_every_rest_error_code_is_in_rest_md() {
    let rest = doc("rest.md");
    let mut slack = BTreeSet::new();
    for (i, _) in SLACK_RS.match_indices("plain(\"").chain(SLACK_RS.match_indices("=> \"")) {
        let rest = &SLACK_RS[i..];
        let start = rest.find('"').unwrap() + 1;
        let end = start + rest[start..].find('"').unwrap();
        let code = &rest[start..end];
        if code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            slack.insert(code.to_owned());
        }
    }
    for sure in ["not_authed", "is_archived", "invalid_name_specials", "restricted_action", "name_taken"] {
        assert!(slack.contains(sure), "extraction from src/rest/slack.rs missed {sure}: {slack:?}");
    }
    let missing: Vec<_> = slack.iter().filter(|c| !has_row(&rest, c)).collect();
    assert!(missing.is_empty(), "Slack codes with no row in protocol/rest.md: {missing:?}");
    assert!(ROCKETCHAT_RS.contains("\"error-invalid-request\""));
    assert!(has_row(&rest, "error-invalid-request"), "error-invalid-request has no row in protocol/rest.md");
}

/// Every flag `roomd --help` lists, and its environment variable, has a
/// row in docs/operations.md: an operator reading the docs sees every knob.
#[test]
fn docs_every_flag_and_env_var_is_in_operations_md() {
    let out = crate::proc::RoomdCmd::cli().arg("--help").output();
    let help = String::from_utf8_lossy(&out.stdout);
    let ops = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
        .expect("docs/operations.md");
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for line in help.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("--").or_else(|| line.split_once(", --").map(|(_, r)| r)) {
            let flag = rest.split([' ', '=', ',']).next().unwrap_or("");
            if !flag.is_empty() && flag != "help" && flag != "version" {
                flags.insert(format!("--{flag}"));
            }
        }
        if let Some(i) = line.find("[env: ") {
            let env = line[i + 6..].split(['=', ']']).next().unwrap_or("");
            envs.insert(env.to_owned());
        }
    }
    assert!(flags.contains("--cluster") && flags.len() > 30, "help not parsed: {flags:?}");
    let missing: Vec<_> = flags
        .iter()
        .filter(|f| !ops.contains(&format!("`{f}`")))
        .chain(envs.iter().filter(|e| !ops.contains(e.as_str())))
        .collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}

/// The room core reaches DDP connections only through `room::RoomSink`
/// (and Socket.IO's through `RoomListener`): no file of `src/room/` names
/// the connection module, its handle or its close reasons (issue 18).
#[test]
fn docs_room_core_names_no_connection_type() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/room");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).expect("src/room") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable source");
        read += 1;
        for name in ["crate::conn", "ConnHandle", "CloseReason"] {
            assert!(!text.contains(name), "{} names {name}", path.display());
        }
    }
    assert!(read >= 10, "read only {read} files under {}", dir.display());
}
