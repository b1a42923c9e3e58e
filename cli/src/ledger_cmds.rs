//! `pyralog ledger …`: verification and proofs of ledger logs, from the bucket alone.

use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use pyralog_cold_tier::{open_store, Layout, ObjectStoreConfig};
use pyralog_ledger::{ConsistencyProof, InclusionProof, SignedCheckpoint, VerifyingKey};
use pyralog_ledger_audit::{
    consistency_proof, create_key_file, inclusion_proof, verify_log, AuditError, VerifyOptions,
};
use pyralog_types::LogId;

use crate::args::{BucketArgs, LedgerArgs, LedgerCommand};
use crate::error::{CliError, CliResult};

pub(crate) async fn run(args: LedgerArgs) -> CliResult {
    match args.command {
        LedgerCommand::Verify {
            log,
            bucket,
            public_keys,
            trust_bucket_keys,
            anchors,
            json,
        } => {
            let log = log_id(&log)?;
            let trusted_keys = public_keys
                .iter()
                .map(|k| read_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            if trusted_keys.is_empty() && !trust_bucket_keys {
                return Err(CliError::usage(
                    "give the checkpoint key you trust with --public-key (or \
                     --trust-bucket-keys to use the keys published in the bucket)",
                ));
            }
            if trust_bucket_keys {
                eprintln!(
                    "warning: trusting the keys published in the bucket: whoever can write \
                     the bucket can publish a key"
                );
            }
            let anchors = anchors
                .iter()
                .map(|f| read_anchor(f))
                .collect::<Result<Vec<_>, _>>()?;
            let (store, layout) = open(&bucket).await?;
            let started = Instant::now();
            let opts = VerifyOptions {
                trusted_keys,
                trust_bucket_keys,
                anchors,
            };
            let report = verify_log(store, &layout, &log, &opts)
                .await
                .map_err(audit_error)?;
            let secs = started.elapsed().as_secs_f64();
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| CliError::runtime(format!("report: {e}")))?;
                println!("{text}");
            } else {
                for p in &report.partitions {
                    let checkpoint = p.newest_checkpoint.as_ref().map_or_else(
                        || "no valid checkpoint".to_owned(),
                        |c| {
                            format!(
                                "newest checkpoint: {} objects through offset {}",
                                c.tree_size, c.last_offset
                            )
                        },
                    );
                    println!(
                        "partition {}: {} objects, {} records, through offset {}; {} valid \
                         checkpoints, {checkpoint}; {} objects after it",
                        p.partition,
                        p.objects,
                        p.records,
                        p.last_offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string()),
                        p.valid_checkpoints,
                        p.unanchored_objects,
                    );
                }
                for f in &report.findings {
                    println!("BROKEN: {f}");
                }
                let mb = report.bytes() as f64 / 1e6;
                println!(
                    "{}: {} records, {mb:.1} MB read in {secs:.2} s ({:.1} MB/s): {}",
                    report.log,
                    report.records(),
                    if secs > 0.0 { mb / secs } else { 0.0 },
                    if report.is_clean() {
                        "verified".to_owned()
                    } else {
                        format!("{} findings", report.findings.len())
                    }
                );
            }
            if report.is_clean() {
                Ok(())
            } else {
                Err(CliError::runtime(format!(
                    "ledger {log} does not verify: {} findings",
                    report.findings.len()
                )))
            }
        }
        LedgerCommand::Proof {
            log,
            partition,
            offset,
            checkpoint,
            bucket,
            out,
        } => {
            let log = log_id(&log)?;
            let (store, layout) = open(&bucket).await?;
            let (proof, record) =
                inclusion_proof(store, &layout, &log, partition, offset, checkpoint)
                    .await
                    .map_err(audit_error)?;
            let show = |b: &Option<bytes::Bytes>| {
                b.as_ref().map_or_else(
                    || "null".into(),
                    |b| String::from_utf8_lossy(b).into_owned(),
                )
            };
            eprintln!(
                "record {log}/{partition}@{offset}: key {}, value {}; in checkpoint of {} \
                 objects (key {})",
                show(&record.key),
                show(&record.value),
                proof.checkpoint.checkpoint.tree_size,
                proof.checkpoint.key_id
            );
            emit(&proof.to_json(), out.as_deref())
        }
        LedgerCommand::Consistency {
            log,
            partition,
            from,
            to,
            bucket,
            out,
        } => {
            let log = log_id(&log)?;
            let (store, layout) = open(&bucket).await?;
            let proof = consistency_proof(store, &layout, &log, partition, from, to)
                .await
                .map_err(audit_error)?;
            emit(&proof.to_json(), out.as_deref())
        }
        LedgerCommand::CheckProof { file, public_key } => {
            let key = read_key(&public_key)?;
            let bytes = read_bounded(&file, pyralog_ledger::MAX_PROOF_JSON)?;
            let inclusion = InclusionProof::from_json(&bytes);
            if let Ok(p) = inclusion {
                p.verify(&key)
                    .map_err(|e| CliError::runtime(format!("the proof does not hold: {e}")))?;
                let c = &p.checkpoint.checkpoint;
                println!(
                    "ok: offset {} of {}/{} is in the checkpoint of {} objects through offset \
                     {} (signed by {} at {} µs)",
                    p.offset,
                    p.log,
                    p.partition,
                    c.tree_size,
                    c.last_offset,
                    p.checkpoint.key_id,
                    c.time_us
                );
                return Ok(());
            }
            let p = ConsistencyProof::from_json(&bytes).map_err(|e| {
                let first = inclusion.err().map(|e| e.to_string()).unwrap_or_default();
                CliError::usage(format!(
                    "{} is neither an inclusion proof ({first}) nor a consistency proof ({e})",
                    file.display()
                ))
            })?;
            p.verify(&key)
                .map_err(|e| CliError::runtime(format!("the proof does not hold: {e}")))?;
            println!(
                "ok: the checkpoint of {} objects of {}/{} extends the one of {}",
                p.new.checkpoint.tree_size,
                p.new.checkpoint.log,
                p.new.checkpoint.partition,
                p.old.checkpoint.tree_size
            );
            Ok(())
        }
        LedgerCommand::Keygen { out } => {
            let key = create_key_file(&out)
                .map_err(|e| CliError::usage(format!("cannot create {}: {e}", out.display())))?;
            let public = key.verifying_key();
            println!(
                "public key {} (key id {})",
                public.to_hex(),
                public.key_id()
            );
            Ok(())
        }
    }
}

fn log_id(name: &str) -> Result<LogId, CliError> {
    LogId::new(name).map_err(|e| CliError::usage(format!("log {name:?}: {e}")))
}

/// A file read whole, refused above `limit` bytes before reading.
fn read_bounded(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, CliError> {
    let bad = |e: std::io::Error| CliError::usage(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(bad)?.len();
    if len > limit as u64 {
        return Err(CliError::usage(format!(
            "{}: {len} bytes, more than a proof or checkpoint can be ({limit})",
            path.display()
        )));
    }
    std::fs::read(path).map_err(bad)
}

/// A checkpoint kept outside the bucket: a checkpoint file, or the one a proof carries.
fn read_anchor(path: &std::path::Path) -> Result<SignedCheckpoint, CliError> {
    let bytes = read_bounded(path, pyralog_ledger::MAX_PROOF_JSON)?;
    if let Ok(c) = SignedCheckpoint::from_json(&bytes) {
        return Ok(c);
    }
    if let Ok(p) = InclusionProof::from_json(&bytes) {
        return Ok(p.checkpoint);
    }
    ConsistencyProof::from_json(&bytes)
        .map(|c| c.new)
        .map_err(|e| {
            CliError::usage(format!(
                "{}: neither a checkpoint nor a proof carrying one: {e}",
                path.display()
            ))
        })
}

/// A key given as hex, or as a file holding it.
fn read_key(arg: &str) -> Result<VerifyingKey, CliError> {
    if let Ok(k) = VerifyingKey::from_hex(arg) {
        return Ok(k);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        CliError::usage(format!(
            "public key {arg:?} is neither hex nor a readable file: {e}"
        ))
    })?;
    VerifyingKey::from_hex(text.trim())
        .map_err(|e| CliError::usage(format!("public key in {arg}: {e}")))
}

async fn open(b: &BucketArgs) -> Result<(Arc<dyn ObjectStore>, Layout), CliError> {
    let cfg = ObjectStoreConfig {
        endpoint: b.endpoint.clone(),
        region: b.region.clone(),
        allow_http: b.allow_http,
        ..ObjectStoreConfig::for_url(b.object_store.clone())
    };
    let bad = |e: pyralog_cold_tier::ColdError| CliError::usage(format!("object store: {e}"));
    let layout = cfg.layout().map_err(bad)?;
    let store = open_store(&cfg).map_err(bad)?;
    // Read-only: an auditor's credentials need not allow writing the bucket.
    let probe = layout.registry_dir();
    futures::TryStreamExt::try_next(&mut store.list(Some(&probe)))
        .await
        .map_err(|e| CliError::usage(format!("object store: cannot list {probe}: {e}")))?;
    Ok((store, layout))
}

fn audit_error(e: AuditError) -> CliError {
    match e {
        AuditError::NotFound(_) => CliError::usage(e.to_string()),
        other => CliError::runtime(other.to_string()),
    }
}

fn emit(json: &[u8], out: Option<&std::path::Path>) -> CliResult {
    match out {
        Some(path) => std::fs::write(path, json)
            .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display()))),
        None => {
            println!("{}", String::from_utf8_lossy(json));
            Ok(())
        }
    }
}
