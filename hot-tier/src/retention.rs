//! Which closed segments retention removes: a pure decision, separate from the deleting.
//!
//! Keeping the rule free of I/O makes it easy to read and to test: segments are judged oldest
//! first and judging stops at the first one that must be kept, so retention never leaves a
//! hole in the offset range. The active segment is never offered.

use std::time::Duration;

use pyralog_types::{LogOffset, Retention, TimestampMicros};

/// What retention needs to know about a closed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) size: u64,
    pub(crate) max_timestamp: Option<TimestampMicros>,
    pub(crate) last_offset: Option<LogOffset>,
}

/// The rule for the oldest remaining segment, given the size of all segments still kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) retention: Retention,
    pub(crate) deletable_below: LogOffset,
    pub(crate) now: TimestampMicros,
}

impl Rule {
    fn too_old(&self, max_age: Duration, c: &Candidate) -> bool {
        let age = i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX);
        let cutoff = self.now.saturating_sub(age);
        // An empty segment holds nothing worth keeping.
        c.max_timestamp.is_none_or(|t| t < cutoff)
    }

    /// Whether `c`, the oldest segment left, is deleted while `total` bytes are kept.
    pub(crate) fn deletes(&self, c: &Candidate, total: u64) -> bool {
        if c.last_offset.is_some_and(|l| l >= self.deletable_below) {
            return false;
        }
        let by_time = self.retention.max_age().is_some_and(|a| self.too_old(a, c));
        let by_size = self.retention.max_bytes().is_some_and(|b| total > b);
        by_time || by_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn cand(size: u64, ts: i64, last: u64) -> Candidate {
        Candidate {
            size,
            max_timestamp: Some(ts),
            last_offset: Some(LogOffset(last)),
        }
    }

    fn rule(retention: Retention, below: u64) -> Rule {
        Rule {
            retention,
            deletable_below: LogOffset(below),
            now: 100 * SEC,
        }
    }

    #[test]
    fn time_size_both_and_infinite() {
        let old = cand(10, 10 * SEC, 5);
        let young = cand(10, 95 * SEC, 5);
        let t = rule(Retention::Time(Duration::from_secs(30)), u64::MAX);
        assert!(t.deletes(&old, 0));
        assert!(!t.deletes(&young, 1_000));
        let s = rule(Retention::Size(100), u64::MAX);
        assert!(s.deletes(&young, 101));
        assert!(!s.deletes(&old, 100));
        let ts = rule(
            Retention::TimeAndSize(Duration::from_secs(30), 100),
            u64::MAX,
        );
        assert!(ts.deletes(&old, 0));
        assert!(ts.deletes(&young, 101));
        assert!(!ts.deletes(&young, 100));
        let inf = rule(Retention::Infinite, u64::MAX);
        assert!(!inf.deletes(&old, u64::MAX));
    }

    #[test]
    fn deletable_below_gates_everything() {
        let old = cand(10, 0, 5);
        assert!(!rule(Retention::Time(Duration::from_secs(1)), 5).deletes(&old, u64::MAX));
        assert!(rule(Retention::Time(Duration::from_secs(1)), 6).deletes(&old, u64::MAX));
    }
}
