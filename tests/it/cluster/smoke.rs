//! The NATS fixture alone: what roomd's cluster mode relies on holds on the
//! servers the scenarios start, and every helper the scenarios use
//! (leader lookup, kill -9, restart on the same store, STOP/CONT, cleanup)
//! does what it says.

use super::exclusive;
use super::nats::{NatsCluster, NatsConn, Reply, nats_or_skip};
use crate::proc::alive;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const STREAM: &str = "SMOKE";

fn conn(nats: &NatsCluster, i: usize) -> Option<NatsConn> {
    NatsConn::connect(nats.servers[i].client_port).ok()
}

fn json_of(r: Reply) -> Value {
    match r {
        Reply::Json(v) => v,
        Reply::Status(s) => panic!("status {s} instead of a JSON reply"),
    }
}

/// Publishes to `smoke.a` expecting `last` as the subject's last sequence.
fn publish_cas(c: &mut NatsConn, last: u64, body: &str) -> std::io::Result<Reply> {
    let last = last.to_string();
    c.request(
        "smoke.a",
        &[("Nats-Expected-Last-Subject-Sequence", &last), ("Nats-Msg-Id", body)],
        body.as_bytes(),
        Duration::from_secs(5),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_fixture_forms_a_durable_cluster_and_survives_a_leader_kill() {
    let Some(bin) = nats_or_skip("nats_fixture_forms_a_durable_cluster_and_survives_a_leader_kill") else {
        return;
    };
    let _turn = exclusive().await;
    let t0 = Instant::now();
    let mut nats = NatsCluster::start(bin, 3);
    // Ready includes: a meta leader, three peers, `sync_interval: always`.
    nats.wait_ready(Duration::from_secs(30)).await;
    eprintln!("smoke: 3 nats-servers ready in {} ms", t0.elapsed().as_millis());

    let mut c = conn(&nats, 0).expect("connect to s1");
    let cfg = json!({"name": STREAM, "subjects": ["smoke.>"], "storage": "file", "num_replicas": 3});
    let created = json_of(
        c.request(
            &format!("$JS.API.STREAM.CREATE.{STREAM}"),
            &[],
            cfg.to_string().as_bytes(),
            Duration::from_secs(10),
        )
        .unwrap(),
    );
    assert_eq!(created["config"]["num_replicas"], 3, "{created}");
    assert_eq!(created["config"]["storage"], "file", "{created}");

    // Per-subject compare-and-set, the fence roomd's appends rely on.
    for seq in 0..20u64 {
        let ack = json_of(publish_cas(&mut c, seq, &format!("m{seq}")).unwrap());
        assert_eq!(ack["seq"], seq + 1, "{ack}");
    }
    let stale = json_of(publish_cas(&mut c, 5, "stale").unwrap());
    assert_eq!(stale["error"]["err_code"], 10071, "a stale append must be refused: {stale}");

    // kill -9 the stream leader: appends resume on the survivors.
    let leader = nats.wait_stream_leader(STREAM, Duration::from_secs(10)).await;
    let killed_pid = nats.servers[leader].pid().unwrap();
    nats.kill9(leader);
    assert!(!alive(killed_pid), "kill -9 must reap the server");
    let killed = Instant::now();
    let survivor = (leader + 1) % 3;
    let mut c: Option<NatsConn> = None;
    let resumed = loop {
        assert!(killed.elapsed() < Duration::from_secs(30), "no append accepted 30 s after the leader died");
        if c.is_none() {
            c = conn(&nats, survivor);
        }
        if let Some(conn) = c.as_mut() {
            // Retried with the same message id: applied once at most.
            match publish_cas(conn, 20, "after-kill") {
                Ok(Reply::Json(ack)) if ack["seq"] == 21 => break killed.elapsed(),
                Ok(Reply::Json(ack)) if ack["duplicate"] == true => break killed.elapsed(),
                Ok(_) => {}
                Err(_) => c = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "smoke: first acknowledged append {} ms after kill -9 of the stream leader {}",
        resumed.as_millis(),
        nats.servers[leader].name
    );

    // Restarted on the same store, it catches up: every server holds all 21.
    nats.restart(leader);
    nats.wait_ready(Duration::from_secs(30)).await;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let states: Vec<Value> = (0..3)
            .map(|i| nats.stream_on(i, STREAM).map(|s| s["state"].clone()).unwrap_or_default())
            .collect();
        if states.iter().all(|s| s["messages"] == 21 && s["last_seq"] == 21) {
            break;
        }
        assert!(Instant::now() < end, "replicas did not converge on 21 messages: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A paused follower (a minority) does not stop appends.
    let leader = nats.wait_stream_leader(STREAM, Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    nats.stop(follower);
    let mut c = conn(&nats, leader).expect("connect to the leader");
    let ack = json_of(publish_cas(&mut c, 21, "minority-stopped").unwrap());
    assert_eq!(ack["seq"], 22, "{ack}");
    nats.cont(follower);
    nats.wait_ready(Duration::from_secs(30)).await;

    // Cleanup: dropping the fixture ends every server.
    let pids: Vec<u32> = nats.servers.iter().filter_map(|s| s.pid()).collect();
    assert_eq!(pids.len(), 3);
    drop(nats);
    for pid in pids {
        assert!(!alive(pid), "nats-server {pid} left running");
    }
}

/// The watchdog stops a child when the test binary dies without running a
/// single destructor: this test runs itself again as a child process that
/// starts a guarded `sleep` and then SIGKILLs itself.
#[test]
fn watchdog_kills_the_child_when_the_test_binary_dies() {
    use crate::proc::{Guarded, signal};
    use std::process::{Command, Stdio};
    if let Ok(dir) = std::env::var("ROOMD_WATCHDOG_PROBE") {
        let scratch = std::path::Path::new(&dir).join("scratch");
        let g = Guarded::spawn(Command::new("sleep").arg("30"), Some(&scratch)).unwrap();
        println!("PID {}", g.pid());
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        signal(std::process::id(), "KILL");
        unreachable!();
    }
    let dir = crate::proc::tempdir("watchdog");
    std::fs::create_dir_all(dir.join("scratch")).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster::smoke::watchdog_kills_the_child_when_the_test_binary_dies",
            "--nocapture",
        ])
        .env("ROOMD_WATCHDOG_PROBE", &dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("PID "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the probe did not report its child: {text}"));
    let end = Instant::now() + Duration::from_secs(5);
    while (alive(pid) || dir.exists()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (child_gone, dir_gone) = (!alive(pid), !dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(child_gone, "the guarded process outlived the test binary");
    assert!(dir_gone, "the watchdog left the scratch directory and its empty parent behind");
}
