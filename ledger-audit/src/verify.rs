//! Verifying a ledger log from the bucket alone.
//!
//! For each partition, the newest manifest is walked in offset order. Each object is read
//! whole and its rows replayed: offsets must be the next expected ones (a ledger never has
//! gaps), the chain recomputed from the object's declared start must equal the chain column
//! row by row, and at the end the chain head and the Merkle root must equal the seal the
//! manifest recorded. Between objects, each one's chain must start where the previous one
//! ended. Then every checkpoint is checked: signed by a trusted key, and its tree (the first
//! `tree_size` objects) present in the manifest with the same root. The kept manifest
//! versions must link to each other (see `crate::manifest_links`).
//!
//! What broke is reported as [`Finding`]s, one per damaged object (the first broken row; the
//! rows after it are consequences), and the walk goes on: the next object is checked
//! against its own seal, so two independent tamperings are both named.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_cold_tier::{
    for_each_ledger_row, ColdError, ColdSegment, Layout, LogRegistry, ManifestStore,
};
use pyralog_ledger::{
    genesis, ChainVersion, Checkpoint, Hash, MerkleBuilder, ObjectSummary, RecordHasher,
    SignedCheckpoint, VerifyingKey,
};
use pyralog_types::{Integrity, LogConfig, LogId, PartitionId};
use serde::Serialize;

use crate::checkpoints::CheckpointStore;
use crate::error::AuditError;
pub use crate::findings::Finding;

/// Which keys a verification trusts.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys given by the operator.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Also trust the keys published in the bucket (whoever can write the bucket can add
    /// one; the CLI says so when this is on).
    pub trust_bucket_keys: bool,
    /// Checkpoints kept outside the bucket (`--checkpoint FILE`): checked like the bucket's,
    /// so a history rewritten together with deleting the bucket's checkpoints is still caught.
    pub anchors: Vec<pyralog_ledger::SignedCheckpoint>,
}

/// Largest object verification reads (whole, into memory): above any segment a node writes.
const MAX_OBJECT_BYTES: u64 = 4 << 30;

/// What was checked in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    pub partition: PartitionId,
    pub manifest_version: u64,
    pub objects: u64,
    pub records: u64,
    pub bytes: u64,
    /// The last archived offset (`None`: nothing archived).
    pub last_offset: Option<u64>,
    /// Checkpoints whose signature and root checked out.
    pub valid_checkpoints: u64,
    /// The newest of them.
    pub newest_checkpoint: Option<Checkpoint>,
    /// Archived objects after the newest valid checkpoint (written at the node's next archive
    /// tick; until then their history is only as safe as the bucket).
    pub unanchored_objects: u64,
}

/// The outcome of [`verify_log`]: clean when `findings` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub log: String,
    pub partitions: Vec<PartitionReport>,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum()
    }

    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.records).sum()
    }
}

/// Verifies every partition of ledger log `log` in the bucket. An `Err` means the bucket
/// could not be read (or the log is not a ledger), not that something is broken: that is a
/// [`Finding`] in the report.
pub async fn verify_log(
    store: Arc<dyn ObjectStore>,
    layout: &Layout,
    log: &LogId,
    opts: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let config = log_config(&store, layout, log).await?;
    let checkpoints = CheckpointStore::new(store.clone(), layout);
    let mut keys = opts.trusted_keys.clone();
    if opts.trust_bucket_keys {
        keys.extend(checkpoints.published_keys().await?);
    }
    let manifests = ManifestStore::new(store.clone(), layout.clone());
    let mut report = VerifyReport {
        log: log.to_string(),
        ..VerifyReport::default()
    };
    // The registry is not signed: partitions the bucket holds beyond its count are verified
    // too, and named.
    let mut count = config.partition_count;
    for dir in [
        layout.manifest_dir(log, 0),
        checkpoints.partition_dir(log, 0),
    ] {
        let Some(parent) = parent_of(&dir) else {
            continue;
        };
        let listed = store
            .list_with_delimiter(Some(&parent))
            .await
            .map_err(|e| AuditError::store("list", &parent, e))?;
        for p in listed.common_prefixes {
            let Some(n) = p
                .filename()
                .and_then(|f| f.strip_prefix("partition="))
                .and_then(|n| n.parse::<PartitionId>().ok())
            else {
                continue;
            };
            if n >= count {
                report.findings.push(Finding::PartitionNotInRegistry {
                    partition: n,
                    registry_partitions: config.partition_count,
                });
                count = n + 1;
            }
        }
    }
    for partition in 0..count {
        let mut p = Partition {
            store: store.as_ref(),
            log,
            partition,
            findings: &mut report.findings,
            report: PartitionReport {
                partition,
                ..PartitionReport::default()
            },
        };
        let segments = match manifests.load(log, partition).await? {
            Some((m, _)) => {
                p.report.manifest_version = m.version;
                m.segments
            }
            None => Vec::new(),
        };
        p.findings
            .extend(crate::manifest_links::check(&manifests, log, partition).await?);
        let objects = p.objects(&segments).await?;
        p.checkpoints(
            &checkpoints,
            &keys,
            &opts.anchors,
            objects.as_deref(),
            segments.len(),
        )
        .await?;
        report.partitions.push(p.report);
    }
    Ok(report)
}

/// `dir` without its last segment.
fn parent_of(dir: &object_store::path::Path) -> Option<object_store::path::Path> {
    let parts: Vec<_> = dir.parts().collect();
    let (_, init) = parts.split_last()?;
    Some(object_store::path::Path::from_iter(init.iter().cloned()))
}

/// The log's configuration from the bucket's registry; it must be a ledger.
pub(crate) async fn log_config(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    log: &LogId,
) -> Result<LogConfig, AuditError> {
    let registry = LogRegistry::new(store.clone(), layout.clone());
    let config = registry
        .list::<LogConfig>()
        .await?
        .into_iter()
        .find(|(id, _)| id == log)
        .map(|(_, c)| c)
        .ok_or_else(|| AuditError::NotFound(format!("log {log} is not in this bucket")))?;
    if config.integrity != Integrity::Ledger {
        return Err(AuditError::NotFound(format!(
            "log {log} is not a ledger (integrity = \"none\"): there is nothing to verify"
        )));
    }
    Ok(config)
}

struct Partition<'a> {
    store: &'a dyn ObjectStore,
    log: &'a LogId,
    partition: PartitionId,
    findings: &'a mut Vec<Finding>,
    report: PartitionReport,
}

/// What replaying one object found.
struct Replay {
    records: u64,
    chain_end: Hash,
    root: Hash,
    /// The first broken row, if any.
    finding: Option<Finding>,
}

impl Partition<'_> {
    /// Checks every object; returns their summaries, the archive tree's leaves (`None` when
    /// a seal is missing, so no checkpoint can be compared).
    async fn objects(
        &mut self,
        segments: &[ColdSegment],
    ) -> Result<Option<Vec<ObjectSummary>>, AuditError> {
        let partition = self.partition;
        let mut expected = 0u64;
        let mut prev_chain = genesis(self.log.as_str(), partition);
        let mut leaves = Some(Vec::with_capacity(segments.len()));
        for s in segments {
            let object = s.key.clone();
            self.report.objects += 1;
            let Some(seal) = s.ledger else {
                self.findings
                    .push(Finding::MissingSeal { partition, object });
                leaves = None;
                expected = s.last_offset.0 + 1;
                continue;
            };
            if let Some(l) = &mut leaves {
                l.push(seal.summary(s.base_offset.0, s.last_offset.0, s.record_count));
            }
            if s.base_offset.0 > expected {
                self.findings.push(Finding::MissingRange {
                    partition,
                    from: expected,
                    to: s.base_offset.0 - 1,
                });
            }
            if seal.chain_start != prev_chain {
                self.findings.push(Finding::ChainBroken {
                    partition,
                    object: object.clone(),
                    first_offset: s.base_offset.0,
                });
            }
            expected = s.last_offset.0 + 1;
            prev_chain = seal.chain_end;
            self.report.last_offset = Some(s.last_offset.0);
            let span = s.last_offset.0 - s.base_offset.0 + 1;
            if s.record_count != span {
                self.findings.push(Finding::RecordsMissing {
                    partition,
                    object,
                    from: s.base_offset.0,
                    to: s.last_offset.0,
                });
                continue;
            }
            let size = match self.store.head(&s.path()).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => {
                    self.findings.push(Finding::ObjectMissing {
                        partition,
                        object,
                        first_offset: s.base_offset.0,
                    });
                    continue;
                }
                Err(e) => return Err(AuditError::store("head", &s.key, e)),
            };
            if size > MAX_OBJECT_BYTES {
                self.findings.push(Finding::ObjectUnreadable {
                    partition,
                    object,
                    detail: format!(
                        "{size} bytes, more than a segment can be ({MAX_OBJECT_BYTES} are read \
                         at most; the manifest says {})",
                        s.size_bytes
                    ),
                });
                continue;
            }
            let bytes = match self.store.get(&s.path()).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match bytes {
                Ok(b) => b,
                Err(object_store::Error::NotFound { .. }) => {
                    self.findings.push(Finding::ObjectMissing {
                        partition,
                        object,
                        first_offset: s.base_offset.0,
                    });
                    continue;
                }
                Err(e) => return Err(AuditError::store("get", &s.key, e)),
            };
            self.report.bytes += bytes.len() as u64;
            let (start, base, name) = (seal.chain_start, s.base_offset.0, object.clone());
            let (last, version) = (s.last_offset.0, seal.chain_version);
            let replayed = tokio::task::spawn_blocking(move || {
                replay(bytes, partition, &name, (start, version), base, last)
            })
            .await
            .map_err(|e| AuditError::Unprovable(format!("verification task failed: {e}")))?;
            let r = match replayed {
                Ok(r) => r,
                Err(ColdError::Corrupt { reason, .. }) => {
                    self.findings.push(Finding::ObjectUnreadable {
                        partition,
                        object,
                        detail: reason,
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.report.records += r.records;
            if let Some(f) = r.finding {
                self.findings.push(f);
            } else if r.records != s.record_count {
                self.findings.push(Finding::RecordCountMismatch {
                    partition,
                    object,
                    expected: s.record_count,
                    found: r.records,
                });
            } else if r.chain_end != seal.chain_end {
                self.findings.push(Finding::SealMismatch {
                    partition,
                    object,
                    what: "chain end".into(),
                });
            } else if r.root != seal.merkle_root {
                self.findings.push(Finding::SealMismatch {
                    partition,
                    object,
                    what: "Merkle root".into(),
                });
            }
        }
        Ok(leaves)
    }

    /// Checks every checkpoint of the partition (the bucket's and the anchors given) against
    /// the manifest's tree, walking them by size with one incremental tree.
    async fn checkpoints(
        &mut self,
        store: &CheckpointStore,
        keys: &[VerifyingKey],
        anchors: &[SignedCheckpoint],
        objects: Option<&[ObjectSummary]>,
        count: usize,
    ) -> Result<(), AuditError> {
        let partition = self.partition;
        let mut candidates: Vec<(String, Result<SignedCheckpoint, String>)> = store
            .list(self.log, partition)
            .await?
            .into_iter()
            .map(|(path, parsed)| (path.to_string(), parsed.map_err(|e| e.to_string())))
            .collect();
        candidates.extend(
            anchors
                .iter()
                .filter(|a| a.checkpoint.log == self.log.as_str())
                .filter(|a| a.checkpoint.partition == partition)
                .map(|a| {
                    let name = format!("given ({} objects)", a.checkpoint.tree_size);
                    (name, Ok(a.clone()))
                }),
        );
        let mut valid = Vec::new();
        for (checkpoint, parsed) in candidates {
            let invalid = |detail: String| Finding::CheckpointInvalid {
                partition,
                checkpoint: checkpoint.clone(),
                detail,
            };
            let signed = match parsed {
                Ok(s) => s,
                Err(e) => {
                    self.findings.push(invalid(e));
                    continue;
                }
            };
            let verified = keys.iter().find(|k| k.key_id() == signed.key_id);
            let verdict = match verified {
                None => Err(format!(
                    "signed by key {}, which is not trusted",
                    signed.key_id
                )),
                Some(k) => signed.verify(k).map_err(|e| e.to_string()),
            };
            if let Err(detail) = verdict {
                self.findings.push(invalid(detail));
                continue;
            }
            let cp = signed.checkpoint;
            if cp.log != self.log.as_str() || cp.partition != partition {
                self.findings.push(invalid(format!(
                    "signed for {}/{}, found under {}/{partition}",
                    cp.log, cp.partition, self.log
                )));
                continue;
            }
            valid.push(cp);
        }
        let Some(objects) = objects else {
            return Ok(());
        };
        valid.sort_by_key(|c| c.tree_size);
        let mut tree = MerkleBuilder::new();
        for cp in valid {
            let size = usize::try_from(cp.tree_size).unwrap_or(usize::MAX);
            if size > count {
                self.findings.push(Finding::RolledBack {
                    partition,
                    checkpoint_objects: cp.tree_size,
                    checkpoint_last_offset: cp.last_offset,
                    checkpoint_manifest_version: cp.manifest_version,
                    manifest_objects: count as u64,
                    manifest_version: self.report.manifest_version,
                });
                continue;
            }
            while (tree.len() as usize) < size {
                tree.push(objects[tree.len() as usize].leaf());
            }
            let matches = size > 0 && tree.root() == cp.root && {
                let last = &objects[size - 1];
                last.last_offset == cp.last_offset && last.chain_end == cp.chain_head
            };
            if !matches {
                self.findings.push(Finding::HistoryRewritten {
                    partition,
                    checkpoint_objects: cp.tree_size,
                    checkpoint_last_offset: cp.last_offset,
                });
                continue;
            }
            self.report.valid_checkpoints += 1;
            if self
                .report
                .newest_checkpoint
                .as_ref()
                .is_none_or(|n| n.tree_size < cp.tree_size)
            {
                self.report.newest_checkpoint = Some(cp);
            }
        }
        let anchored = self
            .report
            .newest_checkpoint
            .as_ref()
            .map_or(0, |c| c.tree_size);
        self.report.unanchored_objects = (count as u64).saturating_sub(anchored);
        if count > 0 && anchored == 0 {
            self.findings.push(Finding::NoTrustedCheckpoint {
                partition,
                objects: count as u64,
            });
        }
        Ok(())
    }
}

/// Replays one object's rows (blocking: decoding).
fn replay(
    bytes: bytes::Bytes,
    partition: PartitionId,
    object: &str,
    (chain_start, chain_version): (Hash, u8),
    base: u64,
    last: u64,
) -> Result<Replay, ColdError> {
    // The seal names how its rows were chained; a number this build does not know is an
    // object it cannot check.
    let version = ChainVersion::from_number(chain_version).map_err(|e| ColdError::Corrupt {
        what: "ledger object".into(),
        reason: e.to_string(),
    })?;
    let mut hasher = RecordHasher::with_version(chain_start, version);
    let mut tree = MerkleBuilder::new();
    let mut records = 0u64;
    let mut finding = None;
    let mut expected = base;
    for_each_ledger_row(bytes, |record, stored| {
        let found = record.offset.0;
        let (chain, leaf) = hasher.push(&record);
        tree.push(leaf);
        records += 1;
        if finding.is_none() {
            let object = object.to_owned();
            finding = if found != expected {
                Some(Finding::RecordOutOfPlace {
                    partition,
                    object,
                    expected,
                    found,
                })
            } else {
                match stored {
                    None => Some(Finding::ChainColumnMissing { partition, object }),
                    Some(s) if s != chain => Some(Finding::RecordAltered {
                        partition,
                        object,
                        offset: found,
                    }),
                    Some(_) => None,
                }
            };
        }
        expected = found.saturating_add(1);
        Ok(())
    })?;
    if finding.is_none() && expected <= last {
        finding = Some(Finding::RecordsMissing {
            partition,
            object: object.to_owned(),
            from: expected,
            to: last,
        });
    }
    Ok(Replay {
        records,
        chain_end: hasher.chain(),
        root: tree.root(),
        finding,
    })
}
