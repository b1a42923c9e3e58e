//! The record batch codec (`pyralog_types::batch`): what every produce request, segment file,
//! replication stream and fetch answer is made of.
//!
//! Contract: for any bytes, `peek_size`, `BatchHeader::decode`, `Batch::parse`,
//! `check_stored` (which accepts exactly what `Batch::parse_verified` accepts, with the same
//! header), `split_batches`, `verify_crc`, `validate_records` and `records` return a value or a
//! `BatchError`, never panic; decoded records are bounded by the bytes (never more records
//! than bytes in the records region, never more payload than the region holds); and a batch
//! that decodes re-encodes (through `BatchBuilder`, as the cold tier and compaction do) to a
//! batch that decodes to the same records.

use bytes::Bytes;
use pyralog_types::batch::{
    assign, check_stored, peek_size, split_batches, Batch, BatchBuilder, BatchHeader, BatchRules,
    Compression, NewRecord, HEADER_LEN, MAX_UNCOMPRESSED_BYTES,
};
use pyralog_types::Record;

use crate::damage::{apply, fix_batch_crcs, plan};
use crate::seeds;

/// The fuzz target: the input as batches, with fixed CRCs, and as damage to valid batches.
pub fn target(input: &[u8]) {
    check_bytes(input);
    if input.len() >= HEADER_LEN {
        let mut fixed = input.to_vec();
        fix_batch_crcs(&mut fixed);
        check_bytes(&fixed);
    }
    let (plan, program) = plan(input);
    let originals = seeds::batches();
    let mut file = originals[usize::from(plan.selector) % originals.len()].to_vec();
    apply(&mut file, program);
    if plan.fix_checksums {
        fix_batch_crcs(&mut file);
    }
    check_bytes(&file);
}

/// Every decoder over `buf`, with the contract checked on whatever decodes.
pub fn check_bytes(buf: &[u8]) {
    let size = peek_size(buf);
    let header = BatchHeader::decode(buf);
    if let (Ok(size), Ok(header)) = (&size, &header) {
        assert_eq!(header.size, *size as u64, "header and peek_size disagree");
    }
    let bytes = Bytes::copy_from_slice(buf);
    let mut walked = 0usize;
    for batch in split_batches(bytes.clone()) {
        let Ok(batch) = batch else { break };
        walked += batch.size();
        assert!(
            walked <= buf.len(),
            "split_batches returned more bytes than given"
        );
        check_batch(&batch);
    }
    match (check_stored(buf), Batch::parse_verified(bytes.clone())) {
        (Ok(h), Ok(b)) => assert_eq!(h, b.header(), "check_stored and parse disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("check_stored {a:?} but parse_verified {b:?}"),
    }
    if let Ok(batch) = Batch::parse(bytes) {
        assert_eq!(batch.size(), buf.len());
        check_batch(&batch);
    }
}

fn check_batch(batch: &Batch) {
    let _ = batch.verify_crc();
    let _ = batch.header();
    let _ = batch.validate_records(&BatchRules::replicate());
    let accepted = batch
        .validate_records(&BatchRules::produce(1024 * 1024, 8 * 1024 * 1024))
        .is_ok();
    let Ok(records) = batch.records() else {
        assert!(
            !accepted,
            "a batch whose records do not decode was accepted"
        );
        assert!(
            batch.for_each_view(|_| Ok(())).is_err(),
            "borrowed views decode a batch whose records do not"
        );
        return;
    };
    // Borrowed views (what ledger replicas hash) are the same records.
    let mut i = 0;
    batch
        .for_each_view(|v| {
            let r = &records[i];
            assert_eq!(
                (v.offset, v.epoch, v.timestamp),
                (r.offset, r.epoch, r.timestamp)
            );
            assert_eq!((v.key, v.value), (r.key.as_deref(), r.value.as_deref()));
            let headers: Vec<(&str, &[u8])> = v.headers().collect::<Result<_, _>>()?;
            let expected: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|h| (h.key.as_str(), &h.value[..]))
                .collect();
            assert_eq!(headers, expected);
            i += 1;
            Ok(())
        })
        .expect("views decode what records decode");
    assert_eq!(i, records.len());
    if accepted {
        // What a leader accepts keeps the log's offsets dense.
        let dense: Vec<u64> = (batch.base_offset().0..=batch.last_offset().0).collect();
        let got: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
        assert_eq!(got, dense, "an accepted batch leaves an offset gap");
        let max = records.iter().map(|r| r.timestamp).max();
        assert_eq!(
            max,
            Some(batch.max_timestamp()),
            "accepted max_timestamp lies"
        );
    }
    assert_eq!(records.len() as u64, u64::from(batch.record_count()));
    // Each record takes at least 7 bytes of the records region (length, attributes, timestamp,
    // offset, key and value lengths, header count); payload is copied from the region.
    let region = match batch.compression_codec() {
        0 => batch.size() - HEADER_LEN,
        _ => MAX_UNCOMPRESSED_BYTES,
    };
    assert!(
        records.len() <= region / 7 + 1,
        "more records than bytes allow"
    );
    let payload: usize = records.iter().map(Record::payload_len).sum();
    assert!(payload <= region, "more payload than the batch holds");
    for pair in records.windows(2) {
        assert!(pair[0].offset < pair[1].offset, "offsets out of order");
    }
    assert!(records.iter().all(|r| r.offset <= batch.last_offset()));
    round_trip(batch, &records);
}

/// Re-encodes decoded records and checks they decode to the same records.
fn round_trip(batch: &Batch, records: &[Record]) {
    let compression = match batch.compression_codec() {
        0 => Compression::None,
        _ => Compression::Zstd(1),
    };
    let mut builder = BatchBuilder::new(compression);
    if batch.producer_id() >= 0 {
        builder = builder.with_producer(
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
        );
    }
    let base = batch.base_offset().0;
    for r in records {
        let delta = u32::try_from(r.offset.0 - base).expect("offset delta checked by decoding");
        let nr = NewRecord {
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        };
        builder
            .push_at(delta, &nr)
            .expect("decoded offsets increase");
    }
    let mut encoded = builder.build().expect("decoded records re-encode").to_vec();
    assign(&mut encoded, batch.base_offset(), batch.epoch());
    let again = Batch::parse_verified(Bytes::from(encoded)).expect("re-encoded batch parses");
    assert_eq!(
        again.records().expect("re-encoded batch decodes"),
        records,
        "records changed in a round trip"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds from the encoder are byte-for-byte what the decoder round-trips them to.
    #[test]
    fn encoder_batches_round_trip_byte_for_byte() {
        for seed in seeds::batches() {
            let batch = Batch::parse_verified(seed.clone()).expect("seed parses");
            check_batch(&batch);
            let mut b = BatchBuilder::new(match batch.compression_codec() {
                0 => Compression::None,
                _ => Compression::Zstd(1),
            });
            if batch.producer_id() >= 0 {
                b = b.with_producer(
                    batch.producer_id(),
                    batch.producer_epoch(),
                    batch.base_sequence(),
                );
            }
            for r in batch.records().expect("records") {
                let nr = NewRecord {
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                };
                b.push_at(u32::try_from(r.offset.0).expect("small"), &nr)
                    .expect("push");
            }
            assert_eq!(b.build().expect("build"), seed);
        }
    }
}
