//! Which nodes are alive, and what happens to the guests of a node that is
//! not.
//!
//! A guest's seat is held by a connection on one node; when that connection
//! closes, that node runs the guest's reconnect grace and then appends the
//! guest's departure. A node that dies runs nothing, so the survivors must:
//! each node refreshes its key in the key-value bucket `roomd_nodes` every
//! second, and a key not refreshed for [`TTL`] expires. Every replica knows
//! which node holds each guest (from the log: the node that appended the
//! guest's join, or its latest resume). One node — the alive node with the
//! smallest name, so normally exactly one — asks each room to check its
//! guests; a room appends the departure of a guest whose node has been gone
//! for the guest grace. Two nodes doing it at once is harmless: a departure
//! of someone already gone changes nothing.

use super::{Cluster, ClusterError};
use crate::room::RoomCommand;
use crate::server::ServerState;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bucket of node heartbeats.
const BUCKET: &str = "roomd_nodes";
/// A node whose key is this old is gone.
pub(crate) const TTL: Duration = Duration::from_secs(5);
const BEAT: Duration = Duration::from_secs(1);
const SWEEP: Duration = Duration::from_secs(2);

/// Creates (or opens) the heartbeat bucket.
pub(super) async fn bucket(
    js: &async_nats::jetstream::Context,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    js.create_key_value(kv::Config {
        bucket: BUCKET.to_owned(),
        history: 1,
        max_age: TTL,
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::Unavailable(format!("heartbeat bucket {BUCKET}: {e}")))
}

/// A node origin (`n1/abc`) as a bucket key (`n1.abc`: keys take no `/`
/// at the edges, dots are fine).
fn key(origin: &str) -> String {
    origin.replace('/', ".")
}

/// Starts the heartbeat and the sweep.
pub(super) fn spawn(cluster: Arc<Cluster>, state: Arc<ServerState>) {
    let Some(store) = cluster.nodes.clone() else { return };
    let me = key(cluster.origin());
    let beat_store = store.clone();
    let beat_key = me.clone();
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match beat_store.put(&beat_key, bytes::Bytes::from_static(b"1")).await {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot refresh this node's heartbeat");
                }
                Err(_) => {}
            }
            tokio::time::sleep(BEAT).await;
        }
    });
    tokio::spawn(async move {
        let started = Instant::now();
        let grace = state.room_config.guest_grace;
        let mut last: HashSet<String> = HashSet::new();
        // Nodes seen alive and then gone, and when they went.
        let mut gone: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::time::sleep(SWEEP).await;
            let Ok(mut keys) = store.keys().await else { continue };
            let mut alive = HashSet::new();
            while let Some(Ok(k)) = keys.next().await {
                alive.insert(k);
            }
            alive.insert(me.clone());
            for k in last.difference(&alive) {
                gone.insert(k.clone(), Instant::now());
                // Its users are online there no more.
                super::presence::node_now(&state, &k.replacen('.', "/", 1), &HashSet::new());
            }
            gone.retain(|_, at| at.elapsed() < grace + TTL * 2);
            last = alive.clone();
            // Only the first alive node (by name) sweeps. Right after a start
            // it also sweeps, for nodes that died before it came up (a whole
            // cluster restarted has only dead guest holders).
            let sweeper = alive.iter().min().is_some_and(|m| *m == me);
            let recently_started = started.elapsed() < grace + TTL * 2;
            if !sweeper || (gone.is_empty() && !recently_started) {
                continue;
            }
            let alive: Arc<HashSet<String>> =
                Arc::new(alive.iter().map(|k| k.replacen('.', "/", 1)).collect());
            for room in state.registry.live_handles() {
                room.tell(RoomCommand::ReapGuests { alive: alive.clone() }).await;
            }
        }
    });
}
