//! Idempotent producers: the per-producer sequence state that turns retries into no-ops.
//!
//! A producer that does not hear back from a produce request sends the batch again. Without
//! help the log would hold it twice. An idempotent producer (Kafka's KIP-98 scheme) numbers its
//! records: each batch header carries `producer_id`, `producer_epoch` and `base_sequence`,
//! outside the fields the leader patches. The leader remembers, per producer, the epoch and the
//! sequence ranges of its last [`BATCHES_KEPT`] batches (a producer has at most that many
//! requests in flight), and while still holding the append lock decides: a batch that repeats
//! one of them is a duplicate, answered with the original offsets and not written; one that
//! continues the sequence is appended; anything else is out of order, and an older epoch is
//! fenced (a zombie producer instance).
//!
//! This module is the state and the rules only, with no I/O, so every rule is a unit test
//! away. The table is a pure function of the batch headers in the log: the leader's check
//! ([`ProducerStateTable::check`]) only *decides*, and every batch that reaches the log
//! (leader append, follower copy, replay of the headers on open) goes through the same
//! [`ProducerStateTable::record`]. That is what lets a follower that becomes leader, or a
//! node that restarts, hold the same table as a leader that never stopped. For the same
//! reason a producer's "last append" time is its last batch's `max_timestamp` from the header,
//! not the wall clock at append (which a replay could not know).
//!
//! The only I/O is the snapshot codec ([`snapshot`]): the table is written to a
//! `{offset}.snapshot` file when a segment rolls and on clean close, so opening never has to
//! read closed segments; producers idle for longer than the expiration are dropped at that
//! moment. Truncation rebuilds the table from the newest snapshot below the cut plus the
//! headers after it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use pyralog_types::batch::{Batch, BatchError, HEADER_LEN};
use pyralog_types::{LogOffset, TimestampMicros};

use crate::error::HotError;

pub(crate) mod snapshot;
#[cfg(test)]
mod tests;

/// How many of a producer's most recent batches are remembered for duplicate detection (a
/// producer keeps at most this many produce requests in flight, as in Kafka).
pub(crate) const BATCHES_KEPT: usize = 5;

/// The default of [`crate::PartitionOptions::producer_expiration`] (Kafka's
/// `producer.id.expiration.ms`): seven days.
pub const DEFAULT_PRODUCER_EXPIRATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

// Byte positions of the producer fields in a batch header (see `pyralog_types::batch`'s
// layout table). `BatchHeader` does not decode them; scans read only the header bytes.
const OFF_RECORD_COUNT: usize = 31;
const OFF_MAX_TS: usize = 43;
const OFF_PRODUCER_ID: usize = 51;
const OFF_PRODUCER_EPOCH: usize = 59;
const OFF_BASE_SEQUENCE: usize = 61;
// Scans hand over the fixed header only: it must hold the producer fields.
const _: () = assert!(OFF_BASE_SEQUENCE + 4 <= HEADER_LEN);

/// One producer, as [`crate::PartitionLog::producers`] describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshot {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence number of the producer's last appended record.
    pub last_sequence: i32,
    /// Offset of the producer's last appended record.
    pub last_offset: LogOffset,
    /// `max_timestamp` of the producer's last batch; expiry counts from it.
    pub last_timestamp: TimestampMicros,
}

/// The producer fields of one batch header (only for batches with a producer id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) first_seq: i32,
    pub(crate) record_count: u32,
    pub(crate) max_timestamp: TimestampMicros,
}

impl ProducerBatch {
    /// The producer fields of `batch`, or `None` if it is not idempotent (`producer_id < 0`).
    pub(crate) fn of(batch: &Batch) -> Option<ProducerBatch> {
        (batch.producer_id() >= 0).then(|| ProducerBatch {
            producer_id: batch.producer_id(),
            epoch: batch.producer_epoch(),
            first_seq: batch.base_sequence(),
            record_count: batch.record_count(),
            max_timestamp: batch.max_timestamp(),
        })
    }

    /// The same, from the fixed header ([`HEADER_LEN`] bytes) of a stored batch (scans read
    /// headers only). `None` if too short or not idempotent.
    pub(crate) fn from_header(head: &[u8]) -> Option<ProducerBatch> {
        let field = |at: usize, len: usize| head.get(at..at + len);
        let producer_id = i64::from_le_bytes(field(OFF_PRODUCER_ID, 8)?.try_into().ok()?);
        if producer_id < 0 {
            return None;
        }
        Some(ProducerBatch {
            producer_id,
            epoch: i16::from_le_bytes(field(OFF_PRODUCER_EPOCH, 2)?.try_into().ok()?),
            first_seq: i32::from_le_bytes(field(OFF_BASE_SEQUENCE, 4)?.try_into().ok()?),
            record_count: u32::from_le_bytes(field(OFF_RECORD_COUNT, 4)?.try_into().ok()?),
            max_timestamp: i64::from_le_bytes(field(OFF_MAX_TS, 8)?.try_into().ok()?),
        })
    }

    /// Whether the fields make sense for an idempotent batch (a leader refuses others; the
    /// table ignores them if they arrive some other way).
    fn is_well_formed(&self) -> bool {
        self.epoch >= 0 && self.first_seq >= 0 && self.record_count > 0
    }

    /// The sequence number of the batch's last record.
    pub(crate) fn last_seq(&self) -> i32 {
        add_sequence(self.first_seq, self.record_count.saturating_sub(1))
    }
}

/// `seq + n` in sequence space: after `i32::MAX` comes 0 (Kafka's rule).
pub(crate) fn add_sequence(seq: i32, n: u32) -> i32 {
    let space = i64::from(i32::MAX) + 1;
    let sum = (i64::from(seq) + i64::from(n)).rem_euclid(space);
    // `rem_euclid` by 2^31 fits in an i32.
    i32::try_from(sum).unwrap_or(0)
}

/// Where one remembered batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: u64,
    pub(crate) last_offset: u64,
    pub(crate) max_timestamp: TimestampMicros,
}

/// One producer's state: its epoch and its last batches in that epoch, oldest first (never
/// empty: an entry exists because a batch was recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn last(&self) -> Option<&BatchMetadata> {
        self.batches.back()
    }

    /// `max_timestamp` of the last batch: when the producer was last heard from.
    fn last_timestamp(&self) -> TimestampMicros {
        self.last()
            .map_or(TimestampMicros::MIN, |b| b.max_timestamp)
    }
}

/// What the leader does with a batch that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it.
    Append,
    /// A retry of a batch already in the log: answer with where that one landed.
    Duplicate(BatchMetadata),
}

/// Every known idempotent producer of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The leader's rules for `b`, decided before the batch is written (without changing the
    /// table: the caller [`record`](Self::record)s the batch once it is in the log).
    pub(crate) fn check(&self, b: &ProducerBatch) -> Result<Verdict, HotError> {
        if !b.is_well_formed() {
            return Err(HotError::InvalidBatch(BatchError::Malformed(
                "an idempotent batch needs a non-negative producer epoch and base sequence",
            )));
        }
        // Unknown: new, or its state expired. Nothing to check against.
        let Some(entry) = self.producers.get(&b.producer_id) else {
            return Ok(Verdict::Append);
        };
        let out_of_order = |expected| HotError::OutOfOrderSequence {
            producer_id: b.producer_id,
            expected,
            got: b.first_seq,
        };
        if b.epoch < entry.epoch {
            return Err(HotError::ProducerFenced {
                producer_id: b.producer_id,
                epoch: b.epoch,
                current: entry.epoch,
            });
        }
        if b.epoch > entry.epoch {
            // A new producer instance (or a bumped epoch) starts its sequence over.
            return if b.first_seq == 0 {
                Ok(Verdict::Append)
            } else {
                Err(out_of_order(0))
            };
        }
        let last_seq = b.last_seq();
        let retry = entry
            .batches
            .iter()
            .rev()
            .find(|m| m.first_seq == b.first_seq && m.last_seq == last_seq);
        if let Some(original) = retry {
            return Ok(Verdict::Duplicate(*original));
        }
        let expected = entry.last().map_or(0, |m| add_sequence(m.last_seq, 1));
        if b.first_seq == expected {
            Ok(Verdict::Append)
        } else {
            Err(out_of_order(expected))
        }
    }

    /// Remembers a batch that is now in the log at `[base_offset, last_offset]`. No checks
    /// (a follower copies whatever its leader wrote; a replay repeats what was written): the
    /// log is the truth, so a different epoch, even an older one, replaces the producer's
    /// epoch and forgets its batches. Malformed producer fields are ignored.
    pub(crate) fn record(&mut self, b: &ProducerBatch, base_offset: u64, last_offset: u64) {
        if !b.is_well_formed() {
            return;
        }
        let meta = BatchMetadata {
            first_seq: b.first_seq,
            last_seq: b.last_seq(),
            base_offset,
            last_offset,
            max_timestamp: b.max_timestamp,
        };
        let entry = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: b.epoch,
                batches: VecDeque::with_capacity(BATCHES_KEPT),
            });
        if entry.epoch != b.epoch {
            entry.epoch = b.epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
    }

    /// Drops producers whose last batch is `expiration` or more older than `now`; returns
    /// how many.
    pub(crate) fn expire(&mut self, now: TimestampMicros, expiration: Duration) -> usize {
        let limit = i64::try_from(expiration.as_micros()).unwrap_or(i64::MAX);
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now.saturating_sub(e.last_timestamp()) < limit);
        before - self.producers.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer, by id.
    pub(crate) fn describe(&self) -> Vec<ProducerSnapshot> {
        let mut out: Vec<ProducerSnapshot> = self
            .producers
            .iter()
            .filter_map(|(&producer_id, e)| {
                let last = e.last()?;
                Some(ProducerSnapshot {
                    producer_id,
                    epoch: e.epoch,
                    last_sequence: last.last_seq,
                    last_offset: LogOffset(last.last_offset),
                    last_timestamp: last.max_timestamp,
                })
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// The entries by id (for the snapshot encoder: a deterministic order).
    pub(crate) fn sorted_entries(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut out: Vec<_> = self.producers.iter().map(|(&id, e)| (id, e)).collect();
        out.sort_by_key(|&(id, _)| id);
        out
    }

    /// Adds a decoded entry (the snapshot decoder checks it first).
    pub(crate) fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }
}
