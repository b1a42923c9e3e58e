//! The table metadata file (`metadata/v{N}.metadata.json`, Iceberg format version 2), and
//! snapshot expiry.
//!
//! Fields this crate does not change (schema, partition specs, sort order) are written once,
//! by [`TableMetadata::new`]; every commit adds a snapshot, moves `main` to it, and drops the
//! snapshots [`TableSettings`] says are no longer needed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{self, Spec};

/// Table property holding each log partition's archive-manifest version the current snapshot
/// reflects (JSON `{"0": 17, "1": 4}`), so a publisher knows what is already in the table.
pub const MANIFEST_VERSIONS: &str = "pyralog.manifest-versions";

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    pub snapshot_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot_id: Option<i64>,
    pub sequence_number: i64,
    pub timestamp_ms: i64,
    pub manifest_list: String,
    pub summary: BTreeMap<String, String>,
    pub schema_id: i32,
}

impl Snapshot {
    /// The archive-manifest version per log partition this snapshot reflects.
    pub fn manifest_versions(&self) -> HashMap<u32, u64> {
        self.summary
            .get(MANIFEST_VERSIONS)
            .and_then(|s| serde_json::from_str::<HashMap<String, u64>>(s).ok())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotLogEntry {
    pub snapshot_id: i64,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetadataLogEntry {
    pub metadata_file: String,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotRef {
    pub snapshot_id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `v{N}.metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableMetadata {
    pub format_version: u8,
    pub table_uuid: String,
    pub location: String,
    pub last_sequence_number: i64,
    pub last_updated_ms: i64,
    pub last_column_id: i32,
    pub current_schema_id: i32,
    pub schemas: Vec<Value>,
    pub default_spec_id: i32,
    pub partition_specs: Vec<Value>,
    pub last_partition_id: i32,
    pub default_sort_order_id: i32,
    pub sort_orders: Vec<Value>,
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_snapshot_id: Option<i64>,
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    #[serde(default)]
    pub snapshot_log: Vec<SnapshotLogEntry>,
    #[serde(default)]
    pub metadata_log: Vec<MetadataLogEntry>,
    #[serde(default)]
    pub refs: BTreeMap<String, SnapshotRef>,
}

impl TableMetadata {
    /// A table with no snapshot yet.
    pub fn new(table_uuid: String, location: String, log: &str, now_ms: i64) -> Self {
        let properties = BTreeMap::from([
            (
                "schema.name-mapping.default".to_owned(),
                spec::name_mapping_json(),
            ),
            ("write.format.default".to_owned(), "parquet".to_owned()),
            ("pyralog.log".to_owned(), log.to_owned()),
            (
                "comment".to_owned(),
                "Written by Pyralog from the log's archive manifests; read-only for engines."
                    .to_owned(),
            ),
        ]);
        TableMetadata {
            format_version: 2,
            table_uuid,
            location,
            last_sequence_number: 0,
            last_updated_ms: now_ms,
            last_column_id: spec::LAST_COLUMN_ID,
            current_schema_id: 0,
            schemas: vec![spec::schema_json()],
            default_spec_id: Spec::ByPartitionAndDay.id(),
            partition_specs: vec![Spec::ByPartition.json(), Spec::ByPartitionAndDay.json()],
            last_partition_id: spec::DAY_PART_ID,
            default_sort_order_id: 0,
            sort_orders: vec![serde_json::json!({"order-id": 0, "fields": []})],
            properties,
            current_snapshot_id: None,
            snapshots: Vec::new(),
            snapshot_log: Vec::new(),
            metadata_log: Vec::new(),
            refs: BTreeMap::new(),
        }
    }

    pub fn current_snapshot(&self) -> Option<&Snapshot> {
        let id = self.current_snapshot_id?;
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    /// Makes `snapshot` current (the `main` branch); `previous_file` is the metadata file
    /// this version replaces, for the metadata log.
    pub fn add_snapshot(&mut self, snapshot: Snapshot, previous_file: Option<String>) {
        if let Some(file) = previous_file {
            self.metadata_log.push(MetadataLogEntry {
                metadata_file: file,
                timestamp_ms: self.last_updated_ms,
            });
        }
        self.last_sequence_number = snapshot.sequence_number;
        self.last_updated_ms = snapshot.timestamp_ms;
        self.current_snapshot_id = Some(snapshot.snapshot_id);
        self.refs.insert(
            "main".to_owned(),
            SnapshotRef {
                snapshot_id: snapshot.snapshot_id,
                kind: "branch".to_owned(),
            },
        );
        self.snapshot_log.push(SnapshotLogEntry {
            snapshot_id: snapshot.snapshot_id,
            timestamp_ms: snapshot.timestamp_ms,
        });
        self.snapshots.push(snapshot);
    }

    /// Drops the snapshots `expiry` no longer keeps (never the current one) and trims the
    /// metadata log; returns the dropped snapshots and metadata files, whose files the caller
    /// may delete once nothing kept references them.
    pub fn expire(&mut self, expiry: &TableSettings, now_ms: i64) -> (Vec<Snapshot>, Vec<String>) {
        let current = self.current_snapshot_id;
        let max_age_ms = i64::try_from(expiry.max_snapshot_age.as_millis()).unwrap_or(i64::MAX);
        let cap = expiry.max_snapshots.max(1);
        let n = self.snapshots.len();
        let mut expired = Vec::new();
        let mut kept = Vec::new();
        // A snapshot's age counts from when the next one replaced it: a query that started
        // on it just before keeps its files for `max_snapshot_age`.
        let superseded: Vec<i64> = self
            .snapshots
            .iter()
            .skip(1)
            .map(|s| s.timestamp_ms)
            .chain([now_ms])
            .collect();
        for (i, s) in std::mem::take(&mut self.snapshots).into_iter().enumerate() {
            let young = now_ms.saturating_sub(superseded[i]) < max_age_ms;
            let within_cap = i + cap >= n;
            if Some(s.snapshot_id) == current || (young && within_cap) {
                kept.push(s);
            } else {
                expired.push(s);
            }
        }
        self.snapshots = kept;
        let live: std::collections::HashSet<i64> =
            self.snapshots.iter().map(|s| s.snapshot_id).collect();
        self.snapshot_log.retain(|e| live.contains(&e.snapshot_id));
        let drop = self
            .metadata_log
            .len()
            .saturating_sub(expiry.max_metadata_files.max(1));
        let old_files = self
            .metadata_log
            .drain(..drop)
            .map(|e| e.metadata_file)
            .collect();
        (expired, old_files)
    }
}

/// `[cold_tier.iceberg]`: whether archived logs get Iceberg tables, and how long superseded
/// snapshots stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableSettings {
    /// Publish an Iceberg table per archived log (default on).
    pub enabled: bool,
    /// A snapshot is expired this long after a newer one replaced it (a query that started
    /// on it may then miss files that compaction or retention removed, once orphan
    /// collection deletes them).
    #[serde(with = "humantime_serde")]
    pub max_snapshot_age: Duration,
    /// At most this many snapshots are kept whatever their age, which bounds the metadata
    /// file a busy log rewrites on every commit.
    pub max_snapshots: usize,
    /// Previous metadata files kept (and listed in the metadata log); older ones are deleted.
    /// At least 1 (a commit checks that no newer version exists; keeping the one before it
    /// stops a slow writer from re-creating it unnoticed in the common case).
    pub max_metadata_files: usize,
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings {
            enabled: true,
            max_snapshot_age: Duration::from_secs(3600),
            max_snapshots: 100,
            max_metadata_files: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: i64, ts: i64) -> Snapshot {
        Snapshot {
            snapshot_id: id,
            parent_snapshot_id: None,
            sequence_number: id,
            timestamp_ms: ts,
            manifest_list: format!("list-{id}"),
            summary: BTreeMap::new(),
            schema_id: 0,
        }
    }

    #[test]
    fn expiry_keeps_the_current_and_young_snapshots_up_to_the_cap() {
        let mut m = TableMetadata::new("u".into(), "file:///t".into(), "orders", 0);
        for id in 1..=10 {
            m.add_snapshot(snap(id, id * 1000), Some(format!("v{id}")));
        }
        let expiry = TableSettings {
            enabled: true,
            max_snapshot_age: Duration::from_secs(5),
            max_snapshots: 3,
            max_metadata_files: 4,
        };
        // At t = 11 s, snapshots 7..=10 are younger than 5 s; the cap keeps the newest 3.
        let (expired, old_files) = m.expire(&expiry, 11_000);
        let kept: Vec<i64> = m.snapshots.iter().map(|s| s.snapshot_id).collect();
        assert_eq!(kept, [8, 9, 10]);
        assert_eq!(expired.len(), 7);
        assert_eq!(m.snapshot_log.len(), 3);
        assert_eq!(old_files, ["v1", "v2", "v3", "v4", "v5", "v6"]);
        assert_eq!(m.metadata_log.len(), 4);

        // Long after, only the current snapshot stays.
        let (expired, _) = m.expire(&expiry, 1_000_000);
        assert_eq!(expired.len(), 2);
        assert_eq!(m.current_snapshot().map(|s| s.snapshot_id), Some(10));
    }

    #[test]
    fn metadata_round_trips_as_iceberg_json() {
        let mut m = TableMetadata::new("u".into(), "s3://b/log=x".into(), "x", 5);
        let mut s = snap(42, 6);
        s.summary
            .insert(MANIFEST_VERSIONS.into(), r#"{"0":3,"2":9}"#.into());
        m.add_snapshot(s, None);
        let text = serde_json::to_string(&m).expect("json");
        assert!(text.contains(r#""format-version":2"#), "{text}");
        assert!(text.contains(r#""current-snapshot-id":42"#), "{text}");
        let back: TableMetadata = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, m);
        let versions = back
            .current_snapshot()
            .expect("current")
            .manifest_versions();
        assert_eq!(versions, HashMap::from([(0, 3), (2, 9)]));
    }
}
