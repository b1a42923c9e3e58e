//! Ledger mode's costs, each next to its baseline in the same run.
//!
//! Ledger logs pay in the archiver, not on the produce path: the chain and the Merkle tree
//! are computed while a closed segment is encoded to Parquet. So the figures are:
//! 1. **archive encode, plain vs ledger**: the same segments encoded both ways, interleaved
//!    segment by segment on one thread (MB/s of record payload; goal: ledger ≥ 0.9 × plain),
//!    and the Parquet size each way (the chain column is 32 incompressible bytes a row);
//! 2. **raw GET**: every ledger object read whole, sequentially (the read baseline);
//! 3. **verify**: `pyralog_ledger_audit::verify_log` over the same objects, manifests and
//!    checkpoints, as `pyralog ledger verify` runs it (MB/s of Parquet, records/s; verify ÷
//!    raw GET says what replaying the chain costs over reading).
//!
//! Produce is where ledger mode costs on the hot path (every replica chains records as it
//! appends them): [`crate::ledger_produce`] measures W1 on a ledger log next to a plain one on
//! a node, when one is given.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pyralog_cold_tier::{
    ColdSegment, EncodeOptions, Layout, LogRegistry, Manifest, ManifestStore, SegmentWriter,
};
use pyralog_ledger::{genesis, SigningKey};
use pyralog_ledger_audit::{verify_log, CheckpointStore, Checkpointer, VerifyOptions};
use pyralog_types::{Epoch, Integrity, LogConfig, LogId, LogOffset, Record, Retention};
use serde::Serialize;

use crate::BenchError;

/// What to run.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    pub store: Arc<dyn ObjectStore>,
    pub layout: Layout,
    pub records: u64,
    pub record_bytes: usize,
    /// Records per object.
    pub segment_records: u64,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    pub records: u64,
    pub record_bytes: usize,
    pub objects: usize,
    pub plain_encode_mb_s: f64,
    pub ledger_encode_mb_s: f64,
    /// Ledger encode ÷ plain encode throughput (goal ≥ 0.9).
    pub ledger_over_plain_encode: f64,
    pub plain_parquet_bytes: u64,
    pub ledger_parquet_bytes: u64,
    pub raw_get_mb_s: f64,
    pub verify_mb_s: f64,
    pub verify_records_s: f64,
    pub verify_over_raw_get: f64,
    pub verify_clean: bool,
    /// W1 on a ledger log vs a plain log, when a node was given (`--produce-records`).
    pub produce: Option<crate::ledger_produce::ProduceCompare>,
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

fn record(i: u64, len: usize) -> Record {
    Record {
        offset: LogOffset(i),
        epoch: Epoch(1),
        timestamp: 1_700_000_000_000_000 + i as i64 * 100,
        key: Some(Bytes::from(format!("account-{}", i % 1000))),
        value: Some(Bytes::from(crate::payload(i, len))),
        headers: Vec::new(),
    }
}

fn invalid(e: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(e.to_string())
}

/// Runs the steps of the module doc.
pub async fn run(opts: &LedgerOptions) -> Result<LedgerReport, BenchError> {
    let (store, layout) = (opts.store.clone(), &opts.layout);
    let log = LogId::new("bench-ledger").map_err(invalid)?;
    let config = LogConfig {
        integrity: Integrity::Ledger,
        retention: Retention::Infinite,
        ..LogConfig::default()
    };
    LogRegistry::new(store.clone(), layout.clone())
        .put(&log, &config)
        .await
        .map_err(invalid)?;
    let manifests = ManifestStore::new(store.clone(), layout.clone());
    let key = SigningKey::generate();
    let verifying = key.verifying_key();
    let checkpointer = Checkpointer::new(
        key,
        CheckpointStore::new(store.clone(), layout),
        pyralog_types::clock::system(),
    );
    let encode = EncodeOptions::default();
    let (mut plain_secs, mut ledger_secs) = (0.0, 0.0);
    let (mut plain_bytes, mut ledger_bytes, mut payload) = (0u64, 0u64, 0u64);
    let mut manifest = Manifest::new(log.clone(), 0);
    let mut version = None;
    let mut chain = genesis(log.as_str(), 0);
    let mut base = 0;
    while base < opts.records {
        let end = (base + opts.segment_records.max(1)).min(opts.records);
        let records: Vec<Record> = (base..end).map(|i| record(i, opts.record_bytes)).collect();
        payload += records.iter().map(|r| r.payload_len() as u64).sum::<u64>();
        let start = chain;
        let (encode_a, encode_b, recs) = (encode.clone(), encode.clone(), records.clone());
        let (plain, ledger) = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let mut w = SegmentWriter::new(Vec::new(), &encode_a)?;
            w.write_all(&recs, None)?;
            let (plain, _) = w.finish()?;
            let plain_t = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut w = SegmentWriter::with_ledger(Vec::new(), &encode_b, start)?;
            w.write_all(&recs, None)?;
            let (ledger, meta) = w.finish()?;
            Ok::<_, pyralog_cold_tier::ColdError>((
                (plain.len() as u64, plain_t),
                (ledger, meta, t.elapsed().as_secs_f64()),
            ))
        })
        .await
        .map_err(invalid)?
        .map_err(invalid)?;
        plain_bytes += plain.0;
        plain_secs += plain.1;
        let (bytes, meta, secs) = ledger;
        ledger_secs += secs;
        ledger_bytes += bytes.len() as u64;
        chain = meta
            .ledger
            .map(|s| s.chain_end)
            .ok_or_else(|| invalid("no seal"))?;
        let key = layout.segment_key(&log, 0, meta.base_offset, meta.last_offset, 0);
        let size = bytes.len() as u64;
        store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(invalid)?;
        let next = manifest
            .with_segment(ColdSegment::uploaded(&meta, key.to_string(), size, 0))
            .map_err(invalid)?;
        let out = manifests
            .commit(&log, 0, &next, version)
            .await
            .map_err(invalid)?;
        version = Some(out.version());
        manifest = next;
        checkpointer.checkpoint(&manifest).await.map_err(invalid)?;
        base = end;
    }

    let t = Instant::now();
    let mut got = 0u64;
    for s in &manifest.segments {
        got += store
            .get(&s.path())
            .await
            .map_err(invalid)?
            .bytes()
            .await
            .map_err(invalid)?
            .len() as u64;
    }
    let raw_get_mb_s = mb_s(got, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let report = verify_log(
        store.clone(),
        layout,
        &log,
        &VerifyOptions {
            trusted_keys: vec![verifying],
            trust_bucket_keys: false,
            anchors: Vec::new(),
        },
    )
    .await
    .map_err(invalid)?;
    let verify_secs = t.elapsed().as_secs_f64();
    let verify_mb_s = mb_s(report.bytes(), verify_secs);
    let plain_encode_mb_s = mb_s(payload, plain_secs);
    let ledger_encode_mb_s = mb_s(payload, ledger_secs);
    Ok(LedgerReport {
        records: opts.records,
        record_bytes: opts.record_bytes,
        objects: manifest.segments.len(),
        plain_encode_mb_s,
        ledger_encode_mb_s,
        ledger_over_plain_encode: ledger_encode_mb_s / plain_encode_mb_s.max(1e-9),
        plain_parquet_bytes: plain_bytes,
        ledger_parquet_bytes: ledger_bytes,
        raw_get_mb_s,
        verify_mb_s,
        verify_records_s: report.records() as f64 / verify_secs.max(1e-9),
        verify_over_raw_get: verify_mb_s / raw_get_mb_s.max(1e-9),
        verify_clean: report.is_clean() && report.records() == opts.records,
        produce: None,
    })
}

impl LedgerReport {
    pub fn to_markdown(&self) -> String {
        format!(
            "## Ledger mode ({} records of {} B, {} objects)\n\n\
             | figure | value | goal |\n|---|---:|---:|\n\
             | archive encode, plain | {:.1} MB/s | |\n\
             | archive encode, ledger (chain + Merkle tree) | {:.1} MB/s | |\n\
             | ledger ÷ plain encode | {:.2} | ≥ 0.9 |\n\
             | Parquet bytes, ledger ÷ plain | {:.3} | |\n\
             | raw GET of the objects | {:.1} MB/s | |\n\
             | `ledger verify` | {:.1} MB/s, {:.0} records/s | |\n\
             | verify ÷ raw GET | {:.2} | |\n\
             | verified clean | {} | yes |\n",
            self.records,
            self.record_bytes,
            self.objects,
            self.plain_encode_mb_s,
            self.ledger_encode_mb_s,
            self.ledger_over_plain_encode,
            self.ledger_parquet_bytes as f64 / self.plain_parquet_bytes.max(1) as f64,
            self.raw_get_mb_s,
            self.verify_mb_s,
            self.verify_records_s,
            self.verify_over_raw_get,
            if self.verify_clean { "yes" } else { "NO" },
        ) + &self
            .produce
            .as_ref()
            .map(|p| format!("\n{}", p.to_markdown()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_run_verifies_clean_and_reports_every_figure() {
        let r = run(&LedgerOptions {
            store: Arc::new(object_store::memory::InMemory::new()),
            layout: Layout::new("bench").expect("layout"),
            records: 3_000,
            record_bytes: 100,
            segment_records: 1_000,
        })
        .await
        .expect("run");
        assert!(r.verify_clean, "{r:?}");
        assert_eq!(r.objects, 3);
        assert!(r.ledger_parquet_bytes > r.plain_parquet_bytes, "{r:?}");
        for v in [
            r.plain_encode_mb_s,
            r.ledger_encode_mb_s,
            r.verify_mb_s,
            r.raw_get_mb_s,
        ] {
            assert!(v.is_finite() && v > 0.0, "{r:?}");
        }
    }
}
