//! The Parquet form of a closed segment, and the way back to hot-tier batches.
//!
//! A cold segment is one Parquet file with the stable schema of the design page (`offset`,
//! `epoch`, `timestamp`, `key`, `value`, `headers`), so any SQL engine can query archived
//! data, and so the gateway can rebuild hot-format batches from it: cold data is served in
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
    ArrayRef, BinaryArray, Float64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, UInt64Array,
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
mod rebuild;
mod rows;
mod wire;
mod writer;

pub(crate) use columnar::ColumnSlicer;
pub use columnar::{encode_ipc, wire_to_columns, ArrowIpc, IpcError};
pub(crate) use rows::RowSink;

pub(crate) use decode::{check_schema_version, decode_groups_arrow, decode_row_groups};
pub use decode::{decode_rows, segment_meta_from_parquet};
pub use rebuild::records_to_batches;
pub(crate) use wire::{Columns, WireWriter};
pub use writer::SegmentWriter;

/// Version of the Parquet schema written by this crate (`pyralog.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

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
}

/// A segment encoded as Parquet, ready to upload.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub bytes: Bytes,
    pub meta: SegmentMeta,
}

/// The Arrow schema of a cold segment.
pub fn arrow_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("offset", DataType::UInt64, false),
        Field::new("epoch", DataType::UInt64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("headers", DataType::List(header_item_field()), false),
    ]))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, false),
    ])
}

fn header_item_field() -> Arc<Field> {
    Arc::new(Field::new(
        "element",
        DataType::Struct(header_fields()),
        false,
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
    fields.extend([
        Field::new("series", DataType::Utf8, true),
        Field::new(
            "bucket_start",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("bucket_seconds", DataType::UInt64, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
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
    Ok(b.build())
}

fn to_record_batch(
    records: &[Record],
    metrics: Option<&[Option<MetricRow>]>,
) -> Result<RecordBatch, ColdError> {
    let offsets = UInt64Array::from_iter_values(records.iter().map(|r| r.offset.0));
    let epochs = UInt64Array::from_iter_values(records.iter().map(|r| r.epoch.0));
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
            let secs: UInt64Array = m
                .iter()
                .map(|r| r.as_ref().map(|r| r.bucket_seconds))
                .collect();
            let count: UInt64Array = m.iter().map(|r| r.as_ref().map(|r| r.count)).collect();
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

#[cfg(test)]
pub(crate) mod tests;
