//! Specification of idempotent produce on the partition log: retries land once, sequences are
//! enforced by the leader, and the producer state survives restarts, crashes, truncation and
//! a change of leader.

use std::collections::BTreeMap;

use super::*;
use crate::{AppendInfo, ProducerSnapshot};

/// A batch of producer `pid` (epoch `epoch`) with records `p{pid}-s{seq}` for the `n`
/// sequence numbers from `seq` on, all timestamped `ts`.
fn idem_at(pid: i64, epoch: i16, seq: i32, n: u32, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, epoch, seq);
    for i in 0..n {
        let s = crate::producers::add_sequence(seq, i);
        b.push(&NewRecord {
            timestamp: ts,
            value: Some(Bytes::from(format!("p{pid}-s{s}"))),
            ..NewRecord::default()
        });
    }
    b.build().expect("build batch")
}

fn idem(pid: i64, epoch: i16, seq: i32, n: u32) -> Bytes {
    idem_at(pid, epoch, seq, n, T0)
}

/// Retries of the batches of `spread_over_segments` from round `first` on (its last round is
/// 19) are all duplicates: the remembered batches reach back into closed segments.
fn assert_retries_are_duplicates(log: &PartitionLog, first: i32) {
    for p in 0..3 {
        for i in first..20 {
            let retry = log.append(idem(p, 1, i * 2, 2), Epoch(1)).expect("retry");
            assert!(retry.duplicate, "producer {p}, batch {i}");
        }
    }
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    out.sort();
    out
}

/// Zeroes every closed segment (same size): whatever reads one from then on sees garbage.
fn zero_closed_segments(log_segments: &[crate::SegmentInfo]) {
    for s in log_segments.iter().filter(|s| !s.is_active) {
        let size = usize::try_from(s.size_bytes).expect("size");
        std::fs::write(&s.log_path, vec![0u8; size]).expect("zero segment");
    }
}

fn out_of_order(r: Result<AppendInfo, HotError>) -> (i32, i32) {
    match r {
        Err(HotError::OutOfOrderSequence { expected, got, .. }) => (expected, got),
        other => panic!("expected OutOfOrderSequence, got {other:?}"),
    }
}

#[test]
fn a_retry_of_any_of_the_last_five_batches_returns_the_original_offsets_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    log.append(batch("plain", 3, T0), Epoch(1)).expect("append");
    let mut originals = Vec::new();
    for i in 0..6 {
        let info = log.append(idem(7, 0, i * 2, 2), Epoch(1)).expect("append");
        assert!(!info.duplicate);
        originals.push(info);
        log.append(idem(8, 0, i, 1), Epoch(1))
            .expect("another producer");
    }
    let end = log.end_offset();
    for (i, original) in originals.iter().enumerate().skip(1) {
        let retry = log
            .append(idem(7, 0, i as i32 * 2, 2), Epoch(1))
            .expect("retry");
        assert!(retry.duplicate, "batch {i}");
        assert_eq!(
            (retry.base_offset, retry.last_offset, retry.end_offset),
            (
                original.base_offset,
                original.last_offset,
                LogOffset(original.last_offset.0 + 1)
            ),
        );
    }
    assert_eq!(log.end_offset(), end, "nothing written");
    assert_eq!(read_all(&log, 0).len() as u64, end.0);
    // The sixth most recent batch is no longer remembered.
    assert_eq!(
        out_of_order(log.append(idem(7, 0, 0, 2), Epoch(1))),
        (12, 0)
    );
    assert_eq!(
        log.producers()[0],
        ProducerSnapshot {
            producer_id: 7,
            epoch: 0,
            last_sequence: 11,
            last_offset: originals[5].last_offset,
            last_timestamp: T0,
        }
    );
}

#[test]
fn a_fenced_producer_epoch_is_rejected_and_a_new_epoch_starts_at_sequence_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    log.append(idem(1, 3, 0, 2), Epoch(1)).expect("epoch 3");
    let err = log
        .append(idem(1, 2, 2, 1), Epoch(1))
        .expect_err("epoch 2 is older");
    assert!(
        matches!(
            err,
            HotError::ProducerFenced {
                producer_id: 1,
                epoch: 2,
                current: 3
            }
        ),
        "{err}"
    );
    assert_eq!(
        out_of_order(log.append(idem(1, 4, 5, 1), Epoch(1))),
        (0, 5),
        "a new epoch starts at 0"
    );
    let info = log.append(idem(1, 4, 0, 1), Epoch(1)).expect("epoch 4");
    assert_eq!(info.base_offset, LogOffset(2));
    // A retry from the old instance is fenced, not a duplicate.
    assert!(matches!(
        log.append(idem(1, 3, 0, 2), Epoch(1)),
        Err(HotError::ProducerFenced { current: 4, .. })
    ));
    assert_eq!(
        log.end_offset(),
        LogOffset(3),
        "rejected batches wrote nothing"
    );
}

#[test]
fn a_gap_in_the_sequence_is_rejected_with_what_was_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    // Unknown producers (new, or expired) may start anywhere.
    log.append(idem(1, 0, 100, 3), Epoch(1))
        .expect("first batch");
    let err = log.append(idem(1, 0, 105, 1), Epoch(1)).expect_err("gap");
    assert!(
        err.to_string()
            .contains("expected base sequence 103, got 105"),
        "{err}"
    );
    log.append(idem(1, 0, 103, 1), Epoch(1)).expect("in order");
    assert_eq!(log.end_offset(), LogOffset(4));
}

#[test]
fn sequences_wrap_around_from_i32_max_to_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    log.append(idem(1, 0, i32::MAX - 3, 2), Epoch(1))
        .expect("MAX-3, MAX-2");
    let wrapping = log
        .append(idem(1, 0, i32::MAX - 1, 4), Epoch(1))
        .expect("MAX-1, MAX, 0, 1");
    let retry = log
        .append(idem(1, 0, i32::MAX - 1, 4), Epoch(1))
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, wrapping.base_offset);
    assert_eq!(out_of_order(log.append(idem(1, 0, 0, 1), Epoch(1))), (2, 0));
    log.append(idem(1, 0, 2, 1), Epoch(1)).expect("2 follows 1");
    assert_eq!(log.producers()[0].last_sequence, 2);
}

#[test]
fn batches_without_a_producer_id_are_never_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    let same = batch("again", 2, T0);
    let a = log.append(same.clone(), Epoch(1)).expect("append");
    let b = log.append(same, Epoch(1)).expect("append again");
    assert!(!a.duplicate && !b.duplicate);
    assert_eq!(b.base_offset, LogOffset(2));
    assert!(log.producers().is_empty());
}

#[test]
fn concurrent_retries_of_one_batch_write_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = Arc::new(open(dir.path(), options(1 << 20, 64), &clock));
    let answers: Vec<AppendInfo> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                s.spawn(move || log.append(idem(9, 0, 0, 3), Epoch(1)).expect("append"))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    assert!(answers.iter().all(|a| a.base_offset == LogOffset(0)));
    assert_eq!(log.end_offset(), LogOffset(3));
}

/// A producer's history as the test remembers it.
#[derive(Debug, Default)]
struct ModelProducer {
    next_seq: i32,
    /// `(first_seq, record count, where the log put it)`, oldest first.
    sent: Vec<(i32, u32, AppendInfo)>,
}

#[derive(Debug, Clone)]
enum Op {
    /// Producer `p` sends its next batch of `n` records.
    Send { p: usize, n: u32 },
    /// Producer `p` sends again its `back`-th most recent batch (0 = the last one).
    Retry { p: usize, back: usize },
    /// A batch without a producer id.
    Plain,
    /// The log stops (cleanly or by crashing) and opens again.
    Restart { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 1u32..4).prop_map(|(p, n)| Op::Send { p, n }),
        4 => (0usize..3, 0usize..7).prop_map(|(p, back)| Op::Retry { p, back }),
        1 => Just(Op::Plain),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Producers retry any of their recent batches at random, interleaved with each other
    /// and with restarts: the log holds every (producer, sequence) exactly once, in order,
    /// and every retry is answered with the offsets the original got.
    #[test]
    fn retried_batches_land_exactly_once_and_in_order(
        ops in proptest::collection::vec(op(), 1..80),
        segment_bytes in prop_oneof![Just(400u64), Just(1 << 20)],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let mut log = open(dir.path(), options(segment_bytes, 64), &clock);
        let mut producers: Vec<ModelProducer> = (0..3).map(|_| ModelProducer::default()).collect();
        for op in ops {
            match op {
                Op::Send { p, n } => {
                    let m = &mut producers[p];
                    let info = log.append(idem(p as i64, 0, m.next_seq, n), Epoch(1)).expect("send");
                    prop_assert!(!info.duplicate);
                    m.sent.push((m.next_seq, n, info));
                    m.next_seq += n as i32;
                }
                Op::Retry { p, back } => {
                    let m = &producers[p];
                    let Some((seq, n, original)) = m.sent.iter().rev().nth(back).cloned() else {
                        continue;
                    };
                    let answer = log.append(idem(p as i64, 0, seq, n), Epoch(1));
                    if back < 5 {
                        let info = answer.expect("retry");
                        prop_assert!(info.duplicate);
                        prop_assert_eq!(
                            (info.base_offset, info.last_offset, info.end_offset),
                            (original.base_offset, original.last_offset, original.end_offset)
                        );
                    } else {
                        let is_out_of_order = matches!(
                            answer,
                            Err(HotError::OutOfOrderSequence { expected, .. }) if expected == m.next_seq
                        );
                        prop_assert!(is_out_of_order, "{:?}", answer);
                    }
                }
                Op::Plain => {
                    log.append(batch("plain", 1, T0), Epoch(1)).expect("plain");
                }
                Op::Restart { clean } => {
                    if clean {
                        log.close().expect("close");
                    }
                    drop(log);
                    log = open(dir.path(), options(segment_bytes, 64), &clock);
                }
            }
        }
        let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for r in read_all(&log, 0) {
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf-8");
            if let Some((p, s)) = value.split_once("-s") {
                seen.entry(p.to_string()).or_default().push(s.parse().expect("sequence"));
            }
        }
        for (p, m) in producers.iter().enumerate() {
            let got = seen.remove(&format!("p{p}")).unwrap_or_default();
            prop_assert_eq!(got, (0..m.next_seq).collect::<Vec<_>>(), "producer {}", p);
        }
    }
}

/// Three producers spread over several segments (segments of 400 bytes).
fn spread_over_segments(log: &PartitionLog) {
    for i in 0..20 {
        for p in 0..3 {
            log.append(idem(p, 1, i * 2, 2), Epoch(1)).expect("append");
        }
    }
    assert!(log.segments().len() > 3, "several segments");
}

#[test]
fn producer_state_survives_a_clean_close_without_reading_closed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (before, segments) = {
        let log = open(dir.path(), options(400, 64), &clock);
        spread_over_segments(&log);
        log.close().expect("close");
        (log.producer_table(), log.segments())
    };
    // A clean open trusts the snapshot written at close; the closed segments are not read.
    zero_closed_segments(&segments);
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.producer_table(), before);
    assert_retries_are_duplicates(&log, 15);
}

#[test]
fn a_crash_rebuilds_the_same_producer_table_from_the_last_snapshot_and_the_headers_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (before, segments) = {
        let log = open(dir.path(), options(400, 64), &clock);
        spread_over_segments(&log);
        // Some batches after the last roll, only in the active segment.
        log.append(idem(0, 1, 40, 1), Epoch(1)).expect("append");
        log.append(idem(5, 0, 0, 1), Epoch(1)).expect("append");
        assert!(log.segments().last().expect("active").size_bytes > 0);
        log.flush().expect("flush");
        (log.producer_table(), log.segments())
        // No close: a crash.
    };
    // Recovery replays the active segment only: the snapshot of the last roll covers the rest.
    zero_closed_segments(&segments);
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.producer_table(), before);
    // Producer 0 sent one more batch: its round 15 is the sixth most recent.
    assert_retries_are_duplicates(&log, 16);
    assert!(
        log.append(idem(5, 0, 0, 1), Epoch(1))
            .expect("retry")
            .duplicate
    );
    assert_eq!(
        out_of_order(log.append(idem(0, 1, 42, 1), Epoch(1))),
        (41, 42)
    );
}

#[test]
fn a_crash_after_a_clean_restart_replays_from_the_close_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), options(1 << 20, 64), &clock);
        log.append(idem(1, 0, 0, 2), Epoch(1)).expect("append");
        log.close().expect("close");
    }
    let before = {
        let log = open(dir.path(), options(1 << 20, 64), &clock);
        log.append(idem(1, 0, 2, 2), Epoch(1)).expect("append");
        log.append(idem(2, 0, 0, 1), Epoch(1)).expect("append");
        log.producer_table()
    };
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    assert_eq!(log.producer_table(), before);
}

#[test]
fn a_missing_or_corrupt_snapshot_falls_back_to_scanning_every_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let before = {
        let log = open(dir.path(), options(400, 64), &clock);
        spread_over_segments(&log);
        log.close().expect("close");
        log.producer_table()
    };
    let snapshots = snapshot_files(dir.path());
    assert!(!snapshots.is_empty());
    // Every snapshot damaged: each is refused (and deleted), the headers are scanned.
    for s in &snapshots {
        let mut bytes = std::fs::read(s).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(s, bytes).expect("damage");
    }
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.producer_table(), before);
    assert!(
        snapshot_files(dir.path()).is_empty(),
        "corrupt snapshots deleted"
    );
    log.close().expect("close");
    drop(log);
    // No snapshot at all: the same.
    for s in snapshot_files(dir.path()) {
        std::fs::remove_file(s).expect("remove");
    }
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.producer_table(), before);
}

#[test]
fn after_truncation_a_retry_of_a_cut_batch_is_appended_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(400, 64), &clock);
    spread_over_segments(&log);
    // A clean restart leaves a snapshot at the log end, which the cut goes below.
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), options(400, 64), &clock);
    let end = log.end_offset();
    // Cut the last round (one batch of each producer): sequences 38, 39 are gone.
    log.truncate_to(LogOffset(end.0 - 6)).expect("truncate");
    assert_eq!(log.producers()[0].last_sequence, 37);
    let again = log.append(idem(0, 1, 38, 2), Epoch(2)).expect("retry");
    assert!(
        !again.duplicate,
        "the original is gone: this is a new append"
    );
    assert_eq!(again.base_offset, LogOffset(end.0 - 6));
    assert_eq!(
        out_of_order(log.append(idem(1, 1, 40, 2), Epoch(2))),
        (38, 40),
        "producer 1 continues where the truncated log ends"
    );
    log.append(idem(0, 1, 40, 1), Epoch(2)).expect("next");
    // The log grows past where the close snapshot was; that snapshot described batches that
    // are gone, so it was deleted with the cut: a crash now rebuilds the same table.
    log.append(batch("plain", 10, T0), Epoch(2))
        .expect("append");
    assert!(log.end_offset() > end);
    let after = log.producer_table();
    drop(log);
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.producer_table(), after);

    // Deeper, into a closed segment: producer 2 loses its last five batches.
    log.truncate_to(LogOffset(30)).expect("truncate");
    let p2 = log.producers()[2];
    assert!(p2.last_offset < LogOffset(30));
    let next = p2.last_sequence + 1;
    assert!(
        !log.append(idem(2, 1, next, 2), Epoch(2))
            .expect("append")
            .duplicate
    );
    let after = log.producer_table();
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), options(400, 64), &clock);
    assert_eq!(log.producer_table(), after);
}

#[test]
fn truncating_or_resetting_below_the_start_forgets_every_producer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    log.append(idem(1, 0, 0, 2), Epoch(1)).expect("append");
    log.roll().expect("roll");
    log.reset_to(LogOffset(100)).expect("reset");
    assert!(log.producers().is_empty());
    // Another producer 1 instance... or the same one, whose state is gone: accepted.
    log.append(idem(1, 0, 7, 1), Epoch(2)).expect("append");
    log.truncate_to(LogOffset(50))
        .expect("truncate below the start");
    assert!(log.producers().is_empty());
    drop(log);
    let log = open(dir.path(), options(1 << 20, 64), &clock);
    assert!(
        log.producers().is_empty(),
        "no snapshot of the old log is used"
    );
}

#[test]
fn a_follower_that_becomes_leader_rejects_a_retry_as_a_duplicate() {
    let (leader_dir, follower_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let clock = ManualClock::new(T0);
    let leader = open(leader_dir.path(), options(1 << 20, 64), &clock);
    let follower = open(follower_dir.path(), options(1 << 20, 64), &clock);
    let mut originals = Vec::new();
    for i in 0..3 {
        originals.push(
            leader
                .append(idem(4, 0, i * 3, 3), Epoch(1))
                .expect("append"),
        );
    }
    for b in split_batches(
        leader
            .read(LogOffset(0), 1 << 20, LogOffset::MAX)
            .expect("read")
            .batches,
    ) {
        let b = b.expect("batch");
        follower
            .append_replicated(b.into_bytes())
            .expect("replicate");
    }
    assert_eq!(follower.producer_table(), leader.producer_table());
    // The leader dies; the follower leads epoch 2; the producer retries its last batch.
    follower.begin_epoch(Epoch(2)).expect("new epoch");
    let retry = follower.append(idem(4, 0, 6, 3), Epoch(2)).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, originals[2].base_offset);
    assert_eq!(follower.end_offset(), LogOffset(9));
}

#[test]
fn producers_idle_longer_than_the_expiration_are_forgotten_at_the_next_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut opts = options(1 << 20, 64);
    opts.producer_expiration = Duration::from_secs(3600);
    opts.segment_ms = Duration::from_secs(86_400); // no roll by age on the way
    let log = open(dir.path(), opts.clone(), &clock);
    log.append(idem_at(1, 0, 0, 1, T0), Epoch(1))
        .expect("append");
    clock.advance(Duration::from_secs(2 * 3600));
    let now = T0 + 2 * 3_600_000_000;
    log.append(idem_at(2, 0, 0, 1, now), Epoch(1))
        .expect("append");
    assert_eq!(
        log.producers().len(),
        2,
        "only dropped when a snapshot is written"
    );
    log.roll().expect("roll");
    let ids: Vec<i64> = log.producers().iter().map(|p| p.producer_id).collect();
    assert_eq!(ids, vec![2]);
    // Producer 1 is unknown again: any sequence is accepted.
    let info = log
        .append(idem_at(1, 0, 9, 1, now), Epoch(1))
        .expect("append");
    assert!(!info.duplicate);
    // The table after a crash agrees.
    let before = log.producer_table();
    drop(log);
    let log = open(dir.path(), opts, &clock);
    assert_eq!(log.producer_table(), before);
}
