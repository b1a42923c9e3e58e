//! The partition log: segments, appends, reads, rolling, retention, recovery.
//!
//! This module is the coordinator; the work lives beside it (`active` writes, `read` reads,
//! `recovery` opens, `retention` decides, `epochs` remembers leaders, `log::cut` truncates
//! and rewrites, `log::dedup_ids` drops repeated dedup ids). Locking, in the order
//! taken: `inner` (the append lock: one writer at a time, held for a `write` syscall, never
//! for an fsync of appended data), then `flush_lock` (group commit), then `segments` (a map of
//! `Arc<Segment>`, held only to look up or swap entries). Readers take only the last, briefly.
//! `epochs` and `producers` are leaves, held briefly and changed only under `inner`; so the
//! idempotent-producer check and the offset assignment form one critical section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use pyralog_types::batch::{assign, Batch, BatchRules};
use pyralog_types::{
    Clock, Epoch, FsyncPolicy, LogConfig, LogOffset, Record, Retention, TimestampMicros,
};
use tokio::sync::watch;

use crate::active::Active;
use crate::dedup::{DedupSettings, DedupWindow};
use crate::epochs::{sync_dir, EpochCache};
use crate::error::HotError;
use crate::files::OpenFiles;
use crate::producers::{
    snapshot, ProducerBatch, ProducerSnapshot, ProducerStateTable, Verdict,
    DEFAULT_PRODUCER_EXPIRATION,
};
use crate::recovery::{open_dir, rebuild_producers, write_marker, Marker};
use crate::retention::{Candidate, Rule};
use crate::segment::{io_err, Segment};

mod cut;
mod dedup_ids;
mod ledger;
use dedup_ids::DedupOutcome;
pub use ledger::ChainMismatch;

/// Settings of one partition log (derived from the log's `LogConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOptions {
    pub segment_bytes: u64,
    pub segment_ms: Duration,
    pub index_interval_bytes: u32,
    /// Bytes preallocated for the active segment's mmap'd indexes (trimmed when it rolls).
    pub max_index_bytes: u64,
    pub fsync: FsyncPolicy,
    /// An idempotent producer whose last batch is older than this is forgotten (when the
    /// producer-state snapshot is next written, at a roll or on close); its next batch is
    /// accepted whatever its sequence.
    pub producer_expiration: Duration,
    /// A ledger log's genesis hash (`pyralog_ledger::genesis(log, partition)`): the log keeps
    /// a chain journal (see `crate::chain`). `None` for every other log.
    pub ledger_genesis: Option<pyralog_ledger::Hash>,
    /// The chain definition of a ledger log (its config's `ledger_chain`).
    pub ledger_chain: pyralog_ledger::ChainVersion,
}

impl PartitionOptions {
    pub fn from_config(c: &LogConfig) -> Self {
        PartitionOptions {
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            index_interval_bytes: c.index_interval_bytes,
            max_index_bytes: 10 * 1024 * 1024,
            fsync: c.fsync,
            // Not in `LogConfig` (yet).
            producer_expiration: DEFAULT_PRODUCER_EXPIRATION,
            ledger_genesis: None,
            ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
        }
    }
}

/// Where an appended batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: LogOffset,
    pub last_offset: LogOffset,
    /// The log end offset after the append (= `last_offset + 1`).
    pub end_offset: LogOffset,
    pub max_timestamp: TimestampMicros,
    /// Records of the batch left out because their dedup id was stored recently: (index in
    /// the batch as sent, offset of the stored copy). The others were stored in order from
    /// `base_offset`.
    pub dropped: Vec<(u32, LogOffset)>,
    /// The batch was a retry of one an idempotent producer already wrote: nothing was
    /// appended, and the offsets (and `end_offset`, its last offset + 1, possibly below the
    /// log end) are the original batch's. The caller acknowledges it like a fresh append
    /// (waiting for the original to be replicated, if the ack policy says so).
    pub duplicate: bool,
}

/// Whole batches read from the log.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Concatenated, CRC-verified batches. The first batch contains the requested offset (it may
    /// start before it); batches never start at or beyond the read limit.
    pub batches: Bytes,
    /// Offset after the last returned batch (where the next read continues).
    pub next_offset: LogOffset,
}

/// Description of a segment, for uploaders and admin output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: LogOffset,
    /// Last offset stored in the segment (`None` if empty).
    pub last_offset: Option<LogOffset>,
    pub size_bytes: u64,
    pub max_timestamp: Option<TimestampMicros>,
    pub log_path: PathBuf,
    pub is_active: bool,
}

/// What [`PartitionLog::rewrite_segment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteOutcome {
    pub records_before: u64,
    pub records_after: u64,
    pub batches_before: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// One partition's local log.
pub struct PartitionLog {
    dir: PathBuf,
    options: PartitionOptions,
    /// The node's budget of open segment files (shared by every partition).
    files: OpenFiles,
    clock: Arc<dyn Clock>,
    /// The append lock; `None` once closed.
    inner: Mutex<Option<Active>>,
    flush_lock: Mutex<()>,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    start: AtomicU64,
    end: AtomicU64,
    durable: AtomicU64,
    end_tx: watch::Sender<LogOffset>,
    epochs: Mutex<EpochCache>,
    /// Idempotent producers' sequence state (see `crate::producers`).
    producers: Mutex<ProducerStateTable>,
    /// Recent records' dedup ids (see `crate::dedup`).
    dedup: Mutex<DedupWindow>,
    /// A ledger log's chain journal (see `crate::chain`); `None` for other logs. Its range
    /// changes only with the append lock held; appends reach it through `chain_pending`.
    chain: Mutex<Option<crate::chain::ChainJournal>>,
    /// A ledger log's appended batches not yet chained, in log order (see `log::ledger`).
    chain_pending: Mutex<ledger::PendingChain>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("start", &self.start_offset())
            .field("end", &self.end_offset())
            .finish_non_exhaustive()
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (creating it if missing). After a clean shutdown nothing is
    /// scanned; after a crash the active segment is scanned, a torn tail truncated, and its
    /// indexes rebuilt. Missing or damaged indexes of any segment are rebuilt from the `.log`.
    ///
    /// The log gets a budget of open files of its own ([`OpenFiles::default`]); a node with
    /// many partitions shares one budget among them with [`PartitionLog::open_with_files`].
    pub fn open(
        dir: impl AsRef<Path>,
        options: PartitionOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<PartitionLog, HotError> {
        Self::open_with_files(dir, options, clock, OpenFiles::default())
    }

    /// [`PartitionLog::open`] with segment files counted in (and closed by) `files`.
    pub fn open_with_files(
        dir: impl AsRef<Path>,
        options: PartitionOptions,
        clock: Arc<dyn Clock>,
        files: OpenFiles,
    ) -> Result<PartitionLog, HotError> {
        let dir = dir.as_ref().to_owned();
        let opened = open_dir(&dir, &options, clock.now_micros(), &files)?;
        let start = opened.segments.keys().next().copied().unwrap_or(0);
        let end = opened.active.next_offset();
        // Closed segments were fsynced when they rolled; after a clean shutdown all was.
        let durable = if opened.clean {
            end
        } else {
            opened.active.seg.base()
        };
        let log = PartitionLog {
            dir,
            options,
            files,
            clock,
            inner: Mutex::new(Some(opened.active)),
            flush_lock: Mutex::new(()),
            segments: RwLock::new(opened.segments),
            start: AtomicU64::new(start),
            end: AtomicU64::new(end),
            durable: AtomicU64::new(durable),
            end_tx: watch::Sender::new(LogOffset(end)),
            epochs: Mutex::new(opened.epochs),
            producers: Mutex::new(opened.producers),
            dedup: Mutex::new(DedupWindow::new(DedupSettings::default())),
            chain: Mutex::new(None),
            chain_pending: Mutex::new(ledger::PendingChain::default()),
        };
        log.open_chain(&log.options.clone())?;
        Ok(log)
    }

    /// Appends a validated batch (as received from a producer or leader), assigning offsets
    /// from the log end and stamping `epoch`. Rolls first if the active segment is full or old.
    ///
    /// A batch of an idempotent producer (`producer_id >= 0`) is checked against the
    /// producer's state first: a retry of one of its last five batches is not written and is
    /// answered with the original offsets ([`AppendInfo::duplicate`]); an older producer epoch
    /// is [`HotError::ProducerFenced`]; a sequence that does not continue the producer's last
    /// one (or a new epoch that does not start at 0) is [`HotError::OutOfOrderSequence`].
    pub fn append(&self, batch: Bytes, epoch: Epoch) -> Result<AppendInfo, HotError> {
        self.append_inner(batch, Some(epoch))
    }

    /// Appends a batch that already carries its offsets and epoch (a follower copying its
    /// leader). Its base offset must equal the log end offset. The batch is checked like any
    /// input: CRC, then its records against its header ([`BatchRules::replicate`]: offsets
    /// increasing inside the batch's range, since compaction leaves gaps; timestamps, flags,
    /// bounded decompression). Producer sequences are not checked (the leader did), only
    /// recorded, so this log can take over as leader.
    pub fn append_replicated(&self, batch: Bytes) -> Result<AppendInfo, HotError> {
        self.append_inner(batch, None)
    }

    fn append_inner(
        &self,
        batch: Bytes,
        assign_epoch: Option<Epoch>,
    ) -> Result<AppendInfo, HotError> {
        // A leader's batch: framing only, the gateway validated it. A follower validates what
        // it copies here, before taking the append lock.
        let parsed = Batch::parse(batch)?;
        if assign_epoch.is_none() {
            parsed.verify_crc()?;
            parsed.validate_records(&BatchRules::replicate())?;
        }
        let mut h = parsed.header();
        let limit = self.options.segment_bytes.min(u64::from(u32::MAX));
        if h.size > limit {
            return Err(HotError::BatchTooLarge {
                size: parsed.size(),
                limit,
            });
        }
        let mut guard = self.inner.lock();
        let end = guard.as_ref().ok_or(HotError::Closed)?.next_offset();
        let epoch = match assign_epoch {
            Some(e) => e,
            None if h.base_offset != end => {
                return Err(HotError::OffsetOutOfRange {
                    requested: LogOffset(h.base_offset),
                    start: self.start_offset(),
                    end: LogOffset(end),
                })
            }
            None => Epoch(h.epoch),
        };
        h.base_offset = end;
        h.epoch = epoch.0;
        let producer = ProducerBatch::of(&parsed);
        // Dedup ids: the leader drops records whose id it stored recently (not for idempotent
        // producers, whose sequences count every record of a batch).
        let mut parsed = parsed;
        let mut dropped: Vec<(u32, LogOffset)> = Vec::new();
        // The leader's records with ids, decoded once here and noted after the append.
        let mut to_note: Option<Vec<Record>> = None;
        if assign_epoch.is_some() && producer.is_none() && parsed.has_dedup_ids() {
            match self.drop_duplicate_ids(&parsed, end)? {
                DedupOutcome::Keep(records) => to_note = Some(records),
                DedupOutcome::AllStored(dups) => {
                    let first = dups.iter().map(|d| d.1).min().unwrap_or(LogOffset(end));
                    let last = dups.iter().map(|d| d.1).max().unwrap_or(LogOffset(end));
                    return Ok(AppendInfo {
                        base_offset: first,
                        last_offset: last,
                        end_offset: LogOffset(last.0.saturating_add(1)),
                        max_timestamp: h.max_timestamp,
                        duplicate: true,
                        dropped: dups,
                    });
                }
                DedupOutcome::Rebuilt { batch, dups, kept } => {
                    parsed = batch;
                    h = parsed.header();
                    h.base_offset = end;
                    h.epoch = epoch.0;
                    dropped = dups;
                    to_note = Some(kept);
                }
            }
        }
        if let (Some(p), Some(_)) = (&producer, assign_epoch) {
            // A replaced leader answers nothing, not even "duplicate".
            if let Some(latest) = self.epochs.lock().latest().filter(|l| *l > epoch) {
                return Err(HotError::FencedEpoch { epoch, latest });
            }
            // Under the append lock: no other append can pass the same check meanwhile.
            if let Verdict::Duplicate(original) = self.producers.lock().check(p)? {
                return Ok(AppendInfo {
                    base_offset: LogOffset(original.base_offset),
                    last_offset: LogOffset(original.last_offset),
                    end_offset: LogOffset(original.last_offset.saturating_add(1)),
                    max_timestamp: original.max_timestamp,
                    duplicate: true,
                    dropped: Vec::new(),
                });
            }
        }
        let now = self.clock.now_micros();
        if guard
            .as_ref()
            .is_some_and(|a| a.needs_roll(h.size, h.last_offset(), &self.options, now))
        {
            self.roll_locked(&mut guard)?;
        }
        {
            let mut epochs = self.epochs.lock();
            if let Some(latest) = epochs.latest().filter(|l| *l > epoch) {
                return Err(HotError::FencedEpoch { epoch, latest });
            }
            if epochs.assign(epoch, LogOffset(end)) {
                epochs.persist()?;
            }
        }
        let has_dedup_ids = parsed.has_dedup_ids();
        let mut bytes = match parsed.into_bytes().try_into_mut() {
            Ok(b) => b,
            Err(shared) => BytesMut::from(&shared[..]),
        };
        if assign_epoch.is_some() {
            assign(&mut bytes, LogOffset(end), epoch);
        }
        let active = guard.as_mut().ok_or(HotError::Closed)?;
        active.append(&bytes, &h, now)?;
        let new_end = active.next_offset();
        let bytes = bytes.freeze();
        let chained = self.chain_enqueue(&bytes, end, epoch);
        if let Some(p) = &producer {
            self.producers.lock().record(p, end, h.last_offset());
        }
        if has_dedup_ids {
            let mut window = self.dedup.lock();
            if window.is_loaded() {
                match to_note {
                    Some(records) => window.note(&records, now),
                    // A follower's copy (or an idempotent batch): the stored bytes carry the
                    // assigned offsets.
                    None => window.note(&Batch::parse(bytes)?.records()?, now),
                }
            }
        }
        self.end.store(new_end, Ordering::Release);
        drop(guard);
        self.end_tx.send_replace(LogOffset(new_end));
        if chained {
            // Hashed here, off the append lock: other writers of the log go on meanwhile, and
            // the batch is chained before its append returns (so before it is acknowledged).
            self.settle_chain()?;
        }
        Ok(AppendInfo {
            base_offset: LogOffset(end),
            last_offset: LogOffset(h.last_offset()),
            end_offset: LogOffset(new_end),
            max_timestamp: h.max_timestamp,
            duplicate: false,
            dropped,
        })
    }

    /// fsyncs everything appended so far; returns the durable end offset. Concurrent callers
    /// share one fsync.
    pub fn flush(&self) -> Result<LogOffset, HotError> {
        self.flush_to(LogOffset(self.end.load(Ordering::Acquire)))
    }

    /// Makes everything below `target` durable; returns the durable end offset (at least
    /// `target`, or the log end if that is lower). Group commit: one caller at a time
    /// fsyncs, and its fsync covers everything appended before it started, so callers that
    /// waited for it usually find their target covered and return without an fsync of their
    /// own.
    pub fn flush_to(&self, target: LogOffset) -> Result<LogOffset, HotError> {
        let target = target.0.min(self.end.load(Ordering::Acquire));
        let durable = self.durable.load(Ordering::Acquire);
        if durable >= target {
            return Ok(LogOffset(durable));
        }
        let _one_at_a_time = self.flush_lock.lock();
        let durable = self.durable.load(Ordering::Acquire);
        if durable >= target {
            // Someone else's fsync covered us while we waited.
            return Ok(LogOffset(durable));
        }
        // Read the end before picking the segment: anything below it is in that segment or
        // in an older one, and older ones were fsynced when they rolled.
        let end = self.end.load(Ordering::Acquire);
        let active = self.segments.read().values().next_back().cloned();
        if let Some(seg) = active {
            seg.slot().sync(false)?;
        }
        let durable = self.durable.fetch_max(end, Ordering::AcqRel).max(end);
        Ok(LogOffset(durable))
    }

    /// Reads whole batches from the one containing `from`, up to `max_bytes` (always at least
    /// one batch if any is readable), never including a batch whose base offset is `>= limit`.
    /// `from == end` (or `from >= limit`) returns an empty result; `from` below the start or
    /// above the end is `OffsetOutOfRange`. Bad bytes are `Corrupt`, never returned.
    pub fn read(
        &self,
        from: LogOffset,
        max_bytes: usize,
        limit: LogOffset,
    ) -> Result<ReadResult, HotError> {
        let end = self.end_offset();
        let out_of_range = || HotError::OffsetOutOfRange {
            requested: from,
            start: self.start_offset(),
            end: self.end_offset(),
        };
        if from < self.start_offset() || from > end {
            return Err(out_of_range());
        }
        if from == end || from >= limit {
            return Ok(ReadResult {
                batches: Bytes::new(),
                next_offset: from,
            });
        }
        let first = self
            .segments
            .read()
            .range(..=from.0)
            .next_back()
            .map(|(_, s)| s.clone());
        let Some(first) = first else {
            return Err(out_of_range());
        };
        let next = |base: u64| {
            let map = self.segments.read();
            map.range(base + 1..).next().map(|(_, s)| s.clone())
        };
        // The cache is consulted under its lock per batch, never from a snapshot: a truncation
        // racing this read may have replaced the epoch of the offsets being read.
        let epoch_at = |base: u64| self.epochs.lock().epoch_at(LogOffset(base));
        let first_seg = first.clone();
        let limit = limit.0.min(end.0);
        crate::read::read(first, next, epoch_at, from.0, max_bytes, limit).map_err(|e| {
            // Retention removed the segment under the read: the data is gone, not corrupt.
            if first_seg.is_deleted() {
                out_of_range()
            } else {
                e
            }
        })
    }

    /// The first offset whose record timestamp is `>= ts`, or `None` if every record is older.
    pub fn offset_for_timestamp(&self, ts: TimestampMicros) -> Result<Option<LogOffset>, HotError> {
        let segments: Vec<_> = self.segments.read().values().cloned().collect();
        crate::read::offset_for_timestamp(&segments, ts)
    }

    /// First offset still stored locally.
    pub fn start_offset(&self) -> LogOffset {
        LogOffset(self.start.load(Ordering::Acquire))
    }

    /// Next offset to be assigned.
    pub fn end_offset(&self) -> LogOffset {
        LogOffset(self.end.load(Ordering::Acquire))
    }

    /// End offset that has been fsynced.
    pub fn durable_offset(&self) -> LogOffset {
        LogOffset(self.durable.load(Ordering::Acquire))
    }

    /// Receives the log end offset after each append/truncation (for long-polling readers).
    pub fn subscribe_end(&self) -> watch::Receiver<LogOffset> {
        self.end_tx.subscribe()
    }

    /// Closes the active segment and starts a new one (no-op if the active one is empty).
    pub fn roll(&self) -> Result<(), HotError> {
        let mut guard = self.inner.lock();
        self.roll_locked(&mut guard)
    }

    /// Rolls if the active segment's first batch is older than `segment_ms`.
    pub fn roll_if_due(&self) -> Result<bool, HotError> {
        let mut guard = self.inner.lock();
        let now = self.clock.now_micros();
        let due = guard
            .as_ref()
            .is_some_and(|a| !a.is_empty() && a.is_due(now, &self.options));
        if due {
            self.roll_locked(&mut guard)?;
        }
        Ok(due)
    }

    /// Seals the active segment (fsync, final index entries, trim) and opens the next one.
    fn roll_locked(&self, guard: &mut Option<Active>) -> Result<(), HotError> {
        let active = guard.as_mut().ok_or(HotError::Closed)?;
        if active.is_empty() {
            return Ok(());
        }
        active.finish()?;
        self.chain_sync()?;
        let end = active.next_offset();
        let next = Active::create(&self.dir, end, &self.options, &self.files)?;
        self.segments.write().insert(end, next.seg.clone());
        // Everything below `end` is in fsynced segments now.
        self.durable.fetch_max(end, Ordering::AcqRel);
        *guard = Some(next);
        // Not fatal: the previous snapshot stays valid, only opening gets slower.
        if let Err(e) = self.snapshot_producers(end) {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "could not write the producer snapshot at a roll");
        }
        Ok(())
    }

    /// Writes the producer snapshot covering everything below `end` (all of it fsynced),
    /// first dropping expired producers (from the table too, but only once the snapshot is
    /// written, so the table stays what the snapshot plus a replay of later headers gives).
    /// Call with the append lock held.
    fn snapshot_producers(&self, end: u64) -> Result<(), HotError> {
        let mut table = self.producers.lock().clone();
        let expired = table.expire(self.clock.now_micros(), self.options.producer_expiration);
        snapshot::persist(&self.dir, end, &table)?;
        if expired > 0 {
            tracing::info!(dir = %self.dir.display(), expired, remaining = table.len(),
                "expired idle producers");
        }
        *self.producers.lock() = table;
        Ok(())
    }

    /// After the log was cut to end at `end`: the producer table of what is left, from the
    /// newest snapshot at or below `end` plus the headers after it (snapshots beyond `end`
    /// are deleted). With `discard` (nothing of the old log is left) every snapshot goes.
    /// Call with the append lock held.
    fn reload_producers(&self, end: u64, discard: bool) -> Result<(), HotError> {
        // The dedup window is rebuilt from the log the next time it is needed.
        self.dedup.lock().invalidate();
        // If the rebuild fails, forget everything rather than keep batches that were cut: a
        // retry of one of those answered "duplicate" would be lost, one appended again is not.
        *self.producers.lock() = ProducerStateTable::new();
        if discard {
            snapshot::remove(&self.dir, |_| true)?;
        }
        let segments = self.segments.read().clone();
        let rebuilt = rebuild_producers(&self.dir, &segments, end)?;
        *self.producers.lock() = rebuilt.table;
        if rebuilt.scanned_all {
            // Everything below `end` is fsynced (a truncation syncs): spare the next open the
            // scan. Not fatal: without it the next open scans again.
            if let Err(e) = self.snapshot_producers(end) {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "could not write the producer snapshot after a truncation");
            }
        }
        Ok(())
    }

    /// Every idempotent producer this log knows, by producer id.
    pub fn producers(&self) -> Vec<ProducerSnapshot> {
        self.producers.lock().describe()
    }

    /// The whole producer table (with every remembered batch), for tests to compare.
    #[cfg(test)]
    pub(crate) fn producer_table(&self) -> ProducerStateTable {
        self.producers.lock().clone()
    }

    /// Applies `retention` in whole closed segments, oldest first, only to segments whose
    /// last offset is below `deletable_below` (the cold tier's safe point; `LogOffset::MAX`
    /// when there is no cold tier). Returns the deleted segments.
    pub fn enforce_retention(
        &self,
        retention: Retention,
        deletable_below: LogOffset,
    ) -> Result<Vec<SegmentInfo>, HotError> {
        if retention == Retention::Infinite {
            return Ok(Vec::new());
        }
        let _appends = self.inner.lock();
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        let mut total: u64 = segments.iter().map(|s| s.size()).sum();
        let rule = Rule {
            retention,
            deletable_below,
            now: self.clock.now_micros(),
        };
        let mut deleted = Vec::new();
        // Never the active (last) segment.
        for seg in segments.iter().take(segments.len().saturating_sub(1)) {
            let info = seg.info(false);
            let candidate = Candidate {
                size: info.size_bytes,
                max_timestamp: seg.max_timestamp()?,
                last_offset: info.last_offset,
            };
            if !rule.deletes(&candidate, total) {
                break;
            }
            // The start moves first: a reader that finds the segment gone (marked deleted)
            // then also finds its offset below the start, and goes to the archive.
            self.start.store(seg.end(), Ordering::Release);
            self.remove_segment(seg)?;
            total -= candidate.size;
            deleted.push(info);
        }
        self.deleted_from_start(deleted)
    }

    /// Deletes every closed segment whose records all lie below `offset`, oldest first (total
    /// retention cutting the log where the cold tier's retention cut it). Stops at the first
    /// segment that reaches `offset`; never deletes the active segment.
    pub fn delete_segments_below(&self, offset: LogOffset) -> Result<Vec<SegmentInfo>, HotError> {
        let _appends = self.inner.lock();
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        let mut deleted = Vec::new();
        for seg in segments.iter().take(segments.len().saturating_sub(1)) {
            if seg.end() > offset.0 {
                break;
            }
            deleted.push(seg.info(false));
            self.start.store(seg.end(), Ordering::Release);
            self.remove_segment(seg)?;
        }
        self.deleted_from_start(deleted)
    }

    /// After segments were deleted from the start: makes the unlinks durable and forgets the
    /// epochs that started before the new start.
    fn deleted_from_start(&self, deleted: Vec<SegmentInfo>) -> Result<Vec<SegmentInfo>, HotError> {
        if !deleted.is_empty() {
            sync_dir(&self.dir)?;
            self.chain_pruned()?;
            let mut epochs = self.epochs.lock();
            if epochs.truncate_from_start(self.start_offset()) {
                epochs.persist()?;
            }
        }
        Ok(deleted)
    }

    /// Takes a segment out of the map and unlinks its files. Readers that already hold it
    /// keep reading: its descriptor and index maps stay valid after the unlink.
    fn remove_segment(&self, seg: &Arc<Segment>) -> Result<(), HotError> {
        self.segments.write().remove(&seg.base());
        // Our caller holds one handle; any other is an in-flight reader (or the writer).
        if Arc::strong_count(seg) > 1 {
            seg.retire();
        } else {
            // Nobody reads it any more: close its file now rather than when evicted.
            let _ = seg.slot().close();
        }
        seg.delete_files()
    }

    /// All segments, oldest first; the last one is the active segment.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let segments: Vec<_> = self.segments.read().values().cloned().collect();
        let n = segments.len();
        segments
            .iter()
            .enumerate()
            .map(|(i, s)| s.info(i + 1 == n))
            .collect()
    }

    /// `(epoch, start offset)` pairs: the first offset each epoch wrote, oldest first.
    pub fn epochs(&self) -> Vec<(Epoch, LogOffset)> {
        self.epochs.lock().entries().to_vec()
    }

    /// A new leader's first act: `epoch` starts at the current log end, persisted before any
    /// append, so a follower asking where its older epoch ends gets this log's end even if
    /// nothing was appended yet, and appends under older epochs are fenced from now on.
    pub fn begin_epoch(&self, epoch: Epoch) -> Result<(), HotError> {
        let guard = self.inner.lock();
        let end = guard.as_ref().ok_or(HotError::Closed)?.next_offset();
        let mut epochs = self.epochs.lock();
        if let Some(latest) = epochs.latest().filter(|l| *l > epoch) {
            return Err(HotError::FencedEpoch { epoch, latest });
        }
        if epochs.assign(epoch, LogOffset(end)) {
            epochs.persist()?;
        }
        Ok(())
    }

    /// The latest epoch this log holds (or began as leader).
    pub fn latest_epoch(&self) -> Option<Epoch> {
        self.epochs.lock().latest()
    }

    /// The largest epoch `<= epoch` this log has and where it ends here (KIP-279): what a
    /// leader answers a follower whose last epoch is `epoch`; the follower truncates to the
    /// lower of that end and its own end of the returned epoch.
    pub fn epoch_end(&self, epoch: Epoch) -> Option<(Epoch, LogOffset)> {
        self.epochs.lock().epoch_end(epoch, self.end_offset())
    }

    /// The end offset of `epoch` on this log: the start of the next newer epoch, or the log
    /// end if `epoch` is the latest (the answer a leader gives a rejoining follower).
    pub fn end_offset_for_epoch(&self, epoch: Epoch) -> Option<LogOffset> {
        self.epochs.lock().end_offset_for(epoch, self.end_offset())
    }

    /// Flushes, trims the indexes and marks the shutdown clean so the next open scans nothing.
    pub fn close(&self) -> Result<(), HotError> {
        let mut guard = self.inner.lock();
        let Some(active) = guard.as_mut() else {
            return Ok(());
        };
        active.finish()?;
        self.chain_sync()?;
        let end = active.next_offset();
        self.snapshot_producers(end)?;
        let marker = Marker {
            end,
            first_append: active.first_append,
        };
        self.durable.fetch_max(end, Ordering::AcqRel);
        write_marker(&self.dir, marker)?;
        // Closed logs hold no descriptors (the active one's was fsynced by `finish`).
        for seg in self.segments.read().values() {
            let _ = seg.slot().close();
        }
        *guard = None;
        Ok(())
    }

    /// Closes and removes the whole directory.
    pub fn delete(self) -> Result<(), HotError> {
        if let Err(e) = self.close() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "close before delete failed");
        }
        std::fs::remove_dir_all(&self.dir).map_err(io_err("delete directory", &self.dir))
    }
}
