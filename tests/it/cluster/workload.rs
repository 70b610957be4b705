//! A steady mix of acknowledged changes on one room through every node —
//! users joining (the room fills up), posting and leaving, the owner
//! changing the topic — recorded in a ledger of what was acknowledged, so
//! a scenario can kill or pause processes mid-stream and then check that
//! nothing acknowledged is missing and nothing refused got in.

use super::nodes::try_user;
use crate::support::Client;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one call may take before its outcome counts as unknown.
pub(crate) const CALL_WAIT: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Member {
    Yes,
    No,
    /// A join or leave whose answer never came (or was not a refusal).
    Unknown,
}

/// One write call: which node served it, when it started and ended, and
/// whether it got a definitive answer (success, or a refusal such as
/// `error-room-full`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub node: usize,
    pub start: Instant,
    pub end: Instant,
    pub served: bool,
}

#[derive(Default, Debug)]
pub(crate) struct Ledger {
    /// username → membership after the last answered join/leave.
    pub member: HashMap<String, Member>,
    /// Ids of acknowledged messages.
    pub messages: Vec<String>,
    /// The last acknowledged topic, and the topics set after it whose
    /// outcome is unknown (the room may show any of them).
    pub topic: Option<String>,
    pub topic_unknown: Vec<String>,
    pub calls: Vec<Call>,
    /// Error codes (and lost calls, as `"no answer"`) seen, with counts.
    pub errors: BTreeMap<String, usize>,
}

impl Ledger {
    /// Time from `t` to the end of the first definitive answer to a call
    /// started at or after `t` (on `node`, or on any node).
    pub(crate) fn first_served_after(&self, t: Instant, node: Option<usize>) -> Option<Duration> {
        self.calls
            .iter()
            .filter(|c| c.served && c.start >= t && node.is_none_or(|n| c.node == n))
            .map(|c| c.end - t)
            .min()
    }

    /// Definitive answers to calls that started and ended within `[from, to]` on `node`.
    pub(crate) fn served_between(&self, from: Instant, to: Instant, node: usize) -> usize {
        self.calls.iter().filter(|c| c.served && c.node == node && c.start >= from && c.end <= to).count()
    }

    /// The longest time without a definitive answer on `node` within
    /// `[from, to]`.
    pub(crate) fn longest_silence(&self, from: Instant, to: Instant, node: usize) -> Duration {
        let mut ends: Vec<Instant> = self
            .calls
            .iter()
            .filter(|c| c.served && c.node == node && c.end >= from && c.end <= to)
            .map(|c| c.end)
            .collect();
        ends.sort();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for e in ends.into_iter().chain([to]) {
            longest = longest.max(e - last);
            last = e;
        }
        longest
    }

    fn count(&self, kind: Member) -> usize {
        self.member.values().filter(|m| **m == kind).count()
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{} calls, {} members acknowledged, {} refused or left, {} unknown, {} messages, topic {:?} \
             (+{} unknown), errors {:?}",
            self.calls.len(),
            self.count(Member::Yes),
            self.count(Member::No),
            self.count(Member::Unknown),
            self.messages.len(),
            self.topic,
            self.topic_unknown.len(),
            self.errors
        )
    }
}

pub(crate) fn error_code(r: &Value) -> Option<String> {
    let e = r.get("error")?;
    Some(e["error"].as_str().map(str::to_owned).unwrap_or_else(|| e["error"].to_string()))
}

pub(crate) struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ledger: Arc<Mutex<Ledger>>,
}

type Urls = Arc<Mutex<Vec<String>>>;

impl Workload {
    /// Starts `per_node` joining writers on every node in `urls` and one
    /// topic writer (as `owner`, starting on node 0). A writer whose node
    /// stops answering moves on to the next node.
    pub(crate) fn start(urls: Vec<String>, rid: &str, owner: &str, tag: &str, per_node: usize) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let urls: Urls = Arc::new(Mutex::new(urls));
        let mut tasks = Vec::new();
        let n = urls.lock().unwrap().len();
        for node in 0..n {
            for w in 0..per_node {
                let ctx = Ctx { urls: urls.clone(), ledger: ledger.clone(), rid: rid.to_owned() };
                let (stop, tag) = (stop.clone(), format!("{tag}-{node}-{w}"));
                tasks.push(tokio::spawn(async move { ctx.joiner(node, &tag, &stop).await }));
            }
        }
        let ctx = Ctx { urls, ledger: ledger.clone(), rid: rid.to_owned() };
        let (stop2, owner) = (stop.clone(), owner.to_owned());
        tasks.push(tokio::spawn(async move { ctx.topics(&owner, &stop2).await }));
        Workload { stop, tasks, ledger }
    }

    /// A copy of the calls so far (for waiting on a recovery).
    pub(crate) fn served_after(&self, t: Instant, node: Option<usize>) -> Option<Duration> {
        self.ledger.lock().unwrap().first_served_after(t, node)
    }

    /// Stops every writer (each finishes or abandons its call within
    /// [`CALL_WAIT`]) and returns the ledger.
    pub(crate) async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            tokio::time::timeout(CALL_WAIT * 3, t)
                .await
                .expect("a writer did not stop")
                .expect("writer panicked");
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

struct Ctx {
    urls: Urls,
    ledger: Arc<Mutex<Ledger>>,
    rid: String,
}

impl Ctx {
    /// Signs `username` in on `*node`, moving to the next node while the
    /// current one does not answer.
    async fn connect(&self, node: &mut usize, username: &str, stop: &AtomicBool) -> Option<Client> {
        while !stop.load(Ordering::Relaxed) {
            let url = self.urls.lock().unwrap()[*node].clone();
            if let Some(c) = try_user(&url, username).await {
                return Some(c);
            }
            *node = (*node + 1) % self.urls.lock().unwrap().len();
            tokio::time::sleep(PACE).await;
        }
        None
    }

    /// One call, timed and recorded; `None` if no answer came.
    async fn call(&self, c: &mut Client, node: usize, method: &str, params: Value) -> Option<Value> {
        let start = Instant::now();
        let r = c.try_call_for(method, params, CALL_WAIT).await;
        let end = Instant::now();
        let mut l = self.ledger.lock().unwrap();
        let served = match &r {
            None => {
                *l.errors.entry("no answer".into()).or_default() += 1;
                false
            }
            Some(r) => match error_code(r) {
                None => true,
                Some(code) => {
                    let refusal = code == "error-room-full";
                    *l.errors.entry(code).or_default() += 1;
                    refusal
                }
            },
        };
        l.calls.push(Call { node, start, end, served });
        r
    }

    fn set_member(&self, user: &str, m: Member) {
        self.ledger.lock().unwrap().member.insert(user.to_owned(), m);
    }

    async fn joiner(&self, mut node: usize, tag: &str, stop: &AtomicBool) {
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let name = format!("{tag}-{n}");
            let Some(mut c) = self.connect(&mut node, &name, stop).await else { return };
            self.set_member(&name, Member::Unknown);
            let Some(r) = self.call(&mut c, node, "joinRoom", json!([self.rid])).await else { continue };
            match error_code(&r).as_deref() {
                None => self.set_member(&name, Member::Yes),
                Some("error-room-full") => {
                    self.set_member(&name, Member::No);
                    tokio::time::sleep(PACE).await;
                    continue;
                }
                Some(_) => continue,
            }
            let msg = json!([{"rid": self.rid, "msg": format!("from {name}")}]);
            if let Some(r) = self.call(&mut c, node, "sendMessage", msg).await
                && let Some(id) = r["result"]["_id"].as_str()
            {
                self.ledger.lock().unwrap().messages.push(id.to_owned());
            }
            if n.is_multiple_of(2) {
                self.set_member(&name, Member::Unknown);
                if let Some(r) = self.call(&mut c, node, "leaveRoom", json!([self.rid])).await
                    && error_code(&r).is_none()
                {
                    self.set_member(&name, Member::No);
                }
            }
            c.close().await;
            tokio::time::sleep(PACE).await;
        }
    }

    async fn topics(&self, owner: &str, stop: &AtomicBool) {
        let mut node = 0;
        let mut n = 0u32;
        let mut c: Option<Client> = None;
        while !stop.load(Ordering::Relaxed) {
            if c.is_none() {
                c = self.connect(&mut node, owner, stop).await;
            }
            let Some(conn) = c.as_mut() else { return };
            n += 1;
            let topic = format!("topic {n}");
            self.ledger.lock().unwrap().topic_unknown.push(topic.clone());
            let r = self.call(conn, node, "saveRoomSettings", json!([self.rid, "roomTopic", topic])).await;
            match r {
                Some(r) if error_code(&r).is_none() => {
                    let mut l = self.ledger.lock().unwrap();
                    l.topic = Some(topic);
                    l.topic_unknown.clear();
                }
                Some(_) => {}
                None => c = None,
            }
            tokio::time::sleep(PACE + PACE / 2).await;
        }
    }
}

/// What one node says about the room: members (user ids), message ids in
/// history order, topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub members: Vec<String>,
    pub history: Vec<String>,
    pub topic: Option<String>,
}

/// Reads the room through `c` (a member with `edit-room`, e.g. the owner)
/// and checks it against the ledger: every acknowledged member present,
/// every refused or departed one absent, at most `cap` members, no seat
/// twice, every acknowledged message in the history exactly once, the
/// topic one that may be there. Nodes answer reads from their own replica,
/// which may trail the log by a moment: the check is retried for up to
/// five seconds, and fails with what it last saw.
pub(crate) async fn check_room(c: &mut Client, rid: &str, cap: u64, l: &Ledger, label: &str) -> View {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match room_view(c, rid, cap, l).await {
            Ok(v) => return v,
            Err(e) if Instant::now() > end => panic!("{label}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn room_view(c: &mut Client, rid: &str, cap: u64, l: &Ledger) -> Result<View, String> {
    let p = c.ok("getRoomParticipants", json!([rid])).await;
    let parts = p["participants"].as_array().expect("participants").clone();
    let mut ids: Vec<String> = parts.iter().filter_map(|x| x["id"].as_str().map(str::to_owned)).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    if ids.len() != n {
        return Err(format!("a participant listed twice: {p}"));
    }
    if p["room"]["participantCount"] != n {
        return Err(format!("participantCount disagrees with the list: {p}"));
    }
    if n as u64 > cap {
        return Err(format!("{n} members in a room of capacity {cap}"));
    }
    let mut members: Vec<String> =
        parts.iter().filter_map(|x| x["userId"].as_str().map(str::to_owned)).collect();
    members.sort();
    for (user, m) in &l.member {
        let there = members.contains(&format!("id-{user}"));
        match m {
            Member::Yes if !there => return Err(format!("acknowledged member {user} missing")),
            Member::No if there => {
                return Err(format!(
                    "{user} is a member, but its join was refused or its leave acknowledged"
                ));
            }
            _ => {}
        }
    }
    let hist = c.ok("loadHistory", json!([rid, null, 1000, null])).await;
    let history: Vec<String> = hist["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["_id"].as_str().map(str::to_owned))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &history {
        *counts.entry(id).or_default() += 1;
    }
    if let Some(id) = history.iter().find(|id| counts[id.as_str()] > 1) {
        return Err(format!("message {id} is in the history {} times", counts[id.as_str()]));
    }
    if let Some(id) = l.messages.iter().find(|id| !counts.contains_key(id.as_str())) {
        return Err(format!("acknowledged message {id} missing from the history"));
    }
    let doc = c.ok("getRoomById", json!([rid])).await;
    let topic = doc["topic"].as_str().map(str::to_owned);
    if let Some(acked) = &l.topic {
        let may: Vec<&String> = l.topic_unknown.iter().chain([acked]).collect();
        if !topic.as_ref().is_some_and(|t| may.contains(&t)) {
            return Err(format!(
                "topic {topic:?}, but the last acknowledged was {acked:?} (unknown after it: {:?})",
                l.topic_unknown
            ));
        }
    }
    if doc["usersCount"] != n {
        return Err(format!("usersCount disagrees with the participants: {doc}"));
    }
    Ok(View { members, history, topic })
}
