//! The file steps of rewriting a closed segment (key-based compaction on the hot tier).
//!
//! [`crate::PartitionLog::rewrite_segment`] owns the locking and the in-memory swap; this
//! module reads a segment whole, writes its replacement to a temporary file and swaps the
//! files. The order of the swap is what makes a crash at any point safe: the replacement is
//! complete and fsynced before anything of the old segment is touched, the indexes go before
//! the `.log` (an index never describes the wrong file; a missing one is rebuilt), and the
//! rename is the commit point.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pyralog_types::batch::{rebuild_batches, split_batches, Compression};
use pyralog_types::Record;

use crate::epochs::sync_dir;
use crate::error::HotError;
use crate::segment::{io_err, segment_path, Segment};

/// Rewritten batches are at most this large (uncompressed), like a producer's default.
const REWRITE_BATCH_BYTES: usize = 1 << 20;

/// Every record of a closed segment (CRC-checked), and how many batches held them.
pub(crate) fn read_all(seg: &Segment) -> Result<(Vec<Record>, u64), HotError> {
    let size = seg.size();
    let len = usize::try_from(size).map_err(|_| seg.corrupt(0, "segment too large to rewrite"))?;
    let bytes = Bytes::from(seg.read_at(0, len)?);
    let mut records = Vec::new();
    let mut batches = 0u64;
    let mut pos = 0u64;
    for batch in split_batches(bytes) {
        let batch = batch.map_err(|e| seg.corrupt(pos, e.to_string()))?;
        batch
            .verify_crc()
            .map_err(|e| seg.corrupt(pos, e.to_string()))?;
        pos += batch.size() as u64;
        batches += 1;
        records.extend(
            batch
                .records()
                .map_err(|e| seg.corrupt(pos, e.to_string()))?,
        );
    }
    Ok((records, batches))
}

/// Writes `records` as the replacement of `seg` into a fsynced temporary file.
pub(crate) fn write_tmp(
    dir: &Path,
    seg: &Segment,
    records: &[Record],
) -> Result<PathBuf, HotError> {
    let (lo, hi) = (seg.base(), seg.end());
    for (i, r) in records.iter().enumerate() {
        let inside = (lo..hi).contains(&r.offset.0);
        let increasing = i == 0 || records[i - 1].offset < r.offset;
        if !inside || !increasing {
            return Err(HotError::InvalidBatch(
                pyralog_types::batch::BatchError::Malformed(
                    "a rewrite must keep increasing offsets inside the segment's range",
                ),
            ));
        }
    }
    let batches = rebuild_batches(records, REWRITE_BATCH_BYTES, Compression::Zstd(1))?;
    let tmp = tmp_path(dir, seg.base());
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    for b in &batches {
        f.write_all(b).map_err(io_err("write", &tmp))?;
    }
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    Ok(tmp)
}

/// Replaces `seg`'s files with the temporary file: indexes unlinked, then the rename, then a
/// directory fsync. Returns the new size of the `.log`.
pub(crate) fn swap_in(dir: &Path, seg: &Segment, tmp: &Path) -> Result<u64, HotError> {
    // The marker first: a crash before the rename leaves an intact segment marked as
    // compacted, which only relaxes its gap check; never a compacted one without it.
    let marker = seg.compacted_marker();
    File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io_err("create", &marker))?;
    sync_dir(dir)?;
    for p in [seg.index_path(), seg.time_path()] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("delete", p)(e)),
        }
    }
    let size = std::fs::metadata(tmp).map_err(io_err("stat", tmp))?.len();
    std::fs::rename(tmp, seg.log_path()).map_err(io_err("rename", tmp))?;
    sync_dir(dir)?;
    Ok(size)
}

/// Removes an unused temporary file (best effort: opening the log deletes leftovers anyway).
pub(crate) fn discard(tmp: &Path) {
    if let Err(e) = std::fs::remove_file(tmp) {
        tracing::warn!(file = %tmp.display(), error = %e, "could not delete a rewrite leftover");
    }
}

/// `{base:020}.log.rewrite.tmp`: deleted by `open` if a crash leaves it behind.
fn tmp_path(dir: &Path, base: u64) -> PathBuf {
    let mut p = segment_path(dir, base, crate::segment::LOG_EXT).into_os_string();
    p.push(".rewrite.tmp");
    PathBuf::from(p)
}
