//! The read path: fetching whole batches by offset, and finding an offset by timestamp.
//!
//! Reads never hold the partition's locks while touching the disk: the caller hands over
//! `Arc<Segment>` snapshots taken under a short lock, and everything here is positional reads
//! of bytes below each segment's published size. Every batch returned is CRC-checked first;
//! bad bytes become [`HotError::Corrupt`] naming the file and position, never a payload.

use std::sync::Arc;

use bytes::Bytes;
use pyralog_types::batch::{check_stored, peek_size, Batch, BatchHeader, LOG_OVERHEAD};
use pyralog_types::{Epoch, LogOffset, TimestampMicros};

use crate::error::HotError;
use crate::log::ReadResult;
use crate::segment::Segment;

/// Reads from the batch holding `from` (in `first`), continuing into the segments that
/// `next(base)` yields while `max_bytes` allows. Batches at or beyond `limit` are left out.
///
/// `epoch_at(base)` is the epoch the leader-epoch cache says wrote `base`: the batch's own
/// `epoch` field sits outside its CRC, so this is what catches a flipped byte there.
pub(crate) fn read(
    first: Arc<Segment>,
    next: impl Fn(u64) -> Option<Arc<Segment>>,
    epoch_at: impl Fn(u64) -> Option<Epoch>,
    from: u64,
    max_bytes: usize,
    limit: u64,
) -> Result<ReadResult, HotError> {
    // Every batch served, in order, in one buffer: the response is this buffer as it is,
    // also when the read crosses into the next segment (no join of per-segment reads).
    let mut out: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let budget = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    let mut next_offset = from;
    let mut expect: Option<u64> = None;
    let mut seg = Some(first);
    let mut is_first = true;
    while let Some(s) = seg.take() {
        let size = s.size();
        let gaps_allowed = s.is_compacted();
        if !is_first {
            // A segment starts at its base, unless compaction removed its first records.
            expect = (!gaps_allowed).then_some(s.base());
        }
        let reading_first = is_first;
        let start = if is_first {
            s.locate(from)
                .map_err(|e| name_offset(e, from))?
                .map_or(size, |(pos, _)| pos)
        } else {
            0
        };
        is_first = false;
        if start < size {
            let mut want = (size - start).min(budget.saturating_sub(total));
            if total == 0 {
                // Always at least one batch, however large.
                let header = s
                    .header_at(start, size)
                    .map_err(|e| name_offset(e, next_offset))?;
                want = want.max(header.size);
            }
            if want == 0 {
                break;
            }
            let to_end = want == size - start;
            // Only whole batches read so far are kept: the buffer ends at `total`.
            let at = usize::try_from(total).unwrap_or(usize::MAX);
            out.truncate(at);
            let want = usize::try_from(want).unwrap_or(usize::MAX);
            if at == 0 {
                // Zeroed memory straight from the allocator (fresh pages need no clearing).
                out = vec![0u8; want];
            } else {
                out.reserve_exact(want);
                out.resize(at + want, 0);
            }
            s.read_into(start, &mut out[at..])?;
            let buf = &out[at..];
            let mut used = 0usize;
            let mut at_limit = false;
            let mut damaged = false;
            while used < buf.len() {
                let pos = start + used as u64;
                match check_batch(&s, buf, used, pos, to_end, from, expect, &epoch_at) {
                    Ok(Step::Batch(header, batch_size)) => {
                        if header.base_offset >= limit {
                            at_limit = true;
                            break;
                        }
                        used += batch_size;
                        next_offset = header.next_offset();
                        expect = Some(next_offset);
                    }
                    Ok(Step::Partial) => break,
                    // Bad bytes after intact batches: serve the intact ones and stop before
                    // the damage; the next read, starting at it, reports it.
                    Err(e) if total > 0 || used > 0 => {
                        tracing::debug!(error = %e, offset = next_offset,
                            "corrupt batch: serving the intact batches before it");
                        damaged = true;
                        break;
                    }
                    Err(e) => return Err(name_offset(e, next_offset)),
                }
            }
            total += used as u64;
            if damaged || at_limit || start + (used as u64) < size {
                break;
            }
        }
        if total == 0 && start >= size {
            if reading_first && !gaps_allowed {
                // A dense segment always holds the offsets of its range: nothing found means
                // the segment went away under the read (retention; the caller reports
                // out-of-range) or is damaged. Never skip ahead: that would be a gap.
                return Err(s.corrupt(start, format!("offset {from} not found in its segment")));
            }
            // Nothing at or after `from` here (a compacted segment's trailing gap): the next
            // read starts past this segment.
            next_offset = next_offset.max(s.end().min(limit));
        }
        if total >= budget {
            break;
        }
        seg = next(s.base());
    }
    // The answer holds what it serves, not what was read: a read stopped early (at the limit,
    // a partial batch, damage) must not keep the rest of its buffer alive while the answer
    // waits to be sent.
    let served = usize::try_from(total).unwrap_or(usize::MAX);
    out.truncate(served);
    if served == 0 {
        out = Vec::new();
    } else if out.capacity() - served > served / 8 {
        out.shrink_to_fit();
    }
    Ok(ReadResult {
        batches: Bytes::from(out),
        next_offset: LogOffset(next_offset),
    })
}

/// What the next bytes of a read buffer hold.
enum Step {
    /// A whole, verified batch (its header) of this many bytes.
    Batch(BatchHeader, usize),
    /// Only the start of a batch: the read stopped inside it (by `max_bytes`).
    Partial,
}

/// Checks the batch at `used` in `buf` (file position `pos`): framing, CRC, that it is the
/// offset expected next, and that its epoch matches the epoch cache.
#[allow(clippy::too_many_arguments)]
fn check_batch(
    s: &Segment,
    buf: &[u8],
    used: usize,
    pos: u64,
    to_end: bool,
    from: u64,
    expect: Option<u64>,
    epoch_at: &impl Fn(u64) -> Option<Epoch>,
) -> Result<Step, HotError> {
    let gaps_allowed = s.is_compacted();
    if buf.len() - used < LOG_OVERHEAD {
        if to_end {
            return Err(s.corrupt(pos, "torn batch header"));
        }
        return Ok(Step::Partial);
    }
    let batch_size = peek_size(&buf[used..]).map_err(|e| s.corrupt(pos, e.to_string()))?;
    if used + batch_size > buf.len() {
        if to_end {
            return Err(s.corrupt(pos, "batch runs past the end of the segment"));
        }
        return Ok(Step::Partial);
    }
    let header =
        check_stored(&buf[used..used + batch_size]).map_err(|e| s.corrupt(pos, e.to_string()))?;
    let base = header.base_offset;
    // Compacted segments have gaps between batches, never overlaps; any other segment is
    // dense, and the batch the index found for `from` holds it.
    if expect.is_some_and(|e| e > base || (e != base && !gaps_allowed))
        || (expect.is_none() && !gaps_allowed && base > from)
    {
        return Err(s.corrupt(pos, format!("batch at offset {base}, expected {expect:?}")));
    }
    if epoch_at(base).is_some_and(|e| e != Epoch(header.epoch)) {
        return Err(s.corrupt(
            pos,
            format!(
                "batch at offset {base} says epoch {}, the epoch cache {:?}",
                header.epoch,
                epoch_at(base).map(|e| e.0)
            ),
        ));
    }
    Ok(Step::Batch(header, batch_size))
}

/// Adds the offset the read wanted to a corruption error, so the caller learns where the
/// damaged range starts (the file position alone means nothing to a consumer).
fn name_offset(e: HotError, offset: u64) -> HotError {
    match e {
        HotError::Corrupt {
            path,
            position,
            detail,
        } => HotError::Corrupt {
            path,
            position,
            detail: format!("batch holding offset {offset}: {detail}"),
        },
        other => other,
    }
}

/// The first offset whose record timestamp is `>= ts`, searching `segments` oldest first.
pub(crate) fn offset_for_timestamp(
    segments: &[Arc<Segment>],
    ts: TimestampMicros,
) -> Result<Option<LogOffset>, HotError> {
    for s in segments {
        if s.max_timestamp()?.is_none_or(|m| m < ts) {
            continue;
        }
        let size = s.size();
        let from = s.with_indexes(|ix| ix.times.last_before(ts))?;
        let mut pos = match from {
            Some((_, rel)) => s.locate(s.base() + u64::from(rel))?.map_or(0, |(p, _)| p),
            None => 0,
        };
        while pos < size {
            let h = s.header_at(pos, size)?;
            if h.max_timestamp >= ts {
                let bytes =
                    Bytes::from(s.read_at(pos, usize::try_from(h.size).unwrap_or(usize::MAX))?);
                let batch =
                    Batch::parse_verified(bytes).map_err(|e| s.corrupt(pos, e.to_string()))?;
                let records = batch.records().map_err(|e| s.corrupt(pos, e.to_string()))?;
                if let Some(r) = records.iter().find(|r| r.timestamp >= ts) {
                    return Ok(Some(r.offset));
                }
            }
            pos += h.size;
        }
    }
    Ok(None)
}
