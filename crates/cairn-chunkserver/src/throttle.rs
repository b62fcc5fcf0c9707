//! A byte-rate limiter shared by the tasks of one kind of background work (re-replication
//! copies, the scrubber), so that together they stay under a configured bandwidth and
//! clients are still served.
//!
//! Invariant: over any period the bytes admitted are at most `rate * period` plus one
//! request's worth (a request is admitted at once if the limiter is idle, and the next one
//! waits for the time the previous one "costs").

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Paces byte transfers to a rate; a rate of 0 means unlimited.
pub struct Throttle {
    bytes_per_sec: u64,
    /// When the next request may start.
    next: Mutex<Instant>,
}

impl Throttle {
    /// A limiter admitting `bytes_per_sec` on average (0: no limit).
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec,
            next: Mutex::new(Instant::now()),
        }
    }

    /// The configured rate (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Waits until `bytes` may be moved.
    pub async fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Books `bytes` and returns how long the caller must wait before moving them.
    fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*next).max(now);
        *next = start + cost;
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_to_the_rate_with_one_request_of_burst() {
        let t = Throttle::new(1_000_000);
        let now = Instant::now();
        assert_eq!(t.reserve(500_000, now), Duration::ZERO);
        let second = t.reserve(500_000, now);
        assert!((second.as_secs_f64() - 0.5).abs() < 1e-6, "{second:?}");
        let third = t.reserve(1_000_000, now);
        assert!((third.as_secs_f64() - 1.0).abs() < 1e-6, "{third:?}");
        // After an idle period the limiter starts afresh.
        let later = now + Duration::from_secs(10);
        assert_eq!(t.reserve(1, later), Duration::ZERO);
    }

    #[test]
    fn zero_means_unlimited() {
        let t = Throttle::new(0);
        assert_eq!(t.reserve(u64::MAX, Instant::now()), Duration::ZERO);
    }
}
