//! Latency histograms and error tallies.
use super::*;
use hdrhistogram::Histogram;

/// Latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
#[derive(Clone)]
pub(crate) struct Lat(Histogram<u64>);

impl Default for Lat {
    fn default() -> Self {
        Lat(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
    }
}

impl Lat {
    pub(crate) fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros() as u64);
    }
    pub(crate) fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us);
    }
    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }
    pub(crate) fn q_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
    pub(crate) fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
    pub(crate) fn text(&self) -> String {
        if self.0.is_empty() {
            return "no samples".into();
        }
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (n={})",
            self.q_ms(0.5),
            self.q_ms(0.99),
            self.max_ms(),
            self.count()
        )
    }
    pub(crate) fn json(&self) -> Value {
        json!({
            "n": self.count(),
            "p50_ms": self.q_ms(0.5),
            "p99_ms": self.q_ms(0.99),
            "max_ms": self.max_ms(),
        })
    }
}

pub(crate) type SharedLat = Arc<Mutex<Lat>>;

pub(crate) fn shared_lat() -> SharedLat {
    Arc::new(Mutex::new(Lat::default()))
}

pub(crate) fn take(l: &SharedLat) -> Lat {
    l.lock().unwrap().clone()
}

/// Counts of named outcomes (error codes per stage, ...).
#[derive(Default)]
pub(crate) struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    pub(crate) fn add(&self, key: impl Into<String>) {
        *self.0.lock().unwrap().entry(key.into()).or_default() += 1;
    }
    pub(crate) fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
    pub(crate) fn text(&self) -> String {
        let m = self.0.lock().unwrap();
        if m.is_empty() {
            return "none".into();
        }
        m.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
    }
    pub(crate) fn json(&self) -> Value {
        let m = self.0.lock().unwrap();
        Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }
}
