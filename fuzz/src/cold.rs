//! The cold tier's decoders: the partition manifest (JSON, read from the bucket by every node
//! and by a fresh cluster restoring from it) and the Parquet segment, rebuilt into hot-format
//! batches for fetches.
//!
//! Contract: no panic; a manifest that deserializes either fails `validate` or answers every
//! query (`start_offset`, `end_offset`, lookups by offset and time, the next version and an
//! appended segment) and survives a JSON round trip unchanged; a Parquet file decodes to
//! records or a `ColdError`, and decoded records rebuild into batches that decode to the same
//! records (what `ColdPartition::read` serves).

use std::sync::OnceLock;

use bytes::Bytes;
use pyralog_cold_tier::{
    decode_rows, encode_records, records_to_batches, ColdSegment, EncodeOptions, EncodedSegment,
    Manifest,
};
use pyralog_types::batch::{split_batches, Batch};
use pyralog_types::{LogId, LogOffset, Record};

use crate::damage::{apply, plan, Numbers};
use crate::seeds;

/// A manifest of three segments, the last one downsampled, as the archiver writes it.
pub fn manifest_seed() -> Vec<u8> {
    let log = LogId::new("orders").expect("valid name");
    let mut m = Manifest::new(log, 2);
    for (i, (base, last)) in [(0u64, 99u64), (100, 149), (160, 400)]
        .into_iter()
        .enumerate()
    {
        let seg = ColdSegment {
            base_offset: LogOffset(base),
            last_offset: LogOffset(last),
            min_timestamp: seeds::T0 + base as i64,
            max_timestamp: seeds::T0 + last as i64,
            key: format!("p/log=orders/partition=2/{base:020}-{last:020}.parquet"),
            size_bytes: 4096 + base,
            record_count: last - base + 1 - if i == 2 { 11 } else { 0 },
            generation: i as u64,
            last_epoch: 3,
            bucket_seconds: if i == 2 { 600 } else { 0 },
            footer_bytes: 0,
            ledger: None,
        };
        m = m.with_segment(seg).expect("valid segment");
    }
    serde_json::to_vec_pretty(&m).expect("manifest serializes")
}

pub fn manifest_target(input: &[u8]) {
    check_manifest(input);
    let (plan, program) = plan(input);
    if !plan.replace {
        let mut file = manifest_seed();
        apply(&mut file, program);
        check_manifest(&file);
    }
    check_manifest(&structured_manifest(input));
}

/// A manifest whose numbers come from the input (edge values often), as JSON: random edits
/// of JSON text rarely make a number like `u64::MAX`.
fn structured_manifest(input: &[u8]) -> Vec<u8> {
    let mut n = Numbers(input);
    let mut segments = Vec::new();
    while !n.is_empty() && segments.len() < 4 {
        segments.push(ColdSegment {
            base_offset: LogOffset(n.u64()),
            last_offset: LogOffset(n.u64()),
            min_timestamp: n.i64(),
            max_timestamp: n.i64(),
            key: "k".into(),
            size_bytes: n.u64(),
            record_count: n.u64(),
            generation: n.u64(),
            last_epoch: n.u64(),
            bucket_seconds: n.u64(),
            footer_bytes: n.u64() % 4096,
            ledger: None,
        });
    }
    let m = Manifest {
        segments,
        archived_end: (n.u64() % 2 == 1).then(|| LogOffset(n.u64())),
        version: n.u64(),
        ..Manifest::new(LogId::new("orders").expect("valid name"), 0)
    };
    serde_json::to_vec(&m).expect("manifest serializes")
}

fn check_manifest(bytes: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
        return;
    };
    if m.validate().is_err() {
        return;
    }
    let start = m.start_offset();
    let end = m.end_offset();
    if let (Some(s), Some(e)) = (start, end) {
        assert!(s <= e, "start after end");
    }
    for seg in &m.segments {
        for o in [seg.base_offset, seg.last_offset] {
            let found = m
                .segment_for_offset(o)
                .expect("a segment's own offsets are found");
            assert_eq!(found, seg);
        }
        let _ = m.segment_for_timestamp(seg.min_timestamp);
        let _ = m.segment_for_timestamp(seg.max_timestamp);
    }
    let _ = m.segment_for_offset(LogOffset::MAX);
    let _ = m.segment_for_timestamp(i64::MIN);
    let _ = m.segment_for_timestamp(i64::MAX);
    let next = m.next_version();
    assert_eq!(next.segments, m.segments);
    if let Some(e) = end {
        let after = ColdSegment {
            base_offset: e,
            last_offset: e,
            min_timestamp: 0,
            max_timestamp: 0,
            key: "k".into(),
            size_bytes: 1,
            record_count: 1,
            generation: 0,
            last_epoch: 0,
            bucket_seconds: 0,
            footer_bytes: 0,
            ledger: None,
        };
        let _ = m.with_segment(after);
    }
    let again: Manifest =
        serde_json::from_slice(&serde_json::to_vec(&m).expect("serializes")).expect("round trip");
    assert_eq!(again, m, "manifest changed in a JSON round trip");
}

/// Records of the seed batches, as the archiver reads them from a closed segment.
pub(crate) fn seed_records() -> &'static [Record] {
    static RECORDS: OnceLock<Vec<Record>> = OnceLock::new();
    RECORDS.get_or_init(records_of_seed_batches)
}

fn records_of_seed_batches() -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = 0u64;
    for (i, b) in seeds::batches().iter().enumerate() {
        let mut v = b.to_vec();
        pyralog_types::batch::assign(
            &mut v,
            LogOffset(next),
            pyralog_types::Epoch(1 + i as u64 / 2),
        );
        let batch = Batch::parse(Bytes::from(v)).expect("seed batch");
        next = batch.last_offset().0 + 1;
        out.extend(batch.records().expect("seed records"));
    }
    out
}

/// A Parquet segment written by the archiver's encoder, small row groups and pages so the
/// file has several of each.
pub fn parquet_seed() -> &'static [u8] {
    &seed_segment().bytes
}

fn seed_segment() -> &'static EncodedSegment {
    static SEED: OnceLock<EncodedSegment> = OnceLock::new();
    SEED.get_or_init(|| {
        let opts = EncodeOptions {
            row_group_bytes: 128,
            zstd_level: 1,
            data_page_row_limit: 4,
        };
        encode_records(seed_records(), &opts).expect("encode seed segment")
    })
}

/// The manifest entry of [`parquet_seed`], as the archiver commits it.
pub fn parquet_seed_segment() -> &'static ColdSegment {
    static SEGMENT: OnceLock<ColdSegment> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let encoded = seed_segment();
        let meta = &encoded.meta;
        let key = format!(
            "p/log=orders/partition=0/{:020}-{:020}.parquet",
            meta.base_offset.0, meta.last_offset.0
        );
        ColdSegment::uploaded(meta, key, encoded.bytes.len() as u64, 0)
    })
}

pub fn parquet_target(input: &[u8]) {
    check_parquet(input);
    let (plan, program) = plan(input);
    if !plan.replace {
        let mut file = parquet_seed().to_vec();
        apply(&mut file, program);
        check_parquet(&file);
    }
}

fn check_parquet(bytes: &[u8]) {
    let Ok(records) = decode_rows(Bytes::copy_from_slice(bytes)) else {
        return;
    };
    let Ok(batches) = records_to_batches(&records, 1024) else {
        return;
    };
    let mut back = Vec::new();
    for b in batches {
        for batch in split_batches(b) {
            let batch = batch.expect("rebuilt batches are well framed");
            batch.verify_crc().expect("rebuilt batches have valid CRCs");
            back.extend(batch.records().expect("rebuilt batches decode"));
        }
    }
    assert_eq!(back, records, "records changed when rebuilt into batches");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parquet_seed_decodes_to_what_was_encoded() {
        assert_eq!(
            decode_rows(Bytes::from_static(parquet_seed())).expect("decode"),
            seed_records()
        );
    }

    #[test]
    fn the_manifest_seed_is_valid() {
        let m: Manifest = serde_json::from_slice(&manifest_seed()).expect("parse");
        m.validate().expect("valid");
    }
}
