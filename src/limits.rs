//! Abuse limits applied at the session boundary, before a call reaches the
//! method layer: per-connection token buckets per method class, a per-user
//! cap on room creation, and brakes on guessing join codes: per connection
//! and per user (refusing that guesser's further tries) and per source
//! address (delaying wrong answers, never refusing a try: clients behind
//! one address must not lock each other out).
//!
//! Every refusal becomes `too-many-requests` with `details.timeToReset` (ms
//! until the call would be allowed); no frame is ever dropped silently.
//! Everything here is synchronous and clock-injected, so it is tested
//! without sockets.

use crate::ids::UserId;
use dashmap::DashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;

/// A rate: `per_sec` tokens per second, at most `burst` saved up. Written
/// `RATE[:BURST]` on the command line (`5:10`; burst defaults to the rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub per_sec: f64,
    pub burst: u32,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (rate, burst) = match s.split_once(':') {
            Some((r, b)) => (r.trim(), Some(b.trim())),
            None => (s.trim(), None),
        };
        let per_sec: f64 =
            rate.parse().map_err(|_| format!("invalid rate {s:?}: expected RATE[:BURST], e.g. 5:10"))?;
        if !per_sec.is_finite() || per_sec <= 0.0 {
            return Err(format!("invalid rate {s:?}: the rate must be positive"));
        }
        let burst = match burst {
            Some(b) => b
                .parse::<u32>()
                .ok()
                .filter(|b| *b >= 1)
                .ok_or_else(|| format!("invalid burst in {s:?}: expected a positive integer"))?,
            None => per_sec.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
        };
        Ok(RateSpec { per_sec, burst })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.per_sec, self.burst)
    }
}

/// `tokens` after `dt` seconds at `per_sec`, capped at `burst`: the one
/// refill rule of [`TokenBucket`] and [`SessionLimiter`].
fn refilled(tokens: f64, dt: f64, per_sec: f64, burst: f64) -> f64 {
    (tokens + dt * per_sec).min(burst)
}

/// `Ok` if a token is there, else how long until one is at `per_sec`.
fn available(tokens: f64, per_sec: f64) -> Result<(), Duration> {
    if tokens >= 1.0 { Ok(()) } else { Err(Duration::from_secs_f64((1.0 - tokens) / per_sec)) }
}

/// A token bucket. Starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    per_sec: f64,
    burst: f64,
}

impl TokenBucket {
    pub(crate) fn new(spec: RateSpec, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(spec.burst),
            last: now,
            per_sec: spec.per_sec,
            burst: f64::from(spec.burst),
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = refilled(self.tokens, dt, self.per_sec, self.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.check(now)?;
        self.tokens -= 1.0;
        Ok(())
    }

    /// Whether a token is available, without taking it.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        available(self.tokens, self.per_sec)
    }

    /// Gives back a token taken for something that did not happen.
    pub(crate) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Full again (nothing to remember about this key).
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Which bucket a method call draws from (a method's
/// [`limit_class`](crate::method::Method::limit_class)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// `sendMessage`.
    Message,
    /// `joinRoom`, `join-room`.
    Join,
    /// Every other method, and subscriptions.
    Other,
}

impl MethodClass {
    /// Label for `roomd_rate_limited_total`.
    pub fn label(self) -> &'static str {
        match self {
            MethodClass::Message => "messages",
            MethodClass::Join => "joins",
            MethodClass::Other => "other",
        }
    }
}

/// The limits a session applies; built once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct SessionLimits {
    /// Token buckets, room creation and code brute-force limits on or off
    /// (`--no-rate-limits` turns them off for benchmarks).
    pub rate_limits: bool,
    pub messages: RateSpec,
    pub joins: RateSpec,
    pub other: RateSpec,
    /// Join-code failures a connection, and a user, may make per
    /// `code_failure_window`.
    pub max_code_failures: u32,
    /// Join-code failures from one source address per window before its
    /// wrong answers are delayed.
    pub max_code_failures_per_address: u32,
    pub code_failure_window: Duration,
    pub max_rooms_per_minute: u32,
    pub max_subscriptions: usize,
    pub max_pending_calls: usize,
}

impl SessionLimits {
    fn code_failure_spec(&self) -> RateSpec {
        self.per_window(self.max_code_failures)
    }

    fn address_failure_spec(&self) -> RateSpec {
        self.per_window(self.max_code_failures_per_address)
    }

    fn per_window(&self, n: u32) -> RateSpec {
        let burst = n.max(1);
        let window = self.code_failure_window.as_secs_f64().max(0.001);
        RateSpec { per_sec: f64::from(burst) / window, burst }
    }

    pub(crate) fn room_creation_spec(&self) -> RateSpec {
        let burst = self.max_rooms_per_minute.max(1);
        RateSpec { per_sec: f64::from(burst) / 60.0, burst }
    }
}

/// The buckets of one connection, compact: a session holds one for its
/// whole life, idle or not, inside the connection's task (BENCHMARKS.md,
/// issue 21: four full [`TokenBucket`]s were 168 of a session's 368 bytes).
/// The rates are the server's ([`SessionLimits`], passed to every call), and
/// the four buckets are refilled together, so they share one instant: only
/// the token counts are per bucket. Refilling a bucket in several steps or
/// in one gives the same count (it is capped at the burst either way).
#[derive(Debug, Clone)]
pub(crate) struct SessionLimiter {
    /// When the buckets were last refilled.
    last: Instant,
    /// Tokens of the buckets, indexed by [`SessionLimiter::MESSAGES`] and the
    /// rest. Fractional: a bucket refills continuously.
    /// Fractional, and `f64` as in [`TokenBucket`], so a compact bucket
    /// decides as a full one would.
    tokens: [f64; 4],
}

impl SessionLimiter {
    const MESSAGES: usize = 0;
    const JOINS: usize = 1;
    const OTHER: usize = 2;
    /// Drained by each failed join code; while empty, joins are refused.
    const CODE_FAILURES: usize = 3;

    fn specs(l: &SessionLimits) -> [RateSpec; 4] {
        [l.messages, l.joins, l.other, l.code_failure_spec()]
    }

    /// All buckets full.
    pub(crate) fn new(l: &SessionLimits, now: Instant) -> Self {
        SessionLimiter { last: now, tokens: Self::specs(l).map(|s| f64::from(s.burst)) }
    }

    /// Refills every bucket up to `now`; returns the rates.
    fn refill(&mut self, l: &SessionLimits, now: Instant) -> [RateSpec; 4] {
        let specs = Self::specs(l);
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        for (t, s) in self.tokens.iter_mut().zip(&specs) {
            *t = refilled(*t, dt, s.per_sec, f64::from(s.burst));
        }
        self.last = self.last.max(now);
        specs
    }

    /// Whether bucket `i` has a token, without taking it.
    fn check(&mut self, l: &SessionLimits, i: usize, now: Instant) -> Result<(), Duration> {
        let specs = self.refill(l, now);
        available(self.tokens[i], specs[i].per_sec)
    }

    fn try_take(&mut self, l: &SessionLimits, i: usize, now: Instant) -> Result<(), Duration> {
        self.check(l, i, now)?;
        self.tokens[i] -= 1.0;
        Ok(())
    }

    /// Admits one call of `class`, or says how long until it would be.
    pub(crate) fn admit(
        &mut self,
        l: &SessionLimits,
        class: MethodClass,
        now: Instant,
    ) -> Result<(), Duration> {
        if !l.rate_limits {
            return Ok(());
        }
        let i = match class {
            MethodClass::Message => Self::MESSAGES,
            MethodClass::Join => Self::JOINS,
            MethodClass::Other => Self::OTHER,
        };
        self.try_take(l, i, now)
    }

    /// Whether this connection may try a join code now.
    pub(crate) fn may_try_code(&mut self, l: &SessionLimits, now: Instant) -> Result<(), Duration> {
        if !l.rate_limits {
            return Ok(());
        }
        self.check(l, Self::CODE_FAILURES, now)
    }

    /// A join failed because of a wrong code.
    pub(crate) fn code_failed(&mut self, l: &SessionLimits, now: Instant) {
        if l.rate_limits {
            let _ = self.try_take(l, Self::CODE_FAILURES, now);
        }
    }
}

/// A [`SessionLimiter`] that keeps its own copy of the limits: one per
/// user for REST requests (not a connection, so there is no session to
/// pass them in).
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    limits: Box<SessionLimits>,
    buckets: SessionLimiter,
}

impl ConnLimiter {
    pub(crate) fn new(l: &SessionLimits, now: Instant) -> Self {
        ConnLimiter { limits: Box::new(l.clone()), buckets: SessionLimiter::new(l, now) }
    }

    /// Admits one call of `class`, or says how long until it would be.
    pub(crate) fn admit(&mut self, class: MethodClass, now: Instant) -> Result<(), Duration> {
        self.buckets.admit(&self.limits, class, now)
    }

    #[cfg(test)]
    fn may_try_code(&mut self, now: Instant) -> Result<(), Duration> {
        self.buckets.may_try_code(&self.limits, now)
    }

    #[cfg(test)]
    fn code_failed(&mut self, now: Instant) {
        self.buckets.code_failed(&self.limits, now)
    }
}

/// Room creations per user (across all of the user's connections).
#[derive(Debug, Default)]
pub(crate) struct RoomCreationLimiter {
    buckets: DashMap<UserId, TokenBucket>,
}

/// Above this many remembered users, full buckets are forgotten.
const CREATION_PRUNE_AT: usize = 10_000;

impl RoomCreationLimiter {
    /// Takes one creation for `uid`, or says how long until it may.
    pub(crate) fn try_take(&self, uid: &UserId, spec: RateSpec, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() > CREATION_PRUNE_AT {
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        self.buckets.entry(uid.clone()).or_insert_with(|| TokenBucket::new(spec, now)).try_take(now)
    }

    /// Gives the creation back (the call failed and created nothing).
    pub(crate) fn refund(&self, uid: &UserId) {
        if let Some(mut b) = self.buckets.get_mut(uid) {
            b.refund();
        }
    }
}

/// Longest delay of a wrong join-code answer from an address over its
/// budget: short of any heartbeat timeout, since the connection reads
/// nothing while its call is answered.
pub(crate) const MAX_WRONG_CODE_DELAY: Duration = Duration::from_secs(2);

/// Join-code failures shared by several connections: one bucket per key.
#[derive(Debug)]
pub(crate) struct SharedBrake<K: Eq + Hash> {
    buckets: DashMap<K, TokenBucket>,
}

impl<K: Eq + Hash> Default for SharedBrake<K> {
    fn default() -> Self {
        SharedBrake { buckets: DashMap::new() }
    }
}

impl<K: Eq + Hash + Clone> SharedBrake<K> {
    /// How long until `key` has a try left; `Ok` if it has one now.
    pub(crate) fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.buckets.get_mut(key) {
            Some(mut b) => b.check(now),
            None => Ok(()),
        }
    }

    /// Uses one try of `key`.
    pub(crate) fn failed(&self, key: &K, spec: RateSpec, now: Instant) {
        if self.buckets.len() > CREATION_PRUNE_AT {
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        let _ = self.buckets.entry(key.clone()).or_insert_with(|| TokenBucket::new(spec, now)).try_take(now);
    }
}

/// The join-code brakes that span connections.
#[derive(Debug, Default)]
pub(crate) struct CodeBrakes {
    users: SharedBrake<UserId>,
    addresses: SharedBrake<IpAddr>,
}

/// The key of a source address: IPv4 as is, IPv6 by its /64 (one host
/// usually holds a whole /64).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl CodeBrakes {
    /// Whether `user` may try a join code now (its own failures, across
    /// its connections).
    pub(crate) fn may_try(
        &self,
        l: &SessionLimits,
        user: Option<&UserId>,
        now: Instant,
    ) -> Result<(), Duration> {
        match user {
            Some(u) if l.rate_limits => self.users.check(u, now),
            _ => Ok(()),
        }
    }

    /// A wrong code from `user` at `addr`. Returns how long to hold the
    /// answer: zero unless the address is over its budget.
    pub(crate) fn failed(
        &self,
        l: &SessionLimits,
        user: Option<&UserId>,
        addr: IpAddr,
        now: Instant,
    ) -> Duration {
        if !l.rate_limits {
            return Duration::ZERO;
        }
        if let Some(u) = user {
            self.users.failed(u, l.code_failure_spec(), now);
        }
        let key = address_key(addr);
        let over = self.addresses.check(&key, now).err();
        self.addresses.failed(&key, l.address_failure_spec(), now);
        over.map_or(Duration::ZERO, |w| w.min(MAX_WRONG_CODE_DELAY))
    }
}

/// Milliseconds to report in `timeToReset`: rounded up, at least 1.
pub(crate) fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_micros().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spec_parses() {
        assert_eq!("5:10".parse::<RateSpec>(), Ok(RateSpec { per_sec: 5.0, burst: 10 }));
        assert_eq!("0.5".parse::<RateSpec>().map(|r| r.burst), Ok(1));
        assert!("0:1".parse::<RateSpec>().is_err());
        assert!("5:0".parse::<RateSpec>().is_err());
        assert!("x".parse::<RateSpec>().is_err());
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new("5:10".parse().unwrap(), t0);
        for _ in 0..10 {
            assert!(b.try_take(t0).is_ok());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert_eq!(millis_ceil(wait), 200);
        assert!(b.try_take(t0 + Duration::from_millis(199)).is_err());
        assert!(b.try_take(t0 + Duration::from_millis(201)).is_ok());
    }

    /// Limits with the given switch and `rate:burst` buckets (messages,
    /// joins, other), every other limit 1.
    fn limits(rate_limits: bool, messages: &str, joins: &str, other: &str) -> SessionLimits {
        SessionLimits {
            rate_limits,
            messages: messages.parse().unwrap(),
            joins: joins.parse().unwrap(),
            other: other.parse().unwrap(),
            max_code_failures: 1,
            max_code_failures_per_address: 1,
            code_failure_window: Duration::from_secs(60),
            max_rooms_per_minute: 1,
            max_subscriptions: 1,
            max_pending_calls: 1,
        }
    }

    /// A session holds one for the connection's life: four token counts
    /// and one instant, not four full buckets (168 bytes).
    #[test]
    fn a_session_limiter_is_48_bytes() {
        assert_eq!(std::mem::size_of::<SessionLimiter>(), 48);
    }

    /// The compact buckets decide as full ones: each bucket its own rate
    /// and burst, refilled continuously, the others untouched by a take.
    #[test]
    fn session_limiter_buckets_are_separate() {
        let l = limits(true, "5:10", "1:2", "2:1");
        let t0 = Instant::now();
        let mut s = SessionLimiter::new(&l, t0);
        for _ in 0..10 {
            assert!(s.admit(&l, MethodClass::Message, t0).is_ok());
        }
        assert_eq!(millis_ceil(s.admit(&l, MethodClass::Message, t0).unwrap_err()), 200);
        assert!(s.admit(&l, MethodClass::Join, t0).is_ok());
        assert!(s.admit(&l, MethodClass::Join, t0).is_ok());
        assert_eq!(millis_ceil(s.admit(&l, MethodClass::Join, t0).unwrap_err()), 1000);
        assert!(s.admit(&l, MethodClass::Other, t0).is_ok());
        assert_eq!(millis_ceil(s.admit(&l, MethodClass::Other, t0).unwrap_err()), 500);
        assert!(s.may_try_code(&l, t0).is_ok());
        s.code_failed(&l, t0);
        assert_eq!(millis_ceil(s.may_try_code(&l, t0).unwrap_err()), 60_000);
        // 300 ms later: one message back (5/s), no join yet (1/s), the
        // other bucket still short of its token (2/s), capped bursts kept.
        let t1 = t0 + Duration::from_millis(300);
        assert!(s.admit(&l, MethodClass::Message, t1).is_ok());
        assert!(s.admit(&l, MethodClass::Message, t1).is_err());
        assert_eq!(millis_ceil(s.admit(&l, MethodClass::Join, t1).unwrap_err()), 700);
        assert_eq!(millis_ceil(s.admit(&l, MethodClass::Other, t1).unwrap_err()), 200);
        let t2 = t0 + Duration::from_secs(10);
        assert!(s.admit(&l, MethodClass::Join, t2).is_ok());
        assert!(s.admit(&l, MethodClass::Join, t2).is_ok());
        assert!(s.admit(&l, MethodClass::Join, t2).is_err(), "the burst caps the refill");
    }

    #[test]
    fn disabled_limiter_admits_everything() {
        let l = limits(false, "1:1", "1:1", "1:1");
        let now = Instant::now();
        let mut c = ConnLimiter::new(&l, now);
        for _ in 0..100 {
            assert!(c.admit(MethodClass::Message, now).is_ok());
            c.code_failed(now);
            assert!(c.may_try_code(now).is_ok());
        }
    }

    #[test]
    fn code_failures_lock_joins_for_a_while() {
        let l = SessionLimits {
            rate_limits: true,
            messages: "1:1".parse().unwrap(),
            joins: "100:100".parse().unwrap(),
            other: "1:1".parse().unwrap(),
            max_code_failures: 3,
            max_code_failures_per_address: 3,
            code_failure_window: Duration::from_secs(30),
            max_rooms_per_minute: 1,
            max_subscriptions: 1,
            max_pending_calls: 1,
        };
        let now = Instant::now();
        let mut c = ConnLimiter::new(&l, now);
        for _ in 0..3 {
            assert!(c.may_try_code(now).is_ok());
            c.code_failed(now);
        }
        let wait = c.may_try_code(now).unwrap_err();
        assert_eq!(millis_ceil(wait), 10_000);
        assert!(c.may_try_code(now + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn address_brake_delays_and_user_brake_refuses() {
        let l = SessionLimits {
            rate_limits: true,
            messages: "1:1".parse().unwrap(),
            joins: "1:1".parse().unwrap(),
            other: "1:1".parse().unwrap(),
            max_code_failures: 2,
            max_code_failures_per_address: 3,
            code_failure_window: Duration::from_secs(60),
            max_rooms_per_minute: 1,
            max_subscriptions: 1,
            max_pending_calls: 1,
        };
        let b = CodeBrakes::default();
        let now = Instant::now();
        let (u, v) = (UserId("u".into()), UserId("v".into()));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(b.failed(&l, Some(&u), ip, now), Duration::ZERO);
        assert!(b.may_try(&l, Some(&u), now).is_ok());
        assert_eq!(b.failed(&l, Some(&u), ip, now), Duration::ZERO);
        assert!(b.may_try(&l, Some(&u), now).is_err());
        assert!(b.may_try(&l, Some(&v), now).is_ok());
        assert_eq!(b.failed(&l, Some(&v), ip, now), Duration::ZERO);
        // The address's three tries are gone: the next wrong answer waits.
        assert_eq!(b.failed(&l, None, ip, now), MAX_WRONG_CODE_DELAY);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(b.failed(&l, None, other, now), Duration::ZERO);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let c: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(address_key(a), address_key(c));
    }

    #[test]
    fn room_creation_is_per_user_and_refundable() {
        let lim = RoomCreationLimiter::default();
        let spec = RateSpec { per_sec: 2.0 / 60.0, burst: 2 };
        let now = Instant::now();
        let (a, b) = (UserId("a".into()), UserId("b".into()));
        assert!(lim.try_take(&a, spec, now).is_ok());
        assert!(lim.try_take(&a, spec, now).is_ok());
        assert!(lim.try_take(&a, spec, now).is_err());
        assert!(lim.try_take(&b, spec, now).is_ok());
        lim.refund(&a);
        assert!(lim.try_take(&a, spec, now).is_ok());
    }
}
