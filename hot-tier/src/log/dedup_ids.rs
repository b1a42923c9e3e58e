//! The leader's dedup-id check, beside the append path of [`PartitionLog`].
//!
//! Kept apart from `log.rs` because it is its own small algorithm: decode the batch, ask the
//! window which records were stored recently, and re-encode the rest at the offsets they
//! will get. The append lock is held by the caller throughout.

use pyralog_types::batch::{split_batches, Batch, BatchBuilder, NewRecord};
use pyralog_types::{LogOffset, Record};

use super::PartitionLog;
use crate::dedup::DedupWindow;
use crate::error::HotError;

/// What the dedup-id check made of a leader's batch.
pub(super) enum DedupOutcome {
    /// Nothing to drop: the records, at the offsets they will be stored at.
    Keep(Vec<Record>),
    /// Every record was stored already: (index, offset of the stored copy).
    AllStored(Vec<(u32, LogOffset)>),
    /// Some records were dropped; the rest re-encoded (`kept`: at their future offsets).
    Rebuilt {
        batch: Batch,
        dups: Vec<(u32, LogOffset)>,
        kept: Vec<Record>,
    },
}

impl PartitionLog {
    /// Checks a leader's batch against the dedup window (rebuilding the window first if it
    /// does not reflect the log). Call with the append lock held; `end` is the log end.
    pub(super) fn drop_duplicate_ids(
        &self,
        batch: &Batch,
        end: u64,
    ) -> Result<DedupOutcome, HotError> {
        if !self.dedup.lock().is_loaded() {
            self.load_dedup_window(end)?;
        }
        let mut records = batch.records()?;
        let verdict = self.dedup.lock().check(&records, self.clock.now_micros());
        if verdict.drop.is_empty() {
            let base = batch.base_offset().0;
            for r in &mut records {
                r.offset = LogOffset(end + (r.offset.0 - base));
            }
            return Ok(DedupOutcome::Keep(records));
        }
        let dropped: std::collections::HashSet<usize> = verdict.drop.iter().map(|d| d.0).collect();
        if dropped.len() == records.len() {
            // Every record is stored already (a batch's first copy of an id is never dropped,
            // so each has a stored offset).
            return Ok(DedupOutcome::AllStored(
                verdict
                    .drop
                    .iter()
                    .filter_map(|(i, at, _)| Some((u32::try_from(*i).ok()?, (*at)?)))
                    .collect(),
            ));
        }
        // The kept records, re-encoded; the k-th kept record gets offset end + k.
        let mut builder = BatchBuilder::new(batch.compression());
        let mut position_of_kept = std::collections::HashMap::new();
        let mut kept = Vec::with_capacity(records.len() - dropped.len());
        for (i, mut r) in records.into_iter().enumerate() {
            if dropped.contains(&i) {
                continue;
            }
            position_of_kept.insert(i, builder.record_count());
            r.offset = LogOffset(end + u64::from(builder.record_count()));
            builder.push(&NewRecord {
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            });
            kept.push(r);
        }
        let dups = verdict
            .drop
            .iter()
            .filter_map(|(i, stored, first)| {
                let at = match stored {
                    Some(o) => *o,
                    None => LogOffset(end + u64::from(*position_of_kept.get(first)?)),
                };
                Some((u32::try_from(*i).ok()?, at))
            })
            .collect();
        Ok(DedupOutcome::Rebuilt {
            batch: Batch::parse(builder.build()?)?,
            dups,
            kept,
        })
    }

    /// Notes the dedup ids of the records appended within the window's age (read from the
    /// log, from the time index on). Call with the append lock held.
    fn load_dedup_window(&self, end: u64) -> Result<(), HotError> {
        let settings = self.dedup.lock().settings();
        let now = self.clock.now_micros();
        let age = i64::try_from(settings.window.as_micros()).unwrap_or(i64::MAX);
        let from = self
            .offset_for_timestamp(now.saturating_sub(age))?
            .map_or(end, |o| o.0)
            .max(self.start_offset().0);
        let mut window = DedupWindow::new(settings);
        let mut at = LogOffset(from);
        while at.0 < end {
            let read = self.read(at, 8 << 20, LogOffset(end))?;
            if read.batches.is_empty() {
                break;
            }
            for b in split_batches(read.batches) {
                let b = b?;
                if b.has_dedup_ids() {
                    window.note(&b.records()?, now);
                }
            }
            at = read.next_offset.max(LogOffset(at.0 + 1));
        }
        window.mark_loaded();
        *self.dedup.lock() = window;
        Ok(())
    }
}
