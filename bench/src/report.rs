//! The suite: baselines and workloads in one run, reported as JSON and Markdown with every
//! ratio naming its baseline.

use std::path::PathBuf;
use std::time::Duration;

use pyralog_client::{AckPolicy, Client, Compression};
use serde::Serialize;

use crate::baseline::{self, DiskBaseline};
use crate::process::{self, ProcessStats};
use crate::workload::{self, LatencyResult, ProduceResult, ProduceSpec, Throughput};
use crate::BenchError;

#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The node's data directory (the disk baseline runs there).
    pub data_dir: PathBuf,
    /// The node's pid, for CPU seconds and peak RSS.
    pub server_pid: Option<u32>,
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: Vec<u32>,
    pub latency_seconds: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub git_revision: String,
    pub data_dir: String,
    pub disk: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProduceRun {
    pub name: String,
    pub partitions: u32,
    pub record_bytes: usize,
    pub fsync: String,
    pub result: ProduceResult,
    /// Server CPU seconds per GB of payload during the run.
    pub server_cpu_s_per_gb: Option<f64>,
    /// R1: produce MB/s ÷ raw append+fsync MB/s of the same disk.
    pub r1_produce_over_raw_append: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub disk_baseline: DiskBaseline,
    pub loopback_tcp_mb_s: f64,
    pub produce: Vec<ProduceRun>,
    pub latency: Option<LatencyResult>,
    pub drain: Option<Throughput>,
    /// R4: hot catch-up consume MB/s ÷ loopback TCP MB/s.
    pub r4_consume_over_loopback: Option<f64>,
    pub server: Option<ProcessStats>,
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn disk_of(dir: &std::path::Path) -> String {
    std::process::Command::new("df")
        .args(["-h", "--output=source,fstype,size"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Runs baselines, W1 (per partition count, fsync per batch and by interval), W2/W3 at 50%
/// of the W1 peak, and W4 (drain).
pub async fn run_suite(client: &Client, opts: &SuiteOptions) -> Result<Report, BenchError> {
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        git_revision: git_revision(),
        data_dir: opts.data_dir.display().to_string(),
        disk: disk_of(&opts.data_dir),
    };
    let disk = baseline::disk(&opts.data_dir, 256 << 20, 1 << 20)?;
    let loopback = baseline::loopback_tcp(1 << 30)?;
    let mut produce = Vec::new();
    let mut peak: Option<(f64, ProduceSpec)> = None;
    for &partitions in &opts.partitions {
        for fsync in ["every_batch", "100ms"] {
            let spec = ProduceSpec {
                log: format!("bench-w1-p{partitions}-{}", fsync.replace('_', "-")),
                partitions,
                records: opts.records,
                record_bytes: opts.record_bytes,
                batch_bytes: 1 << 20,
                acks: AckPolicy::Leader,
                fsync: fsync.into(),
                compression: Compression::None,
            };
            workload::create_log(client, &spec).await?;
            let before = opts.server_pid.and_then(process::stats);
            let result = workload::produce_peak(client, &spec, opts.progress).await?;
            let after = opts.server_pid.and_then(process::stats);
            let cpu = match (before, after) {
                (Some(b), Some(a)) => Some(
                    (a.cpu_seconds - b.cpu_seconds)
                        / (result.throughput.payload_bytes as f64 / 1e9),
                ),
                _ => None,
            };
            let r1 = result.throughput.mb_per_s / disk.append_fsync_mb_s;
            if peak
                .as_ref()
                .is_none_or(|(best, _)| result.throughput.records_per_s > *best)
            {
                peak = Some((result.throughput.records_per_s, spec.clone()));
            }
            produce.push(ProduceRun {
                name: format!("W1 peak produce, {partitions} partition(s), fsync {fsync}"),
                partitions,
                record_bytes: opts.record_bytes,
                fsync: fsync.into(),
                result,
                server_cpu_s_per_gb: cpu,
                r1_produce_over_raw_append: r1,
            });
        }
    }
    let mut latency = None;
    let mut drain = None;
    if let Some((peak_rate, spec)) = peak {
        let d = workload::consume_drain(client, &spec.log, opts.progress).await?;
        let lat_spec = ProduceSpec {
            log: "bench-w2".into(),
            ..spec
        };
        workload::create_log(client, &lat_spec).await?;
        latency = Some(
            workload::produce_open_loop(
                client,
                &lat_spec,
                peak_rate * 0.5,
                Duration::from_secs(opts.latency_seconds),
                opts.progress,
            )
            .await?,
        );
        drain = Some(d);
    }
    let r4 = drain.as_ref().map(|d| d.mb_per_s / loopback);
    Ok(Report {
        machine,
        disk_baseline: disk,
        loopback_tcp_mb_s: loopback,
        produce,
        latency,
        drain,
        r4_consume_over_loopback: r4,
        server: opts.server_pid.and_then(process::stats),
    })
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        s += "# Pyralog benchmark report\n\n";
        s += &format!(
            "Machine: {} cores; disk `{}` (data dir `{}`); git revision `{}`.\n\n",
            m.cores, m.disk, m.data_dir, m.git_revision
        );
        s += "## Baselines (same run)\n\n| baseline | value |\n|---|---|\n";
        s += &format!(
            "| raw append+fsync, {} KiB writes | {:.1} MB/s (fsync p50 {} µs, p99 {} µs) |\n",
            self.disk_baseline.chunk_bytes / 1024,
            self.disk_baseline.append_fsync_mb_s,
            self.disk_baseline.fsync_p50_us,
            self.disk_baseline.fsync_p99_us
        );
        s += &format!(
            "| loopback TCP, 1 connection | {:.0} MB/s |\n\n",
            self.loopback_tcp_mb_s
        );
        s += "## W1 peak produce (acks=leader, 1 MiB batches)\n\n";
        s += "| run | records/s | MB/s | ack p50 / p99 / p99.9 (ms) | server CPU-s/GB | R1 = MB/s ÷ raw append+fsync |\n|---|---|---|---|---|---|\n";
        for r in &self.produce {
            let t = &r.result.throughput;
            let l = &r.result.ack_latency;
            s += &format!(
                "| {} | {:.0} | {:.1} | {:.1} / {:.1} / {:.1} | {} | {:.2} |\n",
                r.name,
                t.records_per_s,
                t.mb_per_s,
                l.p50_us as f64 / 1e3,
                l.p99_us as f64 / 1e3,
                l.p999_us as f64 / 1e3,
                r.server_cpu_s_per_gb
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
                r.r1_produce_over_raw_append
            );
        }
        if let Some(l) = &self.latency {
            s += &format!(
                "\n## W2/W3 open-loop at {:.0} records/s (50% of W1 peak)\n\n| latency | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|\n",
                l.target_records_per_s
            );
            for (name, x) in [
                ("produce (scheduled send → ack)", l.produce_latency),
                ("end to end (send → tailing consumer)", l.end_to_end_latency),
            ] {
                s += &format!(
                    "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n",
                    x.p50_us as f64 / 1e3,
                    x.p99_us as f64 / 1e3,
                    x.p999_us as f64 / 1e3,
                    x.max_us as f64 / 1e3
                );
            }
        }
        if let Some(d) = &self.drain {
            s += &format!(
                "\n## W4 hot catch-up drain\n\n{:.0} records/s, {:.1} MB/s; R4 = MB/s ÷ loopback TCP = {:.3}\n",
                d.records_per_s,
                d.mb_per_s,
                self.r4_consume_over_loopback.unwrap_or(0.0)
            );
        }
        if let Some(p) = &self.server {
            s += &format!(
                "\nServer: {:.1} CPU-seconds in total, peak RSS {:.0} MiB.\n",
                p.cpu_seconds,
                p.peak_rss_bytes as f64 / (1 << 20) as f64
            );
        }
        s
    }
}
