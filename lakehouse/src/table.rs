//! Publishing a log's archive as an Iceberg table, and reading which objects it references.
//!
//! The archive manifests stay the source of truth; the table is derived from them. A commit
//! takes the current table version, replaces the manifests of the log partitions whose
//! archive manifest changed (one Iceberg manifest per log partition and partition spec,
//! listing every live object, with the ones that left marked DELETED once), carries the other
//! partitions' manifests over by path, and creates `v{N+1}.metadata.json` with a create-only
//! PUT. Several nodes lead partitions of the same log and publish concurrently: exactly one
//! creates each version, the others reload and redo their change on top. The table property
//! [`MANIFEST_VERSIONS`] records which archive-manifest version each partition reflects, so a
//! repeated or stale publication changes nothing.
//!
//! After a commit, `version-hint.text` names the new version (for readers that open a table
//! by its folder; it may briefly lag when two commits race, which only shows an older
//! snapshot), and expired snapshots' manifest lists and manifests are deleted. Data files are
//! never deleted here: the archive's orphan collection does that, and asks
//! [`IcebergTables::referenced_keys`] first, so a file a kept snapshot lists stays readable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;
use pyralog_cold_tier::{ColdSegment, Layout, Manifest, ObjectStoreConfig};
use pyralog_types::LogId;
use tracing::{debug, info, warn};

use crate::avro::{
    read_manifest, read_manifest_list, write_manifest, write_manifest_list, DataFile,
    ManifestEntry, ManifestFile, ManifestHeader, Status,
};
use crate::error::LakehouseError;
use crate::metadata::{Snapshot, TableMetadata, TableSettings, MANIFEST_VERSIONS};
use crate::spec::{long_bound, Spec};

/// Commit attempts before a publication gives up (each conflict reloads the table).
const COMMIT_ATTEMPTS: u32 = 8;
const METADATA_DIR: &str = "metadata";
const VERSION_HINT: &str = "version-hint.text";

/// The absolute URI prefix of the bucket's keys for table files (`s3://bucket`,
/// `gs://bucket`, `az://container`, `file:///dir`): Iceberg names files by absolute URI.
pub fn base_uri(cfg: &ObjectStoreConfig) -> Result<String, LakehouseError> {
    let url = url::Url::parse(&cfg.url)
        .map_err(|e| LakehouseError::Config(format!("object store url {:?}: {e}", cfg.url)))?;
    match url.scheme() {
        "file" => Ok(format!("file://{}", url.path().trim_end_matches('/'))),
        "memory" => Ok("memory://".to_owned()),
        scheme => {
            let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
                LakehouseError::Config(format!("object store url {:?} names no bucket", cfg.url))
            })?;
            Ok(format!("{scheme}://{host}"))
        }
    }
}

/// The Iceberg tables of one archive (bucket + prefix): one per log.
#[derive(Debug)]
pub struct IcebergTables {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    base_uri: String,
    settings: TableSettings,
    /// Parsed manifest lists and manifests by path: both are immutable once written.
    lists: Mutex<HashMap<String, Arc<Vec<ManifestFile>>>>,
    manifests: Mutex<HashMap<String, Arc<Vec<ManifestEntry>>>>,
}

/// A table version as loaded.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    pub version: u64,
    pub metadata: TableMetadata,
    /// The metadata file's URI.
    pub location: String,
}

impl IcebergTables {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        layout: Layout,
        base_uri: String,
        settings: TableSettings,
    ) -> Self {
        IcebergTables {
            store,
            layout,
            base_uri,
            settings,
            lists: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
        }
    }

    /// `{prefix}/log={log}`: the table's location.
    pub fn table_dir(&self, log: &LogId) -> Path {
        self.layout.log_dir(log)
    }

    fn metadata_dir(&self, log: &LogId) -> Path {
        self.table_dir(log).join(METADATA_DIR)
    }

    fn metadata_key(&self, log: &LogId, version: u64) -> Path {
        self.metadata_dir(log)
            .join(format!("v{version}.metadata.json").as_str())
    }

    /// The absolute URI of a key.
    pub fn uri(&self, key: &str) -> String {
        format!("{}/{key}", self.base_uri.trim_end_matches('/'))
    }

    /// The key of a URI this archive wrote (`None`: another bucket's).
    fn key_of<'a>(&self, uri: &'a str) -> Option<&'a str> {
        uri.strip_prefix(self.base_uri.trim_end_matches('/'))?
            .strip_prefix('/')
    }

    /// The URI of the table's current metadata file (what a catalog hands out).
    pub async fn current_location(&self, log: &LogId) -> Result<Option<String>, LakehouseError> {
        Ok(self.load(log).await?.map(|t| t.location))
    }

    /// Whether `log` has a table (one LIST of its metadata folder).
    pub async fn exists(&self, log: &LogId) -> Result<bool, LakehouseError> {
        Ok(self.newest_version(log).await?.is_some())
    }

    /// The highest `v{N}.metadata.json` in the table's folder.
    async fn newest_version(&self, log: &LogId) -> Result<Option<u64>, LakehouseError> {
        let dir = self.metadata_dir(log);
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| LakehouseError::store("list", &dir, e))?;
        Ok(listed
            .iter()
            .filter_map(|o| parse_metadata_version(o.location.filename()?))
            .max())
    }

    /// The table's newest version (`None`: never published).
    pub async fn load(&self, log: &LogId) -> Result<Option<LoadedTable>, LakehouseError> {
        let Some(version) = self.newest_version(log).await? else {
            return Ok(None);
        };
        let key = self.metadata_key(log, version);
        let bytes = self.get(&key).await?;
        let metadata: TableMetadata =
            serde_json::from_slice(&bytes).map_err(|e| LakehouseError::corrupt(key.as_ref(), e))?;
        Ok(Some(LoadedTable {
            version,
            metadata,
            location: self.uri(key.as_ref()),
        }))
    }

    async fn get(&self, key: &Path) -> Result<bytes::Bytes, LakehouseError> {
        let res = self
            .store
            .get(key)
            .await
            .map_err(|e| LakehouseError::store("get", key, e))?;
        res.bytes()
            .await
            .map_err(|e| LakehouseError::store("get", key, e))
    }

    async fn put(
        &self,
        key: &Path,
        body: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), object_store::Error> {
        self.store
            .put_opts(key, PutPayload::from(body), PutOptions::from(mode))
            .await
            .map(|_| ())
    }

    fn path_of(&self, uri: &str) -> Result<Path, LakehouseError> {
        let key = self
            .key_of(uri)
            .ok_or_else(|| LakehouseError::corrupt(uri, "not a file of this archive"))?;
        Path::parse(key).map_err(|e| LakehouseError::corrupt(uri, e))
    }

    async fn manifest_list(&self, uri: &str) -> Result<Arc<Vec<ManifestFile>>, LakehouseError> {
        if let Some(l) = self.lists.lock().get(uri) {
            return Ok(l.clone());
        }
        let bytes = self.get(&self.path_of(uri)?).await?;
        let list = Arc::new(read_manifest_list(&bytes, uri)?);
        self.lists.lock().insert(uri.to_owned(), list.clone());
        Ok(list)
    }

    async fn manifest(&self, mf: &ManifestFile) -> Result<Arc<Vec<ManifestEntry>>, LakehouseError> {
        if let Some(m) = self.manifests.lock().get(&mf.path) {
            return Ok(m.clone());
        }
        let bytes = self.get(&self.path_of(&mf.path)?).await?;
        let entries = Arc::new(read_manifest(&bytes, mf)?);
        self.manifests
            .lock()
            .insert(mf.path.clone(), entries.clone());
        Ok(entries)
    }

    /// Publishes the archive manifests of some of `log`'s partitions: one new snapshot holding
    /// their live objects (and every other partition's, unchanged). Returns the new snapshot's
    /// id, or `None` when the table already reflects every given manifest version (snapshots
    /// that aged out are then still expired, in a commit without a new snapshot).
    pub async fn publish(
        &self,
        log: &LogId,
        manifests: &[Manifest],
        now_ms: i64,
    ) -> Result<Option<i64>, LakehouseError> {
        for attempt in 0..COMMIT_ATTEMPTS {
            let current = self.load(log).await?;
            let known = current
                .as_ref()
                .and_then(|t| t.metadata.current_snapshot())
                .map(Snapshot::manifest_versions)
                .unwrap_or_default();
            let changed: Vec<&Manifest> = manifests
                .iter()
                .filter(|m| known.get(&m.partition).is_none_or(|&v| v < m.version))
                .collect();
            let (commit, written) = if changed.is_empty() {
                // Nothing new to publish; still expire what has aged out, in a commit of its
                // own (Iceberg's expire-snapshots), so old objects become collectable.
                match current.as_ref().and_then(|t| self.expire_only(t, now_ms)) {
                    Some(commit) => (commit, Vec::new()),
                    None => return Ok(None),
                }
            } else {
                self.prepare(log, current.as_ref(), &changed, now_ms)
                    .await?
            };
            let publishes = !changed.is_empty();
            let next = current.as_ref().map_or(1, |t| t.version + 1);
            let key = self.metadata_key(log, next);
            let body = serde_json::to_vec_pretty(&commit.metadata)
                .map_err(|e| LakehouseError::corrupt("table metadata", e))?;
            let created = match self.put(&key, body.clone(), PutMode::Create).await {
                Ok(()) => true,
                // Taken: by another writer, or by this very PUT when the store applied it but
                // answered with an error and the client retried it (the object then holds
                // exactly our bytes).
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => self
                    .get(&key)
                    .await
                    .is_ok_and(|existing| existing.as_ref() == body.as_slice()),
                Err(e) => return Err(LakehouseError::store("put", &key, e)),
            };
            if !created {
                debug!(%log, version = next, attempt, "table version taken; retrying");
                for path in written {
                    let _ = self.store.delete(&path).await;
                }
                continue;
            }
            // A version above ours means ours re-created one that expiry had deleted: readers
            // take the highest, so this commit is not the table's. Its files stay (the stray
            // version names them); the change is redone on the real head.
            if self.newest_version(log).await?.is_some_and(|v| v > next) {
                debug!(%log, version = next, attempt, "re-created an expired version; retrying");
                continue;
            }
            let id = commit.metadata.current_snapshot_id.filter(|_| publishes);
            self.after_commit(log, next, commit).await;
            return Ok(id);
        }
        Err(LakehouseError::Contended {
            log: log.to_string(),
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// Builds the next table version on `current` for the `changed` partitions, writing its
    /// manifests and manifest list. Returns the commit and the files written (deleted again
    /// if the commit loses its race).
    async fn prepare(
        &self,
        log: &LogId,
        current: Option<&LoadedTable>,
        changed: &[&Manifest],
        now_ms: i64,
    ) -> Result<(Commit, Vec<Path>), LakehouseError> {
        let mut metadata = match current {
            Some(t) => t.metadata.clone(),
            None => TableMetadata::new(
                random_uuid(),
                self.uri(self.table_dir(log).as_ref()),
                log.as_str(),
                now_ms,
            ),
        };
        let parent = metadata.current_snapshot().cloned();
        let previous: Vec<ManifestFile> = match &parent {
            Some(s) => self.manifest_list(&s.manifest_list).await?.to_vec(),
            None => Vec::new(),
        };
        let snapshot_id = random_id();
        let seq = metadata.last_sequence_number + 1;
        let partitions: HashSet<u32> = changed.iter().map(|m| m.partition).collect();
        let mut files: Vec<ManifestFile> = previous
            .iter()
            .filter(|mf| !partitions.contains(&(mf.partition as u32)))
            .cloned()
            .collect();
        let mut written = Vec::new();
        let mut stats = Stats::default();
        let schema = metadata
            .schemas
            .first()
            .ok_or_else(|| LakehouseError::corrupt("table metadata", "no schema"))?;
        let header_schema =
            serde_json::to_string(schema).map_err(|e| LakehouseError::corrupt("schema", e))?;
        for m in changed {
            let p = i32::try_from(m.partition)
                .map_err(|_| LakehouseError::corrupt("manifest", "partition above 2^31"))?;
            let mut old: HashMap<String, ManifestEntry> = HashMap::new();
            for mf in previous.iter().filter(|mf| mf.partition == p) {
                for e in self.manifest(mf).await?.iter() {
                    if e.status != Status::Deleted {
                        old.insert(e.file.path.clone(), e.clone());
                    }
                }
            }
            let mut by_spec: BTreeMap<Spec, Vec<ManifestEntry>> = BTreeMap::new();
            let mut live = HashSet::new();
            for s in &m.segments {
                let file = self.data_file(p, s);
                live.insert(file.path.clone());
                let entry = match old.get(&file.path) {
                    Some(prev) => ManifestEntry {
                        status: Status::Existing,
                        file,
                        ..prev.clone()
                    },
                    None => ManifestEntry {
                        status: Status::Added,
                        snapshot_id,
                        sequence_number: seq,
                        file_sequence_number: seq,
                        file,
                    },
                };
                by_spec.entry(entry.file.spec).or_default().push(entry);
            }
            for (path, prev) in old {
                if !live.contains(&path) {
                    by_spec
                        .entry(prev.file.spec)
                        .or_default()
                        .push(ManifestEntry {
                            status: Status::Deleted,
                            snapshot_id,
                            ..prev
                        });
                }
            }
            for (spec, entries) in by_spec {
                let header = ManifestHeader {
                    schema_json: header_schema.clone(),
                    spec,
                };
                let bytes = write_manifest(&header, &entries)?;
                let key = self
                    .metadata_dir(log)
                    .join(format!("{}-p{p}-s{}.avro", random_uuid(), spec.id()).as_str());
                let length = bytes.len() as i64;
                self.put(&key, bytes, PutMode::Overwrite)
                    .await
                    .map_err(|e| LakehouseError::store("put", &key, e))?;
                written.push(key.clone());
                let mf = manifest_file(
                    self.uri(key.as_ref()),
                    length,
                    spec,
                    p,
                    snapshot_id,
                    seq,
                    &entries,
                );
                stats.count(&mf);
                files.push(mf);
            }
        }
        for mf in &files {
            stats.total(mf);
        }
        files.sort_by_key(|mf| (mf.partition, mf.spec));
        let list_bytes = write_manifest_list(
            snapshot_id,
            parent.as_ref().map(|s| s.snapshot_id),
            seq,
            &files,
        )?;
        let list_key = self
            .metadata_dir(log)
            .join(format!("snap-{snapshot_id}-1-{}.avro", random_uuid()).as_str());
        self.put(&list_key, list_bytes, PutMode::Overwrite)
            .await
            .map_err(|e| LakehouseError::store("put", &list_key, e))?;
        written.push(list_key.clone());

        let mut versions = parent
            .as_ref()
            .map(Snapshot::manifest_versions)
            .unwrap_or_default();
        for m in changed {
            versions.insert(m.partition, m.version);
        }
        let versions: BTreeMap<String, u64> = versions
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut summary = stats.summary();
        summary.insert(
            MANIFEST_VERSIONS.to_owned(),
            serde_json::to_string(&versions).map_err(|e| LakehouseError::corrupt("summary", e))?,
        );
        let previous_file = current.map(|t| t.location.clone());
        metadata.add_snapshot(
            Snapshot {
                snapshot_id,
                parent_snapshot_id: parent.as_ref().map(|s| s.snapshot_id),
                sequence_number: seq,
                timestamp_ms: now_ms.max(metadata.last_updated_ms),
                manifest_list: self.uri(list_key.as_ref()),
                summary,
                schema_id: 0,
            },
            previous_file,
        );
        let (expired, old_metadata) = metadata.expire(&self.settings, now_ms);
        Ok((
            Commit {
                metadata,
                expired,
                old_metadata,
            },
            written,
        ))
    }

    /// The next version of `table` with only its aged-out snapshots expired (`None`: none).
    fn expire_only(&self, table: &LoadedTable, now_ms: i64) -> Option<Commit> {
        let mut metadata = table.metadata.clone();
        let (expired, mut old_metadata) = metadata.expire(&self.settings, now_ms);
        if expired.is_empty() {
            return None;
        }
        metadata
            .metadata_log
            .push(crate::metadata::MetadataLogEntry {
                metadata_file: table.location.clone(),
                timestamp_ms: metadata.last_updated_ms,
            });
        let drop = metadata
            .metadata_log
            .len()
            .saturating_sub(self.settings.max_metadata_files.max(1));
        old_metadata.extend(metadata.metadata_log.drain(..drop).map(|e| e.metadata_file));
        metadata.last_updated_ms = now_ms.max(metadata.last_updated_ms);
        Some(Commit {
            metadata,
            expired,
            old_metadata,
        })
    }

    fn data_file(&self, partition: i32, s: &ColdSegment) -> DataFile {
        let (spec, day) = Spec::of_range(s.min_timestamp, s.max_timestamp);
        let n = i64::try_from(s.record_count).unwrap_or(i64::MAX);
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let (offset, ts) = (
            pyralog_cold_tier::field_ids::OFFSET,
            pyralog_cold_tier::field_ids::TIMESTAMP,
        );
        DataFile {
            path: self.uri(&s.key),
            spec,
            partition,
            day,
            record_count: n,
            size_bytes: signed(s.size_bytes),
            value_counts: vec![(offset, n), (ts, n)],
            null_value_counts: vec![(offset, 0), (ts, 0)],
            lower_bounds: vec![
                (offset, long_bound(signed(s.base_offset.0))),
                (ts, long_bound(s.min_timestamp)),
            ],
            upper_bounds: vec![
                (offset, long_bound(signed(s.last_offset.0))),
                (ts, long_bound(s.max_timestamp)),
            ],
        }
    }

    /// Hint, then cleanup of what expired; failures are only logged, since the commit itself
    /// has happened (files it could not delete stay in `metadata/`: nothing collects them
    /// yet).
    async fn after_commit(&self, log: &LogId, version: u64, commit: Commit) {
        let hint = self.metadata_dir(log).join(VERSION_HINT);
        if let Err(e) = self
            .put(&hint, version.to_string().into_bytes(), PutMode::Overwrite)
            .await
        {
            warn!(%log, error = %e, "could not update the table's version hint");
        }
        if let Err(e) = self.delete_expired(&commit).await {
            warn!(%log, error = %e, "could not delete expired snapshot files");
        }
        info!(%log, version, snapshot = ?commit.metadata.current_snapshot_id, "published table snapshot");
    }

    async fn delete_expired(&self, commit: &Commit) -> Result<(), LakehouseError> {
        if commit.expired.is_empty() && commit.old_metadata.is_empty() {
            return Ok(());
        }
        let mut kept = HashSet::new();
        for s in &commit.metadata.snapshots {
            for mf in self.manifest_list(&s.manifest_list).await?.iter() {
                kept.insert(mf.path.clone());
            }
        }
        let mut doomed: Vec<String> = commit.old_metadata.clone();
        for s in &commit.expired {
            if let Ok(list) = self.manifest_list(&s.manifest_list).await {
                doomed.extend(
                    list.iter()
                        .map(|mf| mf.path.clone())
                        .filter(|p| !kept.contains(p)),
                );
            }
            doomed.push(s.manifest_list.clone());
        }
        for uri in doomed {
            self.lists.lock().remove(&uri);
            self.manifests.lock().remove(&uri);
            let path = self.path_of(&uri)?;
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakehouseError::store("delete", &path, e)),
            }
        }
        Ok(())
    }

    /// Object keys of `partition`'s data files that any kept snapshot of `log`'s table lists:
    /// the archive's orphan collection must keep them.
    pub async fn referenced_keys(
        &self,
        log: &LogId,
        partition: u32,
    ) -> Result<HashSet<String>, LakehouseError> {
        let mut out = HashSet::new();
        let Some(table) = self.load(log).await? else {
            return Ok(out);
        };
        let mut lists = HashSet::new();
        let mut manifests = HashSet::new();
        for s in &table.metadata.snapshots {
            lists.insert(s.manifest_list.clone());
            for mf in self.manifest_list(&s.manifest_list).await?.iter() {
                if !manifests.insert(mf.path.clone()) || mf.partition as u32 != partition {
                    continue;
                }
                for e in self.manifest(mf).await?.iter() {
                    if e.status == Status::Deleted {
                        continue;
                    }
                    // A file this archive cannot name would be unprotected: no GC then.
                    let key = self.key_of(&e.file.path).ok_or_else(|| {
                        LakehouseError::corrupt(&e.file.path, "a data file outside this archive")
                    })?;
                    out.insert(key.to_owned());
                }
            }
        }
        // Forget cached files of this table that no kept snapshot uses any more (another
        // node may have expired them), so the caches stay as large as the live tables.
        let prefix = self.uri(self.metadata_dir(log).as_ref());
        self.lists
            .lock()
            .retain(|path, _| !path.starts_with(&prefix) || lists.contains(path));
        self.manifests
            .lock()
            .retain(|path, _| !path.starts_with(&prefix) || manifests.contains(path));
        Ok(out)
    }

    /// Deletes the table of a deleted log (its metadata folder; data files go with the log).
    pub async fn drop_table(&self, log: &LogId) -> Result<(), LakehouseError> {
        let dir = self.metadata_dir(log);
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| LakehouseError::store("list", &dir, e))?;
        for o in listed {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakehouseError::store("delete", &o.location, e)),
            }
        }
        Ok(())
    }
}

/// A prepared table version.
#[derive(Debug)]
struct Commit {
    metadata: TableMetadata,
    expired: Vec<Snapshot>,
    old_metadata: Vec<String>,
}

fn manifest_file(
    path: String,
    length: i64,
    spec: Spec,
    partition: i32,
    snapshot_id: i64,
    seq: i64,
    entries: &[ManifestEntry],
) -> ManifestFile {
    let count = |s: Status| entries.iter().filter(|e| e.status == s).count() as i32;
    let rows = |s: Status| {
        entries
            .iter()
            .filter(|e| e.status == s)
            .map(|e| e.file.record_count)
            .sum::<i64>()
    };
    let days: Vec<i32> = entries.iter().filter_map(|e| e.file.day).collect();
    ManifestFile {
        path,
        length,
        spec,
        sequence_number: seq,
        min_sequence_number: entries
            .iter()
            .filter(|e| e.status != Status::Deleted)
            .map(|e| e.sequence_number)
            .min()
            .unwrap_or(seq),
        added_snapshot_id: snapshot_id,
        added_files: count(Status::Added),
        existing_files: count(Status::Existing),
        deleted_files: count(Status::Deleted),
        added_rows: rows(Status::Added),
        existing_rows: rows(Status::Existing),
        deleted_rows: rows(Status::Deleted),
        partition,
        days: days
            .iter()
            .min()
            .zip(days.iter().max())
            .map(|(a, b)| (*a, *b)),
    }
}

/// Snapshot summary counts.
#[derive(Debug, Default)]
struct Stats {
    added_files: i64,
    deleted_files: i64,
    added_records: i64,
    deleted_records: i64,
    total_files: i64,
    total_records: i64,
}

impl Stats {
    fn count(&mut self, mf: &ManifestFile) {
        self.added_files += i64::from(mf.added_files);
        self.deleted_files += i64::from(mf.deleted_files);
        self.added_records += mf.added_rows;
        self.deleted_records += mf.deleted_rows;
    }

    fn total(&mut self, mf: &ManifestFile) {
        self.total_files += i64::from(mf.added_files + mf.existing_files);
        self.total_records += mf.added_rows + mf.existing_rows;
    }

    fn summary(&self) -> BTreeMap<String, String> {
        let operation = match (self.added_files > 0, self.deleted_files > 0) {
            (_, false) => "append",
            (false, true) => "delete",
            (true, true) => "overwrite",
        };
        BTreeMap::from([
            ("operation".to_owned(), operation.to_owned()),
            ("added-data-files".to_owned(), self.added_files.to_string()),
            (
                "deleted-data-files".to_owned(),
                self.deleted_files.to_string(),
            ),
            ("added-records".to_owned(), self.added_records.to_string()),
            (
                "deleted-records".to_owned(),
                self.deleted_records.to_string(),
            ),
            ("total-data-files".to_owned(), self.total_files.to_string()),
            ("total-records".to_owned(), self.total_records.to_string()),
            ("total-delete-files".to_owned(), "0".to_owned()),
            ("total-position-deletes".to_owned(), "0".to_owned()),
            ("total-equality-deletes".to_owned(), "0".to_owned()),
        ])
    }
}

fn parse_metadata_version(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?.strip_suffix(".metadata.json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn random_id() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let mut v = u128::from_be_bytes(b);
    // Version 4, RFC 4122 variant.
    v = (v & !(0xf << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests;
