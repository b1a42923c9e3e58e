//! The Parquet form of a closed segment, and the way back to hot-tier batches.
//!
//! A cold segment is one Parquet file with the stable schema of the design page (`offset`,
//! `epoch`, `timestamp`, `key`, `value`, `headers`), so any SQL engine can query archived
//! data (and an Iceberg table can list it: every column carries its Iceberg field id, see
//! [`field_ids`], and offsets and epochs are signed 64-bit, the integer type Iceberg has), and so the gateway can rebuild hot-format batches from it: cold data is served in
//! exactly the wire format of hot data (invariant 3: key, value, headers, timestamp, offset
//! and epoch come back byte-identical).
//!
//! Choices that matter for readers:
//! - Row groups are cut by payload size ([`EncodeOptions::row_group_bytes`]), so a fetch at a
//!   late offset downloads one row group, found from the `offset` statistics in the footer.
//! - `offset` and `timestamp` carry min/max statistics and a page index (column index +
//!   offset index); payload columns carry no statistics (they would only bloat the footer).
//! - File key-value metadata records the schema version and the segment's offset, time and
//!   epoch ranges, so a node can rebuild a manifest entry from the object alone.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use pyralog_types::batch::Batch;
use pyralog_types::{Epoch, LogOffset, Record, TimestampMicros};
use serde::{Deserialize, Serialize};

use crate::error::ColdError;

mod columnar;
mod decode;
mod ledger;
mod rebuild;
mod rows;
mod wire;
mod writer;

pub(crate) use columnar::ColumnSlicer;
pub use columnar::{encode_ipc, wire_to_columns, ArrowIpc, IpcError};
pub(crate) use rows::RowSink;

pub(crate) use decode::{check_schema_version, decode_groups_arrow, decode_row_groups};
pub use decode::{decode_rows, for_each_ledger_row, segment_meta_from_parquet};
pub use ledger::{chain_column, ledger_schema, LedgerSeal, CHAIN_COLUMN};
pub use rebuild::records_to_batches;
pub(crate) use wire::{Columns, WireWriter};
pub use writer::SegmentWriter;

/// Version of the Parquet schema written by this crate (`pyralog.schema_version`).
///
/// 2: `offset`, `epoch`, `bucket_seconds` and `count` are INT64 (were UINT64) and every
/// column carries its Iceberg field id. Version 1 files are still read (their unsigned
/// columns are reinterpreted on decode, see `decode::normalize`).
pub const SCHEMA_VERSION: u32 = 2;

/// Schema versions this crate reads.
pub const READABLE_SCHEMA_VERSIONS: [u32; 2] = [1, 2];

/// The Iceberg field id of every column (`PARQUET:field_id` in the file schema), so an
/// Iceberg table over the archive maps columns by id, not by name. Part of the format.
pub mod field_ids {
    pub const OFFSET: i32 = 1;
    pub const EPOCH: i32 = 2;
    pub const TIMESTAMP: i32 = 3;
    pub const KEY: i32 = 4;
    pub const VALUE: i32 = 5;
    pub const HEADERS: i32 = 6;
    pub const HEADER_ELEMENT: i32 = 7;
    pub const HEADER_KEY: i32 = 8;
    pub const HEADER_VALUE: i32 = 9;
    /// The metric columns of downsampled time-series segments, ids 20 to 26 in column order.
    pub const SERIES: i32 = 20;
    pub const BUCKET_START: i32 = 21;
    pub const BUCKET_SECONDS: i32 = 22;
    pub const COUNT: i32 = 23;
    pub const SUM: i32 = 24;
    pub const MIN: i32 = 25;
    pub const MAX: i32 = 26;
    /// The chain column of a ledger log's segments (see `codec::ledger`).
    pub const CHAIN: i32 = 30;
}

/// `field` with its Iceberg field id in the metadata Parquet writes into the file schema.
fn with_id(field: Field, id: i32) -> Field {
    let meta = std::collections::HashMap::from([(
        parquet::arrow::PARQUET_FIELD_ID_META_KEY.to_owned(),
        id.to_string(),
    )]);
    field.with_metadata(meta)
}

/// Names of the file key-value metadata entries.
pub mod meta_keys {
    pub const SCHEMA_VERSION: &str = "pyralog.schema_version";
    pub const BASE_OFFSET: &str = "pyralog.base_offset";
    pub const LAST_OFFSET: &str = "pyralog.last_offset";
    pub const MIN_TIMESTAMP: &str = "pyralog.min_timestamp";
    pub const MAX_TIMESTAMP: &str = "pyralog.max_timestamp";
    pub const RECORD_COUNT: &str = "pyralog.record_count";
    /// JSON list of `{"epoch": e, "start_offset": o}`, one per epoch in the segment.
    pub const EPOCHS: &str = "pyralog.epochs";
    /// A ledger object's seal, each a lowercase hex SHA-256 (absent on other logs).
    pub const LEDGER_CHAIN_START: &str = "pyralog.ledger.chain_start";
    pub const LEDGER_CHAIN_END: &str = "pyralog.ledger.chain_end";
    pub const LEDGER_MERKLE_ROOT: &str = "pyralog.ledger.merkle_root";
    /// The chain definition's number (`pyralog_ledger::ChainVersion`); absent: 2.
    pub const LEDGER_CHAIN_VERSION: &str = "pyralog.ledger.chain_version";
}

/// Column positions of the schema (stable: part of the format).
pub(crate) const COL_OFFSET: usize = 0;
pub(crate) const COL_TIMESTAMP: usize = 2;

/// How a segment is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncodeOptions {
    /// Payload bytes (key + value + headers) per row group: the unit of a ranged read.
    pub row_group_bytes: usize,
    /// zstd level for every column.
    pub zstd_level: i32,
    /// Most rows per data page, which bounds the page index granularity.
    pub data_page_row_limit: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            row_group_bytes: 1024 * 1024,
            zstd_level: 3,
            data_page_row_limit: 4096,
        }
    }
}

/// Where one epoch starts inside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: Epoch,
    pub start_offset: LogOffset,
}

/// What a segment file holds; mirrored in its key-value metadata and its manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub base_offset: LogOffset,
    pub last_offset: LogOffset,
    pub min_timestamp: TimestampMicros,
    pub max_timestamp: TimestampMicros,
    pub record_count: u64,
    pub epochs: Vec<EpochStart>,
    /// Bytes at the end of the file that hold its footer (page index and metadata), as the
    /// writer wrote them; 0 = not known (a meta read back from the file). Readers fetch the
    /// footer in one GET of this size.
    #[serde(default)]
    pub footer_bytes: u64,
    /// The chain and Merkle root of a ledger log's object (`None` on other logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSeal>,
}

/// A segment encoded as Parquet, ready to upload.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub bytes: Bytes,
    pub meta: SegmentMeta,
}

/// The Arrow schema of a cold segment.
pub fn arrow_schema() -> SchemaRef {
    use field_ids as id;
    Arc::new(Schema::new(vec![
        with_id(Field::new("offset", DataType::Int64, false), id::OFFSET),
        with_id(Field::new("epoch", DataType::Int64, false), id::EPOCH),
        with_id(
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            id::TIMESTAMP,
        ),
        with_id(Field::new("key", DataType::Binary, true), id::KEY),
        with_id(Field::new("value", DataType::Binary, true), id::VALUE),
        with_id(
            Field::new("headers", DataType::List(header_item_field()), false),
            id::HEADERS,
        ),
    ]))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        with_id(
            Field::new("key", DataType::Utf8, false),
            field_ids::HEADER_KEY,
        ),
        with_id(
            Field::new("value", DataType::Binary, false),
            field_ids::HEADER_VALUE,
        ),
    ])
}

fn header_item_field() -> Arc<Field> {
    Arc::new(with_id(
        Field::new("element", DataType::Struct(header_fields()), false),
        field_ids::HEADER_ELEMENT,
    ))
}

/// Encodes the closed segment made of `batches` (hot-tier format, in offset order). Every
/// batch's CRC is verified first: corrupt local data is never archived.
pub fn encode_segment(
    batches: &[Batch],
    opts: &EncodeOptions,
) -> Result<EncodedSegment, ColdError> {
    let mut records = Vec::new();
    for b in batches {
        b.verify_crc()
            .and_then(|()| b.records())
            .map(|rs| records.extend(rs))
            .map_err(|e| ColdError::InvalidInput(format!("batch at {}: {e}", b.base_offset())))?;
    }
    encode_records(&records, opts)
}

/// The typed values of one downsampled bucket (time-series compaction), written next to the
/// record columns so SQL engines can query them without parsing the JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub series: String,
    pub bucket_start: TimestampMicros,
    pub bucket_seconds: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// The schema of a downsampled segment: the record columns, then the nullable metric columns
/// `series`, `bucket_start`, `bucket_seconds`, `count`, `sum`, `min`, `max` (null on rows that
/// are still raw records).
pub fn metrics_schema() -> SchemaRef {
    let mut fields: Vec<Field> = arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    use field_ids as id;
    fields.extend([
        with_id(Field::new("series", DataType::Utf8, true), id::SERIES),
        with_id(
            Field::new(
                "bucket_start",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            id::BUCKET_START,
        ),
        with_id(
            Field::new("bucket_seconds", DataType::Int64, true),
            id::BUCKET_SECONDS,
        ),
        with_id(Field::new("count", DataType::Int64, true), id::COUNT),
        with_id(Field::new("sum", DataType::Float64, true), id::SUM),
        with_id(Field::new("min", DataType::Float64, true), id::MIN),
        with_id(Field::new("max", DataType::Float64, true), id::MAX),
    ]);
    Arc::new(Schema::new(fields))
}

/// Encodes records (strictly increasing offsets, non-decreasing epochs; gaps allowed, as
/// after key-based compaction) as one segment file.
pub fn encode_records(
    records: &[Record],
    opts: &EncodeOptions,
) -> Result<EncodedSegment, ColdError> {
    encode_inner(records, None, opts)
}

/// Like [`encode_records`], with `metrics[i]` the typed bucket values of `records[i]` (or
/// `None` for a raw record): the form of a downsampled time-series segment.
pub fn encode_metric_records(
    records: &[Record],
    metrics: &[Option<MetricRow>],
    opts: &EncodeOptions,
) -> Result<EncodedSegment, ColdError> {
    if metrics.len() != records.len() {
        return Err(ColdError::InvalidInput(format!(
            "{} metric rows for {} records",
            metrics.len(),
            records.len()
        )));
    }
    encode_inner(records, Some(metrics), opts)
}

fn encode_inner(
    records: &[Record],
    metrics: Option<&[Option<MetricRow>]>,
    opts: &EncodeOptions,
) -> Result<EncodedSegment, ColdError> {
    let mut w = match metrics {
        None => SegmentWriter::new(Vec::new(), opts)?,
        Some(_) => SegmentWriter::with_metrics(Vec::new(), opts)?,
    };
    w.write_all(records, metrics)?;
    let (bytes, meta) = w.finish()?;
    Ok(EncodedSegment {
        bytes: Bytes::from(bytes),
        meta,
    })
}

/// Writer settings shared by every segment file (the footer's key-value metadata is added by
/// [`SegmentWriter::finish`], once the segment's ranges are known).
fn writer_properties(opts: &EncodeOptions) -> Result<WriterProperties, ColdError> {
    let level = ZstdLevel::try_new(opts.zstd_level)
        .map_err(|e| ColdError::InvalidInput(format!("zstd level {}: {e}", opts.zstd_level)))?;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_data_page_row_count_limit(opts.data_page_row_limit.max(1))
        .set_statistics_enabled(EnabledStatistics::None);
    for col in ["offset", "timestamp"] {
        b = b
            .set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::Page)
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    // A ledger's chain values are 32 random bytes each: a dictionary never pays and zstd
    // cannot shrink them, so both would only cost the archiver time.
    let chain = ColumnPath::from(ledger::CHAIN_COLUMN);
    b = b
        .set_column_dictionary_enabled(chain.clone(), false)
        .set_column_encoding(chain.clone(), Encoding::PLAIN)
        .set_column_compression(chain, Compression::UNCOMPRESSED);
    Ok(b.build())
}

fn to_record_batch(
    records: &[Record],
    metrics: Option<&[Option<MetricRow>]>,
) -> Result<RecordBatch, ColdError> {
    let signed = |what: &str, v: u64| {
        i64::try_from(v).map_err(|_| ColdError::InvalidInput(format!("{what} {v} above 2^63")))
    };
    let offsets = records
        .iter()
        .map(|r| signed("offset", r.offset.0))
        .collect::<Result<Int64Array, _>>()?;
    let epochs = records
        .iter()
        .map(|r| signed("epoch", r.epoch.0))
        .collect::<Result<Int64Array, _>>()?;
    let ts = TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.timestamp))
        .with_timezone("UTC");
    let keys: BinaryArray = records.iter().map(|r| r.key.as_deref()).collect();
    let values: BinaryArray = records.iter().map(|r| r.value.as_deref()).collect();
    let mut list_offsets = Vec::with_capacity(records.len() + 1);
    list_offsets.push(0i32);
    let mut total = 0i32;
    for r in records {
        let n = i32::try_from(r.headers.len())
            .ok()
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| ColdError::InvalidInput("too many headers in one row group".into()))?;
        total = n;
        list_offsets.push(total);
    }
    let hkeys = StringArray::from_iter_values(
        records
            .iter()
            .flat_map(|r| r.headers.iter().map(|h| h.key.as_str())),
    );
    let hvalues = BinaryArray::from_iter_values(
        records
            .iter()
            .flat_map(|r| r.headers.iter().map(|h| h.value.as_ref())),
    );
    let items = StructArray::try_new(
        header_fields(),
        vec![Arc::new(hkeys) as ArrayRef, Arc::new(hvalues)],
        None,
    )
    .map_err(|e| ColdError::InvalidInput(format!("headers: {e}")))?;
    let headers = ListArray::try_new(
        header_item_field(),
        OffsetBuffer::new(ScalarBuffer::from(list_offsets)),
        Arc::new(items),
        None,
    )
    .map_err(|e| ColdError::InvalidInput(format!("headers: {e}")))?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(offsets),
        Arc::new(epochs),
        Arc::new(ts),
        Arc::new(keys),
        Arc::new(values),
        Arc::new(headers),
    ];
    let schema = match metrics {
        None => arrow_schema(),
        Some(m) => {
            let series: StringArray = m.iter().map(|r| r.as_ref().map(|r| &r.series)).collect();
            let start: TimestampMicrosecondArray = m
                .iter()
                .map(|r| r.as_ref().map(|r| r.bucket_start))
                .collect();
            let secs: Int64Array = m
                .iter()
                .map(|r| r.as_ref().map(|r| saturating_i64(r.bucket_seconds)))
                .collect();
            let count: Int64Array = m
                .iter()
                .map(|r| r.as_ref().map(|r| saturating_i64(r.count)))
                .collect();
            let f = |get: fn(&MetricRow) -> f64| -> Float64Array {
                m.iter().map(|r| r.as_ref().map(get)).collect()
            };
            columns.extend([
                Arc::new(series) as ArrayRef,
                Arc::new(start.with_timezone("UTC")),
                Arc::new(secs),
                Arc::new(count),
                Arc::new(f(|r| r.sum)),
                Arc::new(f(|r| r.min)),
                Arc::new(f(|r| r.max)),
            ]);
            metrics_schema()
        }
    };
    RecordBatch::try_new(schema, columns)
        .map_err(|e| ColdError::InvalidInput(format!("record batch: {e}")))
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
