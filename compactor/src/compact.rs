//! One compaction pass over one partition: key-based (or delete-marker) compaction on both
//! tiers, time-series downsampling on the cold tier.
//!
//! # Key-based pass
//! 1. The *compactable range* is the longest prefix of the partition whose segments are all
//!    closed, below the high watermark and older than `min_compaction_lag` (a segment's newest
//!    record decides): the cold segments first, then the closed local segments.
//! 2. Every record of the range goes through a [`KeyMap`] (latest offset per key).
//! 3. Cold segments losing records are re-encoded and uploaded under a new generation's key,
//!    then swapped for the old ones in **one manifest commit** ([`ColdPartition::replace_run`]);
//!    emptied segments leave the manifest. Old objects become orphans for GC.
//! 4. Local segments losing records are rewritten in place
//!    ([`PartitionLog::rewrite_segment`], atomic rename).
//!
//! Offsets never change, so a consumer's position stays valid; readers skip the gaps. Cold
//! before hot and oldest first means a tombstone is dropped only after every older record of
//! its key was removed in the same pass: a crash between steps may leave superseded records,
//! never resurrect a deleted key (the next pass finishes the job).
//!
//! # Time-series pass (cold tier only)
//! The run of archived segments due for a (coarser) tier
//! is decoded, [`downsample`]d as a whole (a bucket may span segments), split back along the
//! old segments' ranges and swapped in one commit. Data on local disk is served raw until the
//! archive holds it; a node without a cold tier does not downsample.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_cold_tier::{
    decode_rows, encode_metric_records, encode_records, upload_segment, ColdError, ColdPartition,
    ColdSegment, EncodeOptions, EncodedSegment, Layout, MetricRow, UploadOptions,
};
use pyralog_hot_tier::{PartitionLog, SegmentInfo};
use pyralog_types::{
    CompactionMode, LogConfig, LogId, LogOffset, PartitionId, Record, TimeSeriesSpec,
    TimestampMicros,
};
use tracing::{debug, info};

use crate::archive::read_records;
use crate::error::CompactorError;
use crate::keys::KeyMap;
use crate::timeseries::{downsample, Row};

/// The cold tier of the partition being compacted.
#[derive(Debug, Clone, Copy)]
pub struct ColdTarget<'a> {
    pub partition: &'a ColdPartition,
    pub store: &'a dyn ObjectStore,
    pub layout: &'a Layout,
}

/// What one pass works on.
#[derive(Debug, Clone, Copy)]
pub struct CompactTarget<'a> {
    pub log: &'a LogId,
    pub partition: PartitionId,
    pub config: &'a LogConfig,
    /// The local log and its high watermark; `None` for the standalone, cold-only compactor.
    pub hot: Option<(&'a Arc<PartitionLog>, LogOffset)>,
    pub cold: Option<ColdTarget<'a>>,
}

/// How a pass encodes, uploads and bounds its memory.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub encode: EncodeOptions,
    pub upload: UploadOptions,
    /// Decoded cold records kept between the map pass and the rewrite pass (above this, the
    /// rewrite downloads the segments again).
    pub max_cached_bytes: u64,
    /// Most Parquet bytes one time-series pass decodes (at least one segment).
    pub max_downsample_bytes: u64,
    /// What the previous pass over this partition left: a key-based pass whose range has not
    /// grown since, before any tombstone it kept expires, has nothing to do and reads nothing.
    pub previous: Option<PreviousPass>,
}

/// The part of a finished pass that decides whether the next one has work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousPass {
    pub cleaned_through: Option<LogOffset>,
    /// When the first tombstone it kept leaves its `delete_retention` (`None`: none kept).
    pub tombstone_expiry: Option<TimestampMicros>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            encode: EncodeOptions::default(),
            upload: UploadOptions::default(),
            max_cached_bytes: 256 << 20,
            max_downsample_bytes: 256 << 20,
            previous: None,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// Records read from the compactable range.
    pub records_read: u64,
    /// Payload bytes (key + value + headers) of those records.
    pub payload_bytes_read: u64,
    /// Distinct keys remembered (key-based) or buckets written (time series).
    pub keys: u64,
    /// Records in the rewritten segments before and after.
    pub records_before: u64,
    pub records_after: u64,
    /// Stored bytes of the rewritten segments before and after (both tiers).
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub cold_segments_rewritten: u64,
    /// Cold segments left empty and dropped from the manifest.
    pub cold_segments_removed: u64,
    pub hot_segments_rewritten: u64,
    /// One past the last offset the pass covered (`None`: nothing was compactable).
    pub cleaned_through: Option<LogOffset>,
    /// The manifest changed under the pass (retention, another compactor): nothing of the
    /// cold tier was committed; the next pass starts over.
    pub stale: bool,
    /// Tombstones kept only because they are younger than `delete_retention`.
    pub pending_tombstones: u64,
    /// When the first of them expires.
    pub tombstone_expiry: Option<TimestampMicros>,
    /// Nothing changed since the previous pass: nothing was read.
    pub skipped: bool,
}

impl CompactionReport {
    /// What the next pass needs to know about this one.
    pub fn as_previous(&self) -> PreviousPass {
        PreviousPass {
            cleaned_through: self.cleaned_through,
            tombstone_expiry: self.tombstone_expiry,
        }
    }
}

impl CompactionReport {
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }

    pub fn segments_rewritten(&self) -> u64 {
        self.cold_segments_rewritten + self.hot_segments_rewritten
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs one pass of the log's compaction mode on one partition.
pub async fn compact_partition(
    t: CompactTarget<'_>,
    now: TimestampMicros,
    opts: &CompactOptions,
) -> Result<CompactionReport, CompactorError> {
    if t.config.integrity == pyralog_types::Integrity::Ledger
        && t.config.compaction != CompactionMode::None
    {
        // Validation refuses this config; a ledger's records are never rewritten whatever
        // state a log's config was loaded from.
        return Err(CompactorError::Ledger(
            "a ledger log is never compacted (integrity = \"ledger\")".into(),
        ));
    }
    if t.config.compaction != CompactionMode::None {
        if let Some(lock) = t.cold.and_then(|c| c.partition.write_once()) {
            return Err(CompactorError::ObjectLock(format!(
                "{}/{}: {:?} compaction rewrites and deletes archived objects, and the bucket \
                 keeps them under {}; compaction is off while [cold_tier] object_lock is set",
                t.log,
                t.partition,
                t.config.compaction,
                lock.describe()
            )));
        }
    }
    match t.config.compaction {
        CompactionMode::None => Ok(CompactionReport::default()),
        CompactionMode::KeyBased | CompactionMode::DeleteMarkers => {
            compact_keys(t, now, opts).await
        }
        CompactionMode::TimeSeries => match (&t.config.time_series, t.cold) {
            (Some(spec), Some(cold)) => downsample_cold(t, spec, cold, now, opts).await,
            _ => Ok(CompactionReport::default()),
        },
    }
}

async fn compact_keys(
    t: CompactTarget<'_>,
    now: TimestampMicros,
    opts: &CompactOptions,
) -> Result<CompactionReport, CompactorError> {
    let lag_cutoff = now.saturating_sub(micros(t.config.min_compaction_lag));
    let mut map = KeyMap::new(
        t.config.compaction,
        now.saturating_sub(micros(t.config.delete_retention)),
    );
    let mut report = CompactionReport::default();

    // 1. The compactable range: cold prefix, then (if all of the cold tier qualifies) the
    //    closed local segments.
    let manifest = t.cold.map(|c| c.partition.manifest());
    let cold_run: Vec<ColdSegment> = manifest
        .as_ref()
        .map(|m| {
            m.segments
                .iter()
                .take_while(|s| s.max_timestamp <= lag_cutoff)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let whole_cold = manifest
        .as_ref()
        .is_none_or(|m| m.segments.len() == cold_run.len());
    let hot_run: Vec<SegmentInfo> = match t.hot {
        Some((hot, hw)) if whole_cold => hot
            .segments()
            .into_iter()
            .filter(|s| !s.is_active)
            .take_while(|s| {
                s.last_offset.is_some_and(|l| l < hw)
                    && s.max_timestamp.is_none_or(|ts| ts <= lag_cutoff)
            })
            .collect(),
        _ => Vec::new(),
    };
    report.cleaned_through = hot_run
        .last()
        .and_then(|s| s.last_offset)
        .or(cold_run.last().map(|s| s.last_offset))
        .map(|l| LogOffset(l.0 + 1));
    let unchanged = opts.previous.is_some_and(|p| {
        p.cleaned_through == report.cleaned_through && p.tombstone_expiry.is_none_or(|e| now < e)
    });
    if unchanged {
        report.skipped = true;
        return Ok(report);
    }

    // 2. The key map, oldest first.
    let mut cached: Vec<Option<Vec<Record>>> = Vec::with_capacity(cold_run.len());
    let mut cached_bytes = 0u64;
    if let Some(cold) = t.cold {
        for seg in &cold_run {
            let records = fetch_records(cold.store, seg).await?;
            let size: u64 = records.iter().map(|r| r.payload_len() as u64 + 32).sum();
            note_read(&mut report, &records);
            records.iter().for_each(|r| map.observe(r));
            if cached_bytes + size <= opts.max_cached_bytes {
                cached_bytes += size;
                cached.push(Some(records));
            } else {
                cached.push(None);
            }
        }
    }
    if let Some((hot, _)) = t.hot {
        for seg in &hot_run {
            let Some(last) = seg.last_offset else {
                continue;
            };
            let records = read_records(hot, seg.base_offset, last).await?;
            note_read(&mut report, &records);
            records.iter().for_each(|r| map.observe(r));
        }
    }
    report.keys = map.len() as u64;
    report.pending_tombstones = map.pending_tombstones();
    report.tombstone_expiry = map
        .oldest_pending_tombstone()
        .map(|ts| ts.saturating_add(micros(t.config.delete_retention)));

    // 3. Cold rewrite, one commit.
    if let Some(cold) = t.cold {
        let mut new_run = Vec::with_capacity(cold_run.len());
        let mut changed = false;
        for (seg, cache) in cold_run.iter().zip(cached) {
            let records = match cache {
                Some(r) => r,
                None => fetch_records(cold.store, seg).await?,
            };
            let before = records.len() as u64;
            let kept: Vec<Record> = records.into_iter().filter(|r| map.keeps(r)).collect();
            if kept.len() as u64 == before {
                new_run.push(seg.clone());
                continue;
            }
            changed = true;
            report.records_before += before;
            report.records_after += kept.len() as u64;
            report.bytes_before += seg.size_bytes;
            if kept.is_empty() {
                report.cold_segments_removed += 1;
                continue;
            }
            let encoded = encode(kept, None, &opts.encode).await?;
            let uploaded = upload_rewrite(t, cold, seg, &encoded, &opts.upload).await?;
            report.bytes_after += uploaded.size_bytes;
            report.cold_segments_rewritten += 1;
            new_run.push(uploaded);
        }
        let new_run = cover(&cold_run, new_run);
        if changed && !cold.partition.replace_run(&cold_run, &new_run).await? {
            info!(log = %t.log, partition = t.partition,
                "manifest changed during compaction; nothing committed");
            report.stale = true;
            return Ok(report);
        }
    }

    // 4. Local rewrites, oldest first.
    if let Some((hot, _)) = t.hot {
        for seg in &hot_run {
            let hot = hot.clone();
            let map = map.clone();
            let base = seg.base_offset;
            let outcome = tokio::task::spawn_blocking(move || {
                hot.rewrite_segment(base, |records| {
                    let before = records.len();
                    let kept: Vec<Record> = records.into_iter().filter(|r| map.keeps(r)).collect();
                    (kept.len() != before).then_some(kept)
                })
            })
            .await
            .map_err(|e| CompactorError::Task(e.to_string()))??;
            if let Some(o) = outcome {
                report.records_before += o.records_before;
                report.records_after += o.records_after;
                report.bytes_before += o.bytes_before;
                report.bytes_after += o.bytes_after;
                report.hot_segments_rewritten += 1;
            }
        }
    }
    debug!(log = %t.log, partition = t.partition, ?report, "key-based compaction pass");
    Ok(report)
}

async fn downsample_cold(
    t: CompactTarget<'_>,
    spec: &TimeSeriesSpec,
    cold: ColdTarget<'_>,
    now: TimestampMicros,
    opts: &CompactOptions,
) -> Result<CompactionReport, CompactorError> {
    let mut report = CompactionReport::default();
    let Some(first) = spec.tiers.first() else {
        return Ok(report);
    };
    let horizon = now.saturating_sub(micros(first.after));
    let lag_cutoff = now.saturating_sub(micros(t.config.min_compaction_lag));
    let manifest = cold.partition.manifest();
    let mut run: Vec<ColdSegment> = Vec::new();
    let mut bytes = 0u64;
    // A segment already downsampled to width w is due again only when its oldest bucket is
    // due for the next coarser tier; until then it is not re-read.
    let due = |s: &ColdSegment| {
        if s.bucket_seconds == 0 {
            return s.min_timestamp < horizon;
        }
        spec.tiers
            .iter()
            .find(|t| t.bucket.as_secs() > s.bucket_seconds)
            .is_some_and(|t| {
                let w = micros(t.bucket);
                let end = s.min_timestamp - s.min_timestamp.rem_euclid(w.max(1)) + w;
                end <= now.saturating_sub(micros(t.after))
            })
    };
    for s in manifest.segments.iter().skip_while(|s| !due(s)) {
        let old_enough = due(s) && s.max_timestamp <= lag_cutoff;
        if !old_enough || (!run.is_empty() && bytes + s.size_bytes > opts.max_downsample_bytes) {
            break;
        }
        bytes += s.size_bytes;
        run.push(s.clone());
    }
    if run.is_empty() {
        return Ok(report);
    }
    let mut records = Vec::new();
    for seg in &run {
        let r = fetch_records(cold.store, seg).await?;
        note_read(&mut report, &r);
        records.extend(r);
    }
    report.cleaned_through = run.last().map(|s| LogOffset(s.last_offset.0 + 1));
    let spec = spec.clone();
    let rows = tokio::task::spawn_blocking(move || downsample(&spec, records, now))
        .await
        .map_err(|e| CompactorError::Task(e.to_string()))?;
    report.keys = rows.iter().filter(|r| r.metric.is_some()).count() as u64;

    // Split the rows back along the old segments' ranges.
    let mut per_segment: Vec<Vec<Row>> = vec![Vec::new(); run.len()];
    for row in rows {
        let i = run.partition_point(|s| s.last_offset < row.record.offset);
        match per_segment.get_mut(i) {
            Some(v) => v.push(row),
            None => {
                return Err(CompactorError::Cold(ColdError::InvalidInput(format!(
                    "downsampled row at {} is outside the run",
                    row.record.offset
                ))))
            }
        }
    }
    let mut new_run = Vec::with_capacity(run.len());
    let mut changed = false;
    for (seg, rows) in run.iter().zip(per_segment) {
        let same = rows.len() as u64 == seg.record_count && rows.iter().all(|r| !r.changed);
        if same {
            new_run.push(seg.clone());
            continue;
        }
        changed = true;
        report.records_before += seg.record_count;
        report.records_after += rows.len() as u64;
        report.bytes_before += seg.size_bytes;
        if rows.is_empty() {
            report.cold_segments_removed += 1;
            continue;
        }
        let width = if rows.iter().all(|r| r.metric.is_some()) {
            rows.iter()
                .filter_map(|r| r.metric.as_ref().map(|m| m.bucket_seconds))
                .min()
                .unwrap_or(0)
        } else {
            0
        };
        let (records, metrics): (Vec<Record>, Vec<Option<MetricRow>>) =
            rows.into_iter().map(|r| (r.record, r.metric)).unzip();
        let encoded = encode(records, Some(metrics), &opts.encode).await?;
        let mut uploaded = upload_rewrite(t, cold, seg, &encoded, &opts.upload).await?;
        uploaded.bucket_seconds = width;
        report.bytes_after += uploaded.size_bytes;
        report.cold_segments_rewritten += 1;
        new_run.push(uploaded);
    }
    let new_run = cover(&run, new_run);
    if changed && !cold.partition.replace_run(&run, &new_run).await? {
        report.stale = true;
    }
    debug!(log = %t.log, partition = t.partition, ?report, "time-series downsampling pass");
    Ok(report)
}

/// Stretches the rewritten segments over the whole range of the run they replace: compaction
/// removes records, never offsets from the log, so the log's start (the first segment's base)
/// and the archive's coverage stay where they were. Each segment's range reaches to the next
/// one's base; an emptied segment's range goes to its successor (or, at the end, to its
/// predecessor). A run is never emptied entirely: its newest segment then stays unchanged.
fn cover(old: &[ColdSegment], mut new: Vec<ColdSegment>) -> Vec<ColdSegment> {
    let (Some(first), Some(last)) = (old.first(), old.last()) else {
        return new;
    };
    if new.is_empty() {
        // Never empty a run: the newest old segment stays as it was (keeping records is
        // always safe), so the log's start and the newest archived epoch stay too.
        new.push(last.clone());
    }
    let n = new.len();
    for i in 0..n {
        if i == 0 {
            new[i].base_offset = first.base_offset;
        }
        new[i].last_offset = match new.get(i + 1) {
            Some(next) => LogOffset(next.base_offset.0.saturating_sub(1)),
            None => last.last_offset,
        };
    }
    new
}

fn note_read(report: &mut CompactionReport, records: &[Record]) {
    report.records_read += records.len() as u64;
    report.payload_bytes_read += records.iter().map(|r| r.payload_len() as u64).sum::<u64>();
}

/// Downloads and decodes a whole cold segment.
async fn fetch_records(
    store: &dyn ObjectStore,
    seg: &ColdSegment,
) -> Result<Vec<Record>, CompactorError> {
    let path = seg.path();
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| ColdError::Store {
            op: "get",
            path: seg.key.clone(),
            source: e,
        })?
        .bytes()
        .await
        .map_err(|e| ColdError::Store {
            op: "get",
            path: seg.key.clone(),
            source: e,
        })?;
    let records = tokio::task::spawn_blocking(move || decode_rows(bytes))
        .await
        .map_err(|e| CompactorError::Task(e.to_string()))??;
    Ok(records)
}

async fn encode(
    records: Vec<Record>,
    metrics: Option<Vec<Option<MetricRow>>>,
    opts: &EncodeOptions,
) -> Result<EncodedSegment, CompactorError> {
    let opts = opts.clone();
    let encoded = tokio::task::spawn_blocking(move || match metrics {
        None => encode_records(&records, &opts),
        Some(m) => encode_metric_records(&records, &m, &opts),
    })
    .await
    .map_err(|e| CompactorError::Task(e.to_string()))??;
    Ok(encoded)
}

/// Uploads the rewrite of `seg` under the next free generation. An object already at that
/// key with other bytes is the leftover of a pass that crashed before its commit (an orphan
/// awaiting GC): the next generation is tried instead.
async fn upload_rewrite(
    t: CompactTarget<'_>,
    cold: ColdTarget<'_>,
    seg: &ColdSegment,
    encoded: &EncodedSegment,
    upload: &UploadOptions,
) -> Result<ColdSegment, CompactorError> {
    let mut generation = seg.generation + 1;
    loop {
        let opts = UploadOptions {
            generation,
            ..upload.clone()
        };
        match upload_segment(cold.store, cold.layout, t.log, t.partition, encoded, &opts).await {
            Ok(s) => return Ok(s),
            Err(ColdError::ObjectMismatch { path, .. }) if generation < seg.generation + 64 => {
                debug!(%path, "an uncommitted rewrite holds this key; trying the next generation");
                generation += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
