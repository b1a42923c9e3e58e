//! The active segment's writer side: appending, rolling, recovery, truncation.
//!
//! Only the partition's append lock ever holds an [`Active`], so its state (write position,
//! index cursor, age) needs no synchronisation of its own; it publishes each append to
//! readers through the shared [`Segment`]'s atomics, after the bytes are written.
//!
//! Recovery lives here because it is "reopen the active segment, not trusting it": a full
//! scan that verifies framing and CRC of every batch, cuts the file at the first bad one and
//! rebuilds the indexes. A clean reopen instead trusts the indexes and replays only the batch
//! headers after the last index entry (a few KiB) to learn where appends continue.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use pyralog_types::TimestampMicros;
use tracing::warn;

use crate::epochs::sync_dir;
use crate::error::HotError;
use crate::index::{check_size, OffsetIndex, TimeIndex, OFFSET_ENTRY, TIME_ENTRY};
use crate::log::PartitionOptions;
use crate::scan::{IndexCursor, Scan, ScanOut};
use crate::segment::{io_err, segment_path, Indexes, Segment, INDEX_EXT, LOG_EXT, TIME_EXT};
use pyralog_types::batch::BatchHeader;

pub(crate) struct Active {
    pub(crate) seg: Arc<Segment>,
    writer: File,
    cursor: IndexCursor,
    pos: u64,
    next_offset: u64,
    /// Wall-clock time of the first append (for `segment_ms`).
    pub(crate) first_append: Option<TimestampMicros>,
    max_index_bytes: u64,
    interval: u64,
}

impl Active {
    /// Creates an empty segment at `base` (replacing stray files of that name).
    pub(crate) fn create(
        dir: &Path,
        base: u64,
        opts: &PartitionOptions,
    ) -> Result<Active, HotError> {
        let log_path = segment_path(dir, base, LOG_EXT);
        for ext in [INDEX_EXT, TIME_EXT] {
            let p = segment_path(dir, base, ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete", &p)(e)),
            }
        }
        let writer = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(io_err("create", &log_path))?;
        let interval = u64::from(opts.index_interval_bytes);
        let seg = Arc::new(Segment::new(dir, base, 0, base, interval));
        let mut active = Active::with_writer(seg, writer, opts)?;
        active.install_indexes(0, 0)?;
        sync_dir(dir)?;
        Ok(active)
    }

    /// Reopens an existing segment for appending. With `recover`, or if its indexes or tail
    /// look wrong, every batch is verified and a torn or corrupt tail is cut off. Returns the
    /// epoch changes seen by the scan (all of them when it recovered from the start).
    pub(crate) fn open(
        seg: Arc<Segment>,
        opts: &PartitionOptions,
        recover: bool,
    ) -> Result<(Active, ScanOut, bool), HotError> {
        let writer = OpenOptions::new()
            .read(true)
            .write(true)
            .open(seg.log_path())
            .map_err(io_err("open", seg.log_path()))?;
        let mut active = Active::with_writer(seg, writer, opts)?;
        let size = active
            .writer
            .metadata()
            .map_err(io_err("stat", active.seg.log_path()))?
            .len();
        if !recover {
            match active.install_existing_indexes(size)? {
                Ok(()) => {
                    let out = active.resume(size)?;
                    match &out.error {
                        None => return Ok((active, out, false)),
                        Some((pos, why)) => warn!(segment = %active.seg.log_path().display(),
                            position = pos, %why, "active segment tail is damaged; recovering"),
                    }
                }
                Err(why) => warn!(segment = %active.seg.log_path().display(), %why,
                    "active segment indexes are damaged; recovering"),
            }
        }
        let out = active.recover(size)?;
        Ok((active, out, true))
    }

    fn with_writer(
        seg: Arc<Segment>,
        writer: File,
        opts: &PartitionOptions,
    ) -> Result<Active, HotError> {
        let reader = writer.try_clone().map_err(io_err("open", seg.log_path()))?;
        seg.set_file(reader);
        let interval = u64::from(opts.index_interval_bytes);
        Ok(Active {
            next_offset: seg.base(),
            seg,
            writer,
            cursor: IndexCursor::new(interval, None),
            pos: 0,
            first_append: None,
            max_index_bytes: opts.max_index_bytes,
            interval,
        })
    }

    fn install_indexes(&mut self, used_offsets: usize, used_times: usize) -> Result<(), HotError> {
        let (ip, tp) = (self.seg.index_path(), self.seg.time_path());
        let mut guard = self.seg.indexes_mut();
        *guard = None;
        let offsets = OffsetIndex::open_writable(ip, used_offsets, self.max_index_bytes)
            .map_err(io_err("map index", ip))?;
        let times = TimeIndex::open_writable(tp, used_times, self.max_index_bytes)
            .map_err(io_err("map index", tp))?;
        *guard = Some(Indexes { offsets, times });
        Ok(())
    }

    /// Maps the existing index files writable; the inner error says why they can't be used.
    fn install_existing_indexes(&mut self, size: u64) -> Result<Result<(), String>, HotError> {
        let counts = check_size(self.seg.index_path(), OFFSET_ENTRY)
            .and_then(|o| Ok((o, check_size(self.seg.time_path(), TIME_ENTRY)?)));
        let (o, t) = match counts {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        self.install_indexes(o, t)?;
        let checked = self.seg.with_indexes(|ix| {
            ix.offsets.check(size, None)?;
            ix.times.check(None)?;
            if size > 0 && ix.times.len() == 0 {
                return Err("no time index entry for a non-empty segment".to_string());
            }
            Ok(())
        })?;
        Ok(checked)
    }

    fn scan(&self, pos: u64, next_offset: u64, cursor: IndexCursor, verify: bool) -> Scan<'_> {
        Scan {
            file: &self.writer,
            path: self.seg.log_path(),
            base: self.seg.base(),
            verify,
            // Appends keep offsets dense; only a compacted segment reopened for appends
            // (truncation) has gaps before its end.
            allow_gaps: self.seg.is_compacted(),
            pos,
            next_offset,
            cursor,
            out: ScanOut::default(),
            producers: None,
        }
    }

    /// Replays batch headers after the last index entry to find where appends continue.
    fn resume(&mut self, size: u64) -> Result<ScanOut, HotError> {
        let (last_off, last_time) = self
            .seg
            .with_indexes(|ix| (ix.offsets.last(), ix.times.last()))?;
        let base = self.seg.base();
        let (pos, next) = last_off.map_or((0, base), |(r, p)| (u64::from(p), base + u64::from(r)));
        let mut scan = self.scan(
            pos,
            next,
            IndexCursor::new(self.interval, last_time.map(|t| t.0)),
            false,
        );
        scan.run(size)?;
        let (pos, next, cursor, out) = (scan.pos, scan.next_offset, scan.cursor, scan.out);
        if out.error.is_none() {
            self.adopt(pos, next, cursor, &out);
        }
        Ok(out)
    }

    /// Verifies every batch from the start, cuts the file after the last good one and
    /// rebuilds the indexes.
    fn recover(&mut self, size: u64) -> Result<ScanOut, HotError> {
        self.install_indexes(0, 0)?;
        let base = self.seg.base();
        let mut scan = self.scan(0, base, IndexCursor::new(self.interval, None), true);
        scan.run(size)?;
        let (pos, next, cursor, out) = (scan.pos, scan.next_offset, scan.cursor, scan.out);
        if let Some((at, why)) = &out.error {
            warn!(segment = %self.seg.log_path().display(), position = at, %why,
                dropped_bytes = size - pos, "truncating a torn or corrupt tail");
            self.writer
                .set_len(pos)
                .and_then(|()| self.writer.sync_all())
                .map_err(io_err("truncate", self.seg.log_path()))?;
        }
        self.adopt(pos, next, cursor, &out);
        Ok(out)
    }

    fn adopt(&mut self, pos: u64, next: u64, cursor: IndexCursor, out: &ScanOut) {
        if let Some(ix) = self.seg.indexes_mut().as_mut() {
            for &(r, p) in &out.offsets {
                ix.offsets.push(r, p);
            }
            for &(t, r) in &out.times {
                ix.times.push_if_newer(t, r);
            }
        }
        self.pos = pos;
        self.next_offset = next;
        self.seg.publish(pos, next, cursor.max_ts());
        self.cursor = cursor;
    }

    /// Every epoch change in the segment (headers only), for rebuilding the epoch cache.
    pub(crate) fn scan_epochs(&self) -> Result<Vec<(u64, u64)>, HotError> {
        let cursor = IndexCursor::new(self.interval, None);
        let mut scan = self.scan(0, self.seg.base(), cursor, false);
        scan.run(self.pos)?;
        Ok(scan.out.epochs)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == 0
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Whether a batch of `size` bytes ending at `last_offset` must go to a new segment.
    pub(crate) fn needs_roll(
        &self,
        size: u64,
        last_offset: u64,
        opts: &PartitionOptions,
        now: i64,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let full = self.pos + size > opts.segment_bytes
            || self.pos + size > u64::from(u32::MAX)
            || last_offset - self.seg.base() > u64::from(u32::MAX);
        let index_full = self
            .seg
            .with_indexes(|ix| ix.offsets.remaining() < 1 || ix.times.remaining() < 2)
            .unwrap_or(true);
        full || index_full || self.is_due(now, opts)
    }

    pub(crate) fn is_due(&self, now: i64, opts: &PartitionOptions) -> bool {
        let age = i64::try_from(opts.segment_ms.as_micros()).unwrap_or(i64::MAX);
        self.first_append
            .is_some_and(|t| now.saturating_sub(t) >= age)
    }

    /// Writes a batch (offsets already assigned) at the end of the segment.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        h: &BatchHeader,
        now: i64,
    ) -> Result<(), HotError> {
        let base = self.seg.base();
        let rel = u32::try_from(h.base_offset - base).unwrap_or(u32::MAX);
        let pos32 = u32::try_from(self.pos).unwrap_or(u32::MAX);
        if let Err(e) = self.writer.write_all_at(bytes, self.pos) {
            // Do not leave a half-written batch behind the next append.
            let _ = self.writer.set_len(self.pos);
            return Err(io_err("append", self.seg.log_path())(e));
        }
        let (o, t) = self.cursor.on_batch(rel, pos32, h.size, h.max_timestamp);
        if let Some(ix) = self.seg.indexes_mut().as_mut() {
            if let Some((r, p)) = o {
                ix.offsets.push(r, p);
            }
            if let Some((ts, r)) = t {
                ix.times.push_if_newer(ts, r);
            }
        }
        self.pos += h.size;
        self.next_offset = h.next_offset();
        self.first_append.get_or_insert(now);
        self.seg
            .publish(self.pos, self.next_offset, self.cursor.max_ts());
        Ok(())
    }

    /// Seals the segment: fsyncs the log, adds the final time entry, trims both indexes.
    pub(crate) fn finish(&mut self) -> Result<(), HotError> {
        self.writer
            .sync_all()
            .map_err(io_err("fsync", self.seg.log_path()))?;
        let final_entry = self.cursor.final_entry();
        let mut guard = self.seg.indexes_mut();
        if let Some(ix) = guard.as_mut() {
            if let Some((ts, r)) = final_entry {
                ix.times.push_if_newer(ts, r);
            }
            ix.offsets
                .trim()
                .map_err(io_err("trim index", self.seg.index_path()))?;
            ix.times
                .trim()
                .map_err(io_err("trim index", self.seg.time_path()))?;
        }
        Ok(())
    }

    /// Cuts the segment at `pos` (a batch boundary holding offset `end`) and fixes the
    /// indexes and write state.
    pub(crate) fn truncate(&mut self, pos: u64, end: u64) -> Result<(), HotError> {
        // Readers stop looking at the bytes before they go away.
        self.seg.publish(pos, end, self.cursor.max_ts());
        self.writer
            .set_len(pos)
            .and_then(|()| self.writer.sync_all())
            .map_err(io_err("truncate", self.seg.log_path()))?;
        let end_rel = end - self.seg.base();
        if let Some(ix) = self.seg.indexes_mut().as_mut() {
            ix.offsets.truncate(end_rel, pos);
            ix.times.truncate(end_rel);
        }
        let out = self.resume(pos)?;
        if let Some((at, why)) = out.error {
            return Err(self.seg.corrupt(at, why));
        }
        Ok(())
    }
}
