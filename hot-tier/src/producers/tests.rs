//! The idempotent-producer rules on the bare table (no log, no disk), and the snapshot format.

use bytes::Bytes;
use proptest::prelude::*;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};

use super::snapshot::{decode, encode};
use super::*;

const T0: i64 = 1_700_000_000_000_000;

fn batch(producer_id: i64, epoch: i16, first_seq: i32, record_count: u32) -> ProducerBatch {
    ProducerBatch {
        producer_id,
        epoch,
        first_seq,
        record_count,
        max_timestamp: T0,
    }
}

/// A table plus a dense offset counter: what the leader's append does with it.
#[derive(Default)]
struct Leader {
    table: ProducerStateTable,
    end: u64,
}

impl Leader {
    /// Checks `b`; if it is to be appended, records it at the end. Returns the verdict and
    /// where the batch is (the original's place for a duplicate).
    fn append(&mut self, b: ProducerBatch) -> Result<(Verdict, u64, u64), HotError> {
        match self.table.check(&b)? {
            Verdict::Append => {
                let (base, last) = (self.end, self.end + u64::from(b.record_count) - 1);
                self.table.record(&b, base, last);
                self.end = last + 1;
                Ok((Verdict::Append, base, last))
            }
            Verdict::Duplicate(m) => Ok((Verdict::Duplicate(m), m.base_offset, m.last_offset)),
        }
    }
}

fn is_out_of_order(r: Result<(Verdict, u64, u64), HotError>, expected: i32, got: i32) -> bool {
    matches!(r, Err(HotError::OutOfOrderSequence { expected: e, got: g, .. }) if e == expected && g == got)
}

#[test]
fn an_unknown_producer_is_accepted_at_any_sequence_and_must_then_continue_it() {
    let mut l = Leader::default();
    // Its state may have expired: a first batch at 42 is fine.
    assert_eq!(
        l.append(batch(7, 0, 42, 3)).expect("first").0,
        Verdict::Append
    );
    assert!(is_out_of_order(l.append(batch(7, 0, 46, 1)), 45, 46));
    assert!(is_out_of_order(l.append(batch(7, 0, 44, 2)), 45, 44));
    assert_eq!(
        l.append(batch(7, 0, 45, 1)).expect("next").0,
        Verdict::Append
    );
    // Producers are independent.
    assert_eq!(
        l.append(batch(8, 0, 0, 1)).expect("other").0,
        Verdict::Append
    );
}

#[test]
fn an_older_producer_epoch_is_fenced() {
    let mut l = Leader::default();
    l.append(batch(1, 3, 0, 2)).expect("epoch 3");
    let err = l.append(batch(1, 2, 2, 1)).expect_err("epoch 2 is older");
    assert!(matches!(
        err,
        HotError::ProducerFenced {
            producer_id: 1,
            epoch: 2,
            current: 3
        }
    ));
    assert_eq!(l.end, 2, "nothing recorded");
}

#[test]
fn a_newer_epoch_must_start_at_sequence_zero_and_forgets_the_old_batches() {
    let mut l = Leader::default();
    l.append(batch(1, 0, 0, 2)).expect("epoch 0");
    assert!(is_out_of_order(l.append(batch(1, 1, 2, 1)), 0, 2));
    let (v, base, _) = l.append(batch(1, 1, 0, 2)).expect("epoch 1 from 0");
    assert_eq!((v, base), (Verdict::Append, 2));
    // The same sequence range under the old epoch is fenced, not a duplicate.
    assert!(matches!(
        l.append(batch(1, 0, 0, 2)),
        Err(HotError::ProducerFenced { current: 1, .. })
    ));
    // Under the new epoch, [0, 1] is the new batch.
    let (v, base, _) = l.append(batch(1, 1, 0, 2)).expect("retry");
    assert!(matches!(v, Verdict::Duplicate(_)));
    assert_eq!(base, 2);
}

#[test]
fn a_retry_of_any_of_the_last_five_batches_is_a_duplicate_with_its_original_offsets() {
    let mut l = Leader::default();
    let mut placed = Vec::new();
    for i in 0..7 {
        let (_, base, last) = l.append(batch(5, 0, i * 2, 2)).expect("append");
        placed.push((base, last));
        l.append(batch(6, 0, i, 1)).expect("someone else");
    }
    let end = l.end;
    for i in 2..7 {
        let (v, base, last) = l.append(batch(5, 0, i * 2, 2)).expect("retry");
        assert!(matches!(v, Verdict::Duplicate(_)), "batch {i}");
        assert_eq!((base, last), placed[i as usize]);
    }
    assert_eq!(l.end, end, "duplicates are not recorded");
    // The sixth most recent is forgotten: only "out of order" can be said about it.
    assert!(is_out_of_order(l.append(batch(5, 0, 2, 2)), 14, 2));
    // A batch overlapping a remembered one but not equal to it is no duplicate.
    assert!(is_out_of_order(l.append(batch(5, 0, 12, 1)), 14, 12));
    assert!(is_out_of_order(l.append(batch(5, 0, 12, 3)), 14, 12));
}

#[test]
fn sequences_wrap_from_i32_max_to_zero() {
    assert_eq!(add_sequence(i32::MAX, 1), 0);
    assert_eq!(add_sequence(i32::MAX - 2, 4), 1);
    assert_eq!(add_sequence(5, 0), 5);
    // MAX - 2, MAX - 1, MAX, 0.
    assert_eq!(batch(1, 0, i32::MAX - 2, 4).last_seq(), 0);
    let mut l = Leader::default();
    l.append(batch(1, 0, i32::MAX - 5, 3))
        .expect("up to MAX - 3");
    l.append(batch(1, 0, i32::MAX - 2, 4))
        .expect("MAX - 2 ..= 0");
    assert!(matches!(
        l.append(batch(1, 0, i32::MAX - 2, 4)).expect("retry").0,
        Verdict::Duplicate(_)
    ));
    assert!(is_out_of_order(l.append(batch(1, 0, 0, 1)), 1, 0));
    assert_eq!(
        l.append(batch(1, 0, 1, 1)).expect("next").0,
        Verdict::Append
    );
    let p = l.table.describe();
    assert_eq!((p[0].last_sequence, p[0].last_offset), (1, LogOffset(7)));
}

#[test]
fn malformed_producer_fields_are_refused_by_the_leader_and_ignored_when_recorded() {
    let mut t = ProducerStateTable::new();
    for b in [batch(1, -1, 0, 1), batch(1, 0, -5, 1), batch(1, 0, 0, 0)] {
        assert!(matches!(t.check(&b), Err(HotError::InvalidBatch(_))));
        t.record(&b, 0, 0);
    }
    assert_eq!(t.len(), 0);
}

#[test]
fn recording_follows_the_log_without_checks() {
    // A follower copies what its leader wrote, even what this table would have refused
    // (the leader's state for the producer may have expired).
    let mut t = ProducerStateTable::new();
    t.record(&batch(1, 5, 0, 1), 0, 0);
    t.record(&batch(1, 4, 9, 1), 1, 1);
    let p = t.describe();
    assert_eq!((p[0].epoch, p[0].last_sequence), (4, 9));
    assert_eq!(
        t.check(&batch(1, 4, 10, 1)).expect("continues"),
        Verdict::Append
    );
}

#[test]
fn producers_idle_for_the_expiration_are_dropped() {
    let mut t = ProducerStateTable::new();
    let day = 86_400_000_000;
    let at = |id, ts| ProducerBatch {
        max_timestamp: ts,
        ..batch(id, 0, 0, 1)
    };
    t.record(&at(1, T0), 0, 0);
    t.record(&at(2, T0 + day), 1, 1);
    let week = Duration::from_secs(7 * 86_400);
    assert_eq!(t.expire(T0 + 7 * day - 1, week), 0);
    assert_eq!(t.expire(T0 + 7 * day, week), 1, "exactly a week idle");
    assert_eq!(
        t.describe()
            .iter()
            .map(|p| p.producer_id)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn header_fields_decode_like_the_batch_accessors() {
    let mut b = BatchBuilder::new(Compression::None).with_producer(0x0102_0304_0506, 7, 99);
    for ts in [T0 + 5, T0 + 9, T0] {
        b.push(&NewRecord {
            timestamp: ts,
            value: Some(Bytes::from_static(b"v")),
            ..NewRecord::default()
        });
    }
    let batch = Batch::parse(b.build().expect("build")).expect("parse");
    let from_batch = ProducerBatch::of(&batch).expect("idempotent");
    let from_header = ProducerBatch::from_header(&batch.as_bytes()[..HEADER_LEN]);
    assert_eq!(from_header, Some(from_batch));
    assert_eq!(
        from_batch,
        ProducerBatch {
            producer_id: 0x0102_0304_0506,
            epoch: 7,
            first_seq: 99,
            record_count: 3,
            max_timestamp: T0 + 9,
        }
    );
    let mut plain = BatchBuilder::new(Compression::None);
    plain.push(&NewRecord::default());
    let plain = Batch::parse(plain.build().expect("build")).expect("parse");
    assert_eq!(ProducerBatch::of(&plain), None);
    assert_eq!(
        ProducerBatch::from_header(&plain.as_bytes()[..HEADER_LEN]),
        None
    );
    assert_eq!(ProducerBatch::from_header(&[0u8; 10]), None, "too short");
}

/// Producer 3 with two batches at epoch 1, producer 10 with one at epoch 0.
fn sample_table() -> ProducerStateTable {
    let mut t = ProducerStateTable::new();
    t.record(&batch(10, 0, 0, 1), 0, 0);
    t.record(&batch(3, 1, 0, 2), 1, 2);
    t.record(&batch(3, 1, 2, 1), 3, 3);
    t
}

/// The version-1 bytes of `sample_table()` at offset 4: this format is on disk, so it must
/// never change silently (a new format gets a new version number).
const GOLDEN: &str = concat!(
    "50595053",
    "0100",
    "cf0d4de1", // magic, version, CRC
    "0400000000000000",
    "02000000", // offset 4, two producers
    // producer 3, epoch 1, two batches: seq [0,1] at [1,2]; seq [2,2] at [3,3]; ts T0
    "0300000000000000",
    "0100",
    "02",
    "00000000",
    "01000000",
    "0100000000000000",
    "0200000000000000",
    "00401e18240a0600",
    "02000000",
    "02000000",
    "0300000000000000",
    "0300000000000000",
    "00401e18240a0600",
    // producer 10, epoch 0, one batch: seq [0,0] at [0,0]
    "0a00000000000000",
    "0000",
    "01",
    "00000000",
    "00000000",
    "0000000000000000",
    "0000000000000000",
    "00401e18240a0600",
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_snapshot_format_is_frozen() {
    let bytes = encode(4, &sample_table());
    assert_eq!(hex(&bytes), GOLDEN);
    let (offset, table) = decode(&bytes).expect("decode");
    assert_eq!((offset, table), (4, sample_table()));
}

#[test]
fn an_empty_table_round_trips() {
    let bytes = encode(0, &ProducerStateTable::new());
    assert_eq!(bytes.len(), 22);
    assert_eq!(
        decode(&bytes).expect("decode"),
        (0, ProducerStateTable::new())
    );
}

#[test]
fn a_snapshot_whose_batches_reach_its_offset_is_refused() {
    // Offset 3 would not cover the batch at [3, 3].
    let bytes = encode(3, &sample_table());
    let why = decode(&bytes).expect_err("inconsistent");
    assert!(why.contains("does not fit"), "{why}");
}

proptest! {
    #[test]
    fn damaged_snapshot_bytes_are_refused_never_panic(
        at in 0usize..200,
        flip in 1u8..=255,
        cut in 0usize..200,
    ) {
        let good = encode(4, &sample_table());
        let mut flipped = good.clone();
        let i = at % good.len();
        flipped[i] ^= flip;
        prop_assert!(decode(&flipped).is_err(), "flipped byte {}", i);
        let cut = cut % good.len();
        prop_assert!(decode(&good[..cut]).is_err(), "cut at {}", cut);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
    }
}
