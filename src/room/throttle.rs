//! The per-room brake on join-code guessing, as a pure rule: it is told the
//! time, so tests drive it without a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// After [`CodeThrottle::MAX`] wrong codes within [`CodeThrottle::WINDOW`],
/// each further wrong code is answered [`CodeThrottle::DELAY`] late, until
/// the window has moved on. Right codes are answered at once: refusing them
/// would let anyone lock a room's invitees out. Guessers themselves are
/// braked in the session (per connection, user and address).
#[derive(Debug, Default)]
pub(super) struct CodeThrottle {
    /// Times of the latest wrong codes, oldest first; at most `MAX`.
    failures: VecDeque<Instant>,
}

impl CodeThrottle {
    pub(super) const MAX: usize = 20;
    pub(super) const WINDOW: Duration = Duration::from_secs(60);
    pub(super) const DELAY: Duration = Duration::from_secs(1);

    /// Records a wrong code at `now`; returns how late to answer it.
    pub(super) fn wrong_code(&mut self, now: Instant) -> Option<Duration> {
        while self.failures.front().is_some_and(|t| now.saturating_duration_since(*t) >= Self::WINDOW) {
            self.failures.pop_front();
        }
        let late = self.failures.len() >= Self::MAX;
        self.failures.push_back(now);
        if self.failures.len() > Self::MAX {
            self.failures.pop_front();
        }
        late.then_some(Self::DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_codes_are_answered_late_only_past_the_limit_within_the_window() {
        let t0 = Instant::now();
        let mut t = CodeThrottle::default();
        for i in 0..CodeThrottle::MAX {
            assert_eq!(t.wrong_code(t0 + Duration::from_millis(i as u64)), None, "guess {i}");
        }
        assert_eq!(t.wrong_code(t0 + Duration::from_secs(1)), Some(CodeThrottle::DELAY));
        // Once the window has moved past the burst, answers are prompt again.
        let later = t0 + CodeThrottle::WINDOW + Duration::from_secs(2);
        assert_eq!(t.wrong_code(later), None);
    }
}
