//! Parquet rows back to records.
//!
//! Decoding checks every column's type and nullability instead of trusting the file: a
//! file that does not match the schema is [`ColdError::Corrupt`], never a wrong record.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch, StructArray, UInt64Array};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use pyralog_types::{LogOffset, Record};

use super::wire::Columns;
use super::{meta_keys, SegmentMeta, READABLE_SCHEMA_VERSIONS};
use crate::error::ColdError;

/// Decodes every record of a whole Parquet segment file held in memory.
pub fn decode_rows(file: Bytes) -> Result<Vec<Record>, ColdError> {
    let what = "parquet segment";
    let file_len = file.len() as u64;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColdError::corrupt(what, e))?;
    check_schema_version(builder.metadata(), what)?;
    check_column_chunks(builder.metadata(), file_len, what)?;
    // Damaged metadata can overflow arithmetic inside the parquet crate's reader set-up
    // (found by the fuzzer): a panic there is corrupt data too.
    let reader = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build()))
        .map_err(|_| ColdError::corrupt(what, "the parquet reader panicked"))?
        .map_err(|e| ColdError::corrupt(what, e))?;
    collect_records(reader, what)
}

/// Decodes a whole segment file held in memory a row group at a time, calling `f` with each
/// record and the chain value stored with it (`None` when the file is not a ledger object),
/// and returns the metadata its footer declares. The ledger verifier's read: it never holds
/// more than one row group's records.
pub fn for_each_ledger_row(
    file: Bytes,
    mut f: impl FnMut(Record, Option<pyralog_ledger::Hash>) -> Result<(), ColdError>,
) -> Result<SegmentMeta, ColdError> {
    let what = "parquet segment";
    let file_len = file.len() as u64;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColdError::corrupt(what, e))?;
    check_schema_version(builder.metadata(), what)?;
    check_column_chunks(builder.metadata(), file_len, what)?;
    let meta = segment_meta_from_parquet(builder.metadata())?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reader = builder.build().map_err(|e| ColdError::corrupt(what, e))?;
        for rb in reader {
            let rb = rb.map_err(|e| ColdError::corrupt(what, e))?;
            let rb = normalize(rb).map_err(|reason| ColdError::corrupt(what, reason))?;
            let cols = Columns::of(&rb).map_err(|reason| ColdError::corrupt(what, reason))?;
            let chains = super::chain_column(&rb)?;
            for row in 0..cols.len() {
                let chain = chains.and_then(|c| <[u8; 32]>::try_from(c.value(row)).ok());
                f(cols.record(row), chain)?;
            }
        }
        Ok(())
    }))
    .unwrap_or_else(|_| Err(ColdError::corrupt(what, "the parquet decoder panicked")))?;
    Ok(meta)
}

/// Decodes the given row groups of a file whose metadata is already parsed. `reader` needs
/// to hold only those row groups' bytes (see [`crate::reader`]).
pub(crate) fn decode_row_groups<R: ChunkReader + 'static>(
    reader: R,
    meta: &ArrowReaderMetadata,
    row_groups: Vec<usize>,
    what: &str,
) -> Result<Vec<Record>, ColdError> {
    check_column_chunks(meta.metadata(), reader.len(), what)?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, meta.clone())
        .with_row_groups(row_groups)
        .build()
        .map_err(|e| ColdError::corrupt(what, e))?;
    collect_records(reader, what)
}

/// Decodes each of `row_groups` of a file whose metadata is already parsed into its own Arrow
/// batches (one per group), for the column-wise read path ([`super::wire`]). `reader` needs to
/// hold only those row groups' bytes.
pub(crate) fn decode_groups_arrow<R: ChunkReader + Clone + 'static>(
    reader: R,
    meta: &ArrowReaderMetadata,
    row_groups: &[usize],
    what: &str,
) -> Result<Vec<Vec<RecordBatch>>, ColdError> {
    check_column_chunks(meta.metadata(), reader.len(), what)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        row_groups
            .iter()
            .map(|&g| {
                let rows = meta
                    .metadata()
                    .row_groups()
                    .get(g)
                    .and_then(|rg| usize::try_from(rg.num_rows()).ok())
                    .ok_or_else(|| ColdError::corrupt(what, format!("no row group {g}")))?;
                ParquetRecordBatchReaderBuilder::new_with_metadata(reader.clone(), meta.clone())
                    .with_row_groups(vec![g])
                    .with_batch_size(rows.clamp(1, 1 << 20))
                    .build()
                    .map_err(|e| ColdError::corrupt(what, e))?
                    .map(|rb| {
                        rb.map_err(|e| ColdError::corrupt(what, e))
                            .and_then(|rb| normalize(rb).map_err(|r| ColdError::corrupt(what, r)))
                    })
                    .collect()
            })
            .collect()
    }))
    .unwrap_or_else(|_| Err(ColdError::corrupt(what, "the parquet decoder panicked")))
}

/// Columns a version 1 file wrote as UINT64 and version 2 writes as INT64.
const WIDENED_COLUMNS: [&str; 4] = ["offset", "epoch", "bucket_seconds", "count"];

/// A decoded batch in the current schema's types. A version 1 file differs in two ways: its
/// UINT64 columns are reinterpreted as INT64 (no copy, after checking that no value is above
/// `i64::MAX`), and its `headers` list carries no field ids, so it is relabelled with the
/// current nested fields (Arrow compares nested field metadata when a batch is assembled
/// under `arrow_schema()`, as the Arrow fetch path does).
pub(crate) fn normalize(rb: RecordBatch) -> Result<RecordBatch, String> {
    let schema = rb.schema();
    let headers_type = DataType::List(super::header_item_field());
    let stale = |f: &arrow_schema::Field| {
        (f.data_type() == &DataType::UInt64 && WIDENED_COLUMNS.contains(&f.name().as_str()))
            || (f.name() == "headers" && f.data_type() != &headers_type)
    };
    if !schema.fields().iter().any(|f| stale(f)) {
        return Ok(rb);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(rb.columns()) {
        if !stale(f) {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        } else if f.name() == "headers" {
            columns.push(relabel_headers(c)?);
            fields.push(f.as_ref().clone().with_data_type(headers_type.clone()));
        } else {
            let u = c
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| format!("column {} has an unexpected type", f.name()))?;
            if u.iter().flatten().any(|v| v > i64::MAX as u64) {
                return Err(format!("column {} holds a value above 2^63", f.name()));
            }
            let values = ScalarBuffer::<i64>::new(u.values().inner().clone(), 0, u.len());
            columns.push(Arc::new(Int64Array::new(values, u.nulls().cloned())) as ArrayRef);
            fields.push(f.as_ref().clone().with_data_type(DataType::Int64));
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// The same headers under the current list and struct fields (same buffers).
fn relabel_headers(c: &ArrayRef) -> Result<ArrayRef, String> {
    let list = c
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or("headers are not a list")?;
    let items = list
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or("headers are not a list of structs")?;
    let items = StructArray::try_new(
        super::header_fields(),
        items.columns().to_vec(),
        items.nulls().cloned(),
    )
    .map_err(|e| format!("headers: {e}"))?;
    let list = ListArray::try_new(
        super::header_item_field(),
        list.offsets().clone(),
        Arc::new(items),
        list.nulls().cloned(),
    )
    .map_err(|e| format!("headers: {e}"))?;
    Ok(Arc::new(list))
}

/// The parquet crate still asserts on some damaged pages (e.g. "Decoder for dict should have
/// been set", found by the `parquet_segment` fuzz target); a panic while decoding a file from
/// the bucket is reported as a corrupt file, never taken down with the node.
fn collect_records(
    reader: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
    what: &str,
) -> Result<Vec<Record>, ColdError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        collect_unguarded(reader, what)
    }))
    .unwrap_or_else(|_| Err(ColdError::corrupt(what, "the parquet decoder panicked")))
}

fn collect_unguarded(
    reader: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
    what: &str,
) -> Result<Vec<Record>, ColdError> {
    let mut out = Vec::new();
    for rb in reader {
        let rb = rb.map_err(|e| ColdError::corrupt(what, e))?;
        let rb = normalize(rb).map_err(|reason| ColdError::corrupt(what, reason))?;
        records_from_batch(&rb, &mut out).map_err(|reason| ColdError::corrupt(what, reason))?;
    }
    Ok(out)
}

/// Rejects column chunks that do not lie inside the file. The parquet crate asserts this
/// while reading pages (`ColumnChunkMetaData::byte_range` panics on a negative offset or
/// size), so a damaged footer must be stopped here. Found by the `parquet_segment` fuzz target.
pub(crate) fn check_column_chunks(
    meta: &ParquetMetaData,
    file_len: u64,
    what: &str,
) -> Result<(), ColdError> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset());
            let len = col.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(s, l)| s.checked_add(l))
                .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(ColdError::corrupt(
                    what,
                    format!(
                        "row group {g} column {c}: chunk at {start} (+{len}) is outside the file"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Rejects files written with a schema version this build does not know.
pub(crate) fn check_schema_version(meta: &ParquetMetaData, what: &str) -> Result<(), ColdError> {
    match kv(meta, meta_keys::SCHEMA_VERSION) {
        Some(v) if READABLE_SCHEMA_VERSIONS.iter().any(|r| r.to_string() == v) => Ok(()),
        Some(v) => Err(ColdError::corrupt(
            what,
            format!("unsupported schema version {v}"),
        )),
        None => Err(ColdError::corrupt(
            what,
            "no pyralog.schema_version metadata",
        )),
    }
}

fn kv<'a>(meta: &'a ParquetMetaData, key: &str) -> Option<&'a str> {
    meta.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|k| k.key == key)?
        .value
        .as_deref()
}

/// Reads the [`SegmentMeta`] back from a file's key-value metadata.
pub fn segment_meta_from_parquet(meta: &ParquetMetaData) -> Result<SegmentMeta, ColdError> {
    let what = "parquet metadata";
    check_schema_version(meta, what)?;
    let num = |key: &str| -> Result<i128, ColdError> {
        kv(meta, key)
            .ok_or_else(|| ColdError::corrupt(what, format!("missing {key}")))?
            .parse::<i128>()
            .map_err(|e| ColdError::corrupt(what, format!("{key}: {e}")))
    };
    let u = |key: &str| {
        num(key).and_then(|v| {
            u64::try_from(v).map_err(|e| ColdError::corrupt(what, format!("{key}: {e}")))
        })
    };
    let i = |key: &str| {
        num(key).and_then(|v| {
            i64::try_from(v).map_err(|e| ColdError::corrupt(what, format!("{key}: {e}")))
        })
    };
    let epochs = kv(meta, meta_keys::EPOCHS)
        .ok_or_else(|| ColdError::corrupt(what, "missing pyralog.epochs"))
        .and_then(|s| {
            serde_json::from_str(s).map_err(|e| ColdError::corrupt(what, format!("epochs: {e}")))
        })?;
    let hash = |key: &str| -> Result<Option<pyralog_ledger::Hash>, ColdError> {
        kv(meta, key)
            .map(|v| {
                pyralog_ledger::from_hex(v)
                    .map_err(|e| ColdError::corrupt(what, format!("{key}: {e}")))
            })
            .transpose()
    };
    let ledger = match (
        hash(meta_keys::LEDGER_CHAIN_START)?,
        hash(meta_keys::LEDGER_CHAIN_END)?,
        hash(meta_keys::LEDGER_MERKLE_ROOT)?,
    ) {
        (Some(chain_start), Some(chain_end), Some(merkle_root)) => Some(super::LedgerSeal {
            chain_start,
            chain_end,
            merkle_root,
            chain_version: match kv(meta, meta_keys::LEDGER_CHAIN_VERSION) {
                None => pyralog_ledger::ChainVersion::V2.number(),
                Some(v) => v.parse().map_err(|e| {
                    ColdError::corrupt(what, format!("{}: {e}", meta_keys::LEDGER_CHAIN_VERSION))
                })?,
            },
        }),
        (None, None, None) => None,
        _ => return Err(ColdError::corrupt(what, "a partial ledger seal")),
    };
    Ok(SegmentMeta {
        base_offset: LogOffset(u(meta_keys::BASE_OFFSET)?),
        last_offset: LogOffset(u(meta_keys::LAST_OFFSET)?),
        min_timestamp: i(meta_keys::MIN_TIMESTAMP)?,
        max_timestamp: i(meta_keys::MAX_TIMESTAMP)?,
        record_count: u(meta_keys::RECORD_COUNT)?,
        epochs,
        footer_bytes: 0,
        ledger,
    })
}

/// Appends the rows of one Arrow batch as records; `Err` names what is wrong.
fn records_from_batch(rb: &RecordBatch, out: &mut Vec<Record>) -> Result<(), String> {
    let cols = Columns::of(rb)?;
    out.extend((0..cols.len()).map(|row| cols.record(row)));
    Ok(())
}
