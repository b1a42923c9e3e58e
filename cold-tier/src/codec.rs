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
    Array, ArrayRef, BinaryArray, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::{Bytes, BytesMut};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::ChunkReader;
use parquet::schema::types::ColumnPath;
use pyralog_types::batch::{self, Batch, BatchBuilder, NewRecord};
use pyralog_types::{Epoch, Header, LogOffset, Record, TimestampMicros};
use serde::{Deserialize, Serialize};

use crate::error::ColdError;

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

/// Encodes records (strictly increasing offsets, non-decreasing epochs; gaps allowed, as
/// after key-based compaction) as one segment file.
pub fn encode_records(
    records: &[Record],
    opts: &EncodeOptions,
) -> Result<EncodedSegment, ColdError> {
    let meta = segment_meta(records)?;
    let props = writer_properties(&meta, opts)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), arrow_schema(), Some(props))
        .map_err(|e| ColdError::InvalidInput(format!("parquet writer: {e}")))?;
    let target = opts.row_group_bytes.max(1);
    let mut start = 0;
    let mut payload = 0usize;
    for (i, r) in records.iter().enumerate() {
        payload += r.payload_len() + 24;
        if payload >= target || i + 1 == records.len() {
            let rb = to_record_batch(&records[start..=i])?;
            writer
                .write(&rb)
                .and_then(|()| writer.flush())
                .map_err(|e| ColdError::InvalidInput(format!("parquet write: {e}")))?;
            start = i + 1;
            payload = 0;
        }
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ColdError::InvalidInput(format!("parquet close: {e}")))?;
    Ok(EncodedSegment {
        bytes: Bytes::from(bytes),
        meta,
    })
}

fn segment_meta(records: &[Record]) -> Result<SegmentMeta, ColdError> {
    let (first, last) = match (records.first(), records.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => {
            return Err(ColdError::InvalidInput(
                "a segment needs at least one record".into(),
            ))
        }
    };
    let mut epochs = vec![EpochStart {
        epoch: first.epoch,
        start_offset: first.offset,
    }];
    let (mut min_ts, mut max_ts) = (first.timestamp, first.timestamp);
    for w in records.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.offset <= a.offset {
            return Err(ColdError::InvalidInput(format!(
                "offsets must increase: {} then {}",
                a.offset, b.offset
            )));
        }
        if b.epoch < a.epoch {
            return Err(ColdError::InvalidInput(format!(
                "epochs must not decrease: {} at {} then {} at {}",
                a.epoch, a.offset, b.epoch, b.offset
            )));
        }
        if b.epoch != a.epoch {
            epochs.push(EpochStart {
                epoch: b.epoch,
                start_offset: b.offset,
            });
        }
        min_ts = min_ts.min(b.timestamp);
        max_ts = max_ts.max(b.timestamp);
    }
    Ok(SegmentMeta {
        base_offset: first.offset,
        last_offset: last.offset,
        min_timestamp: min_ts,
        max_timestamp: max_ts,
        record_count: records.len() as u64,
        epochs,
    })
}

fn writer_properties(
    meta: &SegmentMeta,
    opts: &EncodeOptions,
) -> Result<WriterProperties, ColdError> {
    let level = ZstdLevel::try_new(opts.zstd_level)
        .map_err(|e| ColdError::InvalidInput(format!("zstd level {}: {e}", opts.zstd_level)))?;
    let epochs = serde_json::to_string(&meta.epochs)
        .map_err(|e| ColdError::InvalidInput(format!("epochs metadata: {e}")))?;
    let kv = vec![
        KeyValue::new(meta_keys::SCHEMA_VERSION.into(), SCHEMA_VERSION.to_string()),
        KeyValue::new(
            meta_keys::BASE_OFFSET.into(),
            meta.base_offset.0.to_string(),
        ),
        KeyValue::new(
            meta_keys::LAST_OFFSET.into(),
            meta.last_offset.0.to_string(),
        ),
        KeyValue::new(
            meta_keys::MIN_TIMESTAMP.into(),
            meta.min_timestamp.to_string(),
        ),
        KeyValue::new(
            meta_keys::MAX_TIMESTAMP.into(),
            meta.max_timestamp.to_string(),
        ),
        KeyValue::new(
            meta_keys::RECORD_COUNT.into(),
            meta.record_count.to_string(),
        ),
        KeyValue::new(meta_keys::EPOCHS.into(), epochs),
    ];
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_data_page_row_count_limit(opts.data_page_row_limit.max(1))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_key_value_metadata(Some(kv));
    for col in ["offset", "timestamp"] {
        b = b
            .set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::Page)
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    Ok(b.build())
}

fn to_record_batch(records: &[Record]) -> Result<RecordBatch, ColdError> {
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
    RecordBatch::try_new(
        arrow_schema(),
        vec![
            Arc::new(offsets),
            Arc::new(epochs),
            Arc::new(ts),
            Arc::new(keys),
            Arc::new(values),
            Arc::new(headers),
        ],
    )
    .map_err(|e| ColdError::InvalidInput(format!("record batch: {e}")))
}

/// Decodes every record of a whole Parquet segment file held in memory.
pub fn decode_rows(file: Bytes) -> Result<Vec<Record>, ColdError> {
    let what = "parquet segment";
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColdError::corrupt(what, e))?;
    check_schema_version(builder.metadata(), what)?;
    let reader = builder.build().map_err(|e| ColdError::corrupt(what, e))?;
    collect_records(reader, what)
}

/// Decodes the given row groups of a file whose metadata is already parsed. `reader` needs
/// to hold only those row groups' bytes (see [`crate::reader`]).
pub(crate) fn decode_row_groups<R: ChunkReader + 'static>(
    reader: R,
    meta: &ArrowReaderMetadata,
    row_groups: Vec<usize>,
    what: &str,
) -> Result<Vec<Record>, ColdError> {
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, meta.clone())
        .with_row_groups(row_groups)
        .build()
        .map_err(|e| ColdError::corrupt(what, e))?;
    collect_records(reader, what)
}

fn collect_records(
    reader: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
    what: &str,
) -> Result<Vec<Record>, ColdError> {
    let mut out = Vec::new();
    for rb in reader {
        let rb = rb.map_err(|e| ColdError::corrupt(what, e))?;
        records_from_batch(&rb, &mut out).map_err(|reason| ColdError::corrupt(what, reason))?;
    }
    Ok(out)
}

/// Rejects files written with a schema version this build does not know.
pub(crate) fn check_schema_version(meta: &ParquetMetaData, what: &str) -> Result<(), ColdError> {
    match kv(meta, meta_keys::SCHEMA_VERSION) {
        Some(v) if v == SCHEMA_VERSION.to_string() => Ok(()),
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
    Ok(SegmentMeta {
        base_offset: LogOffset(u(meta_keys::BASE_OFFSET)?),
        last_offset: LogOffset(u(meta_keys::LAST_OFFSET)?),
        min_timestamp: i(meta_keys::MIN_TIMESTAMP)?,
        max_timestamp: i(meta_keys::MAX_TIMESTAMP)?,
        record_count: u(meta_keys::RECORD_COUNT)?,
        epochs,
    })
}

fn column<'a, T: 'static>(rb: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    rb.column_by_name(name)
        .ok_or_else(|| format!("missing column {name}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has an unexpected type"))
}

/// Appends the rows of one Arrow batch as records; `Err` names what is wrong.
fn records_from_batch(rb: &RecordBatch, out: &mut Vec<Record>) -> Result<(), String> {
    let offsets = column::<UInt64Array>(rb, "offset")?;
    let epochs = column::<UInt64Array>(rb, "epoch")?;
    let ts = column::<TimestampMicrosecondArray>(rb, "timestamp")?;
    let keys = column::<BinaryArray>(rb, "key")?;
    let values = column::<BinaryArray>(rb, "value")?;
    let headers = column::<ListArray>(rb, "headers")?;
    let items = headers
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or("headers are not a list of structs")?;
    let hkeys = items
        .column_by_name("key")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or("header key column missing or mistyped")?;
    let hvalues = items
        .column_by_name("value")
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or("header value column missing or mistyped")?;
    if offsets.null_count() + epochs.null_count() + ts.null_count() + headers.null_count() > 0
        || hkeys.null_count() + hvalues.null_count() > 0
    {
        return Err("null in a non-nullable column".into());
    }
    let list_offsets = headers.value_offsets();
    let opt =
        |a: &BinaryArray, i: usize| (!a.is_null(i)).then(|| Bytes::copy_from_slice(a.value(i)));
    for i in 0..rb.num_rows() {
        let (from, to) = (list_offsets[i], list_offsets[i + 1]);
        let range = usize::try_from(from).ok().zip(usize::try_from(to).ok());
        let (from, to) = range
            .filter(|(f, t)| f <= t && *t <= hkeys.len())
            .ok_or("bad header list offsets")?;
        out.push(Record {
            offset: LogOffset(offsets.value(i)),
            epoch: Epoch(epochs.value(i)),
            timestamp: ts.value(i),
            key: opt(keys, i),
            value: opt(values, i),
            headers: (from..to)
                .map(|j| Header {
                    key: hkeys.value(j).to_owned(),
                    value: Bytes::copy_from_slice(hvalues.value(j)),
                })
                .collect(),
        });
    }
    Ok(())
}

/// Rebuilds hot-format batches from records (in offset order): consecutive records of the
/// same epoch share a batch of at most about `max_batch_bytes`; offset gaps are kept with
/// [`BatchBuilder::push_at`]. Batches are uncompressed, carry no producer id, and have their
/// base offset and epoch assigned, exactly like batches read from a hot segment.
pub fn records_to_batches(
    records: &[Record],
    max_batch_bytes: usize,
) -> Result<Vec<Bytes>, ColdError> {
    let mut out = Vec::new();
    let mut cur: Option<(LogOffset, Epoch, BatchBuilder)> = None;
    for (i, r) in records.iter().enumerate() {
        if i > 0 && records[i - 1].offset >= r.offset {
            return Err(ColdError::InvalidInput(format!(
                "offsets must increase: {} then {}",
                records[i - 1].offset,
                r.offset
            )));
        }
        let fits = cur.as_ref().and_then(|(base, epoch, b)| {
            let delta = r
                .offset
                .0
                .checked_sub(base.0)
                .and_then(|d| u32::try_from(d).ok())?;
            let room = b.estimated_size() + r.payload_len() + 32 <= max_batch_bytes;
            (*epoch == r.epoch && room).then_some(delta)
        });
        let delta = match fits {
            Some(d) => d,
            None => {
                if let Some(done) = cur.take() {
                    out.push(finish(done)?);
                }
                cur = Some((
                    r.offset,
                    r.epoch,
                    BatchBuilder::new(batch::Compression::None),
                ));
                0
            }
        };
        if let Some((_, _, b)) = cur.as_mut() {
            let nr = NewRecord {
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            };
            b.push_at(delta, &nr)
                .map_err(|e| ColdError::InvalidInput(format!("record {}: {e}", r.offset)))?;
        }
    }
    if let Some(done) = cur {
        out.push(finish(done)?);
    }
    Ok(out)
}

fn finish((base, epoch, builder): (LogOffset, Epoch, BatchBuilder)) -> Result<Bytes, ColdError> {
    let bytes = builder
        .build()
        .map_err(|e| ColdError::InvalidInput(format!("batch at {base}: {e}")))?;
    let mut buf = BytesMut::from(bytes.as_ref());
    batch::assign(&mut buf, base, epoch);
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod tests;
