//! Operational metrics, rendered in the Prometheus text format at
//! `GET /metrics`.
//!
//! Each server has its own recorder (from `metrics-exporter-prometheus`),
//! not the process-global one, so two servers in one process (the tests)
//! never mix their numbers. Handles for fixed label sets are registered once
//! and kept in fields; per-method handles are cached by name. Label values
//! come only from closed sets (known method names, error codes, close
//! reasons), never from raw client input, so cardinality stays bounded.
//!
//! The store's commit metrics are process-wide (there is one store per
//! process) and are recorded with the free function [`record_commit`]; every
//! server's `/metrics` includes them.
//!
//! All names start with `roomd_`; see `docs/operations.md` for the list.

use crate::method::Method;
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::{LazyLock, OnceLock};

/// Latency buckets (seconds) for method calls and store commits: 50 µs to
/// 5 s, roughly ×2.5 apart.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Batch-size buckets for group commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// The label value for method names roomd does not know.
pub(crate) const UNKNOWN_METHOD: &str = "unknown";

/// How a connection counts in `roomd_connections`: signed in or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnKind {
    User,
    Guest,
}

impl ConnKind {
    fn label(self) -> &'static str {
        match self {
            ConnKind::User => "user",
            ConnKind::Guest => "guest",
        }
    }
}

/// One method name's handles.
struct MethodMetrics {
    ok: Counter,
    error: Counter,
    latency: Histogram,
}

/// A server's metrics. Cheap to update from any task.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    conn_user: Gauge,
    conn_guest: Gauge,
    connections_total: Counter,
    rooms: Gauge,
    rooms_loaded: Gauge,
    joins: Counter,
    leaves: Counter,
    messages: Counter,
    outbound_dropped: Counter,
    slow_consumers: Counter,
    queued_bytes: Gauge,
    /// One slot per [`Method`] (by its index) plus a last one for
    /// [`UNKNOWN_METHOD`]; each registered on the method's first call, so
    /// `/metrics` lists only methods that were called.
    methods: Box<[OnceLock<MethodMetrics>]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

fn recorder_with_buckets() -> PrometheusRecorder {
    // Bucket lists are non-empty constants, so these cannot fail; fall back
    // to the exporter's summaries if they somehow did.
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS))
        .unwrap_or_else(|_| PrometheusBuilder::new())
        .build_recorder()
}

fn key(name: &'static str, labels: &[(&'static str, SharedString)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect();
    Key::from_parts(name, labels)
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = recorder_with_buckets();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            recorder.describe_counter(name.into(), unit, help.into());
        };
        describe("roomd_connections", None, "Open DDP connections by kind (user: signed in; guest: not).");
        describe("roomd_connections_total", None, "DDP connections accepted since start.");
        describe("roomd_connections_closed_total", None, "Closed DDP connections by close reason.");
        describe(
            "roomd_handshake_failures_total",
            None,
            "Sockets dropped or refused before the WebSocket was established.",
        );
        describe("roomd_rooms", None, "Rooms currently registered.");
        describe(
            "roomd_rooms_loaded",
            None,
            "Rooms whose state this node holds (with --cluster-rooms interest, the rooms used through it).",
        );
        describe("roomd_room_joins_total", None, "Successful joins (joinRoom, join-room).");
        describe("roomd_room_join_rejections_total", None, "Refused joins by error code.");
        describe("roomd_room_leaves_total", None, "Successful leaveRoom calls.");
        describe("roomd_messages_sent_total", None, "Messages accepted by sendMessage.");
        describe("roomd_method_calls_total", None, "Method calls by method name and outcome.");
        describe(
            "roomd_method_duration_seconds",
            Some(Unit::Seconds),
            "Method call latency from frame read to reply queued.",
        );
        describe("roomd_rate_limited_total", None, "Calls answered with too-many-requests, by limit.");
        describe(
            "roomd_outbound_dropped_total",
            None,
            "Frames dropped because a connection's outbound queue was full.",
        );
        describe(
            "roomd_slow_consumer_disconnects_total",
            None,
            "Connections closed because they could not keep up.",
        );
        describe(
            "roomd_outbound_queued_bytes",
            None,
            "Bytes queued for clients and not yet written to their sockets (all connections).",
        );
        let gauge = |name, labels: &[(&'static str, SharedString)]| {
            recorder.register_gauge(&key(name, labels), &METADATA)
        };
        let counter = |name, labels: &[(&'static str, SharedString)]| {
            recorder.register_counter(&key(name, labels), &METADATA)
        };
        Metrics {
            conn_user: gauge("roomd_connections", &[("kind", ConnKind::User.label().into())]),
            conn_guest: gauge("roomd_connections", &[("kind", ConnKind::Guest.label().into())]),
            connections_total: counter("roomd_connections_total", &[]),
            rooms: gauge("roomd_rooms", &[]),
            rooms_loaded: gauge("roomd_rooms_loaded", &[]),
            joins: counter("roomd_room_joins_total", &[]),
            leaves: counter("roomd_room_leaves_total", &[]),
            messages: counter("roomd_messages_sent_total", &[]),
            outbound_dropped: counter("roomd_outbound_dropped_total", &[]),
            slow_consumers: counter("roomd_slow_consumer_disconnects_total", &[]),
            queued_bytes: gauge("roomd_outbound_queued_bytes", &[]),
            methods: (0..=Method::COUNT).map(|_| OnceLock::new()).collect(),
            handle,
            recorder,
        }
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, SharedString)]) -> Counter {
        self.recorder.register_counter(&key(name, labels), &METADATA)
    }

    fn kind_gauge(&self, kind: ConnKind) -> &Gauge {
        match kind {
            ConnKind::User => &self.conn_user,
            ConnKind::Guest => &self.conn_guest,
        }
    }

    /// A DDP connection opened (every connection starts as a guest).
    pub(crate) fn connection_opened(&self) {
        self.connections_total.increment(1);
        self.conn_guest.increment(1.0);
    }

    /// A connection signed in or out.
    pub(crate) fn connection_kind_changed(&self, from: ConnKind, to: ConnKind) {
        if from != to {
            self.kind_gauge(from).decrement(1.0);
            self.kind_gauge(to).increment(1.0);
        }
    }

    /// A connection of `kind` ended with close reason `reason`.
    pub(crate) fn connection_closed(&self, kind: ConnKind, reason: &'static str) {
        self.kind_gauge(kind).decrement(1.0);
        self.counter("roomd_connections_closed_total", &[("reason", reason.into())]).increment(1);
    }

    /// A socket that never became a DDP connection (`reason` from a closed
    /// set: timeout, bad-request, not-found, origin, …).
    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        self.counter("roomd_handshake_failures_total", &[("reason", reason.into())]).increment(1);
    }

    /// A method call finished; `method` is `None` for a name roomd does not
    /// know (counted as [`UNKNOWN_METHOD`]).
    pub(crate) fn method_call(&self, method: Option<Method>, ok: bool, secs: f64) {
        let slot = method.map_or(Method::COUNT, |m| m as usize);
        let name = method.map_or(UNKNOWN_METHOD, Method::name);
        let m = self.methods[slot].get_or_init(|| {
            let label = |outcome: &'static str| {
                self.counter(
                    "roomd_method_calls_total",
                    &[("method", name.into()), ("outcome", outcome.into())],
                )
            };
            MethodMetrics {
                ok: label("ok"),
                error: label("error"),
                latency: self.recorder.register_histogram(
                    &key("roomd_method_duration_seconds", &[("method", name.into())]),
                    &METADATA,
                ),
            }
        });
        m.record(ok, secs);
    }

    pub(crate) fn join_succeeded(&self) {
        self.joins.increment(1);
    }

    /// A join refused with wire error `code` (a closed set of codes).
    pub(crate) fn join_rejected(&self, code: String) {
        self.counter("roomd_room_join_rejections_total", &[("reason", code.into())]).increment(1);
    }

    pub(crate) fn left_room(&self) {
        self.leaves.increment(1);
    }

    pub(crate) fn message_sent(&self) {
        self.messages.increment(1);
    }

    /// A call answered `too-many-requests` by limit `limit`.
    pub(crate) fn rate_limited(&self, limit: &'static str) {
        self.counter("roomd_rate_limited_total", &[("limit", limit.into())]).increment(1);
    }

    pub(crate) fn outbound_dropped(&self) {
        self.outbound_dropped.increment(1);
    }

    /// Sampled when `/metrics` is rendered.
    pub(crate) fn outbound_queued_bytes(&self, bytes: usize) {
        self.queued_bytes.set(bytes as f64);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.increment(1);
    }

    /// Drains histogram samples into their buckets; call periodically so
    /// samples do not pile up between scrapes.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
        STORE.handle.run_upkeep();
    }

    /// The Prometheus text exposition: this server's metrics, with the
    /// room count sampled now, followed by the process-wide store metrics.
    pub(crate) fn render(&self, rooms: usize) -> String {
        self.rooms.set(rooms as f64);
        self.rooms_loaded.set(rooms as f64);
        let mut out = self.handle.render();
        out.push_str(&STORE.handle.render());
        if let Some(cluster) = CLUSTER.get() {
            out.push_str(&cluster.handle.render());
        }
        out
    }
}

impl MethodMetrics {
    fn record(&self, ok: bool, secs: f64) {
        if ok {
            self.ok.increment(1);
        } else {
            self.error.increment(1);
        }
        self.latency.record(secs);
    }
}

/// Process-wide store metrics (one store per process).
struct StoreMetrics {
    handle: PrometheusHandle,
    commit_seconds: Histogram,
    batch_size: Histogram,
    commits: Counter,
    pruned: Counter,
}

static STORE: LazyLock<StoreMetrics> = LazyLock::new(|| {
    let recorder = recorder_with_buckets();
    recorder.describe_histogram(
        "roomd_store_commit_seconds".into(),
        Some(Unit::Seconds),
        "Time to commit one group-commit batch.".into(),
    );
    recorder.describe_histogram(
        "roomd_store_commit_batch_size".into(),
        None,
        "Changes committed together in one batch.".into(),
    );
    recorder.describe_counter(
        "roomd_store_commits_total".into(),
        None,
        "Group-commit batches written.".into(),
    );
    recorder.describe_counter(
        "roomd_store_messages_pruned_total".into(),
        None,
        "Stored messages deleted by the history retention policy.".into(),
    );
    StoreMetrics {
        pruned: recorder
            .register_counter(&Key::from_static_name("roomd_store_messages_pruned_total"), &METADATA),
        commit_seconds: recorder
            .register_histogram(&Key::from_static_name("roomd_store_commit_seconds"), &METADATA),
        batch_size: recorder
            .register_histogram(&Key::from_static_name("roomd_store_commit_batch_size"), &METADATA),
        commits: recorder.register_counter(&Key::from_static_name("roomd_store_commits_total"), &METADATA),
        handle: recorder.handle(),
    }
});

/// Records one store commit: `batch` changes committed together in `secs`
/// seconds. Called by the store's writer task after each commit.
pub(crate) fn record_commit(batch: usize, secs: f64) {
    STORE.commits.increment(1);
    STORE.batch_size.record(batch as f64);
    STORE.commit_seconds.record(secs);
}

/// Records `n` messages deleted by one retention batch.
pub(crate) fn record_pruned(n: usize) {
    STORE.pruned.increment(n as u64);
}

/// Cluster mode's metrics; created by the first cluster event, so a single
/// node's `/metrics` carries none of them.
struct ClusterMetrics {
    handle: PrometheusHandle,
    append_seconds: Histogram,
    appended: Counter,
    append_retries: Counter,
    append_failures: Counter,
    applied: Counter,
    reloads: Counter,
    load_seconds: Histogram,
    unloads: Counter,
    /// Kept to register one `roomd_cluster_applied_sequence` gauge per
    /// partition stream (a closed set fixed at start).
    recorder: PrometheusRecorder,
}

static CLUSTER: OnceLock<ClusterMetrics> = OnceLock::new();

fn cluster() -> &'static ClusterMetrics {
    CLUSTER.get_or_init(|| {
        let r = recorder_with_buckets();
        let describe = |name: &'static str, help: &'static str| {
            r.describe_counter(name.into(), None, help.into());
        };
        r.describe_histogram(
            "roomd_cluster_append_seconds".into(),
            Some(Unit::Seconds),
            "Time from sending an entry to the room log to its acknowledgement (replicated and fsynced)."
                .into(),
        );
        describe("roomd_cluster_appended_total", "Entries this node appended to the log.");
        describe(
            "roomd_cluster_append_retries_total",
            "Appends retried (no leader or quorum yet; same idempotency key).",
        );
        describe(
            "roomd_cluster_append_failures_total",
            "Appends given up after the retry deadline (their callers got an error).",
        );
        describe("roomd_cluster_applied_total", "Log entries this node applied (its own and other nodes').");
        describe(
            "roomd_cluster_room_reloads_total",
            "Rooms reloaded from a snapshot because this node read their log behind a purge.",
        );
        r.describe_gauge(
            "roomd_cluster_applied_sequence".into(),
            None,
            "Stream sequence of the last entry this node applied, per partition stream.".into(),
        );
        r.describe_histogram(
            "roomd_cluster_room_load_seconds".into(),
            Some(Unit::Seconds),
            "Time to load a room this node did not hold (--cluster-rooms interest), its log read included."
                .into(),
        );
        describe(
            "roomd_cluster_room_unloads_total",
            "Rooms this node let go after they went unused here (--cluster-rooms interest).",
        );
        let key = Key::from_static_name;
        ClusterMetrics {
            append_seconds: r.register_histogram(&key("roomd_cluster_append_seconds"), &METADATA),
            appended: r.register_counter(&key("roomd_cluster_appended_total"), &METADATA),
            append_retries: r.register_counter(&key("roomd_cluster_append_retries_total"), &METADATA),
            append_failures: r.register_counter(&key("roomd_cluster_append_failures_total"), &METADATA),
            applied: r.register_counter(&key("roomd_cluster_applied_total"), &METADATA),
            reloads: r.register_counter(&key("roomd_cluster_room_reloads_total"), &METADATA),
            load_seconds: r.register_histogram(&key("roomd_cluster_room_load_seconds"), &METADATA),
            unloads: r.register_counter(&key("roomd_cluster_room_unloads_total"), &METADATA),
            handle: r.handle(),
            recorder: r,
        }
    })
}

/// One append to the cluster's log ended: acknowledged after `secs`, or
/// given up.
pub(crate) fn cluster_append(ok: bool, secs: f64) {
    let m = cluster();
    if ok {
        m.appended.increment(1);
        m.append_seconds.record(secs);
    } else {
        m.append_failures.increment(1);
    }
}

pub(crate) fn cluster_append_retry() {
    cluster().append_retries.increment(1);
}

/// A room this node did not hold was loaded in `secs`
/// (`cluster::interest`).
pub(crate) fn cluster_room_load(secs: f64) {
    cluster().load_seconds.record(secs);
}

/// A room unused here was let go (`RoomActor::sweep`).
pub(crate) fn room_let_go() {
    cluster().unloads.increment(1);
}

/// A room was reloaded from its snapshot (`cluster::compact::held_snapshot`).
pub(crate) fn cluster_room_reload() {
    cluster().reloads.increment(1);
}

/// The gauge of the last sequence this node applied from partition stream
/// `stream` (one per stream, registered once by its applier).
pub(crate) fn cluster_applied_sequence(stream: &str) -> Gauge {
    let name = key("roomd_cluster_applied_sequence", &[("stream", SharedString::from(stream.to_owned()))]);
    cluster().recorder.register_gauge(&name, &METADATA)
}

/// This node applied entry `seq` of the stream whose gauge is `sequence`.
pub(crate) fn cluster_applied(sequence: &Gauge, seq: u64) {
    cluster().applied.increment(1);
    sequence.set(seq as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics_with_bounded_method_labels() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_kind_changed(ConnKind::Guest, ConnKind::User);
        m.method_call(Some(Method::SendMessage), true, 0.001);
        m.method_call(None, false, 0.0001);
        m.method_call(None, false, 0.0001);
        m.join_rejected("error-room-full".into());
        record_commit(3, 0.002);
        m.upkeep();
        let text = m.render(7);
        assert!(text.contains("roomd_connections{kind=\"user\"} 1"), "{text}");
        assert!(text.contains("roomd_connections{kind=\"guest\"} 1"), "{text}");
        assert!(text.contains("roomd_rooms 7"), "{text}");
        assert!(text.contains("roomd_method_calls_total{method=\"unknown\",outcome=\"error\"} 2"), "{text}");
        assert!(
            text.contains("roomd_method_duration_seconds_bucket{method=\"sendMessage\",le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(text.contains("roomd_room_join_rejections_total{reason=\"error-room-full\"} 1"), "{text}");
        assert!(text.contains("roomd_store_commit_batch_size_bucket"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("roomd_"), "unprefixed metric: {line}");
        }
    }
}
