//! Specification of batch validation: the hostile batches of issue 14 each refused with the
//! field named, compacted batches still accepted from a leader, and decompression bounded.

use bytes::Bytes;
use proptest::prelude::*;

use super::super::{
    assign, Batch, BatchBuilder, BatchError, Compression, NewRecord, CRC_START, HEADER_LEN,
    OFF_ATTRIBUTES, OFF_CRC, OFF_FIRST_TS, OFF_LAST_OFFSET_DELTA, OFF_LENGTH, OFF_MAX_TS,
    OFF_RECORD_COUNT,
};
use super::{BatchRules, OffsetRule};
use crate::ids::{Epoch, LogOffset};
use crate::record::Header;

const PRODUCE: BatchRules = BatchRules {
    offsets: OffsetRule::Dense,
    max_record_bytes: 1 << 20,
    max_uncompressed_bytes: 8 << 20,
};

fn rec(ts: i64, value: Option<&'static [u8]>) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: Some(Bytes::from_static(b"k")),
        value: value.map(Bytes::from_static),
        headers: Vec::new(),
    }
}

fn built(compression: Compression, records: &[NewRecord]) -> Bytes {
    let mut b = BatchBuilder::new(compression);
    for r in records {
        b.push(r);
    }
    b.build().expect("build")
}

/// Two records at deltas `deltas` (pushed with `push_at`, so the header agrees with them).
fn at_deltas(deltas: &[u32]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, d) in deltas.iter().enumerate() {
        b.push_at(*d, &rec(100 + i as i64, Some(b"v")))
            .expect("increasing");
    }
    b.build().expect("build")
}

/// Recomputes the length and CRC, as a client forging a batch would.
fn reseal(mut v: Vec<u8>) -> Bytes {
    let len = (v.len() - 12) as u32;
    v[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&v[CRC_START..]);
    v[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(v)
}

/// `bytes` with `value` written at `at` and the CRC made valid again.
fn forged(bytes: &Bytes, at: usize, value: &[u8]) -> Bytes {
    let mut v = bytes.to_vec();
    v[at..at + value.len()].copy_from_slice(value);
    reseal(v)
}

/// A one-record zstd batch whose records region is `region` (declared length + frame).
fn with_region(region: &[u8]) -> Bytes {
    let mut v = built(Compression::Zstd(1), &[rec(1, Some(b"v"))])[..HEADER_LEN].to_vec();
    v.extend_from_slice(region);
    reseal(v)
}

/// One zstd frame holding `n` zeros, with its content size; compressed a MiB at a time.
fn zstd_zeros(n: u64, content_size: bool) -> Vec<u8> {
    use std::io::Write;
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).expect("encoder");
    if content_size {
        enc.set_pledged_src_size(Some(n)).expect("pledge");
    }
    enc.include_contentsize(content_size).expect("flag");
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..k]).expect("compress");
        left -= k as u64;
    }
    enc.finish().expect("finish")
}

fn region(declared: u32, frame: &[u8]) -> Vec<u8> {
    let mut r = declared.to_le_bytes().to_vec();
    r.extend_from_slice(frame);
    r
}

/// The error's text must name the field a client got wrong.
fn refused(bytes: Bytes, rules: &BatchRules, field: &str) -> BatchError {
    let batch = Batch::parse_verified(bytes).expect("framing and CRC are fine");
    let e = batch
        .validate_records(rules)
        .expect_err("the validator must refuse it");
    assert!(
        matches!(&e, BatchError::Inconsistent { field: f, .. } if *f == field),
        "expected a complaint about {field}, got: {e}"
    );
    e
}

#[test]
fn what_a_builder_makes_is_accepted_compressed_or_not() {
    let mut with_id = rec(3, Some(b"w"));
    with_id
        .headers
        .push(Header::dedup_id(Bytes::from_static(b"id-1")));
    let records = [rec(5, Some(b"a")), rec(2, None), with_id];
    for c in [Compression::None, Compression::Zstd(1)] {
        let batch = Batch::parse_verified(built(c, &records)).expect("valid");
        batch.validate_records(&PRODUCE).expect("a builder's batch");
        batch
            .validate_records(&BatchRules::replicate())
            .expect("and a follower takes it too");
    }
}

#[test]
fn a_gap_inside_a_produced_batch_is_refused() {
    // Issue 14: deltas 0 and 5 with last_offset_delta = 5 (offsets 1-4 would never exist).
    let e = refused(at_deltas(&[0, 5]), &PRODUCE, "last_offset_delta");
    assert!(e.to_string().contains("must be 1"), "{e}");
    // Dense count, but the first record is not at delta 0.
    refused(
        forged(
            &at_deltas(&[1, 2]),
            OFF_LAST_OFFSET_DELTA,
            &1u32.to_le_bytes(),
        ),
        &PRODUCE,
        "offset_delta",
    );
}

#[test]
fn a_last_offset_delta_beyond_the_records_is_refused() {
    let two = built(Compression::None, &[rec(1, Some(b"a")), rec(2, Some(b"b"))]);
    refused(
        forged(&two, OFF_LAST_OFFSET_DELTA, &7u32.to_le_bytes()),
        &PRODUCE,
        "last_offset_delta",
    );
    // One record claiming 2^32 offsets: the high watermark jumped by four billion.
    let one = built(Compression::Zstd(1), &[rec(1, Some(b"a"))]);
    refused(
        forged(&one, OFF_LAST_OFFSET_DELTA, &u32::MAX.to_le_bytes()),
        &PRODUCE,
        "last_offset_delta",
    );
}

#[test]
fn timestamps_in_the_header_must_be_the_records() {
    let b = built(
        Compression::None,
        &[rec(10, Some(b"a")), rec(30, Some(b"b"))],
    );
    // Below a record's timestamp: time lookups would skip the batch.
    let e = refused(
        forged(&b, OFF_MAX_TS, &20i64.to_le_bytes()),
        &PRODUCE,
        "max_timestamp",
    );
    assert!(e.to_string().contains("30"), "{e}");
    // Above every record: the time index would point at a time no record has.
    refused(
        forged(&b, OFF_MAX_TS, &31i64.to_le_bytes()),
        &PRODUCE,
        "max_timestamp",
    );
    // The first record's timestamp delta (zigzag 2 = +1) moves it off `first_timestamp`.
    let mut v = b.to_vec();
    assert_eq!(v[HEADER_LEN + 2], 0, "first record's timestamp delta");
    v[HEADER_LEN + 2] = 2;
    refused(reseal(v), &PRODUCE, "first_timestamp");
    // Moving `first_timestamp` moves every record with it: max_timestamp no longer fits.
    refused(
        forged(&b, OFF_FIRST_TS, &11i64.to_le_bytes()),
        &PRODUCE,
        "max_timestamp",
    );
}

#[test]
fn attributes_must_be_known_and_match_the_records() {
    let plain = built(Compression::None, &[rec(1, Some(b"a"))]);
    for bit in 4..16 {
        refused(
            forged(&plain, OFF_ATTRIBUTES, &(1u16 << bit).to_le_bytes()),
            &BatchRules::replicate(),
            "attributes",
        );
    }
    let e = refused(
        forged(&plain, OFF_ATTRIBUTES, &0b100u16.to_le_bytes()),
        &PRODUCE,
        "attributes",
    );
    assert!(e.to_string().contains("tombstone"), "{e}");
    let e = refused(
        forged(&plain, OFF_ATTRIBUTES, &0b1000u16.to_le_bytes()),
        &PRODUCE,
        "attributes",
    );
    assert!(e.to_string().contains("dedup-id"), "{e}");
    // A tombstone the flag does not announce.
    let tomb = built(Compression::None, &[rec(1, None)]);
    refused(
        forged(&tomb, OFF_ATTRIBUTES, &0u16.to_le_bytes()),
        &PRODUCE,
        "attributes",
    );
    // A record attribute byte: none is defined yet.
    let mut v = plain.to_vec();
    v[HEADER_LEN + 1] = 1;
    refused(reseal(v), &PRODUCE, "record attributes");
}

#[test]
fn a_follower_accepts_compacted_gaps_but_not_disorder() {
    let compacted = at_deltas(&[0, 5, 9]);
    let batch = Batch::parse_verified(compacted.clone()).expect("valid");
    batch
        .validate_records(&BatchRules::replicate())
        .expect("compaction keeps original offsets: gaps inside are fine");
    assert!(
        batch.validate_records(&PRODUCE).is_err(),
        "not from a producer"
    );
    // A record past the batch's range.
    let past = forged(&compacted, OFF_LAST_OFFSET_DELTA, &8u32.to_le_bytes());
    let e = Batch::parse_verified(past)
        .expect("framing")
        .validate_records(&BatchRules::replicate())
        .expect_err("a delta past last_offset_delta");
    assert_eq!(
        e,
        BatchError::Malformed("record offset deltas must increase within 0..=last_offset_delta")
    );
    // A follower checks timestamps too.
    refused(
        forged(&compacted, OFF_MAX_TS, &0i64.to_le_bytes()),
        &BatchRules::replicate(),
        "max_timestamp",
    );
}

#[test]
fn a_record_count_the_region_cannot_hold_is_an_error_not_an_allocation() {
    let one = built(Compression::None, &[rec(1, Some(b"a"))]);
    let mut v = one.to_vec();
    v[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    v[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let batch = Batch::parse_verified(reseal(v)).expect("framing");
    assert!(batch.records().is_err());
    assert!(batch.validate_records(&PRODUCE).is_err());
}

#[test]
fn a_zstd_bomb_is_refused_from_its_declared_size() {
    // Issue 14: a few KB that inflate to 256 MiB.
    let frame = zstd_zeros(256 << 20, true);
    assert!(frame.len() < 16 << 10, "{} bytes", frame.len());
    let bomb = with_region(&region(256 << 20, &frame));
    let batch = Batch::parse_verified(bomb).expect("framing");
    assert_eq!(
        batch.validate_records(&PRODUCE),
        Err(BatchError::UncompressedTooLarge {
            size: 256 << 20,
            limit: 8 << 20
        })
    );
    // Declaring a small length in front of the same frame is no way around it.
    let lying = with_region(&region(1000, &frame));
    let e = refused(lying, &PRODUCE, "uncompressed length");
    assert!(e.to_string().contains("268435456"), "{e}");
    // Nor is leaving the content size out of the frame.
    let no_size = with_region(&region(1000, &zstd_zeros(1 << 20, false)));
    let e = Batch::parse_verified(no_size)
        .expect("framing")
        .validate_records(&PRODUCE)
        .expect_err("a frame without its size");
    assert_eq!(
        e,
        BatchError::Malformed("the zstd frame does not declare its content size")
    );
}

#[test]
fn the_limit_is_the_callers_not_a_constant() {
    let records: Vec<NewRecord> = (0..64).map(|i| rec(i, Some(&[7u8; 200][..]))).collect();
    let bytes = built(Compression::Zstd(1), &records);
    let batch = Batch::parse_verified(bytes).expect("valid");
    let region = 64 * (200 + 10);
    let tight = BatchRules::produce(1 << 20, 1024);
    assert!(matches!(
        batch.validate_records(&tight),
        Err(BatchError::UncompressedTooLarge { limit: 1024, size }) if size as usize >= region
    ));
    batch
        .validate_records(&BatchRules::produce(1 << 20, 64 << 10))
        .expect("within a larger limit");
}

#[test]
fn decompression_never_produces_more_than_the_frame_declared() {
    // A frame whose header under-states its content: zstd must stop at the declared size.
    let mut frame = zstd_zeros(1 << 20, true);
    // Frame header: magic (4), descriptor; a 1 MiB size is stored as a 4-byte field.
    let descriptor = frame[4];
    assert_eq!(descriptor >> 6, 2, "4-byte content size field");
    let at = 5 + usize::from(descriptor & 0x20 == 0) + [0, 1, 2, 4][usize::from(descriptor & 3)];
    assert_eq!(frame[at..at + 4], (1u32 << 20).to_le_bytes());
    frame[at..at + 4].copy_from_slice(&4096u32.to_le_bytes());
    let batch = Batch::parse_verified(with_region(&region(4096, &frame))).expect("framing");
    assert!(matches!(
        batch.validate_records(&PRODUCE),
        Err(BatchError::Compression(_))
    ));
}

#[test]
fn trailing_bytes_after_the_frame_are_refused() {
    let bytes = built(Compression::Zstd(1), &[rec(1, Some(b"a"))]);
    let mut v = bytes.to_vec();
    v.extend_from_slice(b"junk");
    let batch = Batch::parse_verified(reseal(v)).expect("framing");
    assert_eq!(
        batch.validate_records(&PRODUCE),
        Err(BatchError::Malformed("bytes after the zstd frame"))
    );
}

#[test]
fn a_base_offset_near_the_end_of_the_range_does_not_overflow() {
    let mut v = built(Compression::None, &[rec(1, Some(b"a")), rec(2, Some(b"b"))]).to_vec();
    assign(&mut v, LogOffset(u64::MAX), Epoch(1));
    let batch = Batch::parse_verified(Bytes::from(v)).expect("valid");
    batch
        .validate_records(&PRODUCE)
        .expect("the leader assigns the base offset later");
}

fn arb_record() -> impl Strategy<Value = NewRecord> {
    (
        -1_000i64..1_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        any::<bool>(),
    )
        .prop_map(|(ts, value, dedup)| NewRecord {
            timestamp: 1_700_000_000_000_000 + ts,
            key: None,
            value: value.map(Bytes::from),
            headers: if dedup {
                vec![Header::dedup_id(Bytes::from_static(b"id"))]
            } else {
                Vec::new()
            },
        })
}

/// One hostile edit of an encoded batch: a header field set to any value, or a byte of the
/// records region changed; the CRC is recomputed, so only validation stands in the way.
#[derive(Debug, Clone)]
enum Mutation {
    Field {
        at: usize,
        width: usize,
        value: u64,
    },
    Byte {
        index: prop::sample::Index,
        value: u8,
    },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let field = prop_oneof![
        Just((OFF_ATTRIBUTES, 2)),
        Just((OFF_LAST_OFFSET_DELTA, 4)),
        Just((OFF_RECORD_COUNT, 4)),
        Just((OFF_FIRST_TS, 8)),
        Just((OFF_MAX_TS, 8)),
    ];
    let small = prop_oneof![0u64..16, any::<u64>()];
    prop_oneof![
        (field, small).prop_map(|((at, width), value)| Mutation::Field { at, width, value }),
        (any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(index, value)| Mutation::Byte { index, value }),
    ]
}

fn mutate(bytes: &Bytes, m: &Mutation) -> Bytes {
    let mut v = bytes.to_vec();
    match m {
        Mutation::Field { at, width, value } => {
            v[*at..*at + *width].copy_from_slice(&value.to_le_bytes()[..*width]);
        }
        Mutation::Byte { index, value } => {
            let i = HEADER_LEN + index.index(v.len() - HEADER_LEN);
            v[i] = *value;
        }
    }
    reseal(v)
}

/// What an accepted batch promises the log: dense offsets from its base, a count and last
/// offset that match them, and header timestamps that are the records'.
fn assert_dense(batch: &Batch) -> Result<(), TestCaseError> {
    let records = batch
        .records()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let base = batch.base_offset().0;
    let offsets: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
    let expected: Vec<u64> = (base..=batch.last_offset().0).collect();
    prop_assert_eq!(offsets, expected);
    prop_assert_eq!(records.len() as u64, u64::from(batch.record_count()));
    prop_assert_eq!(records[0].timestamp, batch.first_timestamp());
    let max = records.iter().map(|r| r.timestamp).max();
    prop_assert_eq!(max, Some(batch.max_timestamp()));
    Ok(())
}

proptest! {
    #[test]
    fn accepted_batches_make_a_gap_free_log(
        batches in proptest::collection::vec(
            (proptest::collection::vec(arb_record(), 1..12), any::<bool>()), 1..8),
    ) {
        // Appending accepted batches like a leader (base offset = log end) gives offsets
        // 0..n with no gap: the end offset (standalone, the high watermark) is the count.
        let mut end = 0u64;
        let mut count = 0u64;
        let mut offsets = Vec::new();
        for (records, zstd) in &batches {
            let c = if *zstd { Compression::Zstd(1) } else { Compression::None };
            let mut v = built(c, records).to_vec();
            assign(&mut v, LogOffset(end), Epoch(1));
            let batch = Batch::parse_verified(Bytes::from(v)).expect("valid");
            batch.validate_records(&PRODUCE).expect("a builder's batch is accepted");
            assert_dense(&batch)?;
            offsets.extend(batch.records().expect("decode").iter().map(|r| r.offset.0));
            count += records.len() as u64;
            end = batch.last_offset().0 + 1;
        }
        prop_assert_eq!(end, count);
        prop_assert_eq!(offsets, (0..count).collect::<Vec<_>>());
    }

    #[test]
    fn a_mutated_batch_is_refused_or_still_dense(
        records in proptest::collection::vec(arb_record(), 1..8),
        zstd in any::<bool>(),
        mutations in proptest::collection::vec(arb_mutation(), 1..3),
    ) {
        let c = if zstd { Compression::Zstd(1) } else { Compression::None };
        let mut bytes = built(c, &records);
        for m in &mutations {
            bytes = mutate(&bytes, m);
        }
        let Ok(batch) = Batch::parse_verified(bytes) else { return Ok(()) };
        if batch.validate_records(&PRODUCE).is_ok() {
            assert_dense(&batch)?;
        }
    }
}

#[test]
fn header_bytes_count_toward_the_record_size_and_a_dedup_id_must_be_announced() {
    let with_headers = |value: &'static [u8], key: &str| NewRecord {
        headers: vec![Header {
            key: key.into(),
            value: Bytes::from_static(value),
        }],
        ..rec(1, Some(b"v"))
    };
    // Key (1) + value (1) + header key and value: over a 64-byte limit only with the header.
    let small = BatchRules {
        max_record_bytes: 64,
        ..PRODUCE
    };
    let fits = Batch::parse_verified(built(Compression::None, &[with_headers(&[7; 40], "h")]))
        .expect("valid");
    fits.validate_records(&small).expect("43 bytes fit");
    let over = Batch::parse_verified(built(Compression::None, &[with_headers(&[7; 70], "h")]))
        .expect("valid");
    assert!(matches!(
        over.validate_records(&small),
        Err(BatchError::RecordTooLarge {
            size: 73,
            limit: 64
        })
    ));
    // A dedup-id header in a batch whose attributes do not say so.
    let dedup = built(
        Compression::None,
        &[with_headers(b"id-1", super::super::DEDUP_ID_HEADER)],
    );
    let unannounced = forged(&dedup, OFF_ATTRIBUTES, &0u16.to_le_bytes());
    let e = refused(unannounced, &PRODUCE, "attributes");
    assert!(e.to_string().contains("dedup-id"), "{e}");
}
