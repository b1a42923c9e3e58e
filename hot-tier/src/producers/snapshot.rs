//! Producer-state snapshots: the table as of an offset, so that opening a log replays only
//! the batch headers after that offset, never closed segments.
//!
//! A snapshot is a file `{offset:020}.snapshot` (named like the segments), covering every
//! batch below `offset`. One is written when a segment rolls (at the new active segment's
//! base) and one on clean close (at the log end), each atomically: temporary file, fsync,
//! rename, fsync of the directory. The newest [`KEEP`] are kept, so a truncation (a follower
//! cutting a divergent tail, often below the offset of a clean close) can restart from an
//! older one instead of scanning the whole log. A snapshot is used only if its CRC holds and
//! its offset is not beyond the log end: one that covers offsets the log no longer has
//! describes a history that was truncated away, and is deleted.
//!
//! # Layout (version 1, all integers little-endian)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0  | 4 | magic | `PYPS` |
//! | 4  | 2 | version u16 | `1` |
//! | 6  | 4 | crc u32 | CRC32C of every byte from offset 10 to the end |
//! | 10 | 8 | offset u64 | the snapshot covers every batch below it |
//! | 18 | 4 | producer count u32 | |
//! | 22 | … | producers | by increasing producer id |
//!
//! Each producer: `producer_id` i64, `epoch` i16, batch count u8 (1 to 5), then its batches,
//! oldest first, each `first_seq` i32, `last_seq` i32, `base_offset` u64, `last_offset` u64,
//! `max_timestamp` i64.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::epochs::sync_dir;
use crate::error::HotError;
use crate::producers::{BatchMetadata, ProducerEntry, ProducerStateTable, BATCHES_KEPT};
use crate::segment::{io_err, parse_segment_name, segment_path};

pub(crate) const SNAPSHOT_EXT: &str = "snapshot";
/// Opening a partition deletes every `.tmp` file, so a half-written snapshot goes away.
const TMP_EXT: &str = "snapshot.tmp";
/// Snapshots kept: a truncation usually finds one at or below its cut in the newest few.
pub(crate) const KEEP: usize = 3;
const MAGIC: &[u8; 4] = b"PYPS";
const VERSION: u16 = 1;
const CRC_START: usize = 10;
const HEADER: usize = 22;
const BATCH_LEN: usize = 32;

/// The file's bytes for `table` as of `offset`.
pub(crate) fn encode(offset: u64, table: &ProducerStateTable) -> Vec<u8> {
    let entries = table.sorted_entries();
    let mut out = Vec::with_capacity(HEADER + entries.len() * (11 + BATCHES_KEPT * BATCH_LEN));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&offset.to_le_bytes());
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for (id, e) in entries.into_iter().take(count as usize) {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&e.epoch.to_le_bytes());
        // Never more than BATCHES_KEPT.
        let n = e.batches.len().min(BATCHES_KEPT);
        out.push(n as u8);
        for b in e.batches.iter().skip(e.batches.len() - n) {
            out.extend_from_slice(&b.first_seq.to_le_bytes());
            out.extend_from_slice(&b.last_seq.to_le_bytes());
            out.extend_from_slice(&b.base_offset.to_le_bytes());
            out.extend_from_slice(&b.last_offset.to_le_bytes());
            out.extend_from_slice(&b.max_timestamp.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[6..CRC_START].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads fixed-size little-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err("truncated".into());
        };
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_le_bytes)
    }
}

/// The offset and table in `bytes`, or why they cannot be trusted. Never panics.
pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, ProducerStateTable), String> {
    if bytes.len() < HEADER {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    let mut r = Reader(bytes);
    if &r.take::<4>()? != MAGIC {
        return Err("not a producer snapshot (bad magic)".into());
    }
    let version = u16::from_le_bytes(r.take()?);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let crc = r.u32()?;
    let actual = crc32c::crc32c(&bytes[CRC_START..]);
    if crc != actual {
        return Err(format!(
            "CRC mismatch: header says {crc:#010x}, bytes give {actual:#010x}"
        ));
    }
    let offset = r.u64()?;
    let count = r.u32()?;
    let mut table = ProducerStateTable::new();
    let mut previous_id = None;
    for _ in 0..count {
        let id = r.i64()?;
        if id < 0 || previous_id.is_some_and(|p| id <= p) {
            return Err(format!("producer id {id} out of order"));
        }
        previous_id = Some(id);
        let epoch = r.i16()?;
        let n = usize::from(r.u8()?);
        if !(1..=BATCHES_KEPT).contains(&n) || epoch < 0 {
            return Err(format!("producer {id}: {n} batches, epoch {epoch}"));
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            let b = BatchMetadata {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.u64()?,
                last_offset: r.u64()?,
                max_timestamp: r.i64()?,
            };
            let after_previous = batches
                .back()
                .is_none_or(|p: &BatchMetadata| p.last_offset < b.base_offset);
            let sane = b.first_seq >= 0
                && b.last_seq >= 0
                && b.base_offset <= b.last_offset
                && b.last_offset < offset
                && after_previous;
            if !sane {
                return Err(format!("producer {id}: batch {b:?} does not fit"));
            }
            batches.push_back(b);
        }
        table.insert(id, ProducerEntry { epoch, batches });
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the last producer", r.0.len()));
    }
    Ok((offset, table))
}

/// What a snapshot file holds.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// Gone meanwhile.
    Missing,
    /// Present but not usable; the reason, for the log.
    Corrupt(String),
    Found(ProducerStateTable),
}

/// Offsets of the snapshots in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>, HotError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        if let Some((offset, SNAPSHOT_EXT)) = name.to_str().and_then(parse_segment_name) {
            out.push(offset);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads the snapshot at `offset`. Only I/O failures other than "not found" are errors.
pub(crate) fn load(dir: &Path, offset: u64) -> Result<Loaded, HotError> {
    let path = segment_path(dir, offset, SNAPSHOT_EXT);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    Ok(match decode(&bytes) {
        Ok((o, table)) if o == offset => Loaded::Found(table),
        Ok((o, _)) => Loaded::Corrupt(format!("holds offset {o}, named {offset}")),
        Err(why) => Loaded::Corrupt(why),
    })
}

/// Writes the snapshot at `offset` (temporary file, fsync, rename, fsync of the directory),
/// then removes all but the newest [`KEEP`].
pub(crate) fn persist(dir: &Path, offset: u64, table: &ProducerStateTable) -> Result<(), HotError> {
    let path = segment_path(dir, offset, SNAPSHOT_EXT);
    let tmp = segment_path(dir, offset, TMP_EXT);
    let bytes = encode(offset, table);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(io_err("write producer snapshot", &path))?;
    let all = list(dir)?;
    let old = all.len().saturating_sub(KEEP);
    for &o in &all[..old] {
        remove_file(dir, o)?;
    }
    sync_dir(dir)
}

/// Removes (durably) the snapshots whose offsets `drop` selects.
pub(crate) fn remove(dir: &Path, drop: impl Fn(u64) -> bool) -> Result<(), HotError> {
    let mut removed = false;
    for o in list(dir)?.into_iter().filter(|&o| drop(o)) {
        remove_file(dir, o)?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn remove_file(dir: &Path, offset: u64) -> Result<(), HotError> {
    let path = segment_path(dir, offset, SNAPSHOT_EXT);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("delete", &path)(e)),
    }
}
