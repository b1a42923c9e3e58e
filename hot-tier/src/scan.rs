//! Walking a segment's batches: the one place that decides where index entries go.
//!
//! Appends, index rebuilds and crash recovery must produce identical indexes, or a rebuilt
//! index would disagree with one written incrementally. So all three feed batches through the
//! same [`IndexCursor`], and rebuilds and recovery share [`Scan::run`], which replays a
//! segment batch by batch and stops (without failing) at the first batch that is torn,
//! malformed, out of sequence or, when asked, fails its CRC.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;
use pyralog_types::batch::{Batch, HEADER_LEN};

use crate::error::HotError;
use crate::producers::{ProducerBatch, ProducerStateTable};
use crate::segment::{io_err, Segment};
use pyralog_types::batch::BatchHeader;

/// Decides, batch by batch, which index entries to add.
#[derive(Debug, Clone)]
pub(crate) struct IndexCursor {
    interval: u64,
    /// Log bytes since the last offset-index entry (or the segment start).
    bytes_since: u64,
    max_ts: Option<i64>,
    last_time_ts: Option<i64>,
    last_rel: Option<u32>,
}

/// Index entries produced by one batch.
pub(crate) type Entries = (Option<(u32, u32)>, Option<(i64, u32)>);

impl IndexCursor {
    /// A cursor at the start of a segment, or right at an existing offset-index entry whose
    /// time index ends with `last_time_ts` (at an index point that is the max so far).
    pub(crate) fn new(interval: u64, last_time_ts: Option<i64>) -> Self {
        IndexCursor {
            interval: interval.max(1),
            bytes_since: 0,
            max_ts: last_time_ts,
            last_time_ts,
            last_rel: None,
        }
    }

    /// Feeds the batch about to be stored at `pos`; returns the entries to add for it.
    pub(crate) fn on_batch(&mut self, rel: u32, pos: u32, size: u64, batch_max_ts: i64) -> Entries {
        self.max_ts = Some(self.max_ts.map_or(batch_max_ts, |m| m.max(batch_max_ts)));
        self.last_rel = Some(rel);
        let mut entries = (None, None);
        if self.bytes_since >= self.interval {
            entries.0 = Some((rel, pos));
            self.bytes_since = 0;
            if let Some(max) = self
                .max_ts
                .filter(|&m| self.last_time_ts.is_none_or(|t| m > t))
            {
                entries.1 = Some((max, rel));
                self.last_time_ts = Some(max);
            }
        }
        self.bytes_since += size;
        entries
    }

    /// The time-index entry that records the segment's max timestamp, if not there yet.
    pub(crate) fn final_entry(&mut self) -> Option<(i64, u32)> {
        let max = self.max_ts?;
        let rel = self.last_rel?;
        if self.last_time_ts.is_some_and(|t| t >= max) {
            return None;
        }
        self.last_time_ts = Some(max);
        Some((max, rel))
    }

    pub(crate) fn max_ts(&self) -> Option<i64> {
        self.max_ts
    }
}

/// What a scan found besides index entries.
#[derive(Debug, Default)]
pub(crate) struct ScanOut {
    pub(crate) offsets: Vec<(u32, u32)>,
    pub(crate) times: Vec<(i64, u32)>,
    /// `(epoch, first offset)` at every change of epoch between batches.
    pub(crate) epochs: Vec<(u64, u64)>,
    /// Where and why the scan stopped before the end.
    pub(crate) error: Option<(u64, String)>,
}

/// A replay of a segment's batches from `pos` (where `next_offset` must start).
pub(crate) struct Scan<'a> {
    pub(crate) file: &'a File,
    pub(crate) path: &'a Path,
    pub(crate) base: u64,
    /// Also verify framing and CRC of each whole batch (crash recovery).
    pub(crate) verify: bool,
    /// Accept a batch that starts past the expected offset (a closed segment rewritten by
    /// compaction); a batch that starts before it is always an error.
    pub(crate) allow_gaps: bool,
    pub(crate) pos: u64,
    pub(crate) next_offset: u64,
    pub(crate) cursor: IndexCursor,
    pub(crate) out: ScanOut,
    /// Fed the producer fields of every good batch (replaying producer state).
    pub(crate) producers: Option<&'a mut ProducerStateTable>,
}

impl Scan<'_> {
    /// Replays batches until `end_pos` or the first bad batch. `pos`/`next_offset` end just
    /// after the last good batch. Only I/O failures are errors.
    pub(crate) fn run(&mut self, end_pos: u64) -> Result<(), HotError> {
        let mut reader = BufReader::with_capacity(1 << 20, self.file);
        reader
            .seek(SeekFrom::Start(self.pos))
            .map_err(io_err("seek", self.path))?;
        let mut last_epoch = None;
        while self.pos < end_pos {
            let pos = self.pos;
            if end_pos - pos < HEADER_LEN as u64 {
                return self.stop(pos, "torn batch header");
            }
            let mut head = vec![0u8; HEADER_LEN];
            reader
                .read_exact(&mut head)
                .map_err(io_err("read", self.path))?;
            let h = match BatchHeader::decode(&head) {
                Ok(h) => h,
                Err(e) => return self.stop(pos, e.to_string()),
            };
            if pos + h.size > end_pos {
                return self.stop(pos, "torn batch");
            }
            let gap_ok = self.allow_gaps && h.base_offset > self.next_offset;
            if h.base_offset != self.next_offset && !gap_ok {
                let why = format!(
                    "batch at offset {} where {} was expected",
                    h.base_offset, self.next_offset
                );
                return self.stop(pos, why);
            }
            let rel = h.last_offset() - self.base;
            let (Ok(rel_base), Ok(_), Ok(pos32)) = (
                u32::try_from(h.base_offset - self.base),
                u32::try_from(rel),
                u32::try_from(pos),
            ) else {
                return self.stop(pos, "batch beyond the 32-bit index range");
            };
            let rest = (h.size as usize) - HEADER_LEN;
            let producer = self
                .producers
                .as_ref()
                .and_then(|_| ProducerBatch::from_header(&head));
            if self.verify {
                let mut whole = head;
                whole.resize(h.size as usize, 0);
                reader
                    .read_exact(&mut whole[HEADER_LEN..])
                    .map_err(io_err("read", self.path))?;
                if let Err(e) = Batch::parse_verified(Bytes::from(whole)) {
                    return self.stop(pos, e.to_string());
                }
            } else {
                reader
                    .seek_relative(rest as i64)
                    .map_err(io_err("seek", self.path))?;
            }
            let (o, t) = self
                .cursor
                .on_batch(rel_base, pos32, h.size, h.max_timestamp);
            self.out.offsets.extend(o);
            self.out.times.extend(t);
            if let (Some(table), Some(b)) = (self.producers.as_deref_mut(), producer) {
                table.record(&b, h.base_offset, h.last_offset());
            }
            if last_epoch != Some(h.epoch) {
                self.out.epochs.push((h.epoch, h.base_offset));
                last_epoch = Some(h.epoch);
            }
            self.pos += h.size;
            self.next_offset = h.next_offset();
        }
        Ok(())
    }

    fn stop(&mut self, pos: u64, why: impl Into<String>) -> Result<(), HotError> {
        self.out.error = Some((pos, why.into()));
        Ok(())
    }
}

/// Feeds `table` the producer fields of every batch of `seg` that starts at or after `from`,
/// reading headers only. A damaged batch ends the replay of this segment with a warning (its
/// reads fail as `Corrupt` anyway); only I/O failures are errors.
pub(crate) fn replay_producers(
    seg: &Segment,
    from: u64,
    table: &mut ProducerStateTable,
) -> Result<(), HotError> {
    let (pos, next_offset) = if from <= seg.base() {
        (0, seg.base())
    } else {
        match seg.locate(from)? {
            Some((pos, h)) if h.base_offset >= from => (pos, h.base_offset),
            // `from` inside a batch (never written so): that batch is before it.
            Some((pos, h)) => (pos + h.size, h.next_offset()),
            None => return Ok(()),
        }
    };
    let file = seg.file()?;
    let mut scan = Scan {
        file: &file,
        path: seg.log_path(),
        base: seg.base(),
        verify: false,
        allow_gaps: seg.is_compacted(),
        pos,
        next_offset,
        // No index entries wanted.
        cursor: IndexCursor::new(u64::MAX, None),
        out: ScanOut::default(),
        producers: Some(table),
    };
    scan.run(seg.size())?;
    if let Some((pos, why)) = &scan.out.error {
        tracing::warn!(segment = %seg.log_path().display(), position = pos, %why,
            "damaged batch: producer state replayed up to it only");
    }
    Ok(())
}
