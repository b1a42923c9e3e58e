//! The batch codec: what every produce (encode, validate) and consume (decode) pays per byte,
//! and what refusing a decompression bomb costs (it must not depend on what the bomb claims).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pyralog_types::batch::{Batch, BatchBuilder, BatchRules, Compression, NewRecord};

fn records(n: usize, size: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            timestamp: 1_700_000_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{:08}", i % 100_000))),
            value: Some(Bytes::from(
                (0..size)
                    .map(|j| (i * 31 + j * 7) as u8)
                    .collect::<Vec<u8>>(),
            )),
            headers: Vec::new(),
        })
        .collect()
}

fn build(records: &[NewRecord], compression: Compression) -> Bytes {
    let mut b = BatchBuilder::new(compression);
    for r in records {
        b.push(r);
    }
    b.build().expect("batch")
}

fn codec(c: &mut Criterion) {
    for (size, n) in [(100usize, 8000usize), (1024, 1000)] {
        let recs = records(n, size);
        for (name, comp) in [("none", Compression::None), ("zstd1", Compression::Zstd(1))] {
            let mut g = c.benchmark_group(format!("batch_{size}B_{name}"));
            g.throughput(Throughput::Bytes((n * size) as u64));
            g.bench_function(BenchmarkId::new("encode", n), |b| {
                b.iter(|| build(&recs, comp))
            });
            let bytes = build(&recs, comp);
            let produce = BatchRules::produce(1 << 20, 64 << 20);
            // What a leader runs per produced batch: CRC, then the records against the header.
            g.bench_function(BenchmarkId::new("verify_and_validate", n), |b| {
                b.iter(|| {
                    let batch = Batch::parse_verified(bytes.clone()).expect("valid");
                    batch.validate_records(&produce).expect("records");
                })
            });
            // The record checks alone (dense offsets, timestamps, flags, sizes), and a
            // follower's (increasing offsets): the difference to `decode` is their cost.
            let batch = Batch::parse(bytes.clone()).expect("valid");
            for (rule, rules) in [
                ("validate_dense", produce),
                ("validate_replicated", BatchRules::replicate()),
            ] {
                g.bench_function(BenchmarkId::new(rule, n), |b| {
                    b.iter(|| batch.validate_records(&rules).expect("records"))
                });
            }
            g.bench_function(BenchmarkId::new("decode", n), |b| {
                b.iter(|| {
                    Batch::parse(bytes.clone())
                        .expect("valid")
                        .records()
                        .expect("records")
                })
            });
            g.finish();
        }
    }
}

/// A zstd frame of 256 MiB of zeros in a few KB: refused from its declared size, before any
/// buffer is allocated, so the time is the same nanoseconds whatever the frame claims.
fn bomb(c: &mut Criterion) {
    let frame = zstd_zeros(256 << 20);
    let mut region = Vec::with_capacity(4 + frame.len());
    region.extend_from_slice(&(256u32 << 20).to_le_bytes());
    region.extend_from_slice(&frame);
    let bytes = with_region(&region);
    let rules = BatchRules::produce(1 << 20, 8 << 20);
    c.bench_function("refuse_zstd_bomb_256MiB", |b| {
        b.iter(|| {
            let batch = Batch::parse_verified(bytes.clone()).expect("framing is fine");
            batch
                .validate_records(&rules)
                .expect_err("a bomb is refused")
        })
    });
}

/// One zstd frame (with its content size) of `n` zeros, compressed a MiB at a time.
fn zstd_zeros(n: u64) -> Vec<u8> {
    use std::io::Write;
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).expect("encoder");
    enc.set_pledged_src_size(Some(n)).expect("pledge");
    enc.include_contentsize(true).expect("content size");
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..k]).expect("compress");
        left -= k as u64;
    }
    enc.finish().expect("finish")
}

/// A one-record zstd batch whose records region is replaced by `region` (CRC recomputed).
fn with_region(region: &[u8]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    b.push(&records(1, 1)[0]);
    let mut v = b.build().expect("batch")[..65].to_vec();
    v.extend_from_slice(region);
    let len = (v.len() - 12) as u32;
    v[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&v[25..]);
    v[21..25].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(v)
}

criterion_group!(benches, codec, bomb);
criterion_main!(benches);
