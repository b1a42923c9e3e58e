//! Cutting and replacing a partition log's segments: truncation (a follower dropping a
//! divergent suffix), reset (continuing after the archive) and in-place rewrite (key-based
//! compaction of a closed segment).
//!
//! Apart from `log.rs` because these are the rare, heavy operations: each takes the append
//! lock for its whole duration and swaps segments, where appends and reads are the hot path.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyralog_types::{LogOffset, Record};

use super::{PartitionLog, RewriteOutcome};
use crate::active::Active;
use crate::epochs::sync_dir;
use crate::error::HotError;
use crate::files::Access;
use crate::segment::Segment;

impl PartitionLog {
    /// Rewrites the closed segment starting at `base` with the records `edit` returns (a
    /// subset of them, or records derived from them, at offsets inside the segment's range, in
    /// increasing order); `edit` returning `None` leaves the segment alone. Offsets keep their
    /// meaning: the records left keep theirs, and the segment keeps its range, with gaps.
    ///
    /// Crash safety: the new bytes go to `{base}.log.rewrite.tmp` and are fsynced; then, under
    /// the append lock, the old indexes are unlinked, the temporary file is renamed over the
    /// `.log` (atomic) and the directory fsynced. A crash before the rename leaves the old
    /// segment and a `.tmp` file that opening deletes; after it, the new segment, whose
    /// indexes are rebuilt on first use. Readers already inside the old segment finish on its
    /// (unlinked) file. Returns `None` when nothing changed or the segment went away (retention
    /// or truncation) while it was being rewritten.
    pub fn rewrite_segment(
        &self,
        base: LogOffset,
        edit: impl FnOnce(Vec<Record>) -> Option<Vec<Record>>,
    ) -> Result<Option<RewriteOutcome>, HotError> {
        let old = {
            let map = self.segments.read();
            let is_active = map.keys().next_back() == Some(&base.0);
            match map.get(&base.0) {
                Some(s) if !is_active => s.clone(),
                _ => return Ok(None),
            }
        };
        let (records, old_batches) = crate::rewrite::read_all(&old)?;
        let records_before = records.len() as u64;
        let Some(records) = edit(records) else {
            return Ok(None);
        };
        let tmp = crate::rewrite::write_tmp(&self.dir, &old, &records)?;
        let guard = self.inner.lock();
        let current = self.segments.read().get(&base.0).cloned();
        // A truncation may have made this segment the active one again meanwhile.
        let now_active = guard.as_ref().is_none_or(|a| Arc::ptr_eq(&a.seg, &old));
        if now_active || !current.is_some_and(|c| Arc::ptr_eq(&c, &old)) {
            drop(guard);
            crate::rewrite::discard(&tmp);
            return Ok(None);
        }
        // In-flight readers keep the old inode: pin its file and maps before the unlink.
        old.retire();
        let new_size = crate::rewrite::swap_in(&self.dir, &old, &tmp)?;
        let fresh = Arc::new(Segment::new(
            &self.dir,
            base.0,
            (new_size, old.end()),
            u64::from(self.options.index_interval_bytes),
            &self.files,
            Access::ReadOnly,
        ));
        self.segments.write().insert(base.0, fresh);
        drop(guard);
        Ok(Some(RewriteOutcome {
            records_before,
            records_after: records.len() as u64,
            batches_before: old_batches,
            bytes_before: old.size(),
            bytes_after: new_size,
        }))
    }

    /// Removes every record at or after `offset` (a follower truncating a divergent suffix).
    ///
    /// The log is cut at a batch boundary: if `offset` falls inside a batch, that whole batch
    /// goes too (the new end is the batch's base offset). An `offset` at or beyond the end
    /// changes nothing; one below the start empties the log, which then continues at `offset`.
    pub fn truncate_to(&self, offset: LogOffset) -> Result<(), HotError> {
        let mut guard = self.inner.lock();
        if guard.is_none() {
            return Err(HotError::Closed);
        }
        let _no_flush = self.flush_lock.lock();
        if offset >= self.end_offset() {
            return Ok(());
        }
        let all: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        let keep = all.iter().rev().find(|s| s.base() <= offset.0).cloned();
        let below_start = keep.is_none();
        let new_end = match keep {
            None => {
                // Below the start: nothing survives.
                *guard = None;
                for s in &all {
                    self.remove_segment(s)?;
                }
                let active = Active::create(&self.dir, offset.0, &self.options, &self.files)?;
                self.segments.write().insert(offset.0, active.seg.clone());
                self.start.store(offset.0, Ordering::Release);
                *guard = Some(active);
                offset.0
            }
            Some(keep) => {
                let (pos, new_end) = match keep.locate(offset.0)? {
                    Some((pos, h)) => (pos, h.base_offset),
                    None => (keep.size(), keep.end()),
                };
                for s in all.iter().filter(|s| s.base() > keep.base()) {
                    self.remove_segment(s)?;
                }
                let same = guard.as_ref().is_some_and(|a| Arc::ptr_eq(&a.seg, &keep));
                if !same {
                    // A closed segment becomes the active one again.
                    *guard = None;
                    let (mut active, _, _) = Active::open(keep.clone(), &self.options, false)?;
                    active.first_append = Some(self.clock.now_micros());
                    *guard = Some(active);
                }
                let active = guard.as_mut().ok_or(HotError::Closed)?;
                active.truncate(pos, new_end)?;
                if active.is_empty() {
                    active.first_append = None;
                }
                new_end
            }
        };
        sync_dir(&self.dir)?;
        self.end.store(new_end, Ordering::Release);
        self.durable.fetch_min(new_end, Ordering::AcqRel);
        {
            let mut epochs = self.epochs.lock();
            if epochs.truncate_from_end(LogOffset(new_end)) {
                epochs.persist()?;
            }
        }
        self.reload_producers(new_end, below_start)?;
        self.chain_truncated()?;
        drop(guard);
        self.end_tx.send_replace(LogOffset(new_end));
        Ok(())
    }

    /// Discards every local record and continues the log at `offset`, which must be at or
    /// beyond the end. For a node whose archive (the cold tier) is ahead of its disk, e.g. one
    /// started with an empty data directory against a bucket: new records must follow the
    /// archived ones, never reuse their offsets. `offset == end` changes nothing.
    pub fn reset_to(&self, offset: LogOffset) -> Result<(), HotError> {
        let mut guard = self.inner.lock();
        if guard.is_none() {
            return Err(HotError::Closed);
        }
        let end = self.end_offset();
        if offset <= end {
            return if offset == end {
                Ok(())
            } else {
                Err(HotError::OffsetOutOfRange {
                    requested: offset,
                    start: self.start_offset(),
                    end,
                })
            };
        }
        let _no_flush = self.flush_lock.lock();
        *guard = None;
        let all: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        for s in &all {
            self.remove_segment(s)?;
        }
        let active = Active::create(&self.dir, offset.0, &self.options, &self.files)?;
        self.segments.write().insert(offset.0, active.seg.clone());
        *guard = Some(active);
        sync_dir(&self.dir)?;
        self.start.store(offset.0, Ordering::Release);
        self.end.store(offset.0, Ordering::Release);
        self.durable.store(offset.0, Ordering::Release);
        {
            let mut epochs = self.epochs.lock();
            if epochs.truncate_from_start(offset) {
                epochs.persist()?;
            }
        }
        self.reload_producers(offset.0, true)?;
        self.chain_reset()?;
        drop(guard);
        self.end_tx.send_replace(offset);
        Ok(())
    }
}
