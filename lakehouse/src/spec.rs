//! The table's fixed parts: schema, partition specs, name mapping, and Iceberg's binary form
//! of column bounds.
//!
//! The schema is the archive's Parquet schema under the same field ids
//! ([`pyralog_cold_tier::field_ids`]), plus `partition` (id 10), the log partition, which the
//! data files do not store: it is an identity partition, whose value readers take from the
//! manifest (the Iceberg spec's rule for identity columns missing from a file). It is optional
//! in the schema although never null: pyiceberg refuses a required column a file lacks before
//! it looks at the partition value (seen with pyiceberg 0.12; DuckDB reads either way).
//!
//! Two partition specs, because an Iceberg data file belongs to exactly one partition tuple:
//! - spec 1 (the default), `partition` + `day(timestamp)`, for the files whose records all fall
//!   on one UTC day: nearly all of them, as segments are cut by size and time;
//! - spec 0, `partition` only, for a file whose records span days (producers set timestamps,
//!   so a segment may straddle midnight or hold late records). Readers still prune such a file
//!   by its `timestamp` bounds.

use pyralog_cold_tier::field_ids as id;
use serde_json::{json, Value};

/// Field id of the identity-partition source column `partition`.
pub const PARTITION_FIELD_ID: i32 = 10;
/// Highest column field id in the schema.
pub const LAST_COLUMN_ID: i32 = id::MAX;
/// Partition field ids (Iceberg numbers them from 1000).
pub const PARTITION_PART_ID: i32 = 1000;
pub const DAY_PART_ID: i32 = 1001;

/// Which partition spec a data file is written under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Spec {
    /// Spec 0: the log partition only (the file's records span several days).
    ByPartition,
    /// Spec 1: the log partition and the UTC day of every record's timestamp.
    ByPartitionAndDay,
}

impl Spec {
    pub fn id(self) -> i32 {
        match self {
            Spec::ByPartition => 0,
            Spec::ByPartitionAndDay => 1,
        }
    }

    pub fn from_id(id: i32) -> Option<Spec> {
        match id {
            0 => Some(Spec::ByPartition),
            1 => Some(Spec::ByPartitionAndDay),
            _ => None,
        }
    }

    /// The spec of a file whose timestamps run from `min` to `max` (µs since the epoch), and
    /// its day when it has one.
    pub fn of_range(min_us: i64, max_us: i64) -> (Spec, Option<i32>) {
        let (a, b) = (day_of(min_us), day_of(max_us));
        if a == b {
            (Spec::ByPartitionAndDay, Some(a))
        } else {
            (Spec::ByPartition, None)
        }
    }

    /// The spec's `fields` array, as table metadata and manifest headers carry it.
    pub fn fields_json(self) -> Value {
        let partition = json!({"field-id": PARTITION_PART_ID, "name": "partition",
            "transform": "identity", "source-id": PARTITION_FIELD_ID});
        match self {
            Spec::ByPartition => json!([partition]),
            Spec::ByPartitionAndDay => json!([partition, {"field-id": DAY_PART_ID,
                "name": "timestamp_day", "transform": "day", "source-id": id::TIMESTAMP}]),
        }
    }

    /// The spec as table metadata lists it.
    pub fn json(self) -> Value {
        json!({"spec-id": self.id(), "fields": self.fields_json()})
    }
}

/// Days since 1970-01-01 of a timestamp in µs (Iceberg's `day` transform).
pub fn day_of(us: i64) -> i32 {
    let day = us.div_euclid(86_400_000_000);
    i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX })
}

/// The table schema (schema id 0).
pub fn schema_json() -> Value {
    let ts = "timestamptz";
    json!({
        "type": "struct",
        "schema-id": 0,
        "identifier-field-ids": [],
        "fields": [
            {"id": id::OFFSET, "name": "offset", "required": true, "type": "long",
             "doc": "the record's offset in its partition"},
            {"id": id::EPOCH, "name": "epoch", "required": true, "type": "long",
             "doc": "the leader epoch that wrote the record"},
            {"id": id::TIMESTAMP, "name": "timestamp", "required": true, "type": ts},
            {"id": id::KEY, "name": "key", "required": false, "type": "binary"},
            {"id": id::VALUE, "name": "value", "required": false, "type": "binary",
             "doc": "null: a tombstone"},
            {"id": id::HEADERS, "name": "headers", "required": true, "type": {
                "type": "list", "element-id": id::HEADER_ELEMENT, "element-required": true,
                "element": {"type": "struct", "fields": [
                    {"id": id::HEADER_KEY, "name": "key", "required": true, "type": "string"},
                    {"id": id::HEADER_VALUE, "name": "value", "required": true, "type": "binary"}
                ]}}},
            {"id": PARTITION_FIELD_ID, "name": "partition", "required": false, "type": "int",
             "doc": "the log partition (from the manifest: data files do not store it)"},
            {"id": id::SERIES, "name": "series", "required": false, "type": "string",
             "doc": "downsampled rows only: the series"},
            {"id": id::BUCKET_START, "name": "bucket_start", "required": false, "type": ts},
            {"id": id::BUCKET_SECONDS, "name": "bucket_seconds", "required": false, "type": "long"},
            {"id": id::COUNT, "name": "count", "required": false, "type": "long"},
            {"id": id::SUM, "name": "sum", "required": false, "type": "double"},
            {"id": id::MIN, "name": "min", "required": false, "type": "double"},
            {"id": id::MAX, "name": "max", "required": false, "type": "double"}
        ]
    })
}

/// `schema.name-mapping.default`: how to read files without field ids (archive schema
/// version 1) by column name.
pub fn name_mapping_json() -> String {
    let leaf = |fid: i32, name: &str| json!({"field-id": fid, "names": [name]});
    json!([
        leaf(id::OFFSET, "offset"),
        leaf(id::EPOCH, "epoch"),
        leaf(id::TIMESTAMP, "timestamp"),
        leaf(id::KEY, "key"),
        leaf(id::VALUE, "value"),
        {"field-id": id::HEADERS, "names": ["headers"], "fields": [
            {"field-id": id::HEADER_ELEMENT, "names": ["element"], "fields": [
                leaf(id::HEADER_KEY, "key"), leaf(id::HEADER_VALUE, "value")]}]},
        leaf(id::SERIES, "series"),
        leaf(id::BUCKET_START, "bucket_start"),
        leaf(id::BUCKET_SECONDS, "bucket_seconds"),
        leaf(id::COUNT, "count"),
        leaf(id::SUM, "sum"),
        leaf(id::MIN, "min"),
        leaf(id::MAX, "max"),
    ])
    .to_string()
}

/// Iceberg's single-value binary form of a `long` or `timestamptz` (8 bytes little-endian).
pub fn long_bound(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Iceberg's single-value binary form of an `int` or `date` (4 bytes little-endian).
pub fn int_bound(v: i32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Reads an `int` bound back.
pub fn read_int_bound(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_utc_calendar_on_both_sides_of_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_400_000_000 - 1), 0);
        assert_eq!(day_of(86_400_000_000), 1);
        assert_eq!(day_of(-1), -1, "the instant before the epoch is 1969-12-31");
        // 2026-12-03T00:00:00Z
        assert_eq!(day_of(1_796_256_000_000_000), 20_790);
    }

    #[test]
    fn a_file_within_one_day_gets_the_day_spec() {
        let day = 20_790i64 * 86_400_000_000;
        assert_eq!(
            Spec::of_range(day, day + 5),
            (Spec::ByPartitionAndDay, Some(20_790))
        );
        assert_eq!(Spec::of_range(day - 1, day), (Spec::ByPartition, None));
        assert_eq!(
            Spec::from_id(Spec::ByPartition.id()),
            Some(Spec::ByPartition)
        );
        assert_eq!(Spec::from_id(7), None);
    }

    #[test]
    fn bounds_round_trip() {
        assert_eq!(read_int_bound(&int_bound(-3)), Some(-3));
        assert_eq!(read_int_bound(&long_bound(3)), None);
        assert_eq!(long_bound(1), [1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
