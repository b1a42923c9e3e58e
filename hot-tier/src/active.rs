//! The active segment's writer side: appending, rolling, recovery, truncation.
//!
//! Only the partition's append lock ever holds an [`Active`], so its state (write position,
//! index cursor, age) needs no synchronisation of its own; it publishes each append to
//! readers through the shared [`Segment`]'s atomics, after the bytes are written.
//!
//! The writer holds no file descriptor of its own: it writes through the segment's
//! [`crate::files::FileSlot`], which the node's open-file budget may close while the partition
//! is idle (fsyncing unsynced writes first) and which reopens on the next append.
//!
//! Recovery lives here because it is "reopen the active segment, not trusting it": a full
//! scan that verifies framing and CRC of every batch, cuts the file at the first bad one and
//! rebuilds the indexes. A clean reopen instead trusts the indexes and replays only the batch
//! headers after the last index entry (a few KiB) to learn where appends continue.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use pyralog_types::TimestampMicros;
use tracing::warn;

use crate::epochs::sync_dir;
use crate::error::HotError;
use crate::files::{Access, OpenFiles};
use crate::index::{check_size, OffsetIndex, TimeIndex, OFFSET_ENTRY, TIME_ENTRY};
use crate::log::PartitionOptions;
use crate::scan::{IndexCursor, Scan, ScanOut};
use crate::segment::{io_err, segment_path, Indexes, Segment, INDEX_EXT, TIME_EXT};
use pyralog_types::batch::BatchHeader;

pub(crate) struct Active {
    pub(crate) seg: Arc<Segment>,
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
        files: &OpenFiles,
    ) -> Result<Active, HotError> {
        for ext in [INDEX_EXT, TIME_EXT] {
            let p = segment_path(dir, base, ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete", &p)(e)),
            }
        }
        let interval = u64::from(opts.index_interval_bytes);
        let seg = Arc::new(Segment::new(
            dir,
            base,
            (0, base),
            interval,
            files,
            Access::ReadWrite,
        ));
        seg.slot().create()?;
        let mut active = Active::with_segment(seg, opts);
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
        seg.slot().set_writable(true)?;
        let mut active = Active::with_segment(seg, opts);
        let size = active
            .seg
            .file()?
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

    fn with_segment(seg: Arc<Segment>, opts: &PartitionOptions) -> Active {
        let interval = u64::from(opts.index_interval_bytes);
        Active {
            next_offset: seg.base(),
            seg,
            cursor: IndexCursor::new(interval, None),
            pos: 0,
            first_append: None,
            max_index_bytes: opts.max_index_bytes,
            interval,
        }
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

    fn scan<'a>(
        &'a self,
        file: &'a std::fs::File,
        (pos, next_offset): (u64, u64),
        cursor: IndexCursor,
        verify: bool,
    ) -> Scan<'a> {
        Scan {
            file,
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
        let file = self.seg.file()?;
        let mut scan = self.scan(
            &file,
            (pos, next),
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
        let file = self.seg.file()?;
        let mut scan = self.scan(
            &file,
            (0, base),
            IndexCursor::new(self.interval, None),
            true,
        );
        scan.run(size)?;
        let (pos, next, cursor, out) = (scan.pos, scan.next_offset, scan.cursor, scan.out);
        drop(file);
        if let Some((at, why)) = &out.error {
            warn!(segment = %self.seg.log_path().display(), position = at, %why,
                dropped_bytes = size - pos, "truncating a torn or corrupt tail");
            self.cut(pos)?;
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
        let file = self.seg.file()?;
        let mut scan = self.scan(&file, (0, self.seg.base()), cursor, false);
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
        let at = self.pos;
        self.seg.slot().write_with("append", |f| {
            f.write_all_at(bytes, at).inspect_err(|_| {
                // Do not leave a half-written batch behind the next append.
                let _ = f.set_len(at);
            })
        })?;
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
        self.seg.slot().sync(true)?;
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
        drop(guard);
        // Sealed: reopened read-only from now on (the descriptor open now stays until evicted).
        self.seg.slot().set_writable(false)
    }

    /// Shortens the file to `pos` bytes, durably.
    fn cut(&self, pos: u64) -> Result<(), HotError> {
        self.seg.slot().write_with("truncate", |f| f.set_len(pos))?;
        self.seg.slot().sync(true)
    }

    /// Cuts the segment at `pos` (a batch boundary holding offset `end`) and fixes the
    /// indexes and write state.
    pub(crate) fn truncate(&mut self, pos: u64, end: u64) -> Result<(), HotError> {
        // Readers stop looking at the bytes before they go away.
        self.seg.publish(pos, end, self.cursor.max_ts());
        self.cut(pos)?;
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
