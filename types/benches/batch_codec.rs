//! The batch codec: what every produce (encode, validate) and consume (decode) pays per byte.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pyralog_types::batch::{Batch, BatchBuilder, Compression, NewRecord};

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
            g.bench_function(BenchmarkId::new("verify_and_validate", n), |b| {
                b.iter(|| {
                    let batch = Batch::parse_verified(bytes.clone()).expect("valid");
                    batch.validate_records(1 << 20).expect("records");
                })
            });
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

criterion_group!(benches, codec);
criterion_main!(benches);
