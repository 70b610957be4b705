//! Cluster mode (issue 12) with real processes: three `nats-server`s
//! clustered on loopback (JetStream, `sync_interval: always`) and roomd
//! nodes started with `--cluster`, killed (`kill -9`), paused
//! (`kill -STOP`/`-CONT`) and restarted by PID.
//!
//! - `nats`: finding `nats-server` (>= 2.10.23), the three-server fixture,
//!   stream leaders from the monitoring port, a minimal NATS client.
//! - `basics`: the core on the smallest setup (one `nats-server`, two
//!   nodes): any room from any node, capacity, replay, presence, clocks.
//! - `backup`: the stream `ROOMLOG` backed up with JetStream's snapshot API,
//!   restored into a fresh NATS server, served by a new node.
//! - `nodes`: roomd nodes (`--cluster`, `--node-id`) as processes.
//! - `partitions`: room logs over several streams (`--cluster-partitions`),
//!   their leaders, the recorded count, a cluster made before partitions.
//! - `workload`: acknowledged changes through every node, recorded in a
//!   ledger, and the check that a room shows all of them.
//! - `scenarios`: issue 12's "What CI must show", one test each.
//! - `replay`: issue 20 across nodes: a Socket.IO socket whose node was
//!   killed comes back through another with `since`.
//! - `interest`: rooms by interest (`--cluster-rooms interest`): held only
//!   where used, loaded anywhere on first use.
//! - `smoke`: the NATS fixture alone (no roomd needed).
//!
//! Without a `nats-server` these tests print a loud skip notice and pass,
//! unless `ROOMD_REQUIRE_NATS=1` (set by `scripts/test-all.sh`, which
//! installs the server itself) makes them fail.
//!
//! `cargo test --test it cluster:: -- --nocapture` prints failover times
//! and the servers' client and consumer placement.

mod backup;
mod basics;
mod compaction;
mod interest;
pub(crate) mod nats;
pub(crate) mod nodes;
mod partitions;
mod readiness;
mod replay;
mod scenarios;
mod smoke;
mod workload;

use nats::NatsCluster;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// Cluster tests run one at a time: each keeps several servers and many
/// connections busy, and failover times measured on 2 shared cores mean
/// little when another cluster test runs beside them.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The NATS cluster shared by the scenarios that never touch the NATS
/// processes (each with its own rooms and roomd nodes). It lives until the
/// test binary exits; the process watchdogs then stop it and remove its
/// stores.
static SHARED: Mutex<Option<NatsCluster>> = Mutex::const_new(None);

/// Holds the cluster-test turn.
pub(crate) async fn exclusive() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The cluster-test turn and the shared NATS cluster, started (or checked)
/// and ready.
pub(crate) struct SharedNats {
    nats: MutexGuard<'static, Option<NatsCluster>>,
    _turn: MutexGuard<'static, ()>,
}

impl SharedNats {
    pub(crate) async fn get(bin: &Path) -> SharedNats {
        let turn = exclusive().await;
        let mut nats = SHARED.lock().await;
        let c = nats.get_or_insert_with(|| NatsCluster::start(bin, 3));
        c.wait_ready(Duration::from_secs(30)).await;
        SharedNats { nats, _turn: turn }
    }
}

impl std::ops::Deref for SharedNats {
    type Target = NatsCluster;
    fn deref(&self) -> &NatsCluster {
        self.nats.as_ref().unwrap()
    }
}
