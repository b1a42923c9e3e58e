//! What a follower of a ledger log does with its leader's chain claims: a faithful copy
//! passes, a copy that already differs is not extended, copied batches that hash to anything
//! but the claim are cut off again, and a plain log is never checked.

use std::path::Path;

use bytes::Bytes;
use pyralog_hot_tier::{PartitionLog, PartitionOptions};
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, LogConfig, LogOffset};

use super::*;

fn open(dir: &Path, ledger: bool) -> PartitionLog {
    let options = PartitionOptions {
        ledger_genesis: ledger.then(|| pyralog_ledger::genesis("payments", 0)),
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
        ..PartitionOptions::from_config(&LogConfig::default())
    };
    PartitionLog::open(dir, options, pyralog_types::clock::system()).expect("open")
}

fn batch(tag: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..3 {
        b.push(&NewRecord {
            timestamp: 1_700_000_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Vec::new(),
        });
    }
    b.build().expect("batch")
}

/// A leader and a follower, each a ledger log (or each a plain one) in its own directory.
struct Pair {
    _dir: tempfile::TempDir,
    leader: PartitionLog,
    follower: PartitionLog,
}

fn pair(ledger: bool) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader = open(&dir.path().join("leader"), ledger);
    let follower = open(&dir.path().join("follower"), ledger);
    Pair {
        _dir: dir,
        leader,
        follower,
    }
}

/// One replication round as the follower task runs it: the leader's batches from the
/// follower's end with its claims, then check, append, check. `forge` changes the claim of
/// the head after the batches.
fn replicate(p: &Pair, forge: bool) -> Result<(), GatewayError> {
    let from = p.follower.end_offset();
    let read = p
        .leader
        .read(from, usize::MAX, p.leader.end_offset())
        .expect("leader read");
    let (before, mut after) =
        leader_claims(&p.leader, from, read.next_offset, !read.batches.is_empty())?;
    if forge {
        after[0] ^= 1;
    }
    check_before(&p.follower, &before)?;
    for b in pyralog_types::batch::split_batches(read.batches) {
        p.follower
            .append_replicated(b.expect("batch").into_bytes())
            .expect("append");
    }
    check_after(&p.follower, from, &after)
}

#[test]
fn a_faithful_copy_passes_both_checks_and_ends_at_the_leaders_head() {
    let p = pair(true);
    p.leader.append(batch("a"), Epoch(1)).expect("append");
    p.leader.append(batch("b"), Epoch(1)).expect("append");
    replicate(&p, false).expect("a faithful copy");
    p.leader.append(batch("c"), Epoch(1)).expect("append");
    replicate(&p, false).expect("the next round too");
    assert_eq!(p.follower.end_offset(), LogOffset(9));
    assert_eq!(
        p.follower.chain_end().expect("follower chain"),
        p.leader.chain_end().expect("leader chain")
    );
}

#[test]
fn copied_batches_that_miss_the_leaders_claim_are_cut_off_and_named() {
    let p = pair(true);
    p.leader.append(batch("a"), Epoch(1)).expect("append");
    replicate(&p, false).expect("first round");
    p.leader.append(batch("b"), Epoch(1)).expect("append");
    let err = replicate(&p, true).expect_err("a forged claim");
    let GatewayError::CorruptData(text) = err else {
        panic!("not CorruptData: {err:?}");
    };
    assert!(text.contains("offsets 3..6"), "{text}");
    assert_eq!(
        p.follower.end_offset(),
        LogOffset(3),
        "the batches that missed the claim are not kept"
    );
    replicate(&p, false).expect("a faithful round afterwards copies them");
    assert_eq!(
        p.follower.chain_end().expect("follower chain"),
        p.leader.chain_end().expect("leader chain")
    );
}

#[test]
fn a_copy_that_already_differs_is_not_extended() {
    let p = pair(true);
    p.leader.append(batch("a"), Epoch(1)).expect("append");
    // The follower holds other records at the same offsets (a different history).
    p.follower.append(batch("x"), Epoch(1)).expect("append");
    p.leader.append(batch("b"), Epoch(1)).expect("append");
    let err = replicate(&p, false).expect_err("different histories");
    assert!(
        matches!(&err, GatewayError::CorruptData(t) if t.contains("different records")),
        "{err:?}"
    );
    assert_eq!(p.follower.end_offset(), LogOffset(3), "nothing appended");
}

#[test]
fn a_plain_log_makes_no_claims_and_is_never_checked() {
    let p = pair(false);
    p.leader.append(batch("a"), Epoch(1)).expect("append");
    let (before, after) =
        leader_claims(&p.leader, LogOffset(0), LogOffset(3), true).expect("claims");
    assert!(before.is_empty() && after.is_empty());
    p.follower.append(batch("x"), Epoch(1)).expect("append");
    check_before(&p.follower, &[7; 32]).expect("not a ledger: not compared");
    check_after(&p.follower, LogOffset(0), &[7; 32]).expect("not a ledger: not compared");
}
