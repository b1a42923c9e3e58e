use super::*;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use proptest::prelude::*;
use pyralog_types::Header;

/// `len` bytes a compressor cannot shrink (xorshift64 from `state`, which advances).
pub(crate) fn incompressible(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}

pub(crate) fn record(offset: u64, epoch: u64, ts: i64, value: &[u8]) -> Record {
    Record {
        offset: LogOffset(offset),
        epoch: Epoch(epoch),
        timestamp: ts,
        key: Some(Bytes::from(format!("k{}", offset % 7))),
        value: Some(Bytes::copy_from_slice(value)),
        headers: vec![Header {
            key: "h".into(),
            value: Bytes::from_static(b"v"),
        }],
    }
}

fn batches_of(records: &[Record], max: usize) -> Vec<Batch> {
    records_to_batches(records, max)
        .expect("rebuild")
        .into_iter()
        .map(|b| Batch::parse_verified(b).expect("valid batch"))
        .collect()
}

fn parse_meta(bytes: &Bytes) -> ParquetMetaData {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(bytes)
        .expect("metadata")
}

#[test]
fn schema_metadata_and_statistics() {
    let records: Vec<Record> = (0..2000)
        .map(|i| {
            record(
                100 + i,
                1 + i / 1000,
                1_700_000_000_000_000 + i as i64,
                &[7u8; 100],
            )
        })
        .collect();
    let opts = EncodeOptions {
        row_group_bytes: 32 * 1024,
        ..EncodeOptions::default()
    };
    let enc = encode_segment(&batches_of(&records, 16 * 1024), &opts).expect("encode");
    assert_eq!(&enc.bytes[..4], b"PAR1");
    let meta = parse_meta(&enc.bytes);

    // The schema of the design page.
    let schema = meta.file_metadata().schema_descr();
    let names: Vec<_> = schema.columns().iter().map(|c| c.path().string()).collect();
    assert_eq!(
        names,
        [
            "offset",
            "epoch",
            "timestamp",
            "key",
            "value",
            "headers.list.element.key",
            "headers.list.element.value"
        ]
    );
    // Iceberg maps columns by the field ids in the file schema.
    let ids: Vec<_> = schema
        .columns()
        .iter()
        .map(|c| c.self_type().get_basic_info().id())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 8, 9]);
    let printed = format!("{:?}", schema.root_schema());
    assert!(
        !printed.contains("is_signed: false"),
        "offsets are signed 64-bit, as Iceberg has no unsigned type: {printed}"
    );
    assert!(
        printed.contains("Timestamp") && printed.contains("is_adjusted_to_u_t_c: true"),
        "{printed}"
    );

    // Key-value metadata.
    let back = segment_meta_from_parquet(&meta).expect("segment meta");
    assert_eq!(
        back,
        SegmentMeta {
            footer_bytes: 0,
            ledger: None,
            ..enc.meta.clone()
        },
        "all but the footer's size, which only the writer knows"
    );
    // The writer's footer size is exactly what a reader must fetch to parse the footer.
    let len = enc.bytes.len();
    let footer = enc.meta.footer_bytes as usize;
    assert!(footer > 8 && footer < len, "{footer} of {len}");
    let mut tail = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
    tail.try_parse_sized(&enc.bytes.slice(len - footer..), len as u64)
        .expect("the footer parses from its last footer_bytes");
    assert_eq!(back.base_offset, LogOffset(100));
    assert_eq!(back.last_offset, LogOffset(2099));
    assert_eq!(back.record_count, 2000);
    assert_eq!(back.epochs.len(), 2);
    assert_eq!(back.epochs[1].start_offset, LogOffset(1100));

    // Several row groups, each with offset/timestamp statistics, compressed with zstd.
    assert!(
        meta.num_row_groups() > 4,
        "{} row groups",
        meta.num_row_groups()
    );
    let mut prev_max = None;
    for rg in meta.row_groups() {
        let Some(Statistics::Int64(s)) = rg.column(COL_OFFSET).statistics() else {
            panic!("offset statistics missing")
        };
        let (min, max) = (
            *s.min_opt().expect("min") as u64,
            *s.max_opt().expect("max") as u64,
        );
        assert!(prev_max.is_none_or(|p| p < min));
        prev_max = Some(max);
        assert!(rg.column(COL_TIMESTAMP).statistics().is_some());
        assert!(rg.column(4).statistics().is_none(), "no stats on payload");
        assert!(matches!(rg.column(4).compression(), Compression::ZSTD(_)));
    }
    // Page index (column index + offset index) on offset and timestamp.
    for rg in meta.row_groups() {
        for col in [COL_OFFSET, COL_TIMESTAMP] {
            assert!(
                rg.column(col).column_index_range().is_some(),
                "column index"
            );
            assert!(
                rg.column(col).offset_index_range().is_some(),
                "offset index"
            );
        }
    }
}

#[test]
fn round_trip_keeps_everything() {
    let mut records: Vec<Record> = (0..50)
        .map(|i| record(i * 3, 5, -(i as i64), b"x"))
        .collect();
    records[3].key = None;
    records[4].value = None; // tombstone
    records[5].headers.clear();
    records[6].value = Some(Bytes::new()); // empty, not null
    let enc = encode_records(&records, &EncodeOptions::default()).expect("encode");
    let back = decode_rows(enc.bytes).expect("decode");
    assert_eq!(back, records);
}

/// A file as schema version 1 wrote it: `offset` and `epoch` as UINT64, no field ids.
fn version_1_file(offsets: &[u64]) -> Bytes {
    use arrow_array::UInt64Array;
    let records: Vec<Record> = (0..offsets.len() as u64)
        .map(|i| record(i, 7, 1, b"v"))
        .collect();
    let current = to_record_batch(&records, None).expect("batch");
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in current.schema().fields().iter().zip(current.columns()) {
        let plain = Field::new(f.name(), f.data_type().clone(), f.is_nullable());
        match f.name().as_str() {
            "offset" => {
                fields.push(plain.with_data_type(DataType::UInt64));
                columns.push(Arc::new(UInt64Array::from(offsets.to_vec())));
            }
            "epoch" => {
                fields.push(plain.with_data_type(DataType::UInt64));
                columns.push(Arc::new(UInt64Array::from(vec![7; offsets.len()])));
            }
            "headers" => {
                // Version 1 nested fields carry no field ids either.
                let item = Arc::new(Field::new(
                    "element",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Binary, false),
                    ])),
                    false,
                ));
                let list = c.as_any().downcast_ref::<ListArray>().expect("list");
                let items = list
                    .values()
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .expect("struct");
                let DataType::Struct(plain_fields) = item.data_type().clone() else {
                    unreachable!("built as a struct above")
                };
                let items = StructArray::try_new(plain_fields, items.columns().to_vec(), None)
                    .expect("items");
                let list =
                    ListArray::try_new(item.clone(), list.offsets().clone(), Arc::new(items), None)
                        .expect("list");
                fields.push(Field::new("headers", DataType::List(item), false));
                columns.push(Arc::new(list));
            }
            _ => {
                fields.push(plain);
                columns.push(c.clone());
            }
        }
    }
    let rb = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("v1 batch");
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            meta_keys::SCHEMA_VERSION.to_owned(),
            "1".to_owned(),
        )]))
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), rb.schema(), Some(props)).expect("writer");
    w.write(&rb).expect("write");
    Bytes::from(w.into_inner().expect("finish"))
}

#[test]
fn version_1_files_with_unsigned_offsets_still_decode() {
    let back = decode_rows(version_1_file(&[3, 4, 9])).expect("a version 1 file decodes");
    let offsets: Vec<u64> = back.iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, [3, 4, 9]);
    assert!(back.iter().all(|r| r.epoch.0 == 7));

    // The column-wise path (Arrow fetches) assembles the decoded columns under today's
    // schema, nested field ids included.
    let file = version_1_file(&[3, 4, 9]);
    let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default())
        .expect("footer");
    let groups = decode_groups_arrow(file, &meta, &[0], "v1").expect("decodes column-wise");
    let rb = &groups[0][0];
    RecordBatch::try_new(arrow_schema(), rb.columns().to_vec())
        .expect("a version 1 row group fits the current Arrow schema");

    // An unsigned value that does not fit the signed column is damage, not a wrapped offset.
    let err = decode_rows(version_1_file(&[1, u64::MAX])).expect_err("offset above 2^63");
    assert!(err.to_string().contains("above 2^63"), "{err}");
}

#[test]
fn rejects_bad_input_and_bad_files() {
    assert!(matches!(
        encode_records(&[], &EncodeOptions::default()),
        Err(ColdError::InvalidInput(_))
    ));
    let unordered = [record(5, 1, 0, b"a"), record(5, 1, 0, b"b")];
    assert!(encode_records(&unordered, &EncodeOptions::default()).is_err());
    let epoch_back = [record(5, 2, 0, b"a"), record(6, 1, 0, b"b")];
    assert!(encode_records(&epoch_back, &EncodeOptions::default()).is_err());
    assert!(records_to_batches(&unordered, 1024).is_err());

    let enc = encode_records(&[record(1, 1, 1, b"a")], &EncodeOptions::default()).expect("encode");
    let mut bad = enc.bytes.to_vec();
    let mid = bad.len() / 2;
    bad.truncate(mid);
    let err = decode_rows(Bytes::from(bad)).expect_err("truncated file");
    assert!(matches!(err, ColdError::Corrupt { .. }) && !err.is_retriable());
    assert!(decode_rows(Bytes::from_static(b"not parquet at all")).is_err());
}

#[test]
fn rebuilt_batches_split_by_epoch_size_and_huge_gaps() {
    let records = vec![
        record(0, 1, 0, b"a"),
        record(2, 1, 0, b"b"),
        record(3, 2, 0, b"c"),
        record(3 + (1u64 << 33), 2, 0, b"d"),
    ];
    let batches = batches_of(&records, 1 << 20);
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].last_offset(), LogOffset(2));
    assert_eq!(batches[0].record_count(), 2);
    assert_eq!(batches[1].epoch(), Epoch(2));
    let all: Vec<Record> = batches
        .iter()
        .flat_map(|b| b.records().expect("records"))
        .collect();
    assert_eq!(all, records);
    // Small limit: one record per batch, still valid.
    assert_eq!(batches_of(&records, 1).len(), 4);
}

/// (offset gap, epoch bump, timestamp, key, value, headers) of one generated record.
type RecordParts = (
    u64,
    bool,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Vec<u8>)>,
);

fn arb_record_parts() -> impl Strategy<Value = RecordParts> {
    (
        prop_oneof![8 => Just(1u64), 2 => 2u64..1000, 1 => Just(1u64 << 32)],
        prop::bool::weighted(0.1),
        any::<i64>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        prop::collection::vec((".{0,8}", prop::collection::vec(any::<u8>(), 0..16)), 0..3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// records -> hot batches -> Parquet -> records -> hot batches: nothing changes.
    #[test]
    fn records_batches_parquet_round_trip(
        start in 0u64..1_000_000_000_000,
        parts in prop::collection::vec(arb_record_parts(), 1..120),
        rg_bytes in 64usize..4096,
        batch_bytes in 100usize..3000,
    ) {
        let mut offset = start;
        let mut epoch = 1u64;
        let mut records = Vec::new();
        for (i, (gap, bump, ts, key, value, headers)) in parts.into_iter().enumerate() {
            if i > 0 { offset += gap; }
            if bump { epoch += 1; }
            records.push(Record {
                offset: LogOffset(offset),
                epoch: Epoch(epoch),
                timestamp: ts,
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers.into_iter().map(|(k, v)| Header { key: k, value: Bytes::from(v) }).collect(),
            });
        }
        let batches = batches_of(&records, batch_bytes);
        let opts = EncodeOptions { row_group_bytes: rg_bytes, ..EncodeOptions::default() };
        let enc = encode_segment(&batches, &opts).expect("encode");
        prop_assert_eq!(enc.meta.record_count, records.len() as u64);
        let back = decode_rows(enc.bytes).expect("decode");
        prop_assert_eq!(&back, &records);
        let again = records_to_batches(&back, batch_bytes).expect("rebuild");
        let originals: Vec<Bytes> = batches.iter().map(|b| b.as_bytes().clone()).collect();
        prop_assert_eq!(again, originals);
    }
}

#[test]
fn downsampled_segments_carry_typed_metric_columns_and_still_decode_as_records() {
    use arrow_array::{Array, Float64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let records: Vec<Record> = (0..10)
        .map(|i| record(i * 3, 1, 1_000 + i as i64, b"{}"))
        .collect();
    let metrics: Vec<Option<MetricRow>> = (0..10u64)
        .map(|i| {
            (i % 2 == 0).then(|| MetricRow {
                series: format!("s{i}"),
                bucket_start: 600_000_000 * i as i64,
                bucket_seconds: 600,
                count: i + 1,
                sum: i as f64 * 1.5,
                min: 0.0,
                max: i as f64,
            })
        })
        .collect();
    let encoded =
        encode_metric_records(&records, &metrics, &EncodeOptions::default()).expect("encode");
    // The record view is unchanged: the gateway serves these rows like any others.
    assert_eq!(decode_rows(encoded.bytes.clone()).expect("decode"), records);
    // A SQL engine sees typed, nullable columns (null on raw rows).
    let reader = ParquetRecordBatchReaderBuilder::try_new(encoded.bytes.clone())
        .expect("reader")
        .build()
        .expect("build");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let rb = &batches[0];
    assert_eq!(rb.schema(), metrics_schema());
    let sum = rb
        .column_by_name("sum")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        .expect("sum is DOUBLE");
    let count = rb
        .column_by_name("count")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .expect("count is INT64");
    assert_eq!((sum.value(2), count.value(2)), (3.0, 3));
    assert!(
        sum.is_null(1) && count.is_null(1),
        "raw rows have no metric values"
    );
    // A mismatched metrics slice is refused, not written.
    assert!(encode_metric_records(&records, &metrics[..3], &EncodeOptions::default()).is_err());
}

mod ledger {
    use super::*;
    use pyralog_ledger::{genesis, merkle, RecordHasher};

    fn ledger_file(records: &[Record], start: pyralog_ledger::Hash) -> (Bytes, SegmentMeta) {
        let opts = EncodeOptions {
            row_group_bytes: 256,
            ..EncodeOptions::default()
        };
        let mut w = SegmentWriter::with_ledger(Vec::new(), &opts, start).expect("writer");
        for r in records {
            w.push(r.clone()).expect("push");
        }
        let (bytes, meta) = w.finish().expect("finish");
        (Bytes::from(bytes), meta)
    }

    #[test]
    fn every_row_carries_the_chain_and_the_footer_the_seal() {
        let records: Vec<Record> = (0..100).map(|o| record(o, 1, o as i64, b"v")).collect();
        let start = genesis("ledger", 3);
        let (bytes, meta) = ledger_file(&records, start);
        let seal = meta.ledger.expect("a ledger object is sealed");

        // The chain recomputed from the records is the column, row by row, across row groups.
        let mut hasher = RecordHasher::new(start);
        let mut leaves = Vec::new();
        let mut rows = 0;
        let read = for_each_ledger_row(bytes.clone(), |r, stored| {
            let (chain, leaf) = hasher.push(&r);
            assert_eq!(stored, Some(chain), "row {}", r.offset);
            assert_eq!(r, records[rows]);
            leaves.push(leaf);
            rows += 1;
            Ok(())
        })
        .expect("decode");
        assert_eq!(rows, 100);
        assert_eq!(seal.chain_start, start);
        assert_eq!(seal.chain_end, hasher.chain());
        assert_eq!(seal.merkle_root, merkle::root(&leaves));
        // The footer says the same, so a node restoring from the bucket keeps the seal.
        assert_eq!(read.ledger, Some(seal));
        // And the object still reads as an ordinary segment.
        assert_eq!(decode_rows(bytes).expect("rows"), records);
    }

    #[test]
    fn a_plain_segment_has_no_chain_and_no_seal() {
        let records: Vec<Record> = (0..10).map(|o| record(o, 1, 0, b"v")).collect();
        let enc = encode_records(&records, &EncodeOptions::default()).expect("encode");
        assert_eq!(enc.meta.ledger, None);
        let read = for_each_ledger_row(enc.bytes, |_, stored| {
            assert_eq!(stored, None);
            Ok(())
        })
        .expect("decode");
        assert_eq!(read.ledger, None);
    }

    #[test]
    fn the_chain_continues_across_objects() {
        let records: Vec<Record> = (0..60).map(|o| record(o, 1, 0, b"x")).collect();
        let start = genesis("ledger", 0);
        let (_, whole) = ledger_file(&records, start);
        let (_, first) = ledger_file(&records[..25], start);
        let first = first.ledger.expect("seal");
        let (_, second) = ledger_file(&records[25..], first.chain_end);
        assert_eq!(
            second.ledger.expect("seal").chain_end,
            whole.ledger.expect("seal").chain_end,
            "cutting a partition into objects does not change its chain"
        );
    }

    #[test]
    fn a_seal_names_its_chain_version_and_an_unnamed_one_is_version_2() {
        let (_, meta) = ledger_file(&[record(0, 1, 0, b"x")], genesis("ledger", 0));
        let seal = meta.ledger.expect("seal");
        assert_eq!(seal.chain_version, 3, "new objects use the current chain");
        // A manifest entry written before seals named a version reads as version 2.
        let mut json = serde_json::to_value(seal).expect("json");
        json.as_object_mut()
            .expect("object")
            .remove("chain_version");
        let old: LedgerSeal = serde_json::from_value(json).expect("old seal");
        assert_eq!(old.chain_version, 2);
        assert_eq!(
            (old.chain_start, old.chain_end),
            (seal.chain_start, seal.chain_end)
        );
    }
}
