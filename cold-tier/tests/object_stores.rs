//! The cold tier against real object-store servers: S3 (moto or MinIO from
//! `localstack/s3-server.sh`) and Azure Blob (Azurite from `localstack/azure-server.sh`).
//! Each runs when its server's environment is set (`scripts/test.sh` sets both):
//!
//! ```sh
//! eval "$(localstack/s3-server.sh start)"; eval "$(localstack/azure-server.sh start)"
//! cargo test -p pyralog-cold-tier --test object_stores
//! ```

use std::sync::Arc;

use bytes::Bytes;
use pyralog_cold_tier::{
    check_access, encode_records, open_store, records_to_batches, upload_segment, AccessProblem,
    ColdError, ColdReader, CommitOutcome, EncodeOptions, Manifest, ManifestStore,
    ObjectStoreConfig, UploadOptions,
};
use pyralog_types::batch::split_batches;
use pyralog_types::{Epoch, Header, LogId, LogOffset, Record};

fn s3_config(bucket: &str, prefix: &str) -> Option<ObjectStoreConfig> {
    let endpoint = std::env::var("PYRALOG_S3_ENDPOINT").ok()?;
    Some(ObjectStoreConfig {
        endpoint: Some(endpoint),
        allow_http: true,
        region: Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())),
        ..ObjectStoreConfig::for_url(format!("s3://{bucket}/{prefix}"))
    })
}

fn azure_config(container: &str, prefix: &str) -> Option<ObjectStoreConfig> {
    Some(ObjectStoreConfig {
        endpoint: Some(std::env::var("PYRALOG_AZURE_ENDPOINT").ok()?),
        allow_http: true,
        access_key_id: Some(std::env::var("PYRALOG_AZURE_ACCOUNT").ok()?),
        secret_access_key: Some(std::env::var("PYRALOG_AZURE_KEY").ok()?),
        ..ObjectStoreConfig::for_url(format!("az://{container}/{prefix}"))
    })
}

fn records(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: LogOffset(500 + i),
            epoch: Epoch(3 + i / 400),
            timestamp: 1_700_000_000_000_000 + i as i64,
            key: (i % 5 != 0).then(|| Bytes::from(format!("key-{i}"))),
            value: (i % 97 != 0)
                .then(|| Bytes::from(vec![(i % 251) as u8; 64 + (i % 300) as usize])),
            headers: vec![Header {
                key: "trace".into(),
                value: Bytes::from(i.to_le_bytes().to_vec()),
            }],
        })
        .collect()
}

#[tokio::test]
async fn upload_commit_race_and_read_back_on_s3() {
    let bucket = std::env::var("PYRALOG_S3_BUCKET").unwrap_or_else(|_| "pyralog".into());
    let run = format!("it-{:016x}", rand_suffix());
    let (Some(cfg), Some(missing)) = (
        s3_config(&bucket, &run),
        s3_config("pyralog-no-such-bucket", "x"),
    ) else {
        println!("skipped: no S3 endpoint");
        return;
    };
    upload_commit_race_and_read_back(cfg, missing, &run).await;
}

#[tokio::test]
async fn upload_commit_race_and_read_back_on_azure() {
    let container = std::env::var("PYRALOG_AZURE_CONTAINER").unwrap_or_else(|_| "pyralog".into());
    let run = format!("it-{:016x}", rand_suffix());
    let (Some(cfg), Some(missing)) = (
        azure_config(&container, &run),
        azure_config("pyralog-no-such-container", "x"),
    ) else {
        println!("skipped: no Azure endpoint");
        return;
    };
    upload_commit_race_and_read_back(cfg, missing, &run).await;
}

/// Upload (twice: idempotent), create-if-absent manifest commits raced by two writers, a
/// fresh reader reading everything back, and the startup probe naming a missing bucket.
async fn upload_commit_race_and_read_back(
    cfg: ObjectStoreConfig,
    missing: ObjectStoreConfig,
    run: &str,
) {
    let store = open_store(&cfg).expect("open store");
    let layout = cfg.layout().expect("layout");
    check_access(store.as_ref(), &layout)
        .await
        .expect("access probe");

    // Upload a segment of several row groups, then commit the first manifest version.
    let log = LogId::new("orders").expect("log");
    let recs = records(1000);
    let opts = EncodeOptions {
        row_group_bytes: 16 * 1024,
        ..EncodeOptions::default()
    };
    let enc = encode_records(&recs, &opts).expect("encode");
    let seg = upload_segment(
        store.as_ref(),
        &layout,
        &log,
        7,
        &enc,
        &UploadOptions::default(),
    )
    .await
    .expect("upload");
    assert!(seg
        .key
        .starts_with(&format!("{run}/log=orders/partition=7/")));
    // Idempotent: a second upload of the same segment succeeds without a new object.
    upload_segment(
        store.as_ref(),
        &layout,
        &log,
        7,
        &enc,
        &UploadOptions::default(),
    )
    .await
    .expect("re-upload");

    let manifests = ManifestStore::new(Arc::clone(&store), layout.clone());
    let m1 = Manifest::new(log.clone(), 7)
        .with_segment(seg.clone())
        .expect("m1");
    let out = manifests
        .commit(&log, 7, &m1, None)
        .await
        .expect("commit v1");
    assert!(matches!(out, CommitOutcome::Committed(_)));

    // Two writers hold v1; the second to commit v2 has a stale version and must lose.
    let (loaded, v1) = manifests
        .load(&log, 7)
        .await
        .expect("load")
        .expect("manifest");
    assert_eq!(loaded, m1);
    let a = loaded.next_version();
    let mut b = loaded.next_version();
    b.segments.clear();
    manifests
        .commit(&log, 7, &a, Some(v1))
        .await
        .expect("writer a commits v2");
    let err = manifests
        .commit(&log, 7, &b, Some(v1))
        .await
        .expect_err("writer b must lose: the server has to enforce If-None-Match");
    assert!(matches!(err, ColdError::ManifestConflict { .. }), "{err}");

    // A fresh reader (empty cache, as on a node with an empty disk) reads everything back.
    let (latest, _) = manifests
        .load(&log, 7)
        .await
        .expect("load")
        .expect("manifest");
    let seg = latest
        .segment_for_offset(LogOffset(500))
        .expect("segment")
        .clone();
    let reader = ColdReader::new(Arc::clone(&store));
    let mut at = LogOffset(500);
    let mut got = Vec::new();
    while at <= seg.last_offset {
        let r = reader.read(&seg, at, 32 * 1024).await.expect("read");
        for b in split_batches(r.batches.clone()) {
            let b = b.expect("batch");
            b.verify_crc().expect("crc");
            got.extend(b.records().expect("records"));
        }
        at = r.next_offset;
    }
    assert_eq!(got, recs, "byte-identical records");
    // And the batches are the ones the hot tier would have built from those records.
    let late = reader
        .read(&seg, LogOffset(1400), 1)
        .await
        .expect("late read");
    let expected = records_to_batches(&recs[900..901], 256 * 1024).expect("batches");
    assert_eq!(late.batches, expected[0]);

    // A missing bucket is named as such by the startup probe.
    let store = open_store(&missing).expect("open");
    let err = check_access(store.as_ref(), &missing.layout().expect("layout"))
        .await
        .expect_err("missing bucket");
    assert!(
        matches!(
            err,
            ColdError::Access {
                problem: AccessProblem::BucketMissing,
                ..
            }
        ),
        "{err}"
    );
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
