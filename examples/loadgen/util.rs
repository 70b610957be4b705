//! Small helpers: durations, a PRNG, formatting.
use super::*;

/// Parses `500ms`, `10s`, `10` (seconds), `2m`, `1h`, `250us`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration `{s}` (use e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("bad duration unit `{other}` in `{s}`")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `K/M` with 1 <= K <= M.
pub(crate) fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, m) = s.split_once('/').ok_or("shard must look like K/M, e.g. 2/4")?;
    let k: usize = k.trim().parse().map_err(|_| format!("bad shard `{s}`"))?;
    let m: usize = m.trim().parse().map_err(|_| format!("bad shard `{s}`"))?;
    if m == 0 || k == 0 || k > m {
        return Err(format!("bad shard `{s}`: K must be in 1..=M"));
    }
    Ok((k, m))
}

pub(crate) fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// xorshift64* — plenty for picking actions and rooms.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(crate) fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn fmt_rate(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

/// CPU seconds over a wall time as a percentage of one core.
pub(crate) fn pct(cpu: Option<f64>, wall: f64) -> String {
    cpu.map(|c| format!("{:.0}%", 100.0 * c / wall.max(1e-9))).unwrap_or_else(|| "n/a".into())
}

pub(crate) fn opt_rate(x: Option<f64>) -> String {
    x.map(fmt_rate).unwrap_or_else(|| "n/a".into())
}
