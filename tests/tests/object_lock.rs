//! Write-once storage against the S3 test server: a node with `[cold_tier] object_lock` on a
//! bucket created with S3 Object Lock.
//!
//! - A ledger log archived there: every archived object and manifest version is locked
//!   (compliance); deleting a locked version through the S3 API (DeleteObject with its
//!   VersionId) is refused by the server; a new version PUT over a manifest or a plain DELETE
//!   (a delete marker) leaves the locked version byte-identical and recoverable; the records
//!   read back identical and `pyralog ledger verify` is clean.
//! - A node with `object_lock` on a bucket without Object Lock (or on a local folder) refuses
//!   to start with exit code 2 and a message naming Object Lock.
//! - Compaction and retention that would rewrite or delete archived objects are refused with
//!   a message naming object lock: `pyralog compaction run`, the node's retention, and the
//!   standalone compactor.
//!
//! The S3 calls `object_store` does not offer (creating the bucket, versioned deletes) go
//! through the workspace's one `aws-sdk-s3`, re-exported by `pyralog-object-lock`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{
    Client, ConsumerConfig, PartitionConsumer, ProduceRecord, Producer, ProducerConfig,
};
use pyralog_e2e::{unique, CliOutput, ColdStore, TestNode};
use pyralog_object_lock::aws_sdk_s3::types::ObjectLockMode;
use pyralog_object_lock::aws_sdk_s3::Client as S3;
use pyralog_proto::v1;
use pyralog_types::LogOffset;

const RETAIN_SECS: i64 = 86_400;

/// A bucket created with Object Lock (and so versioning), and the node environment that
/// archives to `prefix` in it with `object_lock = { mode = "compliance", retain = "1day" }`.
async fn lock_bucket(prefix: &str) -> (S3, String, Vec<(String, String)>) {
    let bucket = format!("pyralog-lock-{}", unique("b").replace('-', ""))
        .chars()
        .take(63)
        .collect::<String>();
    let mut cfg = ColdStore::S3.config(prefix);
    cfg.url = format!("s3://{bucket}/{prefix}");
    let (s3, name) = pyralog_object_lock::client(&cfg).expect("S3 client");
    s3.create_bucket()
        .bucket(&name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create a bucket with Object Lock");
    let mut env = ColdStore::S3.node_env(prefix);
    for (k, v) in &mut env {
        if k == "PYRALOG_COLD_TIER__STORE__URL" {
            *v = cfg.url.clone();
        }
    }
    env.push((
        "PYRALOG_COLD_TIER__OBJECT_LOCK__MODE".into(),
        "compliance".into(),
    ));
    env.push((
        "PYRALOG_COLD_TIER__OBJECT_LOCK__RETAIN".into(),
        "1day".into(),
    ));
    (s3, name, env)
}

fn record(i: u64) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from(format!("account-{}", i % 7))),
        value: Some(Bytes::from(format!(
            "{{\"n\":{i},\"memo\":\"{}\"}}",
            "w".repeat(80)
        ))),
        headers: Vec::new(),
        timestamp: None,
        partition: Some(0),
        dedup_id: None,
    }
}

async fn produce(client: &Client, log: &str, range: std::ops::Range<u64>) {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 8 << 10,
            ..ProducerConfig::default()
        },
    );
    let mut acks = Vec::new();
    for i in range {
        acks.push(producer.send(log, record(i)).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for a in acks {
        a.await.expect("ack");
    }
    producer.close().await.expect("close");
    client.roll_segments(log, Vec::new()).await.expect("roll");
}

async fn await_archived(client: &Client, node: &TestNode, log: &str) {
    let t = Instant::now();
    loop {
        let d = client.describe_log(log).await.expect("describe");
        if d.partitions.iter().all(|p| {
            p.archive
                .as_ref()
                .is_some_and(|a| a.end_offset == p.high_watermark && a.objects > 0)
        }) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "never archived: {d:?}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every version under `prefix` in `bucket`: (key, version id, is latest).
async fn versions(s3: &S3, bucket: &str, prefix: &str) -> Vec<(String, String, bool)> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list versions");
    out.versions()
        .iter()
        .filter_map(|v| {
            Some((
                v.key()?.to_owned(),
                v.version_id()?.to_owned(),
                v.is_latest().unwrap_or(false),
            ))
        })
        .collect()
}

async fn get_version(s3: &S3, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .expect("get version")
        .body
        .collect()
        .await
        .expect("body")
        .to_vec()
}

fn now_secs() -> i64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn keygen(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let file = dir.join("ledger.key");
    let out = std::process::Command::new(pyralog_e2e::pyralog_bin())
        .args(["ledger", "keygen", "--out"])
        .arg(&file)
        .output()
        .expect("keygen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    let public = stdout
        .strip_prefix("public key ")
        .and_then(|s| s.split_whitespace().next())
        .expect("the public key is printed")
        .to_owned();
    (file, public)
}

fn verify(node: &TestNode, log: &str, url: &str, key: &str) -> CliOutput {
    let endpoint = ColdStore::S3.config("x").endpoint.expect("endpoint");
    node.cli(
        &[
            "ledger",
            "verify",
            log,
            "--public-key",
            key,
            "--object-store",
            url,
            "--endpoint",
            &endpoint,
            "--region",
            "us-east-1",
            "--allow-http",
        ],
        None,
    )
}

/// Verifies until it passes with a checkpoint through the archive (checkpoints are written
/// in the archiver's tick, right after the commits).
fn verify_clean(node: &TestNode, log: &str, url: &str, key: &str) -> CliOutput {
    let t = Instant::now();
    loop {
        let out = verify(node, log, url, key);
        assert_eq!(out.code, Some(0), "verify must pass: {out:?}");
        if !out.stdout.contains("no valid checkpoint") {
            return out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no checkpoint: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

async fn assert_locked(s3: &S3, bucket: &str, key: &str, version: &str) {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.object_lock_mode(),
        Some(&ObjectLockMode::Compliance),
        "{key} is locked"
    );
    let until = head
        .object_lock_retain_until_date()
        .map(|d| d.secs())
        .expect("a retain-until date");
    let want = now_secs() + RETAIN_SECS;
    assert!(
        (want - 600..=want + 5).contains(&until),
        "{key}: retain until {until}, want about {want}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_on_an_object_lock_bucket_cannot_be_deleted_or_overwritten_through_s3() {
    const LOG: &str = "payments";
    let prefix = unique("lock");
    let (s3, bucket, mut env) = lock_bucket(&prefix).await;
    let url = format!("s3://{bucket}/{prefix}");
    let keys = tempfile::tempdir().expect("tempdir");
    let (key_file, key) = keygen(keys.path());
    env.push((
        "PYRALOG_COLD_TIER__LEDGER_SIGNING_KEY".into(),
        key_file.display().to_string(),
    ));
    let node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            LOG,
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(32 << 10),
                integrity: v1::Integrity::Ledger as i32,
                // Local copies go once archived: reads below come from the bucket.
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create the ledger");
    produce(&client, LOG, 0..1_500).await;
    await_archived(&client, &node, LOG).await;
    verify_clean(&node, LOG, &url, &key);

    // Every archived object and every manifest version is locked (compliance, ~1 day).
    let all = versions(&s3, &bucket, &prefix).await;
    let segments: Vec<_> = all
        .iter()
        .filter(|(k, _, _)| k.contains(&format!("log={LOG}/")) && k.ends_with(".parquet"))
        .cloned()
        .collect();
    let manifests: Vec<_> = all
        .iter()
        .filter(|(k, _, _)| k.contains("_manifests/") && k.ends_with(".json"))
        .cloned()
        .collect();
    assert!(segments.len() >= 2, "archived objects: {all:?}");
    assert!(manifests.len() >= 2, "manifest versions: {all:?}");
    for (k, v, _) in segments.iter().chain(&manifests) {
        assert_locked(&s3, &bucket, k, v).await;
    }

    // Deleting a locked version is refused by the server: an archived object's, a manifest's.
    let (seg_key, seg_version, _) = segments[0].clone();
    let seg_bytes = get_version(&s3, &bucket, &seg_key, &seg_version).await;
    let (man_key, man_version, _) = manifests
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0))
        .cloned()
        .expect("a manifest");
    let man_bytes = get_version(&s3, &bucket, &man_key, &man_version).await;
    for (k, v) in [(&seg_key, &seg_version), (&man_key, &man_version)] {
        let refused = s3
            .delete_object()
            .bucket(&bucket)
            .key(k)
            .version_id(v)
            .send()
            .await;
        let err = refused.expect_err("deleting a locked version must be refused");
        let code = pyralog_object_lock::aws_sdk_s3::error::ProvideErrorMetadata::code(&err)
            .map(str::to_owned);
        assert_eq!(code.as_deref(), Some("AccessDenied"), "{k}: {err:?}");
        assert!(!get_version(&s3, &bucket, k, v).await.is_empty());
    }

    // A PUT over the latest manifest only adds a newer version: the locked one is untouched.
    let forged = s3
        .put_object()
        .bucket(&bucket)
        .key(&man_key)
        .body(b"{\"forged\":true}".to_vec().into())
        .send()
        .await
        .expect("S3 accepts a new version of a key");
    let forged_version = forged.version_id().expect("versioned").to_owned();
    assert_ne!(forged_version, man_version);
    assert_eq!(
        get_version(&s3, &bucket, &man_key, &man_version).await,
        man_bytes,
        "the locked manifest version is byte-identical"
    );
    let broken = verify(&node, LOG, &url, &key);
    assert_ne!(
        broken.code,
        Some(0),
        "verify reads the forged version: {broken:?}"
    );
    // The forged version is not locked (the bucket has no default retention): removing it
    // brings the locked one back as the latest.
    s3.delete_object()
        .bucket(&bucket)
        .key(&man_key)
        .version_id(&forged_version)
        .send()
        .await
        .expect("an unlocked version can be deleted");

    // A plain DELETE of an archived object only adds a delete marker; the locked version stays.
    let marker = s3
        .delete_object()
        .bucket(&bucket)
        .key(&seg_key)
        .send()
        .await
        .expect("a plain DELETE adds a delete marker");
    assert_eq!(marker.delete_marker(), Some(true));
    assert_eq!(
        get_version(&s3, &bucket, &seg_key, &seg_version).await,
        seg_bytes,
        "the locked object version is byte-identical behind the marker"
    );
    let hidden = verify(&node, LOG, &url, &key);
    assert_ne!(
        hidden.code,
        Some(0),
        "the hidden object is missed: {hidden:?}"
    );
    s3.delete_object()
        .bucket(&bucket)
        .key(&seg_key)
        .version_id(marker.version_id().expect("the marker's version"))
        .send()
        .await
        .expect("removing the delete marker restores the object");

    // Everything reads back as produced, through the node from the bucket, and verifies.
    let mut consumer = PartitionConsumer::new(
        client.clone(),
        LOG,
        0,
        LogOffset(0),
        ConsumerConfig::default(),
    );
    let mut next = 0u64;
    let t = Instant::now();
    while next < 1_500 {
        for r in consumer.poll().await.expect("poll") {
            let want = record(r.offset.0);
            assert_eq!(r.offset, LogOffset(next), "dense and in order");
            assert_eq!(r.key, want.key);
            assert!(r.value == want.value, "value of {next}");
            next += 1;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "stalled at {next}");
    }
    let out = verify_clean(&node, LOG, &url, &key);
    assert!(out.stdout.contains("1500 records"), "{out:?}");
    // Nothing of this was the node's doing: it never logged a failed lock.
    assert!(!node.log().contains("object lock of"), "{}", node.log());
}

/// Runs a node that must refuse to start; returns its stderr.
fn start_fails(env: &[(String, String)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr");
    let mut child = std::process::Command::new(pyralog_e2e::pyralog_bin())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("run pyralog");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the node started instead of refusing: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn object_lock_on_a_bucket_without_it_or_off_s3_refuses_to_start_with_exit_code_2() {
    // The suite's ordinary bucket was created without Object Lock.
    let mut env = ColdStore::S3.node_env(&unique("nolock"));
    env.push((
        "PYRALOG_COLD_TIER__OBJECT_LOCK__MODE".into(),
        "governance".into(),
    ));
    env.push((
        "PYRALOG_COLD_TIER__OBJECT_LOCK__RETAIN".into(),
        "7years".into(),
    ));
    let err = start_fails(&env);
    assert!(
        err.contains("does not have S3 Object Lock enabled"),
        "names object lock: {err}"
    );
    let bucket = pyralog_e2e::env_or("PYRALOG_S3_BUCKET", "pyralog");
    assert!(err.contains(&bucket), "names the bucket: {err}");

    // `pyralog dev`'s local folder has no Object Lock: a configuration error.
    let err = start_fails(&[
        (
            "PYRALOG_COLD_TIER__OBJECT_LOCK__MODE".into(),
            "compliance".into(),
        ),
        (
            "PYRALOG_COLD_TIER__OBJECT_LOCK__RETAIN".into(),
            "1day".into(),
        ),
    ]);
    assert!(err.contains("cold_tier.object_lock"), "{err}");
    assert!(err.contains("S3 Object Lock"), "{err}");

    // A mode S3 does not have: the configuration is refused.
    let mut bad = ColdStore::S3.node_env(&unique("nolock"));
    bad.push(("PYRALOG_COLD_TIER__OBJECT_LOCK__MODE".into(), "worm".into()));
    bad.push((
        "PYRALOG_COLD_TIER__OBJECT_LOCK__RETAIN".into(),
        "1day".into(),
    ));
    let err = start_fails(&bad);
    assert!(err.contains("worm") || err.contains("mode"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_retention_refuse_on_an_object_lock_bucket() {
    const LOG: &str = "events";
    let prefix = unique("lock-compact");
    let (_s3, bucket, env) = lock_bucket(&prefix).await;
    let node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            LOG,
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(32 << 10),
                compaction: v1::CompactionMode::KeyBased as i32,
                min_compaction_lag_ms: Some(0),
                // Everything is due for retention at once.
                retention: Some(v1::Retention {
                    max_age_ms: Some(1_000),
                    max_bytes: None,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    produce(&client, LOG, 0..1_000).await;
    await_archived(&client, &node, LOG).await;
    let before = client.describe_log(LOG).await.expect("describe").partitions[0]
        .archive
        .clone()
        .expect("archive");

    // `pyralog compaction run` fails, naming object lock.
    let out = node.cli(&["compaction", "run", LOG], None);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains("object lock") && out.stdout.contains("S3 Object Lock (compliance"),
        "{out:?}"
    );

    // The node's retention (checked every second here) refuses, and says so in its log.
    let t = Instant::now();
    while !node.log().contains("would delete") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no retention refusal logged: {}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = node.log();
    assert!(
        log.contains("archived object(s)") && log.contains("object_lock is set"),
        "{log}"
    );
    let after = client.describe_log(LOG).await.expect("describe").partitions[0]
        .archive
        .clone()
        .expect("archive");
    assert_eq!(
        after.start_offset, before.start_offset,
        "nothing left the archive"
    );
    assert_eq!(after.objects, before.objects, "nothing was rewritten");

    // The standalone compactor with the same setting refuses too.
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("compactor.toml");
    let store = ColdStore::S3.toml(&prefix).replace(
        &format!(
            "s3://{}/",
            pyralog_e2e::env_or("PYRALOG_S3_BUCKET", "pyralog")
        ),
        &format!("s3://{bucket}/"),
    );
    std::fs::write(
        &config,
        format!("object_lock = {{ mode = \"compliance\", retain = \"1day\" }}\n{store}"),
    )
    .expect("config");
    let out = std::process::Command::new(pyralog_e2e::pyralog_bin())
        .arg("compactor")
        .arg("--config")
        .arg(&config)
        .arg("--once")
        .output()
        .expect("run the compactor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused under object lock"), "{stderr}");
    let last = client.describe_log(LOG).await.expect("describe").partitions[0]
        .archive
        .clone()
        .expect("archive");
    assert_eq!(
        last.objects, before.objects,
        "the compactor changed nothing"
    );
}
