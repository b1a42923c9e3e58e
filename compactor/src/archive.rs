//! Archiving: closed hot segments → Parquet → object store → manifest → local retention.
//!
//! A segment is streamed: read in chunks, encoded a row group at a time and uploaded in parts
//! while it is written, so tiering a 256 MiB segment holds a few MiB, not the segment (the
//! node's memory must not grow with `segment_bytes` times the partitions being tiered).

use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use pyralog_cold_tier::{
    part_channel, upload_streamed, ColdError, ColdPartition, ColdSegment, EncodeOptions, Layout,
    SegmentMeta, SegmentWriter, UploadOptions,
};
use pyralog_hot_tier::{ChainMismatch, PartitionLog, SegmentInfo};
use pyralog_types::batch::split_batches;
use pyralog_types::{LogId, LogOffset, PartitionId, Record, Retention};
use tracing::{debug, warn};

use crate::error::CompactorError;

/// How archiving reads, encodes and uploads.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    pub encode: EncodeOptions,
    pub upload: UploadOptions,
    /// Hot-tier retention applied once segments are archived (`local_retention`).
    pub local_retention: Option<Retention>,
    /// The log is a ledger (`integrity = "ledger"`): every object carries the hash chain,
    /// continued from the previous object's seal, and its Merkle root (see
    /// `pyralog_cold_tier::LedgerSeal`).
    pub ledger: bool,
}

/// One partition's two tiers and where its archive lives.
#[derive(Debug, Clone, Copy)]
pub struct PartitionTiers<'a> {
    pub log: &'a LogId,
    pub partition: PartitionId,
    pub hot: &'a Arc<PartitionLog>,
    pub cold: &'a ColdPartition,
    pub store: &'a dyn ObjectStore,
    pub layout: &'a Layout,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    pub uploaded: Vec<ColdSegment>,
    /// Bytes of hot segments read for the uploads.
    pub hot_bytes: u64,
    /// Local segments deleted by local retention after their archive was committed.
    pub deleted_local: Vec<SegmentInfo>,
    /// The segment the run stopped at because its data is damaged (the segments before it
    /// were archived, and local retention applied below them).
    pub corrupt: Option<CorruptSegment>,
}

/// A closed local segment that cannot be archived: a batch in it fails its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptSegment {
    /// The segment's base offset.
    pub base_offset: LogOffset,
    /// The first offset that cannot be read (the damaged batch's range starts here).
    pub offset: LogOffset,
    pub detail: String,
}

/// Archives every closed segment of `hot` whose records are all below `limit` (the high
/// watermark: nothing a failover could take back is archived) and not yet in `cold`, oldest
/// first, committing each before the next; then applies local retention below the archived
/// end. Stops at the first failure, having kept what it committed. A damaged segment is not
/// a failure of the run: it stops there and reports it in [`ArchiveReport::corrupt`], and
/// local retention still frees what was archived before it.
pub async fn archive_partition(
    t: PartitionTiers<'_>,
    limit: LogOffset,
    opts: &ArchiveOptions,
) -> Result<ArchiveReport, CompactorError> {
    let PartitionTiers {
        log,
        partition,
        hot,
        cold,
        store,
        layout,
    } = t;
    let mut report = ArchiveReport::default();
    let segments = hot.segments();
    for seg in segments.iter().filter(|s| !s.is_active) {
        let Some(last) = seg.last_offset else {
            continue;
        };
        let archived_end = cold.end_offset().unwrap_or(LogOffset::ZERO);
        if last < archived_end {
            continue;
        }
        if last >= limit {
            break;
        }
        let from = archived_end.max(seg.base_offset);
        let key = layout.segment_key(log, partition, from, last, opts.upload.generation);
        let chain_start = match opts.ledger {
            true => Some(chain_head(log, partition, cold)?),
            false => None,
        };
        let streamed =
            match stream_with_retries(hot, from, last, chain_start, store, &key, opts).await {
                Err(CompactorError::Corrupt { offset, source }) => {
                    report.corrupt = Some(CorruptSegment {
                        base_offset: seg.base_offset,
                        offset,
                        detail: source.to_string(),
                    });
                    break;
                }
                other => other?,
            };
        if opts.ledger {
            // A ledger's archive is dense: every object holds every offset of its range.
            let dense = streamed.as_ref().is_some_and(|(m, _)| {
                m.base_offset == from
                    && m.last_offset == last
                    && m.record_count == last.0 - from.0 + 1
            });
            if !dense {
                return Err(CompactorError::Ledger(format!(
                    "{log}/{partition}: offsets {from}..={last} do not read back densely from \
                     the local log (got {:?}); a ledger's archive never skips an offset",
                    streamed
                        .as_ref()
                        .map(|(m, _)| (m.base_offset, m.last_offset, m.record_count))
                )));
            }
        }
        if let (Some(start), Some((meta, _))) = (chain_start, &streamed) {
            let end = meta.ledger.map(|seal| seal.chain_end);
            if let Some(m) = hot_chain_mismatch(hot, from, last, start, end).await? {
                // The object just uploaded is never committed (orphan collection takes it).
                report.corrupt = Some(CorruptSegment {
                    base_offset: seg.base_offset,
                    offset: m.offset,
                    detail: m.detail,
                });
                break;
            }
        }
        let Some((meta, size)) = streamed else {
            // Compaction emptied the rest of this segment: nothing to upload, but the range
            // is archived all the same.
            cold.advance_archived_end(LogOffset(last.0 + 1)).await?;
            continue;
        };
        let mut uploaded =
            ColdSegment::uploaded(&meta, key.to_string(), size, opts.upload.generation);
        // The entry covers the whole archived range, also where compaction left gaps at its
        // ends, so the manifest's end is the segment's end.
        uploaded.base_offset = from;
        uploaded.last_offset = last;
        cold.append_segment(uploaded.clone()).await?;
        debug!(%log, partition, key = %uploaded.key, records = uploaded.record_count,
            "archived segment");
        report.hot_bytes += seg.size_bytes;
        report.uploaded.push(uploaded);
    }
    if let (Some(retention), Some(end)) = (opts.local_retention, cold.end_offset()) {
        let hot = hot.clone();
        report.deleted_local =
            tokio::task::spawn_blocking(move || hot.enforce_retention(retention, end))
                .await
                .map_err(|e| CompactorError::Task(e.to_string()))??;
    }
    Ok(report)
}

/// A ledger's records as archived must hash to what this replica's chain journal recorded
/// when they were written (see `pyralog_hot_tier::PartitionLog::verify_chain`): `start` is
/// the archive's head before `from`, `end` the new object's head after `last`. Equal heads at
/// both ends cost two journal lookups; otherwise the range is rechecked batch by batch to
/// name the first batch that changed. A journal that does not hold the range (a log written
/// before ledger chains were journalled, or restored with no seed) is not compared.
async fn hot_chain_mismatch(
    hot: &Arc<PartitionLog>,
    from: LogOffset,
    last: LogOffset,
    start: pyralog_ledger::Hash,
    end: Option<pyralog_ledger::Hash>,
) -> Result<Option<ChainMismatch>, CompactorError> {
    let hot = hot.clone();
    tokio::task::spawn_blocking(move || {
        let after = LogOffset(last.0 + 1);
        let (at_from, at_end) = (hot.chain_head_at(from)?, hot.chain_head_at(after)?);
        if at_from.is_none() || at_end.is_none() || (at_from == Some(start) && at_end == end) {
            return Ok(None);
        }
        Ok(Some(hot.verify_chain(from, after)?.unwrap_or_else(|| {
            ChainMismatch {
                offset: from,
                end: after,
                detail: format!(
                    "ledger chain: this replica's chain journal says the head before offset \
                     {from} is {} and after offset {last} is {}; the archive says {} and {}: \
                     the local copy and the archive hold different histories",
                    hex(at_from),
                    hex(at_end),
                    pyralog_ledger::to_hex(&start),
                    hex(end)
                ),
            }
        })))
    })
    .await
    .map_err(|e| CompactorError::Task(e.to_string()))?
}

/// A chain head for a message, or `unknown` where the journal does not hold it.
fn hex(h: Option<pyralog_ledger::Hash>) -> String {
    h.map_or_else(|| "unknown".to_string(), |h| pyralog_ledger::to_hex(&h))
}

/// Where a ledger partition's next object continues the chain: the last archived object's
/// chain end, or the partition's genesis when nothing is archived.
fn chain_head(
    log: &LogId,
    partition: PartitionId,
    cold: &ColdPartition,
) -> Result<pyralog_ledger::Hash, CompactorError> {
    let manifest = cold.manifest();
    match manifest.segments.last() {
        None => Ok(pyralog_ledger::genesis(log.as_str(), partition)),
        Some(s) => s.ledger.map(|seal| seal.chain_end).ok_or_else(|| {
            CompactorError::Ledger(format!(
                "{log}/{partition}: archived object {} has no ledger seal; the chain cannot \
                 continue",
                s.key
            ))
        }),
    }
}

/// [`stream_segment`], repeated with the upload retry policy's backoff while it fails in a
/// way that may pass (the bucket unreachable, throttling). Each attempt reads and encodes
/// the range again: nothing of it is kept in memory between attempts.
async fn stream_with_retries(
    hot: &Arc<PartitionLog>,
    from: LogOffset,
    last: LogOffset,
    chain_start: Option<pyralog_ledger::Hash>,
    store: &dyn ObjectStore,
    key: &Path,
    opts: &ArchiveOptions,
) -> Result<Option<(SegmentMeta, u64)>, CompactorError> {
    let retry = &opts.upload.retry;
    let mut attempt = 0;
    loop {
        match stream_segment(hot, from, last, chain_start, store, key, opts).await {
            Err(e) if e.is_retriable() && attempt + 1 < retry.attempts.max(1) => {
                attempt += 1;
                warn!(%key, attempt, error = %e, "segment archive failed; retrying");
                tokio::time::sleep(retry.backoff(attempt - 1)).await;
            }
            other => return other,
        }
    }
}

/// Reads `[from, last]` of `hot`, encodes it row group by row group and uploads the parts as
/// they are written (see [`pyralog_cold_tier::upload_streamed`]): what this holds is one
/// read chunk, one row group and a few upload parts, never the segment. Returns the file's
/// metadata and size, or `None` when the range holds no record (compaction emptied it).
async fn stream_segment(
    hot: &Arc<PartitionLog>,
    from: LogOffset,
    last: LogOffset,
    chain_start: Option<pyralog_ledger::Hash>,
    store: &dyn ObjectStore,
    key: &Path,
    opts: &ArchiveOptions,
) -> Result<Option<(SegmentMeta, u64)>, CompactorError> {
    let (sink, parts) = part_channel(&opts.upload);
    let (hot, encode) = (hot.clone(), opts.encode.clone());
    let read_chunk = opts.encode.row_group_bytes.clamp(64 * 1024, 16 << 20);
    let encoder = tokio::task::spawn_blocking(move || {
        let mut writer = match chain_start {
            Some(start) => {
                SegmentWriter::with_ledger_version(sink, &encode, start, hot.ledger_chain())?
            }
            None => SegmentWriter::new(sink, &encode)?,
        };
        for_each_record(&hot, from, last, read_chunk, |record| {
            writer.push(record).map_err(CompactorError::from)
        })?;
        if writer.record_count() == 0 {
            // Dropping the writer unsent tells the upload there is no file.
            return Ok(None);
        }
        let (sink, meta) = writer.finish()?;
        sink.finish().map_err(|e| {
            CompactorError::Cold(ColdError::InvalidInput(format!("segment upload: {e}")))
        })?;
        Ok(Some(meta))
    });
    let (encoded, uploaded) =
        tokio::join!(encoder, upload_streamed(store, key, parts, &opts.upload));
    let encoded = encoded.map_err(|e| CompactorError::Task(e.to_string()))?;
    match (encoded, uploaded) {
        (Ok(Some(meta)), Ok(size)) => Ok(Some((meta, size))),
        // Nothing to write: the upload saw its writer go without a file.
        (Ok(None), _) => Ok(None),
        // The encoder failed (a damaged batch, a bad record) and stopped the upload.
        (Err(e), Err(ColdError::Incomplete { .. }) | Ok(_)) => Err(e),
        // The upload failed, and the encoder then found its sink closed.
        (_, Err(e)) => Err(e.into()),
    }
}

/// Every record in `[from, last]`, CRC-checked by the hot tier's read path. Damage is
/// [`CompactorError::Corrupt`] naming the first offset that could not be read.
pub(crate) async fn read_records(
    hot: &Arc<PartitionLog>,
    from: LogOffset,
    last: LogOffset,
) -> Result<Vec<Record>, CompactorError> {
    let hot = hot.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for_each_record(&hot, from, last, 16 << 20, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    })
    .await
    .map_err(|e| CompactorError::Task(e.to_string()))?
}

/// Calls `f` with every record in `[from, last]` in offset order, reading `chunk_bytes` of
/// batches at a time (blocking: run it on a blocking thread).
fn for_each_record(
    hot: &PartitionLog,
    from: LogOffset,
    last: LogOffset,
    chunk_bytes: usize,
    mut f: impl FnMut(Record) -> Result<(), CompactorError>,
) -> Result<(), CompactorError> {
    let mut at = from;
    let limit = LogOffset(last.0 + 1);
    while at < limit {
        let read = match hot.read(at, chunk_bytes, limit) {
            Err(e @ pyralog_hot_tier::HotError::Corrupt { .. }) => {
                return Err(CompactorError::Corrupt {
                    offset: at,
                    source: e,
                })
            }
            other => other?,
        };
        if read.batches.is_empty() {
            break;
        }
        for batch in split_batches(read.batches) {
            let batch = batch.map_err(pyralog_hot_tier::HotError::from)?;
            let records = batch.records().map_err(pyralog_hot_tier::HotError::from)?;
            for r in records {
                if r.offset >= at && r.offset < limit {
                    f(r)?;
                }
            }
        }
        at = read.next_offset;
    }
    Ok(())
}
