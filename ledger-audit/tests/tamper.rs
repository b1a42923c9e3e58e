//! Tampering with a ledger's archive, and what `verify_log` says about it.
//!
//! Each test archives a ledger partition the way the node does (ledger segment files with
//! their chain column, manifest commits, a signed checkpoint after each commit) into an
//! object store, changes the bucket as an attacker with write access would, and checks
//! that verification names exactly what broke.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use pyralog_cold_tier::{
    ColdSegment, EncodeOptions, Layout, LogRegistry, Manifest, ManifestStore, ManifestVersion,
    SegmentWriter,
};
use pyralog_ledger::{genesis, ChainVersion, ConsistencyProof, SigningKey, VerifyingKey};
use pyralog_ledger_audit::{
    consistency_proof, inclusion_proof, verify_log, CheckpointStore, Checkpointer, Finding,
    VerifyOptions,
};
use pyralog_types::clock::ManualClock;
use pyralog_types::{Epoch, Integrity, LogConfig, LogId, LogOffset, Record, Retention};

const P: u32 = 0;

/// A ledger partition archived into an in-memory bucket.
struct Bucket {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    log: LogId,
    key: SigningKey,
    manifest: Manifest,
    version: Option<ManifestVersion>,
}

fn record(offset: u64) -> Record {
    Record {
        offset: LogOffset(offset),
        epoch: Epoch(1 + offset / 50),
        timestamp: 1_700_000_000_000_000 + offset as i64,
        key: Some(Bytes::from(format!("account-{}", offset % 7))),
        value: Some(Bytes::from(format!("{{\"amount\":{offset}}}"))),
        headers: vec![],
    }
}

impl Bucket {
    async fn new() -> Bucket {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = Layout::new("archive").expect("layout");
        let log = LogId::new("payments").expect("log id");
        let config = LogConfig {
            integrity: Integrity::Ledger,
            retention: Retention::Infinite,
            ..LogConfig::default()
        };
        LogRegistry::new(store.clone(), layout.clone())
            .put(&log, &config)
            .await
            .expect("registry");
        Bucket {
            store,
            layout,
            manifest: Manifest::new(log.clone(), P),
            log,
            key: SigningKey::generate(),
            version: None,
        }
    }

    fn trusting(&self) -> VerifyOptions {
        VerifyOptions {
            trusted_keys: vec![self.key.verifying_key()],
            trust_bucket_keys: false,
            anchors: Vec::new(),
        }
    }

    /// Archives `count` records after the archived ones as one object, commits the manifest
    /// and writes the checkpoint, as the node does.
    async fn archive(&mut self, count: u64) {
        self.archive_with(count, ChainVersion::CURRENT).await;
    }

    /// [`Bucket::archive`] with the chain step of `version`.
    async fn archive_with(&mut self, count: u64, version: ChainVersion) {
        let base = self.manifest.end_offset().map_or(0, |o| o.0);
        let start = self
            .manifest
            .segments
            .last()
            .and_then(|s| s.ledger)
            .map_or(genesis(self.log.as_str(), P), |s| s.chain_end);
        let opts = EncodeOptions {
            row_group_bytes: 512,
            ..EncodeOptions::default()
        };
        let mut w =
            SegmentWriter::with_ledger_version(Vec::new(), &opts, start, version).expect("writer");
        for o in base..base + count {
            w.push(record(o)).expect("push");
        }
        let (bytes, meta) = w.finish().expect("finish");
        let key = self
            .layout
            .segment_key(&self.log, P, meta.base_offset, meta.last_offset, 0);
        self.store
            .put(&key, PutPayload::from(bytes.clone()))
            .await
            .expect("put");
        let seg = ColdSegment::uploaded(&meta, key.to_string(), bytes.len() as u64, 0);
        let next = self.manifest.with_segment(seg).expect("segment");
        self.commit(next).await;
        Checkpointer::new(
            SigningKey::from_seed_hex(&self.key.seed_hex()).expect("seed"),
            CheckpointStore::new(self.store.clone(), &self.layout),
            ManualClock::new(1_700_000_000_000_000),
        )
        .checkpoint(&self.manifest)
        .await
        .expect("checkpoint")
        .expect("something archived");
    }

    async fn commit(&mut self, next: Manifest) {
        let out = ManifestStore::new(self.store.clone(), self.layout.clone())
            .commit(&self.log, P, &next, self.version)
            .await
            .expect("commit");
        self.version = Some(out.version());
        self.manifest = next;
    }

    async fn findings(&self) -> Vec<Finding> {
        verify_log(
            self.store.clone(),
            &self.layout,
            &self.log,
            &self.trusting(),
        )
        .await
        .expect("verify runs")
        .findings
    }

    fn object(&self, i: usize) -> Path {
        self.manifest.segments[i].path()
    }

    async fn get(&self, path: &Path) -> Bytes {
        self.store
            .get(path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
    }
}

/// Re-encodes `file` as a valid Parquet file with the value of row `row` replaced; the chain
/// column and the footer metadata are kept as they were.
fn with_value_changed(file: Bytes, row: usize, value: &[u8]) -> Bytes {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let mut out = ArrowWriter::try_new(Vec::new(), schema.clone(), None).expect("writer");
    for e in kv {
        out.append_key_value_metadata(e);
    }
    let mut seen = 0;
    for rb in builder.build().expect("reader") {
        let rb = rb.expect("batch");
        let idx = schema.index_of("value").expect("value column");
        let values = rb
            .column(idx)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("binary");
        let changed: BinaryArray = (0..values.len())
            .map(|i| {
                if seen + i == row {
                    Some(value)
                } else {
                    values.is_valid(i).then(|| values.value(i))
                }
            })
            .collect();
        seen += rb.num_rows();
        let mut columns: Vec<ArrayRef> = rb.columns().to_vec();
        columns[idx] = Arc::new(changed);
        out.write(&RecordBatch::try_new(schema.clone(), columns).expect("batch"))
            .expect("write");
    }
    Bytes::from(out.into_inner().expect("close"))
}

async fn three_objects() -> Bucket {
    let mut b = Bucket::new().await;
    for n in [40, 35, 50] {
        b.archive(n).await;
    }
    b
}

#[tokio::test]
async fn an_untouched_ledger_verifies_clean_with_every_checkpoint() {
    let b = three_objects().await;
    let report = verify_log(b.store.clone(), &b.layout, &b.log, &b.trusting())
        .await
        .expect("verify");
    assert_eq!(report.findings, vec![]);
    let p = &report.partitions[0];
    assert_eq!((p.objects, p.records, p.last_offset), (3, 125, Some(124)));
    assert_eq!(p.valid_checkpoints, 3);
    assert_eq!(p.newest_checkpoint.as_ref().map(|c| c.tree_size), Some(3));
}

/// A ledger created before chain version 3 keeps its version-2 objects; the verifier replays
/// each object with the version its seal names, so the old objects verify and still name
/// tampering, and objects chained after them with version 3 continue their chain.
#[tokio::test]
async fn objects_of_an_older_chain_version_verify_and_still_name_tampering() {
    let mut b = Bucket::new().await;
    b.archive_with(40, ChainVersion::V2).await;
    b.archive_with(35, ChainVersion::V2).await;
    b.archive(50).await;
    let versions: Vec<u8> = b
        .manifest
        .segments
        .iter()
        .map(|s| s.ledger.expect("sealed").chain_version)
        .collect();
    assert_eq!(versions, vec![2, 2, 3]);
    let report = verify_log(b.store.clone(), &b.layout, &b.log, &b.trusting())
        .await
        .expect("verify");
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.partitions[0].records, 125);

    assert_a_changed_value_is_named(&b, 1, 40, 3, b"{\"amount\":1}").await;
}

/// Re-encodes object `object` (first offset `base`) with row `row`'s value replaced, and
/// checks that `verify` names exactly that record.
async fn assert_a_changed_value_is_named(
    b: &Bucket,
    object: usize,
    base: u64,
    row: usize,
    value: &[u8],
) {
    let path = b.object(object);
    let tampered = with_value_changed(b.get(&path).await, row, value);
    b.store.put(&path, tampered.into()).await.expect("put");
    assert_eq!(
        b.findings().await,
        vec![Finding::RecordAltered {
            partition: P,
            object: path.to_string(),
            offset: base + row as u64,
        }]
    );
}

#[tokio::test]
async fn a_value_changed_in_a_reencoded_object_is_named_by_offset() {
    let b = three_objects().await;
    assert_a_changed_value_is_named(&b, 1, 40, 7, b"{\"amount\":1000000}").await;
}

#[tokio::test]
async fn an_object_rewritten_with_a_consistent_forged_chain_breaks_its_seal() {
    let b = three_objects().await;
    let seg = b.manifest.segments[1].clone();
    let start = seg.ledger.expect("seal").chain_start;
    let mut w =
        SegmentWriter::with_ledger(Vec::new(), &EncodeOptions::default(), start).expect("writer");
    for o in seg.base_offset.0..=seg.last_offset.0 {
        let mut r = record(o);
        if o == 50 {
            r.value = Some(Bytes::from_static(b"{\"amount\":-1}"));
        }
        w.push(r).expect("push");
    }
    let (bytes, _) = w.finish().expect("finish");
    b.store.put(&seg.path(), bytes.into()).await.expect("put");
    assert_eq!(
        b.findings().await,
        vec![Finding::SealMismatch {
            partition: P,
            object: seg.key.clone(),
            what: "chain end".into(),
        }]
    );
}

#[tokio::test]
async fn a_deleted_object_is_named() {
    let b = three_objects().await;
    let path = b.object(0);
    b.store.delete(&path).await.expect("delete");
    assert_eq!(
        b.findings().await,
        vec![Finding::ObjectMissing {
            partition: P,
            object: path.to_string(),
            first_offset: 0,
        }]
    );
}

#[tokio::test]
async fn two_swapped_objects_are_both_named() {
    let b = three_objects().await;
    let (first, second) = (b.object(0), b.object(1));
    let (a, c) = (b.get(&first).await, b.get(&second).await);
    b.store.put(&first, c.into()).await.expect("put");
    b.store.put(&second, a.into()).await.expect("put");
    assert_eq!(
        b.findings().await,
        vec![
            Finding::RecordOutOfPlace {
                partition: P,
                object: first.to_string(),
                expected: 0,
                found: 40,
            },
            Finding::RecordOutOfPlace {
                partition: P,
                object: second.to_string(),
                expected: 40,
                found: 0,
            },
        ]
    );
}

#[tokio::test]
async fn a_manifest_rolled_back_is_caught_by_the_newest_checkpoint() {
    let b = three_objects().await;
    let newest = b
        .layout
        .manifest_key(&b.log, P, b.version.expect("committed").0);
    b.store.delete(&newest).await.expect("delete");
    assert_eq!(
        b.findings().await,
        vec![Finding::RolledBack {
            partition: P,
            checkpoint_objects: 3,
            checkpoint_last_offset: 124,
            checkpoint_manifest_version: 3,
            manifest_objects: 2,
            manifest_version: 2,
        }]
    );
}

#[tokio::test]
async fn an_older_manifest_version_edited_in_place_is_named_by_the_next_versions_link() {
    let b = three_objects().await;
    let key = b.layout.manifest_key(&b.log, P, 2);
    let mut v2: Manifest = serde_json::from_slice(&b.get(&key).await).expect("version 2");
    // Version 2 rewritten to say its second object came from another generation.
    v2.segments[1].generation += 1;
    b.store
        .put(&key, PutPayload::from(v2.encode()))
        .await
        .expect("put");
    let findings = b.findings().await;
    assert!(
        matches!(
            findings.as_slice(),
            [Finding::ManifestLinkBroken { partition: P, version: 3, detail }]
                if detail.contains("version 2 as stored hashes to")
        ),
        "{findings:?}"
    );
    assert!(findings[0]
        .to_string()
        .contains("manifest version 3 does not link to version 2"));
}

#[tokio::test]
async fn a_link_removed_from_a_manifest_version_is_named() {
    let b = three_objects().await;
    let key = b.layout.manifest_key(&b.log, P, 3);
    let mut v3: Manifest = serde_json::from_slice(&b.get(&key).await).expect("version 3");
    v3.prev_hash = None;
    b.store
        .put(&key, PutPayload::from(v3.encode()))
        .await
        .expect("put");
    let findings = b.findings().await;
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::ManifestLinkBroken { version: 3, .. })),
        "{findings:?}"
    );
}

#[tokio::test]
async fn an_object_dropped_from_a_new_manifest_breaks_range_chain_and_checkpoints() {
    let mut b = three_objects().await;
    let mut forged = b.manifest.next_version();
    let dropped = forged.segments.remove(1);
    b.commit(forged).await;
    let findings = b.findings().await;
    assert!(findings.contains(&Finding::MissingRange {
        partition: P,
        from: dropped.base_offset.0,
        to: dropped.last_offset.0,
    }));
    assert!(findings.contains(&Finding::ChainBroken {
        partition: P,
        object: b.manifest.segments[1].key.clone(),
        first_offset: 75,
    }));
    // The checkpoints of 2 and 3 objects no longer match; the one of 1 object still does.
    assert!(findings.contains(&Finding::HistoryRewritten {
        partition: P,
        checkpoint_objects: 2,
        checkpoint_last_offset: 74,
    }));
    assert!(findings.contains(&Finding::RolledBack {
        partition: P,
        checkpoint_objects: 3,
        checkpoint_last_offset: 124,
        checkpoint_manifest_version: 3,
        manifest_objects: 2,
        manifest_version: 4,
    }));
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_not_trusted() {
    let b = three_objects().await;
    let report = verify_log(
        b.store.clone(),
        &b.layout,
        &b.log,
        &VerifyOptions {
            trusted_keys: vec![SigningKey::generate().verifying_key()],
            trust_bucket_keys: false,
            anchors: Vec::new(),
        },
    )
    .await
    .expect("verify");
    assert_eq!(report.findings.len(), 4, "{:?}", report.findings);
    assert!(report.findings[..3]
        .iter()
        .all(|f| matches!(f, Finding::CheckpointInvalid { .. })));
    assert_eq!(
        report.findings[3],
        Finding::NoTrustedCheckpoint {
            partition: P,
            objects: 3
        }
    );
}

/// Rewrites the whole partition from genesis with one value changed, consistently (new
/// chain, new seals, a new manifest version): what someone without the key can do.
async fn rewrite_everything(b: &mut Bucket) {
    let mut forged = b.manifest.next_version();
    forged.segments.clear();
    let mut chain = genesis(b.log.as_str(), P);
    for seg in b.manifest.segments.clone() {
        let mut w = SegmentWriter::with_ledger(Vec::new(), &EncodeOptions::default(), chain)
            .expect("writer");
        for o in seg.base_offset.0..=seg.last_offset.0 {
            let mut r = record(o);
            if o == 60 {
                r.value = Some(Bytes::from_static(b"{\"amount\":999999}"));
            }
            w.push(r).expect("push");
        }
        let (bytes, meta) = w.finish().expect("finish");
        chain = meta.ledger.expect("seal").chain_end;
        let key = b
            .layout
            .segment_key(&b.log, P, meta.base_offset, meta.last_offset, 1);
        b.store
            .put(&key, PutPayload::from(bytes.clone()))
            .await
            .expect("put");
        forged.segments.push(ColdSegment::uploaded(
            &meta,
            key.to_string(),
            bytes.len() as u64,
            1,
        ));
    }
    b.commit(forged).await;
}

#[tokio::test]
async fn a_consistent_rewrite_with_the_checkpoints_deleted_has_no_trusted_checkpoint() {
    let mut b = three_objects().await;
    let anchor_path = CheckpointStore::new(b.store.clone(), &b.layout).checkpoint_key(&b.log, P, 2);
    let anchor = pyralog_ledger::SignedCheckpoint::from_json(&b.get(&anchor_path).await)
        .expect("a checkpoint");
    let dir = CheckpointStore::new(b.store.clone(), &b.layout).partition_dir(&b.log, P);
    let listed: Vec<_> = futures::TryStreamExt::try_collect(b.store.list(Some(&dir)))
        .await
        .expect("list");
    for o in listed {
        b.store.delete(&o.location).await.expect("delete");
    }
    rewrite_everything(&mut b).await;
    assert_eq!(
        b.findings().await,
        vec![Finding::NoTrustedCheckpoint {
            partition: P,
            objects: 3
        }]
    );
    // A checkpoint kept outside the bucket still pins the old history.
    let mut opts = b.trusting();
    opts.anchors.push(anchor);
    let report = verify_log(b.store.clone(), &b.layout, &b.log, &opts)
        .await
        .expect("verify");
    assert_eq!(
        report.findings,
        vec![
            Finding::HistoryRewritten {
                partition: P,
                checkpoint_objects: 2,
                checkpoint_last_offset: 74,
            },
            Finding::NoTrustedCheckpoint {
                partition: P,
                objects: 3
            }
        ]
    );
}

#[tokio::test]
async fn an_object_ending_before_its_manifest_range_is_named() {
    let mut b = Bucket::new().await;
    b.archive(40).await;
    // An object of offsets 40..=69 whose entry claims 40..=74 (35 records).
    let start = b.manifest.segments[0].ledger.expect("seal").chain_end;
    let mut w =
        SegmentWriter::with_ledger(Vec::new(), &EncodeOptions::default(), start).expect("writer");
    for o in 40..70 {
        w.push(record(o)).expect("push");
    }
    let (bytes, meta) = w.finish().expect("finish");
    let key = b
        .layout
        .segment_key(&b.log, P, meta.base_offset, LogOffset(74), 0);
    b.store
        .put(&key, PutPayload::from(bytes.clone()))
        .await
        .expect("put");
    let mut entry = ColdSegment::uploaded(&meta, key.to_string(), bytes.len() as u64, 0);
    entry.last_offset = LogOffset(74);
    entry.record_count = 35;
    let next = b.manifest.with_segment(entry).expect("segment");
    b.commit(next).await;
    let findings = b.findings().await;
    assert!(
        findings.contains(&Finding::RecordsMissing {
            partition: P,
            object: key.to_string(),
            from: 70,
            to: 74,
        }),
        "{findings:?}"
    );
}

#[tokio::test]
async fn an_inclusion_proof_checks_offline_and_fails_for_another_record() {
    let b = three_objects().await;
    let (proof, record) = inclusion_proof(b.store.clone(), &b.layout, &b.log, P, 77, None)
        .await
        .expect("proof");
    assert_eq!(record, self::record(77));
    let key = b.key.verifying_key();
    let parsed = pyralog_ledger::InclusionProof::from_json(&proof.to_json()).expect("json");
    parsed
        .verify_record(&key, &record)
        .expect("the proof holds");
    assert!(parsed.verify_record(&key, &self::record(78)).is_err());
    let stranger: VerifyingKey = SigningKey::generate().verifying_key();
    assert!(parsed.verify(&stranger).is_err());
}

#[tokio::test]
async fn a_proof_made_at_an_old_checkpoint_is_carried_to_a_newer_one() {
    let mut b = three_objects().await;
    let (old_proof, record) = inclusion_proof(b.store.clone(), &b.layout, &b.log, P, 3, Some(1))
        .await
        .expect("proof at the first checkpoint");
    // The archive grows (a later leader, a later day): newer checkpoints.
    b.archive(20).await;
    b.archive(20).await;
    let key = b.key.verifying_key();
    old_proof.verify_record(&key, &record).expect("still holds");
    let link: ConsistencyProof = consistency_proof(b.store.clone(), &b.layout, &b.log, P, 1, 5)
        .await
        .expect("consistency");
    link.verify(&key)
        .expect("the newer checkpoint extends the older");
    assert_eq!(link.old, old_proof.checkpoint);
}

#[tokio::test]
async fn a_checkpoint_left_unwritten_is_written_at_the_next_tick_and_once() {
    let mut b = Bucket::new().await;
    b.archive(30).await;
    // A commit whose checkpoint was never written (a crash between the two, a failover).
    let base = b.manifest.end_offset().map_or(0, |o| o.0);
    let start = b.manifest.segments[0].ledger.expect("seal").chain_end;
    let mut w =
        SegmentWriter::with_ledger(Vec::new(), &EncodeOptions::default(), start).expect("writer");
    for o in base..base + 10 {
        w.push(record(o)).expect("push");
    }
    let (bytes, meta) = w.finish().expect("finish");
    let key = b
        .layout
        .segment_key(&b.log, P, meta.base_offset, meta.last_offset, 0);
    b.store
        .put(&key, PutPayload::from(bytes.clone()))
        .await
        .expect("put");
    let next = b
        .manifest
        .with_segment(ColdSegment::uploaded(
            &meta,
            key.to_string(),
            bytes.len() as u64,
            0,
        ))
        .expect("segment");
    b.commit(next).await;
    let newest = |r: &pyralog_ledger_audit::VerifyReport| {
        r.partitions[0]
            .newest_checkpoint
            .as_ref()
            .map(|c| c.tree_size)
    };
    let report = verify_log(b.store.clone(), &b.layout, &b.log, &b.trusting())
        .await
        .expect("verify");
    assert_eq!(
        newest(&report),
        Some(1),
        "the second object is not vouched for yet"
    );

    let checkpointer = || {
        Checkpointer::new(
            SigningKey::from_seed_hex(&b.key.seed_hex()).expect("seed"),
            CheckpointStore::new(b.store.clone(), &b.layout),
            ManualClock::new(1_700_000_000_000_000),
        )
    };
    let ticking = checkpointer();
    let written = ticking
        .checkpoint_if_behind(&b.manifest)
        .await
        .expect("tick");
    assert_eq!(written.map(|c| c.checkpoint.tree_size), Some(2));
    assert!(
        ticking
            .checkpoint_if_behind(&b.manifest)
            .await
            .expect("tick")
            .is_none(),
        "nothing new: no write"
    );
    // Another process (a restart, the next leader) re-puts it once; the store accepts it.
    let next_leader = checkpointer();
    assert!(next_leader
        .checkpoint_if_behind(&b.manifest)
        .await
        .expect("an identical checkpoint is accepted")
        .is_some());
    let report = verify_log(b.store.clone(), &b.layout, &b.log, &b.trusting())
        .await
        .expect("verify");
    assert_eq!(report.findings, vec![]);
    assert_eq!(newest(&report), Some(2));
}

#[tokio::test]
async fn a_partition_the_edited_registry_does_not_count_is_verified_and_named() {
    let b = three_objects().await;
    // The bucket holds a partition 1 the registry (partition_count = 1) does not count.
    let mut w = SegmentWriter::with_ledger(
        Vec::new(),
        &EncodeOptions::default(),
        genesis(b.log.as_str(), 1),
    )
    .expect("writer");
    for o in 0..10 {
        w.push(record(o)).expect("push");
    }
    let (bytes, meta) = w.finish().expect("finish");
    let key = b
        .layout
        .segment_key(&b.log, 1, meta.base_offset, meta.last_offset, 0);
    b.store
        .put(&key, PutPayload::from(bytes.clone()))
        .await
        .expect("put");
    let manifest = Manifest::new(b.log.clone(), 1)
        .with_segment(ColdSegment::uploaded(
            &meta,
            key.to_string(),
            bytes.len() as u64,
            0,
        ))
        .expect("segment");
    ManifestStore::new(b.store.clone(), b.layout.clone())
        .commit(&b.log, 1, &manifest, None)
        .await
        .expect("commit");
    let report = verify_log(b.store.clone(), &b.layout, &b.log, &b.trusting())
        .await
        .expect("verify");
    assert_eq!(report.partitions.len(), 2);
    assert_eq!(report.partitions[1].records, 10);
    assert_eq!(
        report.findings,
        vec![
            Finding::PartitionNotInRegistry {
                partition: 1,
                registry_partitions: 1
            },
            Finding::NoTrustedCheckpoint {
                partition: 1,
                objects: 1
            }
        ]
    );
}
