//! Archiving: closed hot segments → Parquet → object store → manifest → local retention.

use std::sync::Arc;

use object_store::ObjectStore;
use pyralog_cold_tier::{
    encode_records, upload_segment, ColdPartition, ColdSegment, EncodeOptions, Layout,
    UploadOptions,
};
use pyralog_hot_tier::{PartitionLog, SegmentInfo};
use pyralog_types::batch::split_batches;
use pyralog_types::{LogId, LogOffset, PartitionId, Record, Retention};
use tracing::debug;

use crate::error::CompactorError;

/// How archiving reads, encodes and uploads.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    pub encode: EncodeOptions,
    pub upload: UploadOptions,
    /// Hot-tier retention applied once segments are archived (`local_retention`).
    pub local_retention: Option<Retention>,
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
        let records = match read_records(hot, from, last).await {
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
        if records.is_empty() {
            // Compaction emptied the rest of this segment: nothing to upload, but the range
            // is archived all the same.
            cold.advance_archived_end(LogOffset(last.0 + 1)).await?;
            continue;
        }
        let encode = opts.encode.clone();
        let encoded = tokio::task::spawn_blocking(move || encode_records(&records, &encode))
            .await
            .map_err(|e| CompactorError::Task(e.to_string()))??;
        let mut uploaded =
            upload_segment(store, layout, log, partition, &encoded, &opts.upload).await?;
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
        let mut at = from;
        let limit = LogOffset(last.0 + 1);
        while at < limit {
            let read = match hot.read(at, 16 << 20, limit) {
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
                out.extend(
                    records
                        .into_iter()
                        .filter(|r| r.offset >= at && r.offset < limit),
                );
            }
            at = read.next_offset;
        }
        Ok(out)
    })
    .await
    .map_err(|e| CompactorError::Task(e.to_string()))?
}
