//! One segment: a `.log` file of batches and its two indexes, as readers see it.
//!
//! A [`Segment`] is shared (`Arc`) between the partition log and in-flight reads, so a read
//! keeps working on a segment that retention unlinks meanwhile. Everything a reader needs is
//! here and lock-free or briefly locked: the committed size and end offset are atomics
//! (published by the appender after its write), the indexes sit behind an `RwLock` held only
//! for a binary search, and data is read with positional reads (`pread`) that never move a
//! shared cursor.
//!
//! Closed segments are opened lazily: after a clean restart the log knows only their base
//! offset (file name), size (directory listing) and end offset (the next segment's base).
//! The file descriptor and the index maps appear on first use, where damaged or missing
//! indexes are rebuilt from the `.log` (see [`crate::scan`]).
//!
//! No segment owns a file descriptor for long: the `.log` file sits in a [`FileSlot`] that the
//! node-wide [`crate::OpenFiles`] budget closes when idle (and reopens on the next use), and
//! the index maps keep no descriptor at all. A segment that is deleted or replaced while
//! readers may hold it pins its file first ([`Segment::retire`]), so those readers keep the
//! old inode and never reopen the path, which may by then name another file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use pyralog_types::batch::HEADER_LEN;
use pyralog_types::LogOffset;
use tracing::warn;

use crate::error::HotError;
use crate::files::{Access, FileSlot, OpenFiles};
use crate::index::{check_size, OffsetIndex, TimeIndex, OFFSET_ENTRY, TIME_ENTRY};
use crate::log::SegmentInfo;
use crate::scan::{IndexCursor, Scan, ScanOut};
use pyralog_types::batch::BatchHeader;

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_EXT: &str = "timeindex";
/// Marker of a segment rewritten by compaction (empty file). Only such a segment may have
/// offset gaps between its batches: in any other, a batch that does not start where the
/// previous one ended means damage (batch base offsets are outside the CRC).
pub(crate) const COMPACTED_EXT: &str = "compacted";

/// `max_timestamp` value meaning "none or not known yet".
const NO_TS: i64 = i64::MIN;

/// `dir/{base:020}.{ext}`.
pub(crate) fn segment_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Splits a segment file name into base offset and extension.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HotError {
    let path = path.to_owned();
    move |source| HotError::Io { op, path, source }
}

/// Both indexes of a segment.
pub(crate) struct Indexes {
    pub(crate) offsets: OffsetIndex,
    pub(crate) times: TimeIndex,
}

pub(crate) struct Segment {
    base: u64,
    log_path: PathBuf,
    index_path: PathBuf,
    time_path: PathBuf,
    file: Arc<FileSlot>,
    /// Committed bytes: readers never look past this.
    size: AtomicU64,
    /// Offset after the last committed batch (`base` when empty).
    end: AtomicU64,
    max_ts: AtomicI64,
    indexes: RwLock<Option<Indexes>>,
    index_interval: u64,
    deleted: AtomicBool,
    compacted: bool,
}

impl Segment {
    /// A segment whose files exist; nothing is opened until first use. `access` is how its
    /// `.log` file opens: read-write for the active segment.
    pub(crate) fn new(
        dir: &Path,
        base: u64,
        (size, end): (u64, u64),
        index_interval: u64,
        files: &OpenFiles,
        access: Access,
    ) -> Self {
        let log_path = segment_path(dir, base, LOG_EXT);
        Segment {
            base,
            file: FileSlot::new(log_path.clone(), files, access),
            log_path,
            index_path: segment_path(dir, base, INDEX_EXT),
            time_path: segment_path(dir, base, TIME_EXT),
            size: AtomicU64::new(size),
            end: AtomicU64::new(end),
            max_ts: AtomicI64::new(NO_TS),
            indexes: RwLock::new(None),
            index_interval,
            deleted: AtomicBool::new(false),
            compacted: segment_path(dir, base, COMPACTED_EXT).exists(),
        }
    }

    /// Whether compaction rewrote this segment (so gaps between its batches are expected).
    pub(crate) fn is_compacted(&self) -> bool {
        self.compacted
    }

    pub(crate) fn compacted_marker(&self) -> PathBuf {
        let mut p = self.log_path.clone();
        p.set_extension(COMPACTED_EXT);
        p
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn index_path(&self) -> &Path {
        &self.index_path
    }

    pub(crate) fn time_path(&self) -> &Path {
        &self.time_path
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Publishes appended (or truncated) bytes to readers.
    pub(crate) fn publish(&self, size: u64, end: u64, max_ts: Option<i64>) {
        self.max_ts
            .store(max_ts.unwrap_or(NO_TS), Ordering::Release);
        self.end.store(end, Ordering::Release);
        self.size.store(size, Ordering::Release);
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn corrupt(&self, position: u64, detail: impl Into<String>) -> HotError {
        HotError::Corrupt {
            path: self.log_path.clone(),
            position,
            detail: detail.into(),
        }
    }

    /// The `.log` file's slot (the active segment writes and fsyncs through it).
    pub(crate) fn slot(&self) -> &Arc<FileSlot> {
        &self.file
    }

    /// The open `.log` file (opened now if the budget closed it).
    pub(crate) fn file(&self) -> Result<Arc<File>, HotError> {
        self.file.get()
    }

    /// Before the segment's files are unlinked or replaced: keeps its descriptor and index
    /// maps for readers that still hold the segment, and stops it from reopening by path.
    pub(crate) fn retire(&self) {
        self.file.pin();
        let _ = self.with_indexes(|_| ());
    }

    pub(crate) fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>, HotError> {
        let mut buf = vec![0u8; len];
        self.read_into(pos, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from position `pos` (the bytes must exist).
    pub(crate) fn read_into(&self, pos: u64, buf: &mut [u8]) -> Result<(), HotError> {
        self.file()?
            .read_exact_at(buf, pos)
            .map_err(io_err("read", &self.log_path))
    }

    /// The header of the batch at `pos`, which must end by `limit`.
    pub(crate) fn header_at(&self, pos: u64, limit: u64) -> Result<BatchHeader, HotError> {
        if pos + HEADER_LEN as u64 > limit {
            return Err(self.corrupt(pos, "batch header runs past the end of the segment"));
        }
        let buf = self.read_at(pos, HEADER_LEN)?;
        let h = BatchHeader::decode(&buf).map_err(|e| self.corrupt(pos, e.to_string()))?;
        if pos + h.size > limit {
            return Err(self.corrupt(pos, "batch runs past the end of the segment"));
        }
        Ok(h)
    }

    /// Runs `f` on the indexes, loading (or rebuilding) them on first use.
    pub(crate) fn with_indexes<R>(&self, f: impl FnOnce(&Indexes) -> R) -> Result<R, HotError> {
        {
            let guard = self.indexes.read();
            if let Some(ix) = guard.as_ref() {
                return Ok(f(ix));
            }
        }
        let mut guard = self.indexes.write();
        if guard.is_none() {
            *guard = Some(self.load_indexes()?);
        }
        let guard = parking_lot::RwLockWriteGuard::downgrade(guard);
        match guard.as_ref() {
            Some(ix) => Ok(f(ix)),
            None => Err(HotError::Closed),
        }
    }

    /// Installs indexes (the active segment's writable ones, or none to reload lazily).
    pub(crate) fn indexes_mut(&self) -> parking_lot::RwLockWriteGuard<'_, Option<Indexes>> {
        self.indexes.write()
    }

    fn load_indexes(&self) -> Result<Indexes, HotError> {
        let size = self.size();
        let end_rel = self.end() - self.base;
        let attempt = || -> Result<Indexes, String> {
            check_size(&self.index_path, OFFSET_ENTRY)?;
            check_size(&self.time_path, TIME_ENTRY)?;
            let offsets =
                OffsetIndex::open_read_only(&self.index_path).map_err(|e| e.to_string())?;
            offsets.check(size, Some(end_rel))?;
            let times = TimeIndex::open_read_only(&self.time_path).map_err(|e| e.to_string())?;
            times.check(Some(end_rel))?;
            if size > 0 && times.len() == 0 {
                return Err("no time index entry for a non-empty segment".into());
            }
            Ok(Indexes { offsets, times })
        };
        let ix = match attempt() {
            Ok(ix) => ix,
            Err(why) => {
                warn!(segment = %self.log_path.display(), %why, "rebuilding segment indexes");
                self.rebuild_indexes()?
            }
        };
        if let Some((ts, _)) = ix.times.last() {
            self.max_ts.store(ts, Ordering::Release);
        }
        Ok(ix)
    }

    /// Rebuilds a closed segment's index files from its `.log` (framing checks only).
    fn rebuild_indexes(&self) -> Result<Indexes, HotError> {
        let file = self.file()?;
        let mut scan = Scan {
            file: &file,
            path: &self.log_path,
            base: self.base,
            verify: false,
            allow_gaps: self.compacted,
            pos: 0,
            next_offset: self.base,
            cursor: IndexCursor::new(self.index_interval, None),
            out: ScanOut::default(),
            producers: None,
        };
        scan.run(self.size())?;
        if let Some((pos, why)) = &scan.out.error {
            warn!(segment = %self.log_path.display(), position = pos, %why,
                "segment is damaged; indexes cover the bytes before the damage");
        }
        let mut out = scan.out;
        out.times.extend(scan.cursor.final_entry());
        OffsetIndex::write(&self.index_path, &out.offsets)
            .map_err(io_err("write index", &self.index_path))?;
        TimeIndex::write(&self.time_path, &out.times)
            .map_err(io_err("write index", &self.time_path))?;
        Ok(Indexes {
            offsets: OffsetIndex::open_read_only(&self.index_path)
                .map_err(io_err("map index", &self.index_path))?,
            times: TimeIndex::open_read_only(&self.time_path)
                .map_err(io_err("map index", &self.time_path))?,
        })
    }

    /// Where the batch holding `offset` starts, or `None` if the segment ends before it.
    pub(crate) fn locate(&self, offset: u64) -> Result<Option<(u64, BatchHeader)>, HotError> {
        let limit = self.size();
        if offset < self.base || offset >= self.end() || limit == 0 {
            return Ok(None);
        }
        let rel = u32::try_from(offset - self.base).unwrap_or(u32::MAX);
        let start = self.with_indexes(|ix| ix.offsets.floor(rel))?;
        let (mut pos, mut expect) = match start {
            Some((r, p)) => (u64::from(p), Some(self.base + u64::from(r))),
            None => (0, (!self.compacted).then_some(self.base)),
        };
        while pos < limit {
            let h = self.header_at(pos, limit)?;
            // In a compacted segment gaps are fine; a batch starting before the previous one
            // ended never is.
            let bad = |e: u64| e > h.base_offset || (e != h.base_offset && !self.compacted);
            if expect.is_some_and(bad) {
                return Err(self.corrupt(
                    pos,
                    format!(
                        "expected a batch at offset {expect:?}, found {}",
                        h.base_offset
                    ),
                ));
            }
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.size;
            expect = Some(h.next_offset());
        }
        Ok(None)
    }

    /// Largest record timestamp in the segment (`None` if empty).
    pub(crate) fn max_timestamp(&self) -> Result<Option<i64>, HotError> {
        if self.size() == 0 {
            return Ok(None);
        }
        let ts = self.max_ts.load(Ordering::Acquire);
        if ts != NO_TS {
            return Ok(Some(ts));
        }
        self.with_indexes(|_| ())?;
        let ts = self.max_ts.load(Ordering::Acquire);
        Ok((ts != NO_TS).then_some(ts))
    }

    pub(crate) fn info(&self, is_active: bool) -> SegmentInfo {
        let end = self.end();
        SegmentInfo {
            base_offset: LogOffset(self.base),
            last_offset: (end > self.base).then(|| LogOffset(end - 1)),
            size_bytes: self.size(),
            max_timestamp: self.max_timestamp().ok().flatten(),
            log_path: self.log_path.clone(),
            is_active,
        }
    }

    /// Unlinks the files (open descriptors and maps stay valid for in-flight readers).
    pub(crate) fn delete_files(&self) -> Result<(), HotError> {
        self.mark_deleted();
        let marker = self.compacted_marker();
        for p in [&self.log_path, &self.index_path, &self.time_path, &marker] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete", p)(e)),
            }
        }
        Ok(())
    }
}
