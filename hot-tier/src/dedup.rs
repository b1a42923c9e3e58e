//! Per-record dedup ids: the partition remembers the dedup ids of recent records (a window by
//! count and age) and the leader drops a record whose id it saw within the window.
//!
//! This complements the idempotent producer: sequences protect one producer session's
//! retries; a dedup id protects a record sent again by anything (a restarted producer without
//! a stable name, an HTTP bridge, a replayed job), as long as the first copy is recent.
//!
//! Only batches whose attribute bit says "has dedup ids" are decoded for the check, so logs
//! that never use them pay nothing. The window is rebuilt lazily: the first batch with dedup
//! ids after an open or a truncation makes the leader read the records appended within the
//! window's age (from the time index on) and note their ids. A follower keeps its window up
//! to date only once it has one (it was a leader before); a new leader that has none rebuilds
//! it from its log, which holds everything the old leader acknowledged.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use pyralog_types::batch::DEDUP_ID_HEADER;
use pyralog_types::{LogOffset, Record, TimestampMicros};

/// How long and how many dedup ids a partition remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupSettings {
    pub window: Duration,
    pub max_ids: usize,
}

impl Default for DedupSettings {
    fn default() -> Self {
        DedupSettings {
            window: Duration::from_secs(600),
            max_ids: 200_000,
        }
    }
}

/// The dedup id of a record, if it carries one.
pub(crate) fn dedup_id(r: &Record) -> Option<&Bytes> {
    r.headers
        .iter()
        .find(|h| h.key == DEDUP_ID_HEADER)
        .map(|h| &h.value)
}

/// The ids seen recently, with the offset of the record that carried each.
#[derive(Debug)]
pub(crate) struct DedupWindow {
    settings: DedupSettings,
    ids: HashMap<Bytes, LogOffset>,
    /// Insertion order, for eviction: (id, when noted).
    order: VecDeque<(Bytes, TimestampMicros)>,
    /// Whether the window reflects the log (false after open or truncation until rebuilt).
    loaded: bool,
}

/// What the check found in one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DedupVerdict {
    /// Indexes (in the batch) of records to drop, with the offset of the copy already stored
    /// (`None`: an earlier record of the same batch, whose offset is known once appended).
    pub(crate) drop: Vec<(usize, Option<LogOffset>, usize)>,
}

impl DedupWindow {
    pub(crate) fn new(settings: DedupSettings) -> Self {
        DedupWindow {
            settings,
            ids: HashMap::new(),
            order: VecDeque::new(),
            loaded: false,
        }
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub(crate) fn settings(&self) -> DedupSettings {
        self.settings
    }

    /// Forgets everything (the log changed under the window: truncation, reset).
    pub(crate) fn invalidate(&mut self) {
        self.ids.clear();
        self.order.clear();
        self.loaded = false;
    }

    /// Marks the window as reflecting the log from now on.
    pub(crate) fn mark_loaded(&mut self) {
        self.loaded = true;
    }

    /// Notes `records` (with their offsets) as stored at `now`.
    pub(crate) fn note(&mut self, records: &[Record], now: TimestampMicros) {
        for r in records {
            if let Some(id) = dedup_id(r) {
                if self.ids.insert(id.clone(), r.offset).is_none() {
                    self.order.push_back((id.clone(), now));
                }
            }
        }
        self.evict(now);
    }

    fn evict(&mut self, now: TimestampMicros) {
        let age = i64::try_from(self.settings.window.as_micros()).unwrap_or(i64::MAX);
        while let Some((id, at)) = self.order.front() {
            let too_many = self.order.len() > self.settings.max_ids;
            let too_old = now.saturating_sub(*at) > age;
            if !too_many && !too_old {
                break;
            }
            self.ids.remove(id);
            self.order.pop_front();
        }
    }

    /// Which records of a batch are duplicates: of a stored record in the window, or of an
    /// earlier record in the same batch (the third field is that record's index).
    pub(crate) fn check(&mut self, records: &[Record], now: TimestampMicros) -> DedupVerdict {
        self.evict(now);
        let mut first_in_batch: HashMap<&Bytes, usize> = HashMap::new();
        let mut verdict = DedupVerdict::default();
        for (i, r) in records.iter().enumerate() {
            let Some(id) = dedup_id(r) else { continue };
            if let Some(stored) = self.ids.get(id) {
                verdict.drop.push((i, Some(*stored), i));
            } else if let Some(first) = first_in_batch.get(id) {
                verdict.drop.push((i, None, *first));
            } else {
                first_in_batch.insert(id, i);
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use pyralog_types::{Epoch, Header};

    use super::*;

    fn rec(offset: u64, id: Option<&str>) -> Record {
        Record {
            offset: LogOffset(offset),
            epoch: Epoch(1),
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: id
                .map(|id| vec![Header::dedup_id(id.to_owned())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn seen_ids_and_repeats_within_a_batch_are_duplicates() {
        let mut w = DedupWindow::new(DedupSettings::default());
        w.note(&[rec(10, Some("a")), rec(11, None)], 0);
        let v = w.check(
            &[
                rec(0, Some("a")),
                rec(0, Some("b")),
                rec(0, None),
                rec(0, Some("b")),
            ],
            0,
        );
        assert_eq!(
            v.drop,
            vec![(0, Some(LogOffset(10)), 0), (3, None, 1)],
            "a was stored at 10; the second b repeats the batch's first"
        );
    }

    #[test]
    fn ids_leave_the_window_by_age_and_by_count() {
        let mut w = DedupWindow::new(DedupSettings {
            window: Duration::from_secs(1),
            max_ids: 2,
        });
        w.note(&[rec(1, Some("a"))], 0);
        w.note(&[rec(2, Some("b"))], 500_000);
        assert_eq!(w.check(&[rec(0, Some("a"))], 600_000).drop.len(), 1);
        w.note(&[rec(3, Some("c"))], 1_200_000);
        assert!(
            w.check(&[rec(0, Some("a"))], 1_300_000).drop.is_empty(),
            "a is older than 1 s"
        );
        w.note(&[rec(4, Some("d"))], 1_300_000);
        w.note(&[rec(5, Some("e"))], 1_300_000);
        assert!(
            w.check(&[rec(0, Some("c"))], 1_300_000).drop.is_empty(),
            "only the last 2 are kept"
        );
        assert_eq!(w.check(&[rec(0, Some("e"))], 1_300_000).drop.len(), 1);
        w.invalidate();
        assert!(!w.is_loaded());
        assert!(w.check(&[rec(0, Some("e"))], 1_300_000).drop.is_empty());
    }
}
