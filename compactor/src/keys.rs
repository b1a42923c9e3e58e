//! Which records key-based compaction keeps: the pure decision, no I/O.
//!
//! A pass first feeds every record of the compactable range to a [`KeyMap`] (oldest first),
//! then asks [`KeyMap::keeps`] about each record while rewriting. Keys are remembered by
//! their 128-bit xxh3 hash (16 bytes per key, however long the keys are), as Kafka's cleaner
//! remembers an MD5; a collision would need two keys in one partition to share 128 bits.
//!
//! - `KeyBased`: a keyed record stays only if it is the latest for its key; the latest is a
//!   tombstone (`value = None`) stays until `delete_retention` after its timestamp.
//! - `DeleteMarkers`: history stays, except that a tombstone removes every earlier record of
//!   its key, and goes itself after `delete_retention`.
//! - Keyless records always stay: nothing can supersede them.

use std::collections::HashMap;

use pyralog_types::{CompactionMode, LogOffset, Record, TimestampMicros};
use xxhash_rust::xxh3::xxh3_128;

/// The latest offset seen per key (and, for `DeleteMarkers`, per deleted key).
#[derive(Debug, Clone)]
pub struct KeyMap {
    mode: CompactionMode,
    /// Key hash → (latest offset, the timestamp of that record if it is a tombstone still
    /// inside its retention).
    latest: HashMap<u128, (u64, Option<TimestampMicros>)>,
    /// Tombstones older than this (record timestamp) are dropped.
    tombstone_cutoff: TimestampMicros,
}

impl KeyMap {
    /// A map for `mode` (`KeyBased` or `DeleteMarkers`); `tombstone_cutoff` is
    /// `now - delete_retention`.
    pub fn new(mode: CompactionMode, tombstone_cutoff: TimestampMicros) -> Self {
        KeyMap {
            mode,
            latest: HashMap::new(),
            tombstone_cutoff,
        }
    }

    /// Remembers `r` (records must come in offset order within one pass).
    pub fn observe(&mut self, r: &Record) {
        let Some(key) = &r.key else { return };
        let remembered = match self.mode {
            CompactionMode::KeyBased => true,
            CompactionMode::DeleteMarkers => r.value.is_none(),
            _ => false,
        };
        if remembered {
            let young_tombstone =
                (r.value.is_none() && r.timestamp >= self.tombstone_cutoff).then_some(r.timestamp);
            let slot = self
                .latest
                .entry(xxh3_128(key))
                .or_insert((r.offset.0, young_tombstone));
            if r.offset.0 >= slot.0 {
                *slot = (r.offset.0, young_tombstone);
            }
        }
    }

    /// Tombstones that survive this pass only because they are younger than
    /// `delete_retention`: a later pass has work to do even if no new data arrives.
    pub fn pending_tombstones(&self) -> u64 {
        self.latest
            .values()
            .filter(|(_, young)| young.is_some())
            .count() as u64
    }

    /// The timestamp of the oldest tombstone kept for its retention: it expires at this
    /// time plus `delete_retention`.
    pub fn oldest_pending_tombstone(&self) -> Option<TimestampMicros> {
        self.latest.values().filter_map(|(_, young)| *young).min()
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Whether compaction keeps `r`.
    pub fn keeps(&self, r: &Record) -> bool {
        let Some(key) = &r.key else { return true };
        let latest = self
            .latest
            .get(&xxh3_128(key))
            .map(|(offset, _)| LogOffset(*offset));
        let expired_tombstone = r.value.is_none() && r.timestamp < self.tombstone_cutoff;
        match self.mode {
            // The map holds the latest record per key (KeyBased) or the latest tombstone per
            // key (DeleteMarkers): anything older for that key is superseded.
            CompactionMode::KeyBased | CompactionMode::DeleteMarkers => match latest {
                Some(l) if l > r.offset => false,
                _ => !expired_tombstone,
            },
            CompactionMode::None | CompactionMode::TimeSeries => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use proptest::prelude::*;
    use pyralog_types::Epoch;

    use super::*;

    fn rec(offset: u64, key: Option<&str>, value: Option<&str>, ts: i64) -> Record {
        Record {
            offset: LogOffset(offset),
            epoch: Epoch(1),
            timestamp: ts,
            key: key.map(|k| Bytes::from(k.to_owned())),
            value: value.map(|v| Bytes::from(v.to_owned())),
            headers: Vec::new(),
        }
    }

    fn compact(mode: CompactionMode, records: &[Record], cutoff: i64) -> Vec<u64> {
        let mut map = KeyMap::new(mode, cutoff);
        records.iter().for_each(|r| map.observe(r));
        records
            .iter()
            .filter(|r| map.keeps(r))
            .map(|r| r.offset.0)
            .collect()
    }

    #[test]
    fn the_user_profile_example_keeps_offsets_30_and_40() {
        let log = [
            rec(10, Some("user-1"), Some("{\"name\":\"Ann\"}"), 1),
            rec(20, Some("user-2"), Some("{\"name\":\"Bob\"}"), 2),
            rec(30, Some("user-1"), Some("{\"name\":\"Ann B.\"}"), 3),
            rec(40, Some("user-2"), Some("{\"name\":\"Bob C.\"}"), 4),
        ];
        assert_eq!(compact(CompactionMode::KeyBased, &log, 0), vec![30, 40]);
    }

    #[test]
    fn tombstones_stay_for_delete_retention_then_go() {
        let log = [
            rec(0, Some("a"), Some("1"), 100),
            rec(1, Some("a"), None, 200),
            rec(2, None, Some("keyless"), 50),
        ];
        assert_eq!(compact(CompactionMode::KeyBased, &log, 150), vec![1, 2]);
        assert_eq!(compact(CompactionMode::KeyBased, &log, 250), vec![2]);
    }

    #[test]
    fn delete_markers_keep_history_but_erase_deleted_keys() {
        let log = [
            rec(0, Some("a"), Some("1"), 1),
            rec(1, Some("b"), Some("1"), 1),
            rec(2, Some("a"), Some("2"), 1),
            rec(3, Some("a"), None, 10),
            rec(4, Some("b"), Some("2"), 1),
            rec(5, Some("a"), Some("3"), 1),
        ];
        assert_eq!(
            compact(CompactionMode::DeleteMarkers, &log, 5),
            vec![1, 3, 4, 5]
        );
        assert_eq!(
            compact(CompactionMode::DeleteMarkers, &log, 50),
            vec![1, 4, 5]
        );
    }

    proptest! {
        /// Against a model map: what survives is exactly the latest live record per key (plus
        /// tombstones inside their retention, plus every keyless record), in offset order.
        #[test]
        fn key_based_matches_a_model(
            ops in prop::collection::vec((0u8..8, prop::bool::weighted(0.2), 0i64..100, any::<bool>()), 0..300),
            cutoff in 0i64..100,
        ) {
            let records: Vec<Record> = ops.iter().enumerate().map(|(i, (k, tomb, ts, keyless))| {
                let key = (!keyless).then(|| format!("k{k}"));
                rec(i as u64, key.as_deref(), (!tomb).then_some("v"), *ts)
            }).collect();
            let mut model: BTreeMap<String, &Record> = BTreeMap::new();
            for r in &records {
                if let Some(k) = &r.key {
                    model.insert(String::from_utf8_lossy(k).into_owned(), r);
                }
            }
            let mut want: Vec<u64> = model.values()
                .filter(|r| r.value.is_some() || r.timestamp >= cutoff)
                .map(|r| r.offset.0)
                .chain(records.iter().filter(|r| r.key.is_none()).map(|r| r.offset.0))
                .collect();
            want.sort_unstable();
            prop_assert_eq!(compact(CompactionMode::KeyBased, &records, cutoff), want);
        }
    }
}
