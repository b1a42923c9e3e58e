//! A ledger log's chain journal: the head after every batch, kept in step with the data.

use std::path::Path;

use pyralog_ledger::{genesis, Hash, RecordHasher};
use pyralog_types::batch::reseal;

use super::*;

fn ledger_options(segment_bytes: u64) -> PartitionOptions {
    PartitionOptions {
        ledger_genesis: Some(genesis("orders", 0)),
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
        ..options(segment_bytes, 256)
    }
}

/// The chain head after every record below `end`, computed from what the log returns.
fn expected_head(log: &PartitionLog, end: u64) -> Hash {
    let mut hasher = RecordHasher::new(genesis("orders", 0));
    for r in read_all(log, 0).iter().filter(|r| r.offset.0 < end) {
        hasher.push(r);
    }
    hasher.chain()
}

/// Appends `batches` batches of 3 records; returns each batch's end offset.
fn fill(log: &PartitionLog, batches: usize) -> Vec<u64> {
    (0..batches)
        .map(|i| {
            let tag = format!("v{i:03}");
            log.append(batch(&tag, 3, T0 + i as i64), Epoch(1))
                .expect("append")
                .end_offset
                .0
        })
        .collect()
}

/// Changes the value `from` into `to` (same length) in whichever segment holds it and
/// recomputes that batch's CRC: damage no CRC check can see.
fn tamper(dir: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read segment");
        let Some(at) = bytes.windows(from.len()).position(|w| w == from.as_bytes()) else {
            continue;
        };
        bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
        // Reseal every batch: only the edited one changes.
        let mut pos = 0;
        while pos < bytes.len() {
            let size = pyralog_types::batch::peek_size(&bytes[pos..]).expect("framing");
            reseal(&mut bytes[pos..pos + size]);
            pos += size;
        }
        std::fs::write(&path, bytes).expect("write segment");
        return;
    }
    panic!("no segment holds {from}");
}

#[test]
fn a_ledger_log_keeps_the_chain_head_after_every_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), ledger_options(1024), &clock);
    assert_eq!(
        log.chain_head_at(LogOffset(0)).expect("head"),
        Some(genesis("orders", 0))
    );
    let ends = fill(&log, 20);
    assert!(
        log.segments().len() > 2,
        "the batches span several segments"
    );
    for end in &ends {
        assert_eq!(
            log.chain_head_at(LogOffset(*end)).expect("head"),
            Some(expected_head(&log, *end)),
            "head after offset {end}"
        );
    }
    assert_eq!(
        log.chain_head_at(LogOffset(1)).expect("head"),
        None,
        "inside a batch"
    );
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(60), expected_head(&log, 60)))
    );
    assert_eq!(
        log.verify_chain(LogOffset(0), LogOffset(60))
            .expect("verify"),
        None
    );
}

/// The hashing is off the append lock but before the append returns: each append comes back
/// with its batch in the journal, and appends racing from several threads are chained in the
/// order the log stored them.
#[test]
fn concurrent_appends_are_chained_in_log_order_before_they_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), ledger_options(1 << 20), &clock);
    let journal_entries = || {
        std::fs::metadata(dir.path().join(crate::chain::CHAIN_FILE))
            .expect("journal")
            .len()
            / 40
    };
    assert_eq!(journal_entries(), 1, "the genesis seed");
    fill(&log, 3);
    assert_eq!(journal_entries(), 4, "each append returns chained");
    std::thread::scope(|s| {
        for t in 0..4 {
            let log = &log;
            s.spawn(move || {
                for i in 0..25 {
                    log.append(batch(&format!("t{t}-{i:02}"), 3, T0 + i), Epoch(1))
                        .expect("append");
                }
            });
        }
    });
    assert_eq!(journal_entries(), 4 + 100);
    let end = log.end_offset().0;
    assert_eq!(end, 3 * 103);
    for at in (0..=end).step_by(3) {
        assert_eq!(
            log.chain_head_at(LogOffset(at)).expect("head"),
            Some(expected_head(&log, at)),
            "head after offset {at}"
        );
    }
}

#[test]
fn a_version_2_ledger_keeps_chaining_with_the_version_2_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let v2 = PartitionOptions {
        ledger_chain: pyralog_ledger::ChainVersion::V2,
        ..ledger_options(1024)
    };
    let log = open(dir.path(), v2.clone(), &clock);
    let ends = fill(&log, 6);
    let end = *ends.last().expect("appended");
    let mut hasher =
        RecordHasher::with_version(genesis("orders", 0), pyralog_ledger::ChainVersion::V2);
    for r in read_all(&log, 0) {
        hasher.push(&r);
    }
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(end), hasher.chain()))
    );
    assert_ne!(hasher.chain(), expected_head(&log, end), "v3 differs");
    log.close().expect("close");
    drop(log);
    // Recomputed from the data on open (journal lost) with the same step.
    std::fs::remove_file(dir.path().join(crate::chain::CHAIN_FILE)).expect("rm journal");
    let log = open(dir.path(), v2, &clock);
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(end), hasher.chain()))
    );
    assert_eq!(
        log.verify_chain(LogOffset(0), LogOffset(end))
            .expect("verify"),
        None
    );
}

#[test]
fn a_log_that_is_not_a_ledger_has_no_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1024, 256), &clock);
    fill(&log, 3);
    assert!(!log.is_ledger());
    assert_eq!(log.chain_end().expect("journal"), None);
    assert!(!dir.path().join("ledger.chain").exists());
}

#[test]
fn the_chain_survives_a_clean_restart_and_a_crash_that_lost_the_journal_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), ledger_options(1024), &clock);
        fill(&log, 10);
        log.close().expect("close");
    }
    {
        let log = open(dir.path(), ledger_options(1024), &clock);
        assert_eq!(
            log.chain_end().expect("journal"),
            Some((LogOffset(30), expected_head(&log, 30)))
        );
        fill(&log, 5);
        // A crash: no close, and the journal lost its last six entries (never fsynced).
    }
    let journal = dir.path().join("ledger.chain");
    let len = std::fs::metadata(&journal).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open");
    f.set_len(len - 6 * 40 - 7).expect("cut a torn tail");
    drop(f);
    let log = open(dir.path(), ledger_options(1024), &clock);
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(45), expected_head(&log, 45))),
        "recomputed from the data"
    );
    assert_eq!(
        log.verify_chain(LogOffset(0), LogOffset(45))
            .expect("verify"),
        None
    );
    let next = log.append(batch("after", 2, T0), Epoch(2)).expect("append");
    assert_eq!(
        log.chain_head_at(next.end_offset).expect("head"),
        Some(expected_head(&log, 47))
    );
}

#[test]
fn a_journal_entry_ahead_of_the_data_is_cut_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), ledger_options(1 << 20), &clock);
        fill(&log, 4);
    }
    // A crash after the entry was written, before its batch reached the segment.
    let journal = dir.path().join("ledger.chain");
    let mut bytes = std::fs::read(&journal).expect("read");
    let mut ahead = 99u64.to_be_bytes().to_vec();
    ahead.extend([7u8; 32]);
    bytes.extend(ahead);
    std::fs::write(&journal, bytes).expect("write");
    let log = open(dir.path(), ledger_options(1 << 20), &clock);
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(12), expected_head(&log, 12)))
    );
}

#[test]
fn truncation_cuts_the_chain_and_appends_continue_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), ledger_options(1024), &clock);
    fill(&log, 12);
    log.truncate_to(LogOffset(19))
        .expect("truncate inside a batch");
    assert_eq!(log.end_offset(), LogOffset(18));
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(18), expected_head(&log, 18)))
    );
    assert_eq!(log.chain_head_at(LogOffset(21)).expect("head"), None, "cut");
    let next = log.append(batch("new", 4, T0), Epoch(2)).expect("append");
    assert_eq!(next.end_offset, LogOffset(22));
    assert_eq!(
        log.chain_head_at(LogOffset(22)).expect("head"),
        Some(expected_head(&log, 22))
    );
    assert_eq!(
        log.verify_chain(LogOffset(0), LogOffset(22))
            .expect("verify"),
        None
    );
}

#[test]
fn a_record_altered_on_disk_with_a_valid_crc_is_named_by_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), ledger_options(1024), &clock);
        fill(&log, 12);
        log.close().expect("close");
    }
    // Batch 7 holds offsets 21..24; its record 1 is "v007-1".
    tamper(dir.path(), "v007-1", "v007-X");
    let log = open(dir.path(), ledger_options(1024), &clock);
    // Nothing else notices: the CRC is valid and the record reads back altered.
    let altered = read_all(&log, 0);
    assert_eq!(altered[22].value.as_deref(), Some(&b"v007-X"[..]));
    let mismatch = log
        .verify_chain(LogOffset(0), LogOffset(36))
        .expect("verify")
        .expect("the chain catches it");
    assert_eq!(
        (mismatch.offset, mismatch.end),
        (LogOffset(21), LogOffset(24))
    );
    assert!(mismatch.detail.contains("21..24"), "{}", mismatch.detail);
    // The range before it is intact.
    assert_eq!(
        log.verify_chain(LogOffset(0), LogOffset(21))
            .expect("verify"),
        None
    );
}

#[test]
fn a_reset_log_has_an_unknown_chain_until_it_is_seeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), ledger_options(1024), &clock);
    fill(&log, 2);
    log.reset_to(LogOffset(100)).expect("reset");
    assert_eq!(log.chain_end().expect("journal"), None);
    assert!(
        !log.seed_chain(LogOffset(99), &[1; 32]).expect("seed"),
        "not the log end"
    );
    assert!(log.seed_chain(LogOffset(100), &[5; 32]).expect("seed"));
    assert!(
        !log.seed_chain(LogOffset(100), &[6; 32]).expect("seed"),
        "only once"
    );
    let next = log.append(batch("x", 2, T0), Epoch(1)).expect("append");
    let mut hasher = RecordHasher::new([5; 32]);
    for r in read_all(&log, 100) {
        hasher.push(&r);
    }
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((next.end_offset, hasher.chain()))
    );
}

#[test]
fn deleting_segments_from_the_start_prunes_the_journal_but_keeps_the_head_at_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), ledger_options(1024), &clock);
    fill(&log, 20);
    let full = std::fs::metadata(dir.path().join("ledger.chain"))
        .expect("stat")
        .len();
    let head_at_start = |log: &PartitionLog| {
        let start = log.start_offset();
        log.chain_head_at(start).expect("head")
    };
    let before: Vec<_> = log.segments();
    let cut = before[2].base_offset;
    let expected = expected_head(&log, cut.0);
    log.delete_segments_below(cut).expect("delete");
    assert_eq!(log.start_offset(), cut);
    assert_eq!(head_at_start(&log), Some(expected));
    let pruned = std::fs::metadata(dir.path().join("ledger.chain"))
        .expect("stat")
        .len();
    assert!(pruned < full, "{pruned} < {full}");
    log.close().expect("close");
    let log = open(dir.path(), ledger_options(1024), &clock);
    assert_eq!(head_at_start(&log), Some(expected));
    assert_eq!(
        log.verify_chain(cut, log.end_offset()).expect("verify"),
        None
    );
}

#[test]
fn a_journal_ending_inside_a_batch_is_cut_back_and_recomputed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), ledger_options(1 << 20), &clock);
        fill(&log, 4);
    }
    // A crash left entries of another history: the journal ends at 7, inside the batch 6..9.
    let journal = dir.path().join("ledger.chain");
    let mut bytes = std::fs::read(&journal).expect("read");
    bytes.truncate(3 * 40); // genesis, 3, 6
    bytes.extend(7u64.to_be_bytes());
    bytes.extend([9u8; 32]);
    std::fs::write(&journal, bytes).expect("write");
    let log = open(dir.path(), ledger_options(1 << 20), &clock);
    assert_eq!(
        log.chain_end().expect("journal"),
        Some((LogOffset(12), expected_head(&log, 12)))
    );
    assert_eq!(log.chain_head_at(LogOffset(7)).expect("head"), None);
    assert_eq!(
        log.verify_chain(LogOffset(0), LogOffset(12))
            .expect("verify"),
        None
    );
}
