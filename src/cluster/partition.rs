//! Partitions: the room logs spread over a fixed number of streams, so
//! that writes go through several Raft groups whose leaders sit on
//! different NATS servers instead of all through one (issue 19, point 5).
//!
//! A room lives in exactly one partition, chosen by a stable hash of its
//! id (FNV-1a, the same on every node and every run: std's hasher is
//! seeded per process). Its log is one subject of that partition's stream,
//! so its order is what it always was. Partition 0 is the stream `ROOMLOG`
//! with the subjects `roomlog.<rid>`: exactly the layout of a cluster made
//! before partitions, which is why such a cluster is simply a one-partition
//! cluster. Partition `p > 0` is the stream `ROOMLOG_<p>` with the subjects
//! `roomlog_<p>.<rid>`. Names, usernames, DM claims and facts stay in
//! `ROOMLOG` where they were.
//!
//! The count is part of the cluster: moving a room to another partition
//! would split its log, so it is recorded create-only in `ROOMLOG`
//! ([`RECORD_SUBJECT`]) by the first node that starts, and every later node
//! adopts it or refuses to start (see `Cluster::try_connect`).

use super::STREAM;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// `--cluster-partitions` when the cluster is created and the flag is not
/// given: one stream per server of the usual three (docs/cluster.md says
/// why).
pub const DEFAULT_PARTITIONS: usize = 3;
/// The most partitions roomd accepts: every stream is a Raft group on every
/// replica, and a cluster of more than a few servers is not what this is
/// sized for.
pub const MAX_PARTITIONS: usize = 64;
/// Where the partition count is recorded, in `ROOMLOG` (create-only).
pub(crate) const RECORD_SUBJECT: &str = "roomcluster.partitions";
/// The subjects `ROOMLOG` needs besides its room logs.
pub(crate) const CONTROL_SUBJECTS: [&str; 3] = ["roomname.>", "roomfacts.>", "roomcluster.>"];

/// The stored partition record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartitionsV1 {
    pub partitions: usize,
}

/// How rooms map to streams, for a fixed partition count.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    n: usize,
}

impl Layout {
    pub(crate) fn new(n: usize) -> Layout {
        Layout { n: n.clamp(1, MAX_PARTITIONS) }
    }

    pub(crate) fn count(&self) -> usize {
        self.n
    }

    /// The stream of partition `p`.
    pub(crate) fn stream(p: usize) -> String {
        if p == 0 { STREAM.to_owned() } else { format!("{STREAM}_{p}") }
    }

    /// The first subject token of partition `p`'s room logs.
    fn prefix(p: usize) -> String {
        if p == 0 { "roomlog".to_owned() } else { format!("roomlog_{p}") }
    }

    /// The subjects of partition `p`'s stream.
    pub(crate) fn subjects(p: usize) -> Vec<String> {
        let mut s = vec![format!("{}.>", Self::prefix(p))];
        if p == 0 {
            s.extend(CONTROL_SUBJECTS.iter().map(|c| (*c).to_owned()));
        }
        s
    }

    /// The partition of room `rid`.
    pub(crate) fn of(&self, rid: &str) -> usize {
        (fnv1a(rid.as_bytes()) % self.n as u64) as usize
    }

    /// Where a room's log lives: `roomlog.<rid>` (the room's subject as the
    /// rest of roomd names it) placed in its partition.
    pub(crate) fn place(&self, subject: &str) -> String {
        match subject.strip_prefix("roomlog.") {
            Some(rid) => format!("{}.{rid}", Self::prefix(self.of(rid))),
            None => subject.to_owned(),
        }
    }

    /// The partition and room of a room-log subject.
    pub(crate) fn room_of(subject: &str) -> Option<(usize, &str)> {
        let (first, rid) = subject.split_once('.')?;
        let p = first.strip_prefix("roomlog")?;
        let p = if p.is_empty() { 0 } else { p.strip_prefix('_')?.parse::<usize>().ok()? };
        Some((p, rid))
    }

    /// The room of a room-log subject, if the room belongs to that subject's
    /// partition. An entry of a room written under another partition count
    /// (by hand, or by a node of another cluster) would be applied out of
    /// order with the room's real log, so it is not the room's.
    pub(crate) fn room_here<'a>(&self, subject: &'a str) -> Option<Result<&'a str, &'a str>> {
        let (p, rid) = Self::room_of(subject)?;
        Some(if self.of(rid) == p { Ok(rid) } else { Err(rid) })
    }
}

/// Asks the NATS servers to move partition leaders until no server leads
/// two partitions while another of their servers leads none.
///
/// JetStream elects each stream's leader on its own and does not balance
/// leaders between streams: measured here, the three partitions of a fresh
/// 3-server cluster often all had the same leader, which writes through one
/// machine as one stream did. A leader step-down naming a preferred server
/// (NATS 2.11+; older servers pick another replica at random) moves one.
/// Runs in the background after start, best effort and bounded: a few
/// rounds, never an error (a cluster whose leaders did not move still
/// works), and a no-op once leaders are spread, so restarts change nothing.
pub(crate) fn spread_leaders(js: jetstream::Context, layout: Layout) {
    if layout.count() < 2 {
        return;
    }
    tokio::spawn(async move {
        let mut moves = 0;
        for _ in 0..ROUNDS {
            // New streams elect their first leaders: look again shortly.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some(leaders) = leaders(&js, &layout).await else { continue };
            let Some((p, from, to)) = unbalanced(&leaders) else { return };
            if moves == MAX_MOVES {
                return;
            }
            moves += 1;
            let name = Layout::stream(p);
            tracing::info!(stream = %name, from = %from, to = %to, "moving a partition's leader to spread writes");
            let body = serde_json::json!({ "placement": { "preferred": to } }).to_string();
            // The leader answers after handing over, which can take longer
            // than the context's 2 s request timeout on a busy machine.
            let request =
                async_nats::Request::new().payload(body.into()).timeout(Some(Duration::from_secs(10)));
            let asked =
                js.client().send_request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"), request).await;
            match asked.map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload)) {
                Ok(Ok(answer)) if answer.get("error").is_none() => {}
                Ok(Ok(answer)) => {
                    tracing::info!(stream = %name, answer = %answer["error"], "leader step-down refused");
                }
                Ok(Err(e)) => {
                    tracing::info!(stream = %name, error = %e, "leader step-down answer unreadable")
                }
                Err(e) => tracing::info!(stream = %name, error = %e, "leader step-down not taken"),
            }
        }
    });
}

/// How many times the background task looks, half a second apart.
const ROUNDS: usize = 20;
/// How many leader moves one start may ask for.
const MAX_MOVES: usize = 4;

/// A partition to move and where: one whose leader also leads an earlier
/// partition, to a server among its replicas that leads none.
fn unbalanced(leaders: &[(usize, String, Vec<String>)]) -> Option<(usize, String, String)> {
    let leading: BTreeSet<&str> = leaders.iter().map(|(_, l, _)| l.as_str()).collect();
    leaders.iter().enumerate().find_map(|(i, (p, l, peers))| {
        let doubled = leaders[..i].iter().any(|(_, other, _)| other == l);
        let idle = peers.iter().find(|s| !leading.contains(s.as_str()))?;
        doubled.then(|| (*p, l.clone(), idle.clone()))
    })
}

/// Each partition's leader and other replicas, or `None` while any has no
/// leader (nothing to balance yet).
async fn leaders(js: &jetstream::Context, layout: &Layout) -> Option<Vec<(usize, String, Vec<String>)>> {
    let mut out = Vec::with_capacity(layout.count());
    for p in 0..layout.count() {
        let mut stream = js.get_stream(Layout::stream(p)).await.ok()?;
        let cluster = stream.info().await.ok()?.cluster.clone()?;
        out.push((p, cluster.leader?, cluster.replicas.into_iter().map(|r| r.name).collect()));
    }
    Some(out)
}

/// 64-bit FNV-1a: tiny, stable across runs and platforms, and spreads
/// random ids evenly enough for a handful of buckets.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_spreads() {
        // Fixed values: a change here would move existing rooms.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let l = Layout::new(3);
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[l.of(&format!("room{i:05}"))] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn subjects_map_to_partitions_and_back() {
        let l = Layout::new(3);
        let rid = (0..100).map(|i| format!("r{i}")).find(|r| l.of(r) == 2).unwrap();
        assert_eq!(l.place(&format!("roomlog.{rid}")), format!("roomlog_2.{rid}"));
        assert_eq!(l.room_here(&format!("roomlog_2.{rid}")), Some(Ok(rid.as_str())));
        assert_eq!(l.room_here(&format!("roomlog.{rid}")), Some(Err(rid.as_str())));
        assert_eq!(Layout::room_of("roomlog.abc"), Some((0, "abc")));
        assert_eq!(Layout::room_of("roomfacts.user.x"), None);
        assert_eq!(Layout::room_of("roomlogx.abc"), None);
        assert_eq!(l.place("roomname.ab"), "roomname.ab");
        // One partition is the layout of a cluster made before partitions.
        assert_eq!(Layout::new(1).place("roomlog.abc"), "roomlog.abc");
        assert_eq!(Layout::stream(0), "ROOMLOG");
        assert_eq!(Layout::stream(2), "ROOMLOG_2");
    }
}
