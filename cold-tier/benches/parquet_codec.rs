//! The cold tier's codec: a closed segment to Parquet (tiering pays it once per segment) and
//! back to hot-format batches (every cold read pays it).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyralog_cold_tier::{decode_rows, encode_records, records_to_batches, EncodeOptions};
use pyralog_types::{Epoch, Header, LogOffset, Record};

fn records(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: LogOffset(i),
            epoch: Epoch(1),
            timestamp: 1_700_000_000_000_000 + i as i64 * 1000,
            key: Some(Bytes::from(format!("user-{}", i % 5000))),
            value: Some(Bytes::from(format!(
                "{{\"order\":{i},\"amount\":{},\"sku\":\"sku-{}\",\"note\":\"{}\"}}",
                i * 7 % 10_000,
                i % 977,
                "x".repeat((i % 120) as usize)
            ))),
            headers: vec![Header {
                key: "source".into(),
                value: Bytes::from_static(b"bench"),
            }],
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let recs = records(50_000);
    let payload: usize = recs.iter().map(Record::payload_len).sum();
    let encoded = encode_records(&recs, &EncodeOptions::default()).expect("encode");
    let mut g = c.benchmark_group("parquet_50k_records");
    g.throughput(Throughput::Bytes(payload as u64));
    g.sample_size(10);
    g.bench_function("encode", |b| {
        b.iter(|| encode_records(&recs, &EncodeOptions::default()).expect("encode"))
    });
    g.bench_function("decode_rows", |b| {
        b.iter(|| decode_rows(encoded.bytes.clone()).expect("decode"))
    });
    g.bench_function("decode_and_rebuild_batches", |b| {
        b.iter(|| {
            let rows = decode_rows(encoded.bytes.clone()).expect("decode");
            records_to_batches(&rows, 256 << 10).expect("batches")
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
