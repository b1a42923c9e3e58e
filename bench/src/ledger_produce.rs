//! W1 on a ledger log next to W1 on a plain log, in the same run on the same node.
//!
//! A ledger's replicas chain every record as they append it (one SHA-256 over each record's
//! canonical bytes, right after the append lock is released and before the write is
//! answered), so produce is where ledger mode costs something. The two logs are produced alternately, `rounds` times each, with the same
//! records, batches and fsync policy; the figure is the median of the per-round ratios
//! (goal: ledger ≥ 0.9 × plain, i.e. at most 10 % cost).

use pyralog_client::{AckPolicy, Client, Compression};
use pyralog_proto::v1;
use serde::Serialize;

use crate::workload::{self, ProduceSpec};
use crate::BenchError;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProduceCompareOptions {
    pub records: u64,
    pub record_bytes: usize,
    pub rounds: u32,
    /// The logs' fsync policy (`every_batch` by default: nothing acknowledged before disk).
    pub fsync: String,
    pub progress: bool,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceCompare {
    pub records: u64,
    pub record_bytes: usize,
    pub fsync: String,
    pub plain_mb_s: Vec<f64>,
    pub ledger_mb_s: Vec<f64>,
    /// Median of the per-round ledger ÷ plain ratios (goal ≥ 0.9).
    pub ledger_over_plain: f64,
}

/// Deletes a run's log; a ledger log only goes with the break-glass flag (the bench's own
/// logs, on a node where it may create and delete logs).
async fn delete(client: &Client, log: &str) {
    let _ = client.delete_log_with(log, true).await;
}

async fn create(client: &Client, spec: &ProduceSpec, ledger: bool) -> Result<(), BenchError> {
    delete(client, &spec.log).await;
    client
        .create_log(
            &spec.log,
            v1::LogConfig {
                partition_count: Some(spec.partitions),
                fsync: Some(spec.fsync.clone()),
                retention: Some(v1::Retention::default()),
                integrity: if ledger {
                    v1::Integrity::Ledger as i32
                } else {
                    v1::Integrity::Unspecified as i32
                },
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

/// Runs the comparison of the module docs against the node `client` talks to.
pub async fn run(client: &Client, o: &ProduceCompareOptions) -> Result<ProduceCompare, BenchError> {
    if o.records == 0 || o.record_bytes == 0 || o.rounds == 0 {
        return Err(BenchError::Invalid(
            "records, record bytes and rounds must be positive".into(),
        ));
    }
    let (mut plain, mut ledger, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let mut pair = [0.0; 2];
        for (i, is_ledger) in [false, true].into_iter().enumerate() {
            let spec = ProduceSpec {
                log: format!(
                    "bench-w1-{}-{round}",
                    if is_ledger { "ledger" } else { "plain" }
                ),
                partitions: 1,
                records: o.records,
                record_bytes: o.record_bytes,
                batch_bytes: 1 << 20,
                acks: AckPolicy::Leader,
                fsync: o.fsync.clone(),
                compression: Compression::None,
                replication_factor: 1,
                min_in_sync_replicas: 1,
            };
            create(client, &spec, is_ledger).await?;
            let result = workload::produce_peak(client, &spec, o.progress).await;
            delete(client, &spec.log).await;
            pair[i] = result?.throughput.mb_per_s;
        }
        plain.push(pair[0]);
        ledger.push(pair[1]);
        ratios.push(pair[1] / pair[0].max(1e-9));
    }
    ratios.sort_by(f64::total_cmp);
    Ok(ProduceCompare {
        records: o.records,
        record_bytes: o.record_bytes,
        fsync: o.fsync.clone(),
        plain_mb_s: plain,
        ledger_mb_s: ledger,
        ledger_over_plain: ratios[ratios.len() / 2],
    })
}

impl ProduceCompare {
    pub fn to_markdown(&self) -> String {
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        format!(
            "## W1 produce, ledger vs plain ({} records of {} B, 1 partition, fsync {}, \
             alternating rounds)\n\n| figure | value | goal |\n|---|---:|---:|\n\
             | W1 plain log, MB/s per round | {} | |\n\
             | W1 ledger log, MB/s per round | {} | |\n\
             | ledger ÷ plain (median of rounds) | {:.2} | ≥ 0.9 |\n",
            self.records,
            self.record_bytes,
            self.fsync,
            list(&self.plain_mb_s),
            list(&self.ledger_mb_s),
            self.ledger_over_plain
        )
    }
}
