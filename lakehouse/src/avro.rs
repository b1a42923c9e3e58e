//! Iceberg's Avro files: manifests (one entry per data file) and manifest lists (one entry per
//! manifest), written and read back with `apache-avro`.
//!
//! The Avro schemas are the v2 spec's, with the `field-id` attributes readers resolve fields
//! by. Only what Pyralog writes is modelled (data files, no delete files); reading is for our
//! own files: the previous snapshot's entries keep their snapshot ids and sequence numbers
//! when a new snapshot carries them over as EXISTING.

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::{Reader, Schema, Writer};

use crate::error::LakehouseError;
use crate::spec::{int_bound, read_int_bound, Spec};

/// Status of a manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Existing,
    Added,
    Deleted,
}

impl Status {
    fn code(self) -> i32 {
        match self {
            Status::Existing => 0,
            Status::Added => 1,
            Status::Deleted => 2,
        }
    }

    fn from_code(c: i32) -> Option<Status> {
        match c {
            0 => Some(Status::Existing),
            1 => Some(Status::Added),
            2 => Some(Status::Deleted),
            _ => None,
        }
    }
}

/// One Parquet object as an Iceberg data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Absolute URI (`s3://bucket/key`).
    pub path: String,
    pub spec: Spec,
    pub partition: i32,
    /// Days since the epoch; `Some` exactly under [`Spec::ByPartitionAndDay`].
    pub day: Option<i32>,
    pub record_count: i64,
    pub size_bytes: i64,
    pub value_counts: Vec<(i32, i64)>,
    pub null_value_counts: Vec<(i32, i64)>,
    pub lower_bounds: Vec<(i32, Vec<u8>)>,
    pub upper_bounds: Vec<(i32, Vec<u8>)>,
}

/// A data file in a manifest, with the snapshot that added it and its sequence numbers (as
/// read: inherited values already filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub status: Status,
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub file_sequence_number: i64,
    pub file: DataFile,
}

/// A manifest as a manifest list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub length: i64,
    pub spec: Spec,
    pub sequence_number: i64,
    pub min_sequence_number: i64,
    pub added_snapshot_id: i64,
    pub added_files: i32,
    pub existing_files: i32,
    pub deleted_files: i32,
    pub added_rows: i64,
    pub existing_rows: i64,
    pub deleted_rows: i64,
    /// The log partition all its files belong to (Pyralog writes one manifest per log
    /// partition and spec).
    pub partition: i32,
    /// Lowest and highest day of its files (spec 1 only).
    pub days: Option<(i32, i32)>,
}

fn map_schema(name: &str, key_id: i32, value_id: i32, value_type: &str, field_id: i32) -> String {
    format!(
        r#"{{"name":"{name}","type":["null",{{"type":"array","logicalType":"map","items":{{"type":"record","name":"k{key_id}_v{value_id}","fields":[{{"name":"key","type":"int","field-id":{key_id}}},{{"name":"value","type":"{value_type}","field-id":{value_id}}}]}}}}],"default":null,"field-id":{field_id}}}"#
    )
}

fn partition_schema(spec: Spec) -> String {
    let partition = r#"{"name":"partition","type":["null","int"],"default":null,"field-id":1000}"#;
    match spec {
        Spec::ByPartition => {
            format!(r#"{{"type":"record","name":"r102","fields":[{partition}]}}"#)
        }
        Spec::ByPartitionAndDay => format!(
            r#"{{"type":"record","name":"r102","fields":[{partition},{{"name":"timestamp_day","type":["null",{{"type":"int","logicalType":"date"}}],"default":null,"field-id":1001}}]}}"#
        ),
    }
}

/// The v2 `manifest_entry` schema for files of `spec`.
fn entry_schema(spec: Spec) -> String {
    let maps = [
        map_schema("column_sizes", 117, 118, "long", 108),
        map_schema("value_counts", 119, 120, "long", 109),
        map_schema("null_value_counts", 121, 122, "long", 110),
        map_schema("nan_value_counts", 138, 139, "long", 137),
        map_schema("lower_bounds", 126, 127, "bytes", 125),
        map_schema("upper_bounds", 129, 130, "bytes", 128),
    ]
    .join(",");
    let partition = partition_schema(spec);
    format!(
        r#"{{"type":"record","name":"manifest_entry","fields":[
{{"name":"status","type":"int","field-id":0}},
{{"name":"snapshot_id","type":["null","long"],"default":null,"field-id":1}},
{{"name":"sequence_number","type":["null","long"],"default":null,"field-id":3}},
{{"name":"file_sequence_number","type":["null","long"],"default":null,"field-id":4}},
{{"name":"data_file","field-id":2,"type":{{"type":"record","name":"r2","fields":[
{{"name":"content","type":"int","field-id":134}},
{{"name":"file_path","type":"string","field-id":100}},
{{"name":"file_format","type":"string","field-id":101}},
{{"name":"partition","type":{partition},"field-id":102}},
{{"name":"record_count","type":"long","field-id":103}},
{{"name":"file_size_in_bytes","type":"long","field-id":104}},
{maps},
{{"name":"key_metadata","type":["null","bytes"],"default":null,"field-id":131}},
{{"name":"split_offsets","type":["null",{{"type":"array","items":"long","element-id":133}}],"default":null,"field-id":132}},
{{"name":"equality_ids","type":["null",{{"type":"array","items":"int","element-id":136}}],"default":null,"field-id":135}},
{{"name":"sort_order_id","type":["null","int"],"default":null,"field-id":140}}
]}}}}]}}"#
    )
}

/// The v2 `manifest_file` schema (an entry of a manifest list).
const MANIFEST_FILE_SCHEMA: &str = r#"{"type":"record","name":"manifest_file","fields":[
{"name":"manifest_path","type":"string","field-id":500},
{"name":"manifest_length","type":"long","field-id":501},
{"name":"partition_spec_id","type":"int","field-id":502},
{"name":"content","type":"int","field-id":517},
{"name":"sequence_number","type":"long","field-id":515},
{"name":"min_sequence_number","type":"long","field-id":516},
{"name":"added_snapshot_id","type":"long","field-id":503},
{"name":"added_files_count","type":"int","field-id":504},
{"name":"existing_files_count","type":"int","field-id":505},
{"name":"deleted_files_count","type":"int","field-id":506},
{"name":"added_rows_count","type":"long","field-id":512},
{"name":"existing_rows_count","type":"long","field-id":513},
{"name":"deleted_rows_count","type":"long","field-id":514},
{"name":"partitions","type":["null",{"type":"array","element-id":508,"items":{"type":"record","name":"r508","fields":[
{"name":"contains_null","type":"boolean","field-id":509},
{"name":"contains_nan","type":["null","boolean"],"default":null,"field-id":518},
{"name":"lower_bound","type":["null","bytes"],"default":null,"field-id":510},
{"name":"upper_bound","type":["null","bytes"],"default":null,"field-id":511}]}}],"default":null,"field-id":507},
{"name":"key_metadata","type":["null","bytes"],"default":null,"field-id":519}
]}"#;

/// The largest single allocation the Avro decoder may make for one length field (a string,
/// bytes, or an array block's item count). Pyralog's table files hold short paths and 8-byte
/// bounds, so 1 MiB is far above any real value, and a damaged length field fails instead of
/// reserving gigabytes. `apache-avro` keeps this limit process-wide; it is set before the
/// first decode.
pub const MAX_AVRO_ALLOCATION: usize = 1 << 20;

fn reader(bytes: &[u8]) -> Result<Reader<'_, &[u8]>, apache_avro::Error> {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
    Reader::new(bytes)
}

fn parse(schema: &str) -> Result<Schema, LakehouseError> {
    Schema::parse_str(schema).map_err(|e| LakehouseError::corrupt("avro schema", e))
}

fn some(v: Value) -> Value {
    Value::Union(1, Box::new(v))
}

fn none() -> Value {
    Value::Union(0, Box::new(Value::Null))
}

fn opt_long(v: Option<i64>) -> Value {
    v.map_or_else(none, |v| some(Value::Long(v)))
}

fn int_map<T: Clone>(pairs: &[(i32, T)], value: impl Fn(T) -> Value) -> Value {
    some(Value::Array(
        pairs
            .iter()
            .map(|(k, v)| {
                Value::Record(vec![
                    ("key".into(), Value::Int(*k)),
                    ("value".into(), value(v.clone())),
                ])
            })
            .collect(),
    ))
}

fn empty_map() -> Value {
    some(Value::Array(Vec::new()))
}

/// What a manifest's header says about its table (the Iceberg spec's required metadata).
#[derive(Debug, Clone)]
pub struct ManifestHeader {
    pub schema_json: String,
    pub spec: Spec,
}

/// Encodes a manifest of `entries` (all under `header.spec`). ADDED entries are written with
/// null sequence numbers, which readers inherit from the manifest list.
pub fn write_manifest(
    header: &ManifestHeader,
    entries: &[ManifestEntry],
) -> Result<Vec<u8>, LakehouseError> {
    let schema = parse(&entry_schema(header.spec))?;
    let avro = |e: apache_avro::Error| LakehouseError::corrupt("manifest encode", e);
    let mut w = Writer::new(&schema, Vec::new());
    let spec_json = header.spec.fields_json().to_string();
    for (k, v) in [
        ("schema", header.schema_json.as_str()),
        ("schema-id", "0"),
        ("partition-spec", spec_json.as_str()),
        ("partition-spec-id", &header.spec.id().to_string()),
        ("format-version", "2"),
        ("content", "data"),
    ] {
        w.add_user_metadata(k.to_owned(), v).map_err(avro)?;
    }
    for e in entries {
        if e.file.spec != header.spec {
            return Err(LakehouseError::corrupt(
                "manifest encode",
                "an entry under another partition spec",
            ));
        }
        let inherited = e.status == Status::Added;
        let seq = |v: i64| {
            if inherited {
                none()
            } else {
                some(Value::Long(v))
            }
        };
        let f = &e.file;
        let mut partition = vec![("partition".to_owned(), some(Value::Int(f.partition)))];
        if header.spec == Spec::ByPartitionAndDay {
            let day = f.day.map_or_else(none, |d| some(Value::Date(d)));
            partition.push(("timestamp_day".to_owned(), day));
        }
        let data_file = Value::Record(vec![
            ("content".into(), Value::Int(0)),
            ("file_path".into(), Value::String(f.path.clone())),
            ("file_format".into(), Value::String("PARQUET".into())),
            ("partition".into(), Value::Record(partition)),
            ("record_count".into(), Value::Long(f.record_count)),
            ("file_size_in_bytes".into(), Value::Long(f.size_bytes)),
            ("column_sizes".into(), none()),
            ("value_counts".into(), int_map(&f.value_counts, Value::Long)),
            (
                "null_value_counts".into(),
                int_map(&f.null_value_counts, Value::Long),
            ),
            ("nan_value_counts".into(), empty_map()),
            (
                "lower_bounds".into(),
                int_map(&f.lower_bounds, Value::Bytes),
            ),
            (
                "upper_bounds".into(),
                int_map(&f.upper_bounds, Value::Bytes),
            ),
            ("key_metadata".into(), none()),
            ("split_offsets".into(), none()),
            ("equality_ids".into(), none()),
            ("sort_order_id".into(), none()),
        ]);
        let record = Value::Record(vec![
            ("status".into(), Value::Int(e.status.code())),
            ("snapshot_id".into(), opt_long(Some(e.snapshot_id))),
            ("sequence_number".into(), seq(e.sequence_number)),
            ("file_sequence_number".into(), seq(e.file_sequence_number)),
            ("data_file".into(), data_file),
        ]);
        w.append(record).map_err(avro)?;
    }
    w.into_inner().map_err(avro)
}

/// Reads a manifest back; `listed` is its entry in the manifest list, whose sequence number
/// and snapshot id ADDED entries inherit.
pub fn read_manifest(
    bytes: &[u8],
    listed: &ManifestFile,
) -> Result<Vec<ManifestEntry>, LakehouseError> {
    guarded(&listed.path, || read_manifest_unguarded(bytes, listed))
}

/// `apache-avro` still unwraps on some damaged headers (an invalid schema name in the file's
/// own schema, found by the `iceberg_table` fuzz target): a panic while decoding a file from
/// the bucket is a corrupt file, never a crashed node.
fn guarded<T>(
    what: &str,
    decode: impl FnOnce() -> Result<T, LakehouseError>,
) -> Result<T, LakehouseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err(LakehouseError::corrupt(what, "the Avro decoder panicked")))
}

fn read_manifest_unguarded(
    bytes: &[u8],
    listed: &ManifestFile,
) -> Result<Vec<ManifestEntry>, LakehouseError> {
    let what = listed.path.as_str();
    let bad = |reason: &str| LakehouseError::corrupt(what, reason);
    let reader = reader(bytes).map_err(|e| LakehouseError::corrupt(what, e))?;
    let mut out = Vec::new();
    for v in reader {
        let v = v.map_err(|e| LakehouseError::corrupt(what, e))?;
        let top = fields(&v).ok_or_else(|| bad("an entry is not a record"))?;
        let status = int(top.get("status"))
            .and_then(Status::from_code)
            .ok_or_else(|| bad("bad status"))?;
        let df = top
            .get("data_file")
            .and_then(|v| fields(v))
            .ok_or_else(|| bad("no data_file"))?;
        let part = df
            .get("partition")
            .and_then(|v| fields(v))
            .ok_or_else(|| bad("no partition"))?;
        let partition = int(part.get("partition")).ok_or_else(|| bad("no partition value"))?;
        let day = int(part.get("timestamp_day"));
        let spec = if part.contains_key("timestamp_day") {
            Spec::ByPartitionAndDay
        } else {
            Spec::ByPartition
        };
        let seq = long(top.get("sequence_number")).unwrap_or(listed.sequence_number);
        out.push(ManifestEntry {
            status,
            snapshot_id: long(top.get("snapshot_id")).unwrap_or(listed.added_snapshot_id),
            sequence_number: seq,
            file_sequence_number: long(top.get("file_sequence_number")).unwrap_or(seq),
            file: DataFile {
                path: string(df.get("file_path")).ok_or_else(|| bad("no file_path"))?,
                spec,
                partition,
                day,
                record_count: long(df.get("record_count")).ok_or_else(|| bad("no count"))?,
                size_bytes: long(df.get("file_size_in_bytes")).ok_or_else(|| bad("no size"))?,
                value_counts: pairs(df.get("value_counts"), |v| long(Some(&v))),
                null_value_counts: pairs(df.get("null_value_counts"), |v| long(Some(&v))),
                lower_bounds: pairs(df.get("lower_bounds"), bytes_of),
                upper_bounds: pairs(df.get("upper_bounds"), bytes_of),
            },
        });
    }
    Ok(out)
}

fn summary(lower: i32, upper: i32) -> Value {
    Value::Record(vec![
        ("contains_null".into(), Value::Boolean(false)),
        ("contains_nan".into(), some(Value::Boolean(false))),
        ("lower_bound".into(), some(Value::Bytes(int_bound(lower)))),
        ("upper_bound".into(), some(Value::Bytes(int_bound(upper)))),
    ])
}

/// Encodes a manifest list for snapshot `snapshot_id` (parent `parent`, `sequence_number`).
pub fn write_manifest_list(
    snapshot_id: i64,
    parent: Option<i64>,
    sequence_number: i64,
    manifests: &[ManifestFile],
) -> Result<Vec<u8>, LakehouseError> {
    let schema = parse(MANIFEST_FILE_SCHEMA)?;
    let avro = |e: apache_avro::Error| LakehouseError::corrupt("manifest list encode", e);
    let mut w = Writer::new(&schema, Vec::new());
    let parent = parent.map_or_else(|| "null".to_owned(), |p| p.to_string());
    for (k, v) in [
        ("snapshot-id", snapshot_id.to_string()),
        ("parent-snapshot-id", parent),
        ("sequence-number", sequence_number.to_string()),
        ("format-version", "2".to_owned()),
    ] {
        w.add_user_metadata(k.to_owned(), v).map_err(avro)?;
    }
    for m in manifests {
        let mut parts = vec![summary(m.partition, m.partition)];
        if m.spec == Spec::ByPartitionAndDay {
            let (lo, hi) = m.days.unwrap_or((0, 0));
            parts.push(summary(lo, hi));
        }
        let record = Value::Record(vec![
            ("manifest_path".into(), Value::String(m.path.clone())),
            ("manifest_length".into(), Value::Long(m.length)),
            ("partition_spec_id".into(), Value::Int(m.spec.id())),
            ("content".into(), Value::Int(0)),
            ("sequence_number".into(), Value::Long(m.sequence_number)),
            (
                "min_sequence_number".into(),
                Value::Long(m.min_sequence_number),
            ),
            ("added_snapshot_id".into(), Value::Long(m.added_snapshot_id)),
            ("added_files_count".into(), Value::Int(m.added_files)),
            ("existing_files_count".into(), Value::Int(m.existing_files)),
            ("deleted_files_count".into(), Value::Int(m.deleted_files)),
            ("added_rows_count".into(), Value::Long(m.added_rows)),
            ("existing_rows_count".into(), Value::Long(m.existing_rows)),
            ("deleted_rows_count".into(), Value::Long(m.deleted_rows)),
            ("partitions".into(), some(Value::Array(parts))),
            ("key_metadata".into(), none()),
        ]);
        w.append(record).map_err(avro)?;
    }
    w.into_inner().map_err(avro)
}

/// Reads a manifest list back.
pub fn read_manifest_list(bytes: &[u8], what: &str) -> Result<Vec<ManifestFile>, LakehouseError> {
    guarded(what, || read_manifest_list_unguarded(bytes, what))
}

fn read_manifest_list_unguarded(
    bytes: &[u8],
    what: &str,
) -> Result<Vec<ManifestFile>, LakehouseError> {
    let bad = |reason: &str| LakehouseError::corrupt(what, reason);
    let reader = reader(bytes).map_err(|e| LakehouseError::corrupt(what, e))?;
    let mut out = Vec::new();
    for v in reader {
        let v = v.map_err(|e| LakehouseError::corrupt(what, e))?;
        let f = fields(&v).ok_or_else(|| bad("an entry is not a record"))?;
        let get_long = |k: &str| long(f.get(k)).ok_or_else(|| bad(k));
        let get_int = |k: &str| int(f.get(k)).ok_or_else(|| bad(k));
        let spec = get_int("partition_spec_id").and_then(|s| {
            Spec::from_id(s).ok_or_else(|| bad("a partition spec this table does not have"))
        })?;
        let bounds: Vec<(i32, i32)> = match f.get("partitions").map(|v| unwrap_union(v)) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|s| {
                    let s = fields(s)?;
                    let lo = bytes_of(s.get("lower_bound")?)?;
                    let hi = bytes_of(s.get("upper_bound")?)?;
                    Some((read_int_bound(&lo)?, read_int_bound(&hi)?))
                })
                .collect(),
            _ => Vec::new(),
        };
        let partition = bounds
            .first()
            .filter(|(lo, hi)| lo == hi)
            .map(|b| b.0)
            .ok_or_else(|| bad("a manifest not of one log partition"))?;
        out.push(ManifestFile {
            path: string(f.get("manifest_path")).ok_or_else(|| bad("manifest_path"))?,
            length: get_long("manifest_length")?,
            spec,
            sequence_number: get_long("sequence_number")?,
            min_sequence_number: get_long("min_sequence_number")?,
            added_snapshot_id: get_long("added_snapshot_id")?,
            added_files: get_int("added_files_count")?,
            existing_files: get_int("existing_files_count")?,
            deleted_files: get_int("deleted_files_count")?,
            added_rows: get_long("added_rows_count")?,
            existing_rows: get_long("existing_rows_count")?,
            deleted_rows: get_long("deleted_rows_count")?,
            partition,
            days: bounds.get(1).copied(),
        });
    }
    Ok(out)
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn fields(v: &Value) -> Option<HashMap<&str, &Value>> {
    match unwrap_union(v) {
        Value::Record(fs) => Some(fs.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        _ => None,
    }
}

fn int(v: Option<&&Value>) -> Option<i32> {
    match unwrap_union(v?) {
        Value::Int(i) | Value::Date(i) => Some(*i),
        _ => None,
    }
}

fn long(v: Option<&&Value>) -> Option<i64> {
    match unwrap_union(v?) {
        Value::Long(i) => Some(*i),
        _ => None,
    }
}

fn string(v: Option<&&Value>) -> Option<String> {
    match unwrap_union(v?) {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match unwrap_union(v) {
        Value::Bytes(b) => Some(b.clone()),
        _ => None,
    }
}

fn pairs<T>(v: Option<&&Value>, value: impl Fn(&Value) -> Option<T>) -> Vec<(i32, T)> {
    let Some(Value::Array(items)) = v.map(|v| unwrap_union(v)) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|kv| {
            let kv = fields(kv)?;
            Some((int(kv.get("key"))?, value(kv.get("value")?)?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
