//! Sparse offset and time indexes (memory-mapped).
//!
//! Why memory maps: a lookup is a binary search over a few thousand fixed-size entries, and a
//! closed segment's index is read by many fetches but written never; mapping it costs no copy
//! and no syscall per lookup. The active segment's files are preallocated to
//! `max_index_bytes` and mapped writable, so adding an entry is a memory store; at roll or
//! close they are trimmed to the entries in use and fsynced.
//!
//! Formats (little-endian, fixed size, no header):
//! - `.index`: `(relative offset u32, file position u32)`, one entry per `index_interval_bytes`
//!   of log, pointing at the start of a batch. The first batch (position 0) is implied.
//! - `.timeindex`: `(max timestamp so far i64, relative offset u32)`: after the batch at that
//!   offset, no record of the segment up to and including it is newer than the timestamp.
//!   Entries are added at index points when the max grew, plus a final one at roll/close.
//!
//! No descriptor stays open: a mapping outlives the file descriptor it was made from, so each
//! file is opened, mapped and closed at once (a node with thousands of partitions would
//! otherwise hold two descriptors per partition for nothing). Trimming reopens by path.
//!
//! Both are derived data: [`OffsetIndex::check`] and [`TimeIndex::check`] catch damage on
//! first load, and the segment then rebuilds them from the `.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

pub(crate) const OFFSET_ENTRY: usize = 8;
pub(crate) const TIME_ENTRY: usize = 12;

enum Mapping {
    /// Between unmapping and remapping (while the file is resized).
    None,
    ReadOnly(Mmap),
    Writable(MmapMut),
}

/// The one place that maps files. The descriptor is closed on return; the mapping stays.
#[allow(unsafe_code)]
fn map_file(file: File, writable: bool) -> io::Result<Mapping> {
    // SAFETY: memory maps are undefined behaviour if the file changes underneath them in a
    // way the mapping does not see (another process truncating it, say). Index files live in
    // the partition directory, which belongs to this process alone (the node takes a directory
    // lock), and within the process only the `Segment` owning the mapping resizes or writes
    // the file: it unmaps before `set_len` (see `IndexFile::trim`) and writes only through this
    // mapping while it is writable.
    unsafe {
        if writable {
            Ok(Mapping::Writable(MmapMut::map_mut(&file)?))
        } else {
            Ok(Mapping::ReadOnly(Mmap::map(&file)?))
        }
    }
}

/// A file of fixed-size entries, mapped into memory.
struct IndexFile {
    path: PathBuf,
    entry: usize,
    map: Mapping,
    /// Entries in use (a writable file is longer: the rest is preallocated space).
    len: usize,
}

impl IndexFile {
    fn open_read_only(path: &Path, entry: usize) -> io::Result<IndexFile> {
        let file = File::open(path)?;
        let bytes = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        Ok(IndexFile {
            path: path.to_owned(),
            entry,
            map: map_file(file, false)?,
            len: bytes / entry,
        })
    }

    /// Opens (creating if needed) for appending after the first `used` entries, with room for
    /// at least `capacity_bytes`.
    fn open_writable(
        path: &Path,
        entry: usize,
        used: usize,
        capacity_bytes: u64,
    ) -> io::Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let capacity = (capacity_bytes / entry as u64).max(used as u64).max(1);
        file.set_len(capacity * entry as u64)?;
        Ok(IndexFile {
            path: path.to_owned(),
            entry,
            map: map_file(file, true)?,
            len: used,
        })
    }

    fn used(&self) -> &[u8] {
        let all: &[u8] = match &self.map {
            Mapping::None => &[],
            Mapping::ReadOnly(m) => m,
            Mapping::Writable(map) => map,
        };
        &all[..(self.len * self.entry).min(all.len())]
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.used()[i * self.entry..(i + 1) * self.entry]
    }

    /// Adds an entry; `false` when the file is full or read-only.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let at = self.len * self.entry;
        match &mut self.map {
            Mapping::Writable(map) if at + self.entry <= map.len() => {
                map[at..at + self.entry].copy_from_slice(bytes);
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Entries that still fit (0 unless writable).
    fn remaining(&self) -> usize {
        match &self.map {
            Mapping::Writable(map) => (map.len() / self.entry).saturating_sub(self.len),
            Mapping::None | Mapping::ReadOnly(_) => 0,
        }
    }

    /// Shrinks the file to the entries in use, fsyncs it and maps it read-only.
    fn trim(&mut self) -> io::Result<()> {
        if let Mapping::Writable(map) = &self.map {
            map.flush()?;
            let file = OpenOptions::new().write(true).open(&self.path)?;
            // Unmap before changing the file's length.
            self.map = Mapping::None;
            file.set_len((self.len * self.entry) as u64)?;
            file.sync_all()?;
            self.map = map_file(File::open(&self.path)?, false)?;
        }
        Ok(())
    }
}

/// Writes a complete index file atomically (temporary file, fsync, rename).
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("rebuild.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// Number of entries a file of `bytes` holds, or why it cannot be an index.
fn entries_in(bytes: usize, entry: usize) -> Result<usize, String> {
    if !bytes.is_multiple_of(entry) {
        return Err(format!("size {bytes} is not a multiple of {entry}"));
    }
    Ok(bytes / entry)
}

/// The number of leading entries `0..n` for which `pred` holds (`pred` must be true for a
/// prefix and false after it): a binary search over the mapped entries.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Sparse map from relative offset to file position.
pub(crate) struct OffsetIndex(IndexFile);

impl OffsetIndex {
    pub(crate) fn open_read_only(path: &Path) -> io::Result<OffsetIndex> {
        IndexFile::open_read_only(path, OFFSET_ENTRY).map(OffsetIndex)
    }

    pub(crate) fn open_writable(path: &Path, used: usize, cap: u64) -> io::Result<OffsetIndex> {
        IndexFile::open_writable(path, OFFSET_ENTRY, used, cap).map(OffsetIndex)
    }

    pub(crate) fn write(path: &Path, entries: &[(u32, u32)]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(entries.len() * OFFSET_ENTRY);
        for (rel, pos) in entries {
            bytes.extend_from_slice(&rel.to_le_bytes());
            bytes.extend_from_slice(&pos.to_le_bytes());
        }
        write_file(path, &bytes)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len
    }

    pub(crate) fn entry(&self, i: usize) -> (u32, u32) {
        let e = self.0.get(i);
        (u32_at(e, 0), u32_at(e, 4))
    }

    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// The last entry at or before relative offset `rel`: where a forward scan for it starts.
    pub(crate) fn floor(&self, rel: u32) -> Option<(u32, u32)> {
        let after = partition_point(self.len(), |i| self.entry(i).0 <= rel);
        after.checked_sub(1).map(|i| self.entry(i))
    }

    pub(crate) fn push(&mut self, rel: u32, pos: u32) -> bool {
        let mut e = [0u8; OFFSET_ENTRY];
        e[..4].copy_from_slice(&rel.to_le_bytes());
        e[4..].copy_from_slice(&pos.to_le_bytes());
        self.0.push(&e)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.0.remaining()
    }

    /// Drops entries for batches at or after `end_rel` or at or after byte `log_size`.
    pub(crate) fn truncate(&mut self, end_rel: u64, log_size: u64) {
        while let Some((rel, pos)) = self.last() {
            if u64::from(rel) < end_rel && u64::from(pos) < log_size {
                break;
            }
            self.0.len -= 1;
        }
    }

    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.0.trim()
    }

    /// Sanity check of a freshly loaded file: entries increase and point inside the log.
    pub(crate) fn check(&self, log_size: u64, end_rel: Option<u64>) -> Result<(), String> {
        entries_in(self.0.used().len(), OFFSET_ENTRY)?;
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.len() {
            let (rel, pos) = self.entry(i);
            if prev.is_some_and(|(r, p)| rel <= r || pos <= p) {
                return Err(format!("entry {i} does not increase"));
            }
            if u64::from(pos) >= log_size || end_rel.is_some_and(|e| u64::from(rel) >= e) {
                return Err(format!("entry {i} points past the segment"));
            }
            prev = Some((rel, pos));
        }
        Ok(())
    }
}

/// Sparse map from timestamp to relative offset.
pub(crate) struct TimeIndex(IndexFile);

impl TimeIndex {
    pub(crate) fn open_read_only(path: &Path) -> io::Result<TimeIndex> {
        IndexFile::open_read_only(path, TIME_ENTRY).map(TimeIndex)
    }

    pub(crate) fn open_writable(path: &Path, used: usize, cap: u64) -> io::Result<TimeIndex> {
        IndexFile::open_writable(path, TIME_ENTRY, used, cap).map(TimeIndex)
    }

    pub(crate) fn write(path: &Path, entries: &[(i64, u32)]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(entries.len() * TIME_ENTRY);
        for (ts, rel) in entries {
            bytes.extend_from_slice(&ts.to_le_bytes());
            bytes.extend_from_slice(&rel.to_le_bytes());
        }
        write_file(path, &bytes)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len
    }

    pub(crate) fn entry(&self, i: usize) -> (i64, u32) {
        let e = self.0.get(i);
        (i64_at(e, 0), u32_at(e, 8))
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// The last entry whose timestamp is below `ts`: every batch up to its offset is older
    /// than `ts`, so a scan for `ts` may start there.
    pub(crate) fn last_before(&self, ts: i64) -> Option<(i64, u32)> {
        let after = partition_point(self.len(), |i| self.entry(i).0 < ts);
        after.checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds `(ts, rel)` if `ts` is newer than the last entry. `false` only when full.
    pub(crate) fn push_if_newer(&mut self, ts: i64, rel: u32) -> bool {
        if self.last().is_some_and(|(last, _)| ts <= last) {
            return true;
        }
        let mut e = [0u8; TIME_ENTRY];
        e[..8].copy_from_slice(&ts.to_le_bytes());
        e[8..].copy_from_slice(&rel.to_le_bytes());
        self.0.push(&e)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.0.remaining()
    }

    /// Drops entries for batches at or after `end_rel`.
    pub(crate) fn truncate(&mut self, end_rel: u64) {
        while let Some((_, rel)) = self.last() {
            if u64::from(rel) < end_rel {
                break;
            }
            self.0.len -= 1;
        }
    }

    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.0.trim()
    }

    pub(crate) fn check(&self, end_rel: Option<u64>) -> Result<(), String> {
        entries_in(self.0.used().len(), TIME_ENTRY)?;
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.len() {
            let (ts, rel) = self.entry(i);
            if prev.is_some_and(|(t, r)| ts <= t || rel < r) {
                return Err(format!("time entry {i} does not increase"));
            }
            if end_rel.is_some_and(|e| u64::from(rel) >= e) {
                return Err(format!("time entry {i} points past the segment"));
            }
            prev = Some((ts, rel));
        }
        Ok(())
    }
}

/// Checks a file's size against its entry size before mapping it.
pub(crate) fn check_size(path: &Path, entry: usize) -> Result<usize, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    entries_in(usize::try_from(len).map_err(|e| e.to_string())?, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_index_grows_trims_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::open_writable(&path, 0, 64).expect("open");
        for i in 1..=8u32 {
            assert!(idx.push(i * 10, i * 100), "entry {i}");
        }
        assert_eq!(idx.remaining(), 0);
        assert!(!idx.push(90, 900));
        assert_eq!(idx.floor(5), None);
        assert_eq!(idx.floor(10), Some((10, 100)));
        assert_eq!(idx.floor(79), Some((70, 700)));
        assert_eq!(idx.floor(u32::MAX), Some((80, 800)));
        idx.truncate(50, u64::MAX);
        idx.trim().expect("trim");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 32);
        let ro = OffsetIndex::open_read_only(&path).expect("reopen");
        assert_eq!(ro.len(), 4);
        ro.check(1000, Some(50)).expect("sane");
        assert!(ro.check(300, None).is_err(), "position beyond the log");
    }

    #[test]
    fn time_index_lookup_and_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.timeindex");
        TimeIndex::write(&path, &[(10, 0), (20, 5), (30, 9)]).expect("write");
        let t = TimeIndex::open_read_only(&path).expect("open");
        t.check(Some(10)).expect("sane");
        assert_eq!(t.last_before(10), None);
        assert_eq!(t.last_before(11), Some((10, 0)));
        assert_eq!(t.last_before(30), Some((20, 5)));
        assert_eq!(t.last_before(i64::MAX), Some((30, 9)));
        assert!(t.check(Some(9)).is_err());
        std::fs::write(&path, [1u8; 13]).expect("damage");
        assert!(check_size(&path, TIME_ENTRY).is_err());
    }
}
