//! Specification of the partition log: what a caller can rely on, one test per promise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use pyralog_types::batch::{split_batches, BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, LogOffset, ManualClock, Record, Retention};

use crate::{HotError, PartitionLog, PartitionOptions, DEFAULT_PRODUCER_EXPIRATION};

mod dedup;
mod ledger;
mod open_files;
mod producers;
mod replicated;

const T0: i64 = 1_700_000_000_000_000;

fn options(segment_bytes: u64, index_interval_bytes: u32) -> PartitionOptions {
    PartitionOptions {
        segment_bytes,
        segment_ms: Duration::from_secs(3600),
        index_interval_bytes,
        max_index_bytes: 64 * 1024,
        fsync: FsyncPolicy::EveryBatch,
        producer_expiration: DEFAULT_PRODUCER_EXPIRATION,
        ledger_genesis: None,
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
    }
}

/// A batch of `n` records `"{tag}-{i}"`, timestamps `ts, ts+1, ...`.
fn batch(tag: &str, n: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.push(&NewRecord {
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{}", i % 3))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Vec::new(),
        });
    }
    b.build().expect("build batch")
}

fn records(bytes: Bytes) -> Vec<Record> {
    split_batches(bytes)
        .flat_map(|b| b.expect("valid batch").records().expect("records"))
        .collect()
}

/// Every record in `[from, end)`, following `next_offset` like a consumer does.
fn read_all(log: &PartitionLog, from: u64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = LogOffset(from);
    loop {
        let r = log.read(at, 4096, LogOffset::MAX).expect("read");
        if r.batches.is_empty() {
            return out;
        }
        out.extend(records(r.batches).into_iter().filter(|r| r.offset >= at));
        at = r.next_offset;
    }
}

fn open(dir: &Path, opts: PartitionOptions, clock: &Arc<ManualClock>) -> PartitionLog {
    PartitionLog::open(dir, opts, clock.clone()).expect("open log")
}

#[test]
fn appends_get_dense_offsets_and_read_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 256), &clock);
    let a = log.append(batch("a", 3, T0), Epoch(1)).expect("append");
    let b = log
        .append(batch("b", 2, T0 + 10), Epoch(1))
        .expect("append");
    assert_eq!(
        (a.base_offset, a.last_offset, a.end_offset),
        (LogOffset(0), LogOffset(2), LogOffset(3))
    );
    assert_eq!((b.base_offset, b.end_offset), (LogOffset(3), LogOffset(5)));
    let all = read_all(&log, 0);
    let offsets: Vec<u64> = all.iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert_eq!(all[3].value.as_deref(), Some(&b"b-0"[..]));
    assert!(all.iter().all(|r| r.epoch == Epoch(1)));
}

#[test]
fn reads_start_at_the_batch_holding_the_offset_and_stop_at_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    for i in 0..10 {
        log.append(batch("x", 4, T0 + i * 4), Epoch(1))
            .expect("append");
    }
    // Offset 9 is inside the batch [8, 11].
    let r = log.read(LogOffset(9), 1, LogOffset::MAX).expect("read");
    let got = records(r.batches);
    assert_eq!(
        got.first().map(|r| r.offset),
        Some(LogOffset(8)),
        "whole batch, at least one"
    );
    assert_eq!(r.next_offset, LogOffset(12));
    // A limit (the high watermark) never lets a batch at or past it through.
    let r = log
        .read(LogOffset(0), 1 << 20, LogOffset(12))
        .expect("read");
    assert_eq!(
        records(r.batches).last().map(|r| r.offset),
        Some(LogOffset(11))
    );
    // At the end: empty. Past the end: out of range.
    assert!(log
        .read(LogOffset(40), 100, LogOffset::MAX)
        .expect("at end")
        .batches
        .is_empty());
    assert!(matches!(
        log.read(LogOffset(41), 100, LogOffset::MAX),
        Err(HotError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(600, 128), &clock);
    for i in 0..50 {
        log.append(batch("s", 5, T0 + i), Epoch(1)).expect("append");
    }
    let segs = log.segments();
    assert!(segs.len() > 5, "rolled into {} segments", segs.len());
    assert!(segs
        .iter()
        .rev()
        .skip(1)
        .all(|s| !s.is_active && s.size_bytes <= 600));
    for w in segs.windows(2) {
        let last = w[0].last_offset.expect("closed segments are not empty");
        assert_eq!(last.0 + 1, w[1].base_offset.0, "segments are contiguous");
    }
    assert_eq!(read_all(&log, 0).len(), 250);
}

#[test]
fn one_read_spans_segments_into_one_buffer_and_stops_at_damage_or_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let segs = {
        let log = open(dir.path(), options(600, 128), &clock);
        for i in 0..50 {
            log.append(batch("s", 5, T0 + i), Epoch(1)).expect("append");
        }
        log.roll().expect("roll");
        log.close().expect("close");
        log.segments()
    };
    assert!(segs.len() > 5, "rolled into {} segments", segs.len());
    let log = open(dir.path(), options(600, 128), &clock);
    // Room for everything: every segment's bytes, as stored, one after the other.
    let whole = log
        .read(LogOffset(0), 1 << 20, LogOffset::MAX)
        .expect("read");
    let stored: Vec<u8> = segs
        .iter()
        .flat_map(|s| std::fs::read(&s.log_path).expect("segment file"))
        .collect();
    assert_eq!(&whole.batches[..], &stored[..]);
    assert_eq!(whole.next_offset, LogOffset(250));
    // A limit inside the third segment: the batches below it, across two boundaries.
    let limit = segs[2].base_offset.0 + 5;
    let r = log
        .read(LogOffset(3), 1 << 20, LogOffset(limit))
        .expect("read");
    let offsets: Vec<u64> = records(r.batches).iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, (0..limit).collect::<Vec<_>>());
    assert_eq!(r.next_offset, LogOffset(limit));
    drop(log);

    // Damage inside the first batch of the second segment: a read from the first segment
    // serves all of it and stops there; a read at the damage fails, naming the offset.
    flip_byte(&segs[1].log_path, 100);
    let log = open(dir.path(), options(600, 128), &clock);
    let r = log
        .read(LogOffset(0), 1 << 20, LogOffset::MAX)
        .expect("prefix");
    let served = records(r.batches);
    assert_eq!(served.len() as u64, segs[1].base_offset.0);
    assert_eq!(r.next_offset, segs[1].base_offset);
    let at = segs[1].base_offset.0;
    match log.read(LogOffset(at), 1 << 20, LogOffset::MAX) {
        Err(e @ HotError::Corrupt { .. }) => {
            assert!(e.to_string().contains(&format!("offset {at}")), "{e}")
        }
        other => panic!("expected Corrupt at {at}, got {other:?}"),
    }
}

#[test]
fn segments_roll_by_age_and_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut opts = options(1 << 20, 128);
    opts.segment_ms = Duration::from_secs(60);
    let log = open(dir.path(), opts, &clock);
    log.append(batch("a", 1, T0), Epoch(1)).expect("append");
    assert!(!log.roll_if_due().expect("check"), "not old yet");
    clock.advance(Duration::from_secs(61));
    assert!(log.roll_if_due().expect("check"));
    assert_eq!(log.segments().len(), 2);
    log.roll()
        .expect("roll of an empty active segment is a no-op");
    assert_eq!(log.segments().len(), 2);
    log.append(batch("b", 1, T0), Epoch(1)).expect("append");
    log.roll().expect("roll");
    assert_eq!(log.segments().len(), 3);
}

#[test]
fn lookup_by_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(700, 64), &clock);
    // Record at offset o has timestamp T0 + 10 * o.
    for i in 0..30 {
        let mut b = BatchBuilder::new(Compression::None);
        for j in 0..3 {
            b.push(&NewRecord {
                timestamp: T0 + 10 * (i * 3 + j),
                value: Some(Bytes::from_static(b"v")),
                ..NewRecord::default()
            });
        }
        log.append(b.build().expect("build"), Epoch(1))
            .expect("append");
    }
    assert!(log.segments().len() > 2);
    assert_eq!(
        log.offset_for_timestamp(0).expect("lookup"),
        Some(LogOffset(0))
    );
    assert_eq!(
        log.offset_for_timestamp(T0 + 10 * 41).expect("lookup"),
        Some(LogOffset(41))
    );
    assert_eq!(
        log.offset_for_timestamp(T0 + 10 * 41 + 1).expect("lookup"),
        Some(LogOffset(42))
    );
    assert_eq!(
        log.offset_for_timestamp(T0 + 10 * 89).expect("lookup"),
        Some(LogOffset(89))
    );
    assert_eq!(
        log.offset_for_timestamp(T0 + 10 * 89 + 1).expect("lookup"),
        None
    );
}

#[test]
fn clean_reopen_keeps_everything_and_reads_no_closed_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let segs = {
        let log = open(dir.path(), options(500, 64), &clock);
        for i in 0..40 {
            log.append(batch("c", 3, T0 + i), Epoch(2)).expect("append");
        }
        log.close().expect("close");
        log.segments()
    };
    // Zero a closed segment's bytes (same size): a clean open must not notice, because it
    // reads only the directory listing; the damage shows on the first read of that segment.
    let size = usize::try_from(segs[0].size_bytes).expect("size");
    std::fs::write(&segs[0].log_path, vec![0u8; size]).expect("zero segment");
    let log = open(dir.path(), options(500, 64), &clock);
    assert_eq!(log.end_offset(), LogOffset(120));
    assert_eq!(log.durable_offset(), LogOffset(120));
    assert_eq!(log.segments().len(), segs.len());
    assert!(matches!(
        log.read(LogOffset(0), 10, LogOffset::MAX),
        Err(HotError::Corrupt { .. })
    ));
    assert_eq!(
        read_all(&log, segs[1].base_offset.0).len() as u64,
        120 - segs[1].base_offset.0
    );
    let next = log
        .append(batch("d", 1, T0), Epoch(3))
        .expect("append after reopen");
    assert_eq!(next.base_offset, LogOffset(120));
    assert_eq!(
        log.epochs(),
        vec![(Epoch(2), LogOffset(0)), (Epoch(3), LogOffset(120))]
    );
}

#[test]
fn crash_recovery_cuts_a_torn_tail_and_keeps_what_was_flushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let active_path;
    {
        let log = open(dir.path(), options(1 << 20, 64), &clock);
        for i in 0..10 {
            log.append(batch("r", 2, T0 + i), Epoch(1)).expect("append");
        }
        assert_eq!(log.flush().expect("flush"), LogOffset(20));
        active_path = log.segments().last().expect("active").log_path.clone();
        // No close: a crash. Then half a batch reaches the file.
    }
    let torn = batch("torn", 5, T0);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&active_path)
        .expect("open");
    std::io::Write::write_all(&mut file, &torn[..torn.len() / 2]).expect("write");
    drop(file);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    assert_eq!(log.end_offset(), LogOffset(20), "the torn batch is gone");
    assert_eq!(read_all(&log, 0).len(), 20);
    let next = log.append(batch("after", 1, T0), Epoch(1)).expect("append");
    assert_eq!(next.base_offset, LogOffset(20));
}

#[test]
fn crash_recovery_cuts_at_a_batch_with_a_bad_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (active_path, second_batch_pos) = {
        let log = open(dir.path(), options(1 << 20, 64), &clock);
        let first = batch("ok", 2, T0);
        let pos = first.len() as u64;
        log.append(first, Epoch(1)).expect("append");
        log.append(batch("bad", 2, T0), Epoch(1)).expect("append");
        log.append(batch("after", 2, T0), Epoch(1)).expect("append");
        log.flush().expect("flush");
        (log.segments()[0].log_path.clone(), pos)
    };
    flip_byte(&active_path, second_batch_pos + 70);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    assert_eq!(
        log.end_offset(),
        LogOffset(2),
        "everything from the bad batch on is cut"
    );
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = usize::try_from(at).expect("position");
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_damaged_batch_ends_a_read_after_the_intact_batches_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    // 30 batches of 3 records in one closed segment, then damage batch 10 (offsets 30..32)
    // inside its records, where only the CRC can tell.
    let seg = {
        let log = open(dir.path(), options(1 << 20, 64), &clock);
        for i in 0..30 {
            log.append(batch("m", 3, T0 + i), Epoch(1)).expect("append");
        }
        log.roll().expect("roll");
        log.close().expect("close");
        log.segments()[0].clone()
    };
    let bytes = std::fs::read(&seg.log_path).expect("read");
    let mut pos = 0usize;
    for _ in 0..10 {
        pos += pyralog_types::batch::peek_size(&bytes[pos..]).expect("size");
    }
    let size = pyralog_types::batch::peek_size(&bytes[pos..]).expect("size");
    flip_byte(&seg.log_path, (pos + size - 2) as u64);
    let log = open(dir.path(), options(1 << 20, 64), &clock);

    // One read with room for everything serves offsets 0..30 and stops at the damage.
    let r = log
        .read(LogOffset(0), 1 << 20, LogOffset::MAX)
        .expect("prefix");
    let served = records(r.batches);
    assert_eq!(
        served.iter().map(|r| r.offset.0).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(r.next_offset, LogOffset(30));
    // Reading at (or inside) the damaged batch fails, naming the offset asked for.
    for at in [30, 31] {
        match log.read(LogOffset(at), 1 << 20, LogOffset::MAX) {
            Err(e @ HotError::Corrupt { .. }) => {
                assert!(e.to_string().contains(&format!("offset {at}")), "{e}");
            }
            other => panic!("expected Corrupt at {at}, got {other:?}"),
        }
    }
    // Past the damaged batch everything serves.
    assert_eq!(read_all(&log, 33).len(), 90 - 33);
}

#[test]
fn a_corrupt_closed_segment_fails_reads_with_corrupt_not_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let first_seg = {
        let log = open(dir.path(), options(400, 64), &clock);
        for i in 0..30 {
            log.append(batch("z", 3, T0 + i), Epoch(1)).expect("append");
        }
        log.close().expect("close");
        log.segments()[0].clone()
    };
    flip_byte(&first_seg.log_path, first_seg.size_bytes - 3);
    let log = open(dir.path(), options(400, 64), &clock);
    let last = first_seg.last_offset.expect("non-empty");
    match log.read(last, 1 << 20, LogOffset::MAX) {
        Err(HotError::Corrupt { path, .. }) => assert_eq!(path, first_seg.log_path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Data after the damaged segment is still served.
    let after = log
        .read(LogOffset(last.0 + 1), 1 << 20, LogOffset::MAX)
        .expect("read");
    assert!(!after.batches.is_empty());
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let segs = {
        let log = open(dir.path(), options(500, 64), &clock);
        for i in 0..40 {
            log.append(batch("i", 3, T0 + 3 * i), Epoch(1))
                .expect("append");
        }
        log.close().expect("close");
        log.segments()
    };
    let first_index = segs[0].log_path.with_extension("index");
    let second_time = segs[1].log_path.with_extension("timeindex");
    std::fs::remove_file(&first_index).expect("remove index");
    std::fs::write(&second_time, [7u8; 13]).expect("damage time index");
    let log = open(dir.path(), options(500, 64), &clock);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 120);
    assert_eq!(
        log.offset_for_timestamp(T0 + 50).expect("lookup"),
        Some(LogOffset(50))
    );
    assert!(first_index.exists(), "index rebuilt on first use");
}

#[test]
fn retention_deletes_whole_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(400, 64), &clock);
    for i in 0..30 {
        log.append(batch("t", 3, T0 + i), Epoch(1)).expect("append");
    }
    let before = log.segments();
    assert!(before.len() > 3);
    assert!(log
        .enforce_retention(Retention::Infinite, LogOffset::MAX)
        .expect("ret")
        .is_empty());
    // Age: all records are older than a day, yet the active segment stays.
    clock.advance(Duration::from_secs(2 * 86_400));
    let safe = before[2].base_offset; // only the first two segments are "in the cold tier"
    let deleted = log
        .enforce_retention(Retention::Time(Duration::from_secs(86_400)), safe)
        .expect("retention");
    assert_eq!(deleted.len(), 2, "stops at the cold tier's safe point");
    assert_eq!(log.start_offset(), safe);
    assert!(matches!(
        log.read(LogOffset(0), 10, LogOffset::MAX),
        Err(HotError::OffsetOutOfRange { .. })
    ));
    let deleted = log
        .enforce_retention(Retention::Time(Duration::from_secs(86_400)), LogOffset::MAX)
        .expect("retention");
    assert_eq!(deleted.len(), before.len() - 3);
    assert_eq!(log.segments().len(), 1);
    assert!(log.segments()[0].is_active);
    assert!(!deleted[0].log_path.exists());
}

#[test]
fn size_retention_keeps_the_newest_segments_within_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(400, 64), &clock);
    for i in 0..30 {
        log.append(batch("s", 3, T0 + i), Epoch(1)).expect("append");
    }
    let total: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
    log.enforce_retention(Retention::Size(total / 2), LogOffset::MAX)
        .expect("retention");
    let kept: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
    assert!(kept <= total / 2, "kept {kept} of {total}");
    assert_eq!(log.end_offset(), LogOffset(90));
}

#[test]
fn truncation_cuts_at_a_batch_boundary_and_offsets_continue_from_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(400, 64), &clock);
    for i in 0..20 {
        let epoch = if i < 10 { Epoch(1) } else { Epoch(2) };
        log.append(batch("u", 3, T0 + i), epoch).expect("append");
    }
    assert_eq!(log.end_offset_for_epoch(Epoch(1)), Some(LogOffset(30)));
    // 31 lies inside the batch [30, 32]: the whole batch goes.
    log.truncate_to(LogOffset(31)).expect("truncate");
    assert_eq!(log.end_offset(), LogOffset(30));
    assert_eq!(log.epochs(), vec![(Epoch(1), LogOffset(0))]);
    let next = log.append(batch("v", 1, T0), Epoch(3)).expect("append");
    assert_eq!(next.base_offset, LogOffset(30));
    assert_eq!(read_all(&log, 0).len(), 31);
    // Truncation survives a reopen.
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.end_offset(), LogOffset(31));
}

#[test]
fn reset_moves_an_outdated_log_past_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(400, 64), &clock);
    for i in 0..10 {
        log.append(batch("a", 3, T0 + i), Epoch(1)).expect("append");
    }
    assert!(log.reset_to(LogOffset(5)).is_err(), "never backwards");
    log.reset_to(LogOffset(1000)).expect("reset");
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (LogOffset(1000), LogOffset(1000))
    );
    assert!(log
        .read(LogOffset(1000), 100, LogOffset::MAX)
        .expect("read")
        .batches
        .is_empty());
    let next = log.append(batch("b", 2, T0), Epoch(2)).expect("append");
    assert_eq!(next.base_offset, LogOffset(1000));
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (LogOffset(1000), LogOffset(1002))
    );
    assert_eq!(log.epochs(), vec![(Epoch(2), LogOffset(1000))]);
}

#[test]
fn replicated_appends_keep_the_leaders_offsets_and_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let leader = open(leader_dir.path(), options(1 << 20, 64), &clock);
    let follower = open(dir.path(), options(1 << 20, 64), &clock);
    leader.append(batch("l", 2, T0), Epoch(7)).expect("append");
    let copied = leader
        .read(LogOffset(0), 1 << 20, LogOffset::MAX)
        .expect("read")
        .batches;
    follower
        .append_replicated(copied.clone())
        .expect("replicate");
    assert_eq!(read_all(&follower, 0), read_all(&leader, 0));
    assert!(
        matches!(
            follower.append_replicated(copied),
            Err(HotError::OffsetOutOfRange { .. })
        ),
        "a batch not at the log end is refused"
    );
}

#[test]
fn concurrent_flushes_share_fsyncs_and_cover_every_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = Arc::new(open(dir.path(), options(1 << 20, 256), &clock));
    std::thread::scope(|s| {
        for t in 0..4 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..50 {
                    let info = log.append(batch("f", 2, T0 + i), Epoch(1)).expect("append");
                    let durable = log.flush().expect("flush");
                    assert!(
                        durable >= info.end_offset,
                        "thread {t}: flush covers own append"
                    );
                }
            });
        }
    });
    assert_eq!(log.durable_offset(), LogOffset(400));
}

/// The sparse offset index is an optimisation only: for any batch layout and index interval,
/// finding the batch of an offset through it agrees with scanning every batch from the start.
fn linear_locate(batches: &[(u64, u64)], offset: u64) -> Option<u64> {
    batches
        .iter()
        .find(|(base, count)| offset >= *base && offset < base + count)
        .map(|(base, _)| *base)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn index_lookup_agrees_with_a_linear_scan(
        sizes in proptest::collection::vec(1usize..12, 1..60),
        interval in prop_oneof![Just(1u32), Just(64), Just(300), Just(4096)],
        segment_bytes in prop_oneof![Just(350u64), Just(2000), Just(1 << 20)],
        reopen in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let mut log = open(dir.path(), options(segment_bytes, interval), &clock);
        let mut layout = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let info = log.append(batch("p", *n, T0 + i as i64), Epoch(1)).expect("append");
            layout.push((info.base_offset.0, *n as u64));
        }
        if reopen {
            log.close().expect("close");
            drop(log);
            log = open(dir.path(), options(segment_bytes, interval), &clock);
        }
        let end = log.end_offset().0;
        for offset in 0..end {
            let r = log.read(LogOffset(offset), 1, LogOffset::MAX).expect("read");
            let first = records(r.batches).first().map(|r| r.offset.0);
            prop_assert_eq!(first, linear_locate(&layout, offset), "offset {}", offset);
        }
    }
}

/// Fills `log` with `segments` closed segments of 4 batches × 5 records each, then rolls.
fn closed_segments(log: &PartitionLog, segments: usize) {
    for s in 0..segments {
        for b in 0..4 {
            log.append(
                batch(&format!("s{s}b{b}"), 5, T0 + (s * 100 + b * 10) as i64),
                Epoch(1),
            )
            .expect("append");
        }
        log.roll().expect("roll");
    }
}

#[test]
fn a_rewritten_segment_keeps_its_range_and_serves_the_kept_records_with_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    closed_segments(&log, 3);
    let before = read_all(&log, 0);
    assert_eq!(before.len(), 60);
    // Keep the odd offsets of the middle segment [20, 40).
    let out = log
        .rewrite_segment(LogOffset(20), |recs| {
            Some(recs.into_iter().filter(|r| r.offset.0 % 2 == 1).collect())
        })
        .expect("rewrite")
        .expect("changed");
    assert_eq!((out.records_before, out.records_after), (20, 10));
    let want: Vec<u64> = (0..60)
        .filter(|o| !(20..40).contains(o) || o % 2 == 1)
        .collect();
    let check = |log: &PartitionLog| {
        let got = read_all(log, 0);
        assert_eq!(got.iter().map(|r| r.offset.0).collect::<Vec<_>>(), want);
        for r in &got {
            let original = &before[r.offset.0 as usize];
            assert_eq!(
                r, original,
                "record {} unchanged but for its neighbours",
                r.offset
            );
        }
        // A read starting in a gap continues at the next kept record.
        let r = log
            .read(LogOffset(20), 1, LogOffset::MAX)
            .expect("read in gap");
        assert!(records(r.batches)[0].offset >= LogOffset(21));
        assert_eq!(log.start_offset(), LogOffset(0));
        assert_eq!(log.end_offset(), LogOffset(60));
    };
    check(&log);
    // Timestamp lookup and a reopen (indexes rebuilt from the new file) agree.
    assert_eq!(
        log.offset_for_timestamp(T0 + 100).expect("lookup"),
        Some(LogOffset(21))
    );
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    check(&log);
    // Returning None changes nothing; the active segment is never rewritten.
    assert!(log
        .rewrite_segment(LogOffset(0), |_| None)
        .expect("noop")
        .is_none());
    let active = log.segments().last().expect("active").base_offset;
    assert!(log.rewrite_segment(active, Some).expect("active").is_none());
}

#[test]
fn a_rewrite_cut_short_by_a_crash_leaves_the_old_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    closed_segments(&log, 2);
    let before = read_all(&log, 0);
    drop(log);
    // What a crash before the rename leaves: a complete or partial temporary file.
    let tmp = dir.path().join("00000000000000000000.log.rewrite.tmp");
    std::fs::write(&tmp, b"half a batch").expect("write leftover");
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    assert!(!tmp.exists(), "leftover deleted on open");
    assert_eq!(read_all(&log, 0), before);
}

#[test]
fn a_reader_inside_a_segment_being_rewritten_finishes_on_the_old_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    closed_segments(&log, 2);
    let first = log.read(LogOffset(0), 1, LogOffset::MAX).expect("read");
    log.rewrite_segment(LogOffset(0), |_| Some(Vec::new()))
        .expect("rewrite")
        .expect("changed");
    // The bytes read before the swap are still whole and valid.
    assert_eq!(records(first.batches)[0].offset, LogOffset(0));
    // After it, the emptied segment is skipped.
    let r = log.read(LogOffset(0), 1, LogOffset::MAX).expect("read");
    assert_eq!(records(r.batches)[0].offset, LogOffset(20));
    assert_eq!(read_all(&log, 0).len(), 20);
}

#[test]
fn deleting_below_an_offset_takes_whole_closed_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    closed_segments(&log, 3);
    let deleted = log.delete_segments_below(LogOffset(45)).expect("delete");
    assert_eq!(deleted.len(), 2, "[0,20) and [20,40) end at or below 45");
    assert_eq!(log.start_offset(), LogOffset(40));
    let err = log
        .read(LogOffset(39), 1, LogOffset::MAX)
        .expect_err("gone");
    assert!(matches!(err, HotError::OffsetOutOfRange { .. }), "{err}");
}

/// A log of two closed segments, closed cleanly: the first segment's path, its bytes, and
/// the size of its first batch (for tests that damage fields outside the batch CRC).
fn closed_first_segment(dir: &Path, clock: &Arc<ManualClock>) -> (PathBuf, Vec<u8>, usize) {
    let log = open(dir, options(1 << 20, 1 << 20), clock);
    closed_segments(&log, 2);
    log.close().expect("close");
    drop(log);
    let path = dir.join("00000000000000000000.log");
    let bytes = std::fs::read(&path).expect("read");
    let first = pyralog_types::batch::peek_size(&bytes).expect("size");
    (path, bytes, first)
}

#[test]
fn a_shifted_base_offset_is_corruption_unless_the_segment_was_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    // Base offsets sit outside the batch CRC: move the second batch of segment 0 forward.
    let (path, mut bytes, first) = closed_first_segment(dir.path(), &clock);
    bytes[first..first + 8].copy_from_slice(&7u64.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let log = open(dir.path(), options(1 << 20, 1 << 20), &clock);
    let err = read_until_corrupt(&log);
    assert!(matches!(err, HotError::Corrupt { .. }), "{err}");
}

/// Reads from offset 0 like a consumer until a read fails: every answer before must carry
/// batches (intact data before damage is served), and the failure must be corruption.
fn read_until_corrupt(log: &PartitionLog) -> HotError {
    let mut at = LogOffset(0);
    loop {
        match log.read(at, 1 << 20, LogOffset::MAX) {
            Ok(r) => {
                assert!(!r.batches.is_empty(), "no data and no error at {at}");
                at = r.next_offset;
            }
            Err(e) => return e,
        }
    }
}

#[test]
fn a_flipped_epoch_or_base_offset_outside_the_crc_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (path, pristine, first) = closed_first_segment(dir.path(), &clock);
    // The epoch field (bytes 12..20 of a batch) of the second batch; the base offset of the
    // first batch, which a read from offset 0 starts at without a previous batch to check.
    for (at, what) in [
        (first + 12, "epoch"),
        (first + 19, "epoch"),
        (0, "base offset"),
    ] {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).expect("write");
        let log = open(dir.path(), options(1 << 20, 1 << 20), &clock);
        let err = read_until_corrupt(&log);
        assert!(matches!(err, HotError::Corrupt { .. }), "{what}: {err}");
        log.close().expect("close");
    }
}

#[test]
fn after_a_crash_a_compacted_segment_keeps_its_range_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    closed_segments(&log, 2);
    // [20, 40) loses its tail: records end at 25, the range at 39; the active one is empty.
    log.rewrite_segment(LogOffset(20), |recs| {
        Some(recs.into_iter().filter(|r| r.offset.0 <= 25).collect())
    })
    .expect("rewrite")
    .expect("changed");
    let before = read_all(&log, 0);
    // A read inside the trailing gap moves past the segment instead of standing still.
    let r = log
        .read(LogOffset(30), 1 << 20, LogOffset::MAX)
        .expect("read");
    assert!(r.batches.is_empty());
    assert_eq!(r.next_offset, LogOffset(40));
    drop(log); // a crash: no clean-shutdown marker
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    assert_eq!(read_all(&log, 0), before, "nothing cut at the gaps");
    assert_eq!(
        log.end_offset(),
        LogOffset(40),
        "no offset of the compacted range reused"
    );
    let next = log.append(batch("new", 1, T0), Epoch(1)).expect("append");
    assert_eq!(next.base_offset, LogOffset(40));
}
