//! Replication cost: RF=3 with `acks=quorum` against RF=1 with `acks=leader`, in the same
//! run, on the same cluster, with the same records and batches (issue figures R3 and the
//! latency pair). The RF=1 run is the baseline: both share the machine, the disk and the
//! client, so their ratio is what replication itself costs here.

use std::time::Duration;

use pyralog_client::Client;
use pyralog_types::batch::Compression;
use pyralog_types::AckPolicy;
use serde::Serialize;

use crate::workload::{self, LatencyResult, ProduceResult, ProduceSpec};
use crate::BenchError;

#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: u32,
    pub latency_seconds: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicationRun {
    pub name: String,
    pub replication_factor: u32,
    pub acks: String,
    pub peak: ProduceResult,
    pub latency: LatencyResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicationReport {
    pub git_revision: String,
    pub cores: usize,
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: u32,
    pub runs: Vec<ReplicationRun>,
    /// RF=3 quorum peak MB/s ÷ RF=1 leader peak MB/s.
    pub r3_rf3_over_rf1: f64,
    /// RF=3 p50 and p99 produce latency ÷ RF=1's, at the same offered rate.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

fn spec(opts: &ReplicationOptions, rf: u32, acks: AckPolicy) -> ProduceSpec {
    ProduceSpec {
        log: format!("bench-rf{rf}-{}", std::process::id()),
        partitions: opts.partitions,
        records: opts.records,
        record_bytes: opts.record_bytes,
        batch_bytes: 1 << 20,
        acks,
        fsync: "100ms".into(),
        compression: Compression::None,
        replication_factor: rf,
        min_in_sync_replicas: rf.min(2),
    }
}

/// Peak throughput of both settings, then open-loop latency of both at half the slower
/// peak (the same offered load for each).
pub async fn run(
    client: &Client,
    opts: &ReplicationOptions,
) -> Result<ReplicationReport, BenchError> {
    wait_for_live_nodes(client, 3).await?;
    let settings = [
        (1, AckPolicy::Leader, "leader"),
        (3, AckPolicy::Quorum, "quorum"),
    ];
    let mut peaks = Vec::new();
    for (rf, acks, _) in settings {
        let spec = spec(opts, rf, acks);
        workload::create_log(client, &spec).await?;
        wait_for_full_isr(client, &spec).await?;
        peaks.push(workload::produce_peak(client, &spec, opts.progress).await?);
        let _ = client.delete_log(&spec.log).await;
    }
    let rate = peaks
        .iter()
        .map(|p| p.throughput.records_per_s)
        .fold(f64::INFINITY, f64::min)
        * 0.5;
    let mut runs = Vec::new();
    for ((rf, acks, name), peak) in settings.into_iter().zip(peaks) {
        let spec = spec(opts, rf, acks);
        workload::create_log(client, &spec).await?;
        wait_for_full_isr(client, &spec).await?;
        let latency = workload::produce_open_loop(
            client,
            &spec,
            rate,
            Duration::from_secs(opts.latency_seconds),
            opts.progress,
        )
        .await?;
        let _ = client.delete_log(&spec.log).await;
        runs.push(ReplicationRun {
            name: format!("RF={rf} acks={name}"),
            replication_factor: rf,
            acks: name.into(),
            peak,
            latency,
        });
    }
    let ratio =
        |f: &dyn Fn(&ReplicationRun) -> f64| f(&runs[1]) / f(&runs[0]).max(f64::MIN_POSITIVE);
    Ok(ReplicationReport {
        git_revision: crate::report::git_revision(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        records: opts.records,
        record_bytes: opts.record_bytes,
        partitions: opts.partitions,
        r3_rf3_over_rf1: ratio(&|r| r.peak.throughput.mb_per_s),
        p50_ratio: ratio(&|r| r.latency.produce_latency.p50_us as f64),
        p99_ratio: ratio(&|r| r.latency.produce_latency.p99_us as f64),
        runs,
    })
}

/// A cluster that just started needs its nodes registered before logs can be placed.
async fn wait_for_live_nodes(client: &Client, n: usize) -> Result<(), BenchError> {
    let mut seen = 0;
    for _ in 0..300 {
        let d = client.describe_cluster().await?;
        seen = d.nodes.iter().filter(|n| !n.fenced).count();
        if seen >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Invalid(format!(
        "the replication bench needs {n} live nodes; {seen} registered within 30 s"
    )))
}

/// A new log's followers need a moment to join; measuring before would time the catch-up.
async fn wait_for_full_isr(client: &Client, spec: &ProduceSpec) -> Result<(), BenchError> {
    let rf = spec.replication_factor as usize;
    for _ in 0..300 {
        let info = match client.describe_log(&spec.log).await {
            Ok(info) => info,
            // The answering node has not opened the new log yet.
            Err(e) if e.reason() == Some(pyralog_types::Reason::LogNotFound) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if info
            .partitions
            .iter()
            .all(|p| p.leader.is_some() && p.isr.len() >= rf)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Invalid(format!(
        "{}: the ISR did not fill up within 30 s",
        spec.log
    )))
}

impl ReplicationReport {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s += "# Replication: RF=3 acks=quorum vs RF=1 acks=leader (same run)\n\n";
        s += &format!(
            "Revision `{}`, {} cores, {} records of {} B, {} partition(s), 1 MiB batches, \
             fsync every 100 ms, three nodes on loopback (one machine).\n\n",
            self.git_revision, self.cores, self.records, self.record_bytes, self.partitions
        );
        s += "| run | peak records/s | peak MB/s | open-loop rate | p50 µs | p99 µs | p99.9 µs |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.runs {
            let l = &r.latency;
            s += &format!(
                "| {} | {:.0} | {:.1} | {:.0}/s | {} | {} | {} |\n",
                r.name,
                r.peak.throughput.records_per_s,
                r.peak.throughput.mb_per_s,
                l.target_records_per_s,
                l.produce_latency.p50_us,
                l.produce_latency.p99_us,
                l.produce_latency.p999_us
            );
        }
        s += &format!(
            "\n**R3** (RF=3 quorum MB/s ÷ RF=1 leader MB/s, baseline = the RF=1 run): {:.2}; \
             latency at the same offered rate, RF=3 ÷ RF=1: p50 {:.2}, p99 {:.2}.\n",
            self.r3_rf3_over_rf1, self.p50_ratio, self.p99_ratio
        );
        s
    }
}
