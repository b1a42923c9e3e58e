//! Opening a partition directory: what to trust, what to scan, what to clean up.
//!
//! Startup cost must not grow with the number of segments. Segments are fsynced when they
//! roll, so only the active (newest) segment can hold a torn tail; a clean shutdown leaves a
//! `.clean_shutdown` marker, and then even the active segment is trusted (only the few
//! batches after its last index entry are replayed, headers only). Without the marker the
//! active segment is scanned in full, every batch CRC-checked, and cut at the first bad one.
//! Closed segments are never read here: their size comes from the directory listing and their
//! end offset from the next segment's name.
//!
//! The marker is removed (and the removal fsynced) before the log accepts writes, so a later
//! crash is never mistaken for a clean shutdown.
//!
//! The idempotent-producer table comes from the newest producer snapshot plus the batch
//! headers after the snapshot's offset. Snapshots are written at every roll and on clean
//! close, so after a clean shutdown nothing is replayed and after a crash only the active
//! segment is; without a usable snapshot every segment's headers are replayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use pyralog_types::{Epoch, LogOffset, TimestampMicros};
use tracing::{info, warn};

use crate::active::Active;
use crate::epochs::{sync_dir, EpochCache, CHECKPOINT};
use crate::error::HotError;
use crate::files::{Access, OpenFiles};
use crate::log::PartitionOptions;
use crate::producers::snapshot::{self, Loaded};
use crate::producers::ProducerStateTable;
use crate::scan::replay_producers;
use crate::segment::{
    io_err, parse_segment_name, segment_path, Segment, COMPACTED_EXT, INDEX_EXT, LOG_EXT, TIME_EXT,
};

pub(crate) const CLEAN_MARKER: &str = ".clean_shutdown";

/// A partition directory, opened.
pub(crate) struct Opened {
    pub(crate) segments: BTreeMap<u64, Arc<Segment>>,
    pub(crate) active: Active,
    pub(crate) epochs: EpochCache,
    pub(crate) producers: ProducerStateTable,
    pub(crate) clean: bool,
}

/// What the clean-shutdown marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) end: u64,
    pub(crate) first_append: Option<TimestampMicros>,
}

impl Marker {
    pub(crate) fn encode(&self) -> String {
        match self.first_append {
            Some(t) => format!("{} {t}\n", self.end),
            None => format!("{} -\n", self.end),
        }
    }

    fn decode(text: &str) -> Option<Marker> {
        let mut parts = text.split_whitespace();
        let end = parts.next()?.parse().ok()?;
        let first_append = match parts.next()? {
            "-" => None,
            t => Some(t.parse().ok()?),
        };
        parts
            .next()
            .is_none()
            .then_some(Marker { end, first_append })
    }
}

/// Reads and removes the clean-shutdown marker.
fn take_marker(dir: &Path) -> Result<Option<Marker>, HotError> {
    let path = dir.join(CLEAN_MARKER);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    std::fs::remove_file(&path).map_err(io_err("delete", &path))?;
    sync_dir(dir)?;
    let marker = std::str::from_utf8(&text).ok().and_then(Marker::decode);
    if marker.is_none() {
        warn!(dir = %dir.display(), "unreadable clean-shutdown marker; recovering");
    }
    Ok(marker)
}

fn remove(path: &Path) -> Result<(), HotError> {
    std::fs::remove_file(path).map_err(io_err("delete", path))
}

/// `.log` files (base → size), after deleting leftovers that belong to no segment.
fn list_segments(dir: &Path) -> Result<BTreeMap<u64, u64>, HotError> {
    let mut logs = BTreeMap::new();
    let mut indexes = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(".tmp") {
            remove(&path)?;
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_EXT)) => {
                let size = entry.metadata().map_err(io_err("stat", &path))?.len();
                logs.insert(base, size);
            }
            Some((base, INDEX_EXT | TIME_EXT | COMPACTED_EXT)) => indexes.push((base, path)),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains_key(&base) {
            warn!(file = %path.display(), "deleting an index without its log");
            remove(&path)?;
        }
    }
    Ok(logs)
}

/// Opens (or creates) the partition directory `dir`.
pub(crate) fn open_dir(
    dir: &Path,
    opts: &PartitionOptions,
    now: TimestampMicros,
    files: &OpenFiles,
) -> Result<Opened, HotError> {
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let marker = take_marker(dir)?;
    let mut logs = list_segments(dir)?;
    let interval = u64::from(opts.index_interval_bytes);
    let (mut epochs, epochs_found) = EpochCache::load(dir)?;
    if !epochs_found && dir.join(CHECKPOINT).exists() {
        warn!(dir = %dir.display(), "unreadable leader-epoch checkpoint; rebuilding it");
    }

    // An empty newest segment left by a crash during a roll is dropped, so the previous one
    // continues as the active segment; not when that one was compacted: its records end
    // before its range does, and appends must continue after the range, at the empty one.
    let previous_compacted = logs
        .keys()
        .rev()
        .nth(1)
        .is_some_and(|&b| segment_path(dir, b, COMPACTED_EXT).exists());
    if marker.is_none() && logs.len() > 1 && !previous_compacted {
        if let Some((&base, &0)) = logs.last_key_value() {
            warn!(segment = %segment_path(dir, base, LOG_EXT).display(),
                "deleting an empty newest segment left by a crash");
            for ext in [LOG_EXT, INDEX_EXT, TIME_EXT] {
                let p = segment_path(dir, base, ext);
                if p.exists() {
                    remove(&p)?;
                }
            }
            logs.remove(&base);
        }
    }

    let Some((&active_base, &active_size)) = logs.last_key_value() else {
        let active = Active::create(dir, 0, opts, files)?;
        epochs.truncate_from_end(LogOffset::ZERO);
        epochs.persist()?;
        let mut segments = BTreeMap::new();
        segments.insert(0, active.seg.clone());
        let producers = rebuild_producers(dir, &segments, 0)?.table;
        return Ok(Opened {
            segments,
            active,
            epochs,
            producers,
            clean: marker.is_some(),
        });
    };

    let mut segments = BTreeMap::new();
    let bases: Vec<u64> = logs.keys().copied().collect();
    for (i, (&base, &size)) in logs.iter().enumerate() {
        if base == active_base {
            break;
        }
        let end = bases.get(i + 1).copied().unwrap_or(active_base);
        let seg = Segment::new(dir, base, (size, end), interval, files, Access::ReadOnly);
        segments.insert(base, Arc::new(seg));
    }
    let seg = Arc::new(Segment::new(
        dir,
        active_base,
        (active_size, active_base),
        interval,
        files,
        Access::ReadWrite,
    ));
    let (mut active, out, recovered) = Active::open(seg, opts, marker.is_none())?;
    segments.insert(active_base, active.seg.clone());
    let end = active.next_offset();
    match marker {
        Some(m) if !recovered => {
            if m.end != end {
                warn!(dir = %dir.display(), marker = m.end, found = end,
                    "clean-shutdown marker disagrees with the log end; trusting the log");
            }
            active.first_append = if active.is_empty() {
                None
            } else {
                m.first_append
            };
        }
        _ => {
            // The age of the active segment is unknown after a crash: count it from now.
            active.first_append = (!active.is_empty()).then_some(now);
            info!(dir = %dir.display(), end, "recovered the active segment");
        }
    }

    let mut changed = epochs.truncate_from_end(LogOffset(end));
    if !epochs_found || recovered {
        let seen = if recovered {
            out.epochs
        } else {
            active.scan_epochs()?
        };
        for (e, o) in seen {
            changed |= epochs.assign(Epoch(e), LogOffset(o));
        }
    }
    if changed || !epochs_found {
        epochs.persist()?;
    }
    let producers = rebuild_producers(dir, &segments, end)?.table;
    Ok(Opened {
        segments,
        active,
        epochs,
        producers,
        clean: marker.is_some() && !recovered,
    })
}

/// A producer table rebuilt from the directory.
pub(crate) struct RebuiltProducers {
    pub(crate) table: ProducerStateTable,
    /// No snapshot was usable and batch headers were replayed from the start of the log.
    pub(crate) scanned_all: bool,
}

/// The producer table of the log made of `segments` (ending at `end`): the newest usable
/// snapshot at or below `end` plus the headers of the batches at or after its offset, or,
/// without one, the headers of every batch. Segments that end at or before the snapshot's
/// offset are not read. Snapshots beyond `end` (the log was cut below them) and corrupt ones
/// are deleted first: once the log grew past a stale snapshot's offset it would look valid.
pub(crate) fn rebuild_producers(
    dir: &Path,
    segments: &BTreeMap<u64, Arc<Segment>>,
    end: u64,
) -> Result<RebuiltProducers, HotError> {
    let offsets = snapshot::list(dir)?;
    if offsets.iter().any(|&o| o > end) {
        warn!(dir = %dir.display(), end,
            "deleting producer snapshots beyond the log end");
        snapshot::remove(dir, |o| o > end)?;
    }
    let mut found = None;
    for &offset in offsets.iter().rev().filter(|&&o| o <= end) {
        match snapshot::load(dir, offset)? {
            Loaded::Found(table) => {
                found = Some((offset, table));
                break;
            }
            Loaded::Corrupt(why) => {
                warn!(dir = %dir.display(), offset, %why, "deleting a corrupt producer snapshot");
                snapshot::remove(dir, |o| o == offset)?;
            }
            Loaded::Missing => {}
        }
    }
    let scanned_all = found.is_none() && segments.values().any(|s| s.size() > 0);
    if scanned_all {
        info!(dir = %dir.display(), end,
            "no usable producer snapshot; rebuilding producer state from every batch header");
    }
    let (from, mut table) = found.unwrap_or((0, ProducerStateTable::new()));
    for seg in segments.values().filter(|s| s.end() > from) {
        replay_producers(seg, from, &mut table)?;
    }
    Ok(RebuiltProducers { table, scanned_all })
}

/// Writes the clean-shutdown marker (fsynced, with its directory entry).
pub(crate) fn write_marker(dir: &Path, marker: Marker) -> Result<(), HotError> {
    use std::io::Write;
    let path = dir.join(CLEAN_MARKER);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(marker.encode().as_bytes())?;
        f.sync_all()
    };
    write().map_err(io_err("write", &path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        for m in [
            Marker {
                end: 0,
                first_append: None,
            },
            Marker {
                end: 77,
                first_append: Some(-5),
            },
        ] {
            assert_eq!(Marker::decode(&m.encode()), Some(m));
        }
        assert_eq!(Marker::decode("12"), None);
        assert_eq!(Marker::decode("x -"), None);
        assert_eq!(Marker::decode("1 2 3"), None);
    }
}
