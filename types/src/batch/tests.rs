use super::*;
use proptest::prelude::*;

fn rec(ts: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: vec![],
    }
}

#[test]
fn golden_single_record_layout() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(&rec(1_000_000, Some(b"k"), Some(b"v")));
    let mut bytes = b.build().expect("build").to_vec();
    assign(&mut bytes, LogOffset(7), Epoch(3));
    // Header fields at their documented positions.
    assert_eq!(bytes.len(), HEADER_LEN + 9);
    assert_eq!(&bytes[0..8], &7u64.to_le_bytes());
    assert_eq!(&bytes[8..12], &((bytes.len() - 12) as u32).to_le_bytes());
    assert_eq!(&bytes[12..20], &3u64.to_le_bytes());
    assert_eq!(bytes[20], MAGIC);
    // One record: len=8, attr=0, ts_delta=0, off_delta=0, key len zigzag(1)=2, 'k',
    // value len 2, 'v', header count 0.
    assert_eq!(&bytes[HEADER_LEN..], &[8, 0, 0, 0, 2, b'k', 2, b'v', 0][..]);
    let batch = Batch::parse_verified(Bytes::from(bytes)).expect("valid");
    assert_eq!(batch.base_offset(), LogOffset(7));
    assert_eq!(batch.epoch(), Epoch(3));
    assert_eq!(batch.producer_id(), -1);
}

#[test]
fn assign_does_not_break_crc() {
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    for i in 0..10 {
        b.push(&rec(i, None, Some(b"hello")));
    }
    let mut bytes = b.build().expect("build").to_vec();
    assign(&mut bytes, LogOffset(u64::MAX - 20), Epoch(9));
    let batch = Batch::parse_verified(Bytes::from(bytes)).expect("valid");
    let recs = batch.records().expect("decode");
    assert_eq!(recs.len(), 10);
    assert_eq!(recs[9].offset, LogOffset(u64::MAX - 11));
}

#[test]
fn empty_batch_is_an_error() {
    assert_eq!(
        BatchBuilder::new(Compression::None).build(),
        Err(BatchError::Empty)
    );
}

#[test]
fn record_limit_enforced() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(&rec(0, Some(b"key"), Some(&[0u8; 100])));
    let batch = Batch::parse(b.build().expect("build")).expect("parse");
    assert!(batch
        .validate_records(&BatchRules::produce(103, 1 << 20))
        .is_ok());
    assert_eq!(
        batch.validate_records(&BatchRules::produce(102, 1 << 20)),
        Err(BatchError::RecordTooLarge {
            size: 103,
            limit: 102
        })
    );
}

fn arb_record() -> impl Strategy<Value = NewRecord> {
    (
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        proptest::collection::vec(
            ("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..16)),
            0..3,
        ),
    )
        .prop_map(|(ts, k, v, h)| NewRecord {
            timestamp: ts,
            key: k.map(Bytes::from),
            value: v.map(Bytes::from),
            headers: h
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: Bytes::from(value),
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn record_size_bound_covers_what_a_push_adds(records in proptest::collection::vec(arb_record(), 1..20)) {
        let mut b = BatchBuilder::new(Compression::None);
        for r in &records {
            let before = b.estimated_size();
            let bound = BatchBuilder::record_size_bound(r);
            b.push(r);
            prop_assert!(b.estimated_size() - before <= bound);
        }
    }

    #[test]
    fn round_trip(records in proptest::collection::vec(arb_record(), 1..40),
                  zstd in any::<bool>(), base in 0u64..1<<60, epoch in any::<u64>()) {
        let mut b = BatchBuilder::new(if zstd { Compression::Zstd(1) } else { Compression::None });
        for r in &records { b.push(r); }
        let mut bytes = b.build().expect("build").to_vec();
        assign(&mut bytes, LogOffset(base), Epoch(epoch));
        let batch = Batch::parse_verified(Bytes::from(bytes)).expect("valid");
        prop_assert_eq!(batch.record_count() as usize, records.len());
        prop_assert_eq!(batch.last_offset(), LogOffset(base + records.len() as u64 - 1));
        prop_assert_eq!(batch.max_timestamp(), records.iter().map(|r| r.timestamp).max().unwrap_or(0));
        let decoded = batch.records().expect("decode");
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(d.offset, LogOffset(base + i as u64));
            prop_assert_eq!(d.epoch, Epoch(epoch));
            prop_assert_eq!(d.timestamp, r.timestamp);
            prop_assert_eq!(&d.key, &r.key);
            prop_assert_eq!(&d.value, &r.value);
            prop_assert_eq!(&d.headers, &r.headers);
        }
    }

    #[test]
    fn any_flipped_byte_in_the_crc_region_is_detected(
        records in proptest::collection::vec(arb_record(), 1..5),
        pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut b = BatchBuilder::new(Compression::None);
        for r in &records { b.push(r); }
        let mut bytes = b.build().expect("build").to_vec();
        let at = 21 + pos.index(bytes.len() - 21);
        bytes[at] ^= flip;
        let res = Batch::parse_verified(Bytes::from(bytes));
        prop_assert!(res.is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let data = Bytes::from(data);
        for b in split_batches(data.clone()).flatten() {
            let _ = b.records();
            let _ = b.validate_records(&BatchRules::produce(10, 400));
            let _ = b.validate_records(&BatchRules::replicate());
        }
        if let Ok(b) = Batch::parse(data) { let _ = b.records(); }
    }

    #[test]
    fn split_recovers_concatenated_batches(n in 1usize..6) {
        let mut all = Vec::new();
        for i in 0..n {
            let mut b = BatchBuilder::new(Compression::None);
            b.push(&rec(i as i64, None, Some(b"x")));
            let mut bytes = b.build().expect("build").to_vec();
            assign(&mut bytes, LogOffset(i as u64), Epoch(1));
            all.extend_from_slice(&bytes);
        }
        let batches: Vec<_> = split_batches(Bytes::from(all)).collect::<Result<_, _>>().expect("ok");
        prop_assert_eq!(batches.len(), n);
        for (i, b) in batches.iter().enumerate() { prop_assert_eq!(b.base_offset(), LogOffset(i as u64)); }
    }
}

#[test]
fn explicit_offsets_with_gaps_round_trip() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push_at(0, &rec(1, Some(b"a"), Some(b"1")))
        .expect("first");
    b.push_at(10, &rec(2, Some(b"b"), Some(b"2"))).expect("gap");
    assert!(
        b.push_at(10, &rec(3, None, None)).is_err(),
        "not increasing"
    );
    let mut bytes = b.build().expect("build").to_vec();
    assign(&mut bytes, LogOffset(30), Epoch(1));
    let batch = Batch::parse_verified(Bytes::from(bytes)).expect("valid");
    assert_eq!(batch.record_count(), 2);
    assert_eq!(batch.last_offset(), LogOffset(40));
    let offsets: Vec<_> = batch
        .records()
        .expect("decode")
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, vec![LogOffset(30), LogOffset(40)]);
}

#[test]
fn header_alone_decodes_what_the_batch_reports() {
    let mut b = BatchBuilder::new(Compression::None);
    for ts in [5, 9, 7] {
        b.push(&NewRecord {
            timestamp: ts,
            value: Some(Bytes::from_static(b"v")),
            ..Default::default()
        });
    }
    let mut bytes = b.build().expect("build").to_vec();
    assign(&mut bytes, LogOffset(42), Epoch(3));
    let h = BatchHeader::decode(&bytes[..HEADER_LEN]).expect("decode");
    let batch = Batch::parse(bytes.clone().into()).expect("parse");
    assert_eq!(h, batch.header());
    assert_eq!((h.base_offset, h.epoch, h.max_timestamp), (42, 3, 9));
    assert_eq!(h.last_offset(), batch.last_offset().0);
}

#[test]
fn header_of_garbage_is_an_error_not_a_panic() {
    assert!(BatchHeader::decode(&[0u8; 10]).is_err());
    assert!(BatchHeader::decode(&[0u8; HEADER_LEN]).is_err());
    assert!(BatchHeader::decode(&[0xffu8; HEADER_LEN]).is_err());
}

#[test]
fn a_batch_with_a_dedup_id_says_so_in_its_attributes() {
    let mut plain = BatchBuilder::new(Compression::Zstd(1));
    plain.push(&rec(1, None, Some(b"v")));
    let plain = Batch::parse_verified(plain.build().expect("build")).expect("valid");
    assert!(!plain.has_dedup_ids());
    assert_eq!(plain.compression(), Compression::Zstd(1));
    let mut with = BatchBuilder::new(Compression::None);
    with.push(&rec(1, None, Some(b"v")));
    let mut r = rec(2, None, Some(b"w"));
    r.headers
        .push(Header::dedup_id(Bytes::from_static(b"order-7")));
    with.push(&r);
    let with = Batch::parse_verified(with.build().expect("build")).expect("valid");
    assert!(with.has_dedup_ids());
    assert!(!with.has_tombstones());
    assert_eq!(with.compression(), Compression::None);
}

/// Found by the `batch` fuzz target: `records()` sized its output from the header's record
/// count before decoding anything, so a 66-byte batch claiming `u32::MAX` records (and as
/// many offsets) asked for ~400 GB and aborted the process. Now it is a plain error.
#[test]
fn a_huge_record_count_in_a_tiny_batch_is_an_error_not_an_allocation() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(&rec(1, Some(b"k"), Some(b"v")));
    let mut bytes = b.build().expect("build").to_vec();
    bytes[27..31].copy_from_slice(&u32::MAX.to_le_bytes()); // last_offset_delta
    bytes[31..35].copy_from_slice(&u32::MAX.to_le_bytes()); // record_count
    let crc = crc32c::crc32c(&bytes[25..]);
    bytes[21..25].copy_from_slice(&crc.to_le_bytes());
    let batch = Batch::parse_verified(Bytes::from(bytes)).expect("framing is valid");
    assert!(matches!(batch.records(), Err(BatchError::Malformed(_))));
}
