//! Total retention across both tiers: whole segments, oldest first, never the active one.
//!
//! The log is seen as one sequence of segments: the archived (cold) ones, then the local ones
//! not yet archived, ending with the active segment. `Time` deletes segments whose newest
//! record is older than the limit; `Size` deletes the oldest while the sum of their stored
//! bytes (Parquet for the archive, segment files for the rest) exceeds the budget;
//! `TimeAndSize` deletes when either says so; `Infinite` deletes nothing. Deletion stops at
//! the first segment that stays, so the log keeps a contiguous suffix.
//!
//! The result is a cut offset: cold segments below it leave the manifest (one commit; their
//! objects become orphans for GC) and local segments below it are deleted, including local
//! copies of archived data. A reader below the cut then gets `OFFSET_OUT_OF_RANGE` with the new
//! earliest offset, never a silent skip.
//!
//! With an archive, a local segment is deletable only once archived (Kafka's tiered-storage
//! rule). Deleting an expired local segment the archiver had not reached yet would let the
//! archiver's next upload start past it, leaving a hole between the archive and the rest of
//! the log, and an upload in flight during the cut could land below the new start. Expired
//! data is archived first and leaves the archive on the next pass.
//!
//! On write-once storage (the archive's manifests carry a `WriteOnce`, S3 Object Lock) a cut
//! that would remove archived segments is refused with [`CompactorError::ObjectLock`]: the
//! bucket keeps locked objects until their retain-until date whatever Pyralog does.

use std::sync::Arc;
use std::time::Duration;

use pyralog_cold_tier::{ColdPartition, ColdSegment};
use pyralog_hot_tier::{PartitionLog, SegmentInfo};
use pyralog_types::{LogOffset, Retention, TimestampMicros};

use crate::error::CompactorError;

/// What total retention removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub removed: Vec<ColdSegment>,
    pub deleted_local: Vec<SegmentInfo>,
    /// Everything below this offset is gone (`None`: nothing was due).
    pub cut: Option<LogOffset>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// One segment of either tier as retention sees it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    size: u64,
    max_timestamp: Option<TimestampMicros>,
    last_offset: Option<LogOffset>,
    deletable: bool,
}

/// Where `retention` cuts `segments` (oldest first), if anywhere.
fn cut(segments: &[Candidate], retention: Retention, now: TimestampMicros) -> Option<LogOffset> {
    let cutoff = retention
        .max_age()
        .map(|age| now.saturating_sub(micros(age)));
    let max_bytes = retention.max_bytes();
    if cutoff.is_none() && max_bytes.is_none() {
        return None;
    }
    let mut remaining: u64 = segments.iter().map(|s| s.size).sum();
    let mut cut = None;
    for s in segments {
        let too_old = cutoff.is_some_and(|c| s.max_timestamp.is_none_or(|ts| ts < c));
        let too_big = max_bytes.is_some_and(|limit| remaining > limit);
        if !s.deletable || !(too_old || too_big) {
            break;
        }
        remaining -= s.size;
        if let Some(l) = s.last_offset {
            cut = Some(LogOffset(l.0 + 1));
        }
    }
    cut
}

/// How retention may use a partition's archive.
#[derive(Debug, Clone, Copy)]
pub enum Archive<'a> {
    /// No cold tier: the local segments are the whole log.
    Absent,
    /// Another process writes the archive (this node follows the partition): its end gates
    /// which local segments may go, but it is left alone.
    ReadOnly(&'a ColdPartition),
    /// This process owns the archive: the cut applies to it too.
    Owned(&'a ColdPartition),
}

impl<'a> Archive<'a> {
    fn partition(self) -> Option<&'a ColdPartition> {
        match self {
            Archive::Absent => None,
            Archive::ReadOnly(c) | Archive::Owned(c) => Some(c),
        }
    }
}

/// Applies the log's total `retention` to a partition's tiers (either may be absent: a node
/// without a cold tier, or the standalone compactor without the local log).
pub async fn apply_retention(
    hot: Option<&Arc<PartitionLog>>,
    archive: Archive<'_>,
    retention: Retention,
    now: TimestampMicros,
) -> Result<RetentionReport, CompactorError> {
    let mut candidates = Vec::new();
    let cold = archive.partition();
    let archived_end = cold.and_then(|c| c.end_offset()).unwrap_or(LogOffset::ZERO);
    if let Some(c) = cold {
        candidates.extend(c.manifest().segments.iter().map(|s| Candidate {
            size: s.size_bytes,
            max_timestamp: Some(s.max_timestamp),
            last_offset: Some(s.last_offset),
            deletable: true,
        }));
    }
    if let Some(h) = hot {
        candidates.extend(
            h.segments()
                .into_iter()
                .filter(|s| cold.is_none() || s.base_offset >= archived_end)
                .map(|s| Candidate {
                    size: s.size_bytes,
                    max_timestamp: s.max_timestamp,
                    last_offset: s.last_offset,
                    // With an archive, only what it holds (see the module doc).
                    deletable: !s.is_active && cold.is_none(),
                }),
        );
    }
    let Some(cut) = cut(&candidates, retention, now) else {
        return Ok(RetentionReport::default());
    };
    if let Some((c, lock)) = cold.and_then(|c| c.write_once().map(|l| (c, l))) {
        let archived = c
            .manifest()
            .segments
            .iter()
            .take_while(|s| s.last_offset < cut)
            .count();
        if archived > 0 {
            return Err(CompactorError::ObjectLock(format!(
                "retention ({retention:?}) would delete {archived} archived object(s) below \
                 offset {cut}, which the bucket keeps under {}; retention of archived data is \
                 off while [cold_tier] object_lock is set",
                lock.describe()
            )));
        }
    }
    let mut report = RetentionReport {
        cut: Some(cut),
        ..RetentionReport::default()
    };
    if let Archive::Owned(c) = archive {
        report.removed = c
            .remove_oldest(|m| {
                m.segments
                    .iter()
                    .take_while(|s| s.last_offset < cut)
                    .count()
            })
            .await?;
    }
    if let Some(h) = hot {
        let h = h.clone();
        report.deleted_local = tokio::task::spawn_blocking(move || h.delete_segments_below(cut))
            .await
            .map_err(|e| CompactorError::Task(e.to_string()))??;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(last: u64, size: u64, ts: i64, deletable: bool) -> Candidate {
        Candidate {
            size,
            max_timestamp: Some(ts),
            last_offset: Some(LogOffset(last)),
            deletable,
        }
    }

    #[test]
    fn time_size_and_infinite_cut_where_they_should() {
        let log = [
            seg(9, 100, 10, true),
            seg(19, 100, 20, true),
            seg(29, 100, 30, true),
            seg(39, 100, 40, false),
        ];
        let day = Duration::from_micros(15);
        assert_eq!(cut(&log, Retention::Time(day), 40), Some(LogOffset(20)));
        assert_eq!(cut(&log, Retention::Size(250), 40), Some(LogOffset(20)));
        assert_eq!(cut(&log, Retention::Size(1000), 40), None);
        assert_eq!(
            cut(
                &log,
                Retention::TimeAndSize(Duration::from_micros(35), 150),
                40
            ),
            Some(LogOffset(30)),
            "either limit deletes; the active segment never"
        );
        assert_eq!(cut(&log, Retention::Size(1), 40), Some(LogOffset(30)));
        assert_eq!(cut(&log, Retention::Infinite, 1_000_000), None);
    }
}
