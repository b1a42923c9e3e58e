//! What a follower stores, and what accepted batches do to the log's offsets.

use pyralog_types::batch::{assign, Batch, BatchRules};

use super::*;

// Header positions (see `pyralog_types::batch`).
const CRC: usize = 21;
const CRC_START: usize = 25;
const ATTRIBUTES: usize = 25;
const LAST_OFFSET_DELTA: usize = 27;
const MAX_TIMESTAMP: usize = 43;

/// `bytes` with `value` written at `at` and the CRC made valid again, as a forger would.
fn forged(bytes: &Bytes, at: usize, value: &[u8]) -> Bytes {
    let mut v = bytes.to_vec();
    v[at..at + value.len()].copy_from_slice(value);
    let crc = crc32c::crc32c(&v[CRC_START..]);
    v[CRC..CRC + 4].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(v)
}

/// The leader's stored copy of its first batch of two records.
fn leaders_copy() -> Bytes {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let leader = open(dir.path(), options(1 << 20, 64), &clock);
    leader.append(batch("l", 2, T0), Epoch(3)).expect("append");
    leader
        .read(LogOffset(0), 1 << 20, LogOffset::MAX)
        .expect("read")
        .batches
}

#[test]
fn a_follower_refuses_a_copy_that_fails_its_crc_or_contradicts_its_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let follower = open(dir.path(), options(1 << 20, 64), &clock);
    let good = leaders_copy();
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases = [
        (Bytes::from(flipped), "CRC"),
        (
            forged(&good, MAX_TIMESTAMP, &T0.to_le_bytes()),
            "max_timestamp",
        ),
        (
            forged(&good, LAST_OFFSET_DELTA, &0u32.to_le_bytes()),
            "a record past the batch's range",
        ),
        (
            forged(&good, ATTRIBUTES, &0x40u16.to_le_bytes()),
            "attributes",
        ),
    ];
    for (bytes, what) in cases {
        let e = follower
            .append_replicated(bytes)
            .expect_err("a follower checks what it copies");
        assert!(matches!(e, HotError::InvalidBatch(_)), "{what}: {e}");
        assert_eq!(
            follower.end_offset(),
            LogOffset(0),
            "{what}: nothing stored"
        );
    }
    follower.append_replicated(good).expect("the true copy");
    assert_eq!(follower.end_offset(), LogOffset(2));
}

#[test]
fn a_follower_copies_a_compacted_batch_with_gaps_inside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let follower = open(dir.path(), options(1 << 20, 64), &clock);
    // What key-based compaction leaves: records keep their original offsets 0, 3 and 7.
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    for (i, delta) in [0u32, 3, 7].into_iter().enumerate() {
        b.push_at(
            delta,
            &NewRecord {
                timestamp: T0 + i as i64,
                value: Some(Bytes::from_static(b"kept")),
                ..Default::default()
            },
        )
        .expect("increasing");
    }
    let mut v = b.build().expect("build").to_vec();
    assign(&mut v, LogOffset(0), Epoch(2));
    follower
        .append_replicated(Bytes::from(v))
        .expect("gaps inside a compacted batch are legitimate on replication");
    assert_eq!(follower.end_offset(), LogOffset(8));
    let offsets: Vec<u64> = read_all(&follower, 0).iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, vec![0, 3, 7]);
}

/// The leader's gate: what `validate_payload` runs before `append`.
fn accepted(bytes: &Bytes) -> bool {
    let rules = BatchRules::produce(1 << 20, 1 << 20);
    Batch::parse_verified(bytes.clone()).is_ok_and(|b| b.validate_records(&rules).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_log_of_accepted_batches_has_dense_offsets(
        batches in proptest::collection::vec((1usize..6, proptest::option::of(0u32..12)), 1..10),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let log = open(dir.path(), options(4096, 64), &clock);
        let mut count = 0u64;
        for (i, (n, lie)) in batches.iter().enumerate() {
            let mut bytes = batch("p", *n, T0 + i as i64 * 10);
            if let Some(delta) = lie {
                // A client's claim about last_offset_delta, honest or not.
                bytes = forged(&bytes, LAST_OFFSET_DELTA, &delta.to_le_bytes());
            }
            let honest = lie.is_none_or(|d| d as usize + 1 == *n);
            prop_assert_eq!(accepted(&bytes), honest, "batch {} of {} records, delta {:?}", i, n, lie);
            if honest {
                log.append(bytes, Epoch(1)).expect("append");
                count += *n as u64;
            }
        }
        // Standalone, the end offset is the high watermark: it counts the records exactly.
        prop_assert_eq!(log.end_offset(), LogOffset(count));
        let offsets: Vec<u64> = read_all(&log, 0).iter().map(|r| r.offset.0).collect();
        prop_assert_eq!(offsets, (0..count).collect::<Vec<_>>());
    }
}
