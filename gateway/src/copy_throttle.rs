//! The copy throttle of partition moves: a leader serves the follower fetches of replicas that
//! are catching up for a reassignment or a decommission at no more than
//! `cluster.move_copy_rate` bytes per second, all such copies on the node together.
//!
//! Why: a move copies a partition's whole hot log to its new replicas. Unthrottled, that
//! copy competes with producers and in-sync followers for the leader's disk and network,
//! and a large backlog would show up as produce latency for as long as it takes. In-sync
//! followers are never throttled (the high watermark waits for them), nor is a replica that
//! catches up after a restart (it restores the partition's redundancy).
//!
//! A token bucket holding at most one second of the rate: a fetch reads at most a quarter
//! second's worth, takes its bytes from the bucket, and when the bucket is in debt the
//! answer waits until the debt is paid. The bucket itself is a pure state machine over the
//! time it is given, so its tests need no clock.

use std::time::{Duration, Instant};

/// A shared byte-rate limit; `rate == 0` is no limit.
#[derive(Debug)]
pub(crate) struct CopyThrottle {
    rate: u64,
    bucket: parking_lot::Mutex<Bucket>,
}

/// Tokens are bytes; negative while fetches have read ahead of the rate.
#[derive(Debug)]
struct Bucket {
    at: Instant,
    tokens: f64,
}

impl CopyThrottle {
    pub(crate) fn new(rate: u64, now: Instant) -> Self {
        CopyThrottle {
            rate,
            bucket: parking_lot::Mutex::new(Bucket {
                at: now,
                tokens: rate as f64,
            }),
        }
    }

    /// Whether there is a limit at all.
    pub(crate) fn limits(&self) -> bool {
        self.rate > 0
    }

    /// The most one throttled fetch reads: a quarter second of the rate (a read returns at
    /// least one batch whatever the limit, so a larger batch still moves).
    pub(crate) fn max_bytes(&self, asked: usize) -> usize {
        if self.rate == 0 {
            return asked;
        }
        let quarter = usize::try_from(self.rate / 4).unwrap_or(usize::MAX).max(1);
        asked.min(quarter)
    }

    /// Takes `bytes` read at `now` from the bucket; returns how long the answer waits so
    /// that every copy on the node together stays at the rate.
    pub(crate) fn take(&self, now: Instant, bytes: usize) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let mut b = self.bucket.lock();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.at = b.at.max(now);
        b.tokens = (b.tokens + elapsed * rate).min(rate) - bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn no_rate_means_no_limit() {
        let t = CopyThrottle::new(0, Instant::now());
        assert!(!t.limits());
        assert_eq!(t.max_bytes(8 << 20), 8 << 20);
        assert_eq!(t.take(Instant::now(), 1 << 30), Duration::ZERO);
    }

    #[test]
    fn a_fetch_reads_at_most_a_quarter_second_of_the_rate() {
        let t = CopyThrottle::new(4 * MB, Instant::now());
        assert_eq!(t.max_bytes(8 << 20), MB as usize);
        assert_eq!(t.max_bytes(1000), 1000);
        assert_eq!(CopyThrottle::new(2, Instant::now()).max_bytes(100), 1);
    }

    #[test]
    fn one_second_of_burst_then_copies_wait_for_the_rate() {
        let start = Instant::now();
        let t = CopyThrottle::new(MB, start);
        // The full bucket pays for one second of the rate at once.
        assert_eq!(t.take(start, MB as usize), Duration::ZERO);
        // Another half megabyte at the same instant waits half a second.
        let wait = t.take(start, (MB / 2) as usize);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Two copies sharing the node: the second one's wait includes the first one's debt.
        let wait = t.take(start, (MB / 2) as usize);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // After the debt is paid, time refills the bucket.
        let later = start + Duration::from_millis(1500);
        assert_eq!(t.take(later, (MB / 2) as usize), Duration::ZERO);
    }

    #[test]
    fn an_idle_bucket_holds_at_most_one_second() {
        let start = Instant::now();
        let t = CopyThrottle::new(MB, start);
        let wait = t.take(start + Duration::from_secs(60), (3 * MB) as usize);
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn over_many_fetches_the_average_is_the_rate() {
        let start = Instant::now();
        let t = CopyThrottle::new(MB, start);
        let mut now = start;
        let chunk = t.max_bytes(8 << 20);
        let mut copied = 0u64;
        while now < start + Duration::from_secs(10) {
            now += t.take(now, chunk);
            copied += chunk as u64;
        }
        let secs = now.duration_since(start).as_secs_f64();
        // One second of burst on top of the rate.
        let expected = (secs + 1.0) * MB as f64;
        assert!(
            (copied as f64 - expected).abs() <= chunk as f64,
            "{copied} bytes in {secs} s"
        );
    }
}
