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
    /// Records per W1 run.
    pub records: u64,
    /// Record sizes W1 runs with (the first one also drives W2-W4 and W7).
    pub record_sizes: Vec<usize>,
    pub partitions: Vec<u32>,
    pub latency_seconds: u64,
    /// Size of the W4 backlog, MB of payload.
    pub drain_mb: u64,
    /// W5/W6 against the object store, and W7 through the node's cold tier.
    pub cold: Option<ColdSuite>,
    /// Figures of a peer run (`bench/peer/tansu.sh`) to set next to ours.
    pub peer: Option<PeerRun>,
    pub progress: bool,
}

/// The cold-tier part of the suite.
#[derive(Debug, Clone)]
pub struct ColdSuite {
    /// W5/W6 run in-process against this store and an empty prefix of it.
    pub options: crate::cold::ColdOptions,
    /// MB archived through the node for W7's cold reader.
    pub w7_mb: u64,
}

/// A peer broker's figures, measured by its script in the same session.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PeerRun {
    pub name: String,
    pub client: String,
    pub record_bytes: usize,
    pub records: u64,
    pub mb_per_s: f64,
    pub server_cpu_s_per_gb: Option<f64>,
    pub notes: String,
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
    /// Server CPU seconds per GB drained.
    pub drain_cpu_s_per_gb: Option<f64>,
    /// R4: hot catch-up consume MB/s ÷ loopback TCP MB/s.
    pub r4_consume_over_loopback: Option<f64>,
    pub cold: Option<crate::cold::ColdReport>,
    /// R6: tiering hot MB/s (one core) ÷ W1 peak produce MB/s.
    pub r6_tiering_over_produce: Option<f64>,
    pub w7: Option<W7>,
    pub peer: Option<PeerComparison>,
    pub server: Option<ProcessStats>,
}

/// W7: W2 again while a consumer drains archived data through the same node.
#[derive(Debug, Clone, Serialize)]
pub struct W7 {
    pub latency: LatencyResult,
    pub cold_drain: Throughput,
    /// produce p99 under the cold reader ÷ produce p99 of W2 alone.
    pub p99_over_w2: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerComparison {
    pub peer: PeerRun,
    /// The Pyralog W1 run it is compared with.
    pub ours: String,
    /// Pyralog MB/s ÷ peer MB/s.
    pub mb_s_ratio: f64,
    /// Pyralog server CPU-s/GB ÷ peer CPU-s/GB (lower is better).
    pub cpu_per_gb_ratio: Option<f64>,
}

pub(crate) fn git_revision() -> String {
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
    let main_size = opts.record_sizes.first().copied().unwrap_or(1024);
    for &record_bytes in &opts.record_sizes {
        for &partitions in &opts.partitions {
            for fsync in ["every_batch", "100ms"] {
                let spec = ProduceSpec {
                    log: format!(
                        "bench-w1-b{record_bytes}-p{partitions}-{}",
                        fsync.replace('_', "-")
                    ),
                    partitions,
                    records: opts.records,
                    record_bytes,
                    batch_bytes: 1 << 20,
                    acks: AckPolicy::Leader,
                    fsync: fsync.into(),
                    compression: Compression::None,
                    replication_factor: 1,
                    min_in_sync_replicas: 1,
                };
                workload::create_log(client, &spec).await?;
                let before = opts.server_pid.and_then(process::stats);
                let result = workload::produce_peak(client, &spec, opts.progress).await?;
                let after = opts.server_pid.and_then(process::stats);
                let cpu = cpu_per_gb(before, after, result.throughput.payload_bytes);
                let r1 = result.throughput.mb_per_s / disk.append_fsync_mb_s;
                let better = peak
                    .as_ref()
                    .is_none_or(|(best, _)| result.throughput.records_per_s > *best);
                if record_bytes == main_size && better {
                    peak = Some((result.throughput.records_per_s, spec.clone()));
                }
                let _ = client.delete_log(&spec.log).await;
                produce.push(ProduceRun {
                    name: format!(
                        "W1 {record_bytes} B records, {partitions} partition(s), fsync {fsync}"
                    ),
                    partitions,
                    record_bytes,
                    fsync: fsync.into(),
                    result,
                    server_cpu_s_per_gb: cpu,
                    r1_produce_over_raw_append: r1,
                });
            }
        }
    }
    let mut latency = None;
    let mut drain = None;
    let mut drain_cpu = None;
    let mut w7 = None;
    if let Some((peak_rate, spec)) = &peak {
        // W4: a backlog of drain_mb, produced without waiting for fsyncs, then drained.
        let backlog = ProduceSpec {
            log: "bench-w4".into(),
            records: (opts.drain_mb << 20) / spec.record_bytes.max(1) as u64,
            fsync: "1s".into(),
            ..spec.clone()
        };
        workload::create_log(client, &backlog).await?;
        workload::produce_peak(client, &backlog, opts.progress).await?;
        let before = opts.server_pid.and_then(process::stats);
        let d = workload::consume_drain(client, &backlog.log, opts.progress).await?;
        let after = opts.server_pid.and_then(process::stats);
        drain_cpu = cpu_per_gb(before, after, d.payload_bytes);
        let _ = client.delete_log(&backlog.log).await;
        drain = Some(d);

        // W2 + W3: open loop at half the peak, with tailing consumers.
        let lat_spec = ProduceSpec {
            log: "bench-w2".into(),
            ..spec.clone()
        };
        workload::create_log(client, &lat_spec).await?;
        let w2 = workload::produce_open_loop(
            client,
            &lat_spec,
            peak_rate * 0.5,
            Duration::from_secs(opts.latency_seconds),
            opts.progress,
        )
        .await?;
        let _ = client.delete_log(&lat_spec.log).await;

        // W7: the same while a consumer catches up on archived data through the node.
        if let Some(c) = &opts.cold {
            let archived = crate::workload::archive_backlog(
                client,
                "bench-w7-archive",
                c.w7_mb,
                spec.record_bytes,
                opts.progress,
            )
            .await?;
            let w7_spec = ProduceSpec {
                log: "bench-w7".into(),
                ..spec.clone()
            };
            workload::create_log(client, &w7_spec).await?;
            let reader = {
                let client = client.clone();
                tokio::spawn(async move {
                    workload::consume_drain(&client, "bench-w7-archive", false).await
                })
            };
            let under_load = workload::produce_open_loop(
                client,
                &w7_spec,
                peak_rate * 0.5,
                Duration::from_secs(opts.latency_seconds),
                opts.progress,
            )
            .await?;
            let cold_drain = reader
                .await
                .map_err(|e| BenchError::Invalid(e.to_string()))??;
            if cold_drain.records < archived {
                return Err(BenchError::Invalid(format!(
                    "W7's reader read {} of {archived} archived records",
                    cold_drain.records
                )));
            }
            let _ = client.delete_log(&w7_spec.log).await;
            let _ = client.delete_log("bench-w7-archive").await;
            w7 = Some(W7 {
                p99_over_w2: under_load.produce_latency.p99_us as f64
                    / w2.produce_latency.p99_us.max(1) as f64,
                latency: under_load,
                cold_drain,
            });
        }
        latency = Some(w2);
    }
    let r4 = drain.as_ref().map(|d| d.mb_per_s / loopback);
    let cold = match &opts.cold {
        Some(c) => Some(crate::cold::run(&c.options).await?),
        None => None,
    };
    let r6 = match (&cold, &peak) {
        (Some(c), Some(_)) => produce
            .iter()
            .map(|r| r.result.throughput.mb_per_s)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .map(|p| c.tiering_hot_mb_s / p),
        _ => None,
    };
    let peer = opts.peer.as_ref().and_then(|p| {
        let ours = produce
            .iter()
            .filter(|r| r.record_bytes == p.record_bytes && r.partitions == 1)
            .max_by(|a, b| {
                a.result
                    .throughput
                    .mb_per_s
                    .total_cmp(&b.result.throughput.mb_per_s)
            })?;
        Some(PeerComparison {
            peer: p.clone(),
            ours: ours.name.clone(),
            mb_s_ratio: ours.result.throughput.mb_per_s / p.mb_per_s.max(1e-9),
            cpu_per_gb_ratio: ours
                .server_cpu_s_per_gb
                .zip(p.server_cpu_s_per_gb)
                .map(|(a, b)| a / b.max(1e-9)),
        })
    });
    Ok(Report {
        machine,
        disk_baseline: disk,
        loopback_tcp_mb_s: loopback,
        produce,
        latency,
        drain,
        drain_cpu_s_per_gb: drain_cpu,
        r4_consume_over_loopback: r4,
        cold,
        r6_tiering_over_produce: r6,
        w7,
        peer,
        server: opts.server_pid.and_then(process::stats),
    })
}

fn cpu_per_gb(
    before: Option<ProcessStats>,
    after: Option<ProcessStats>,
    payload_bytes: u64,
) -> Option<f64> {
    let (b, a) = (before?, after?);
    Some((a.cpu_seconds - b.cpu_seconds) / (payload_bytes as f64 / 1e9).max(1e-12))
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
        s += "## W1 peak produce (acks=leader, 1 MiB batches, closed loop)\n\n";
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
                "\n## W4 hot catch-up drain ({:.0} MB backlog)\n\n{:.0} records/s, {:.1} MB/s, server {} CPU-s/GB; R4 = MB/s ÷ loopback TCP MB/s = {:.3}\n",
                d.payload_bytes as f64 / 1e6,
                d.records_per_s,
                d.mb_per_s,
                self.drain_cpu_s_per_gb
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
                self.r4_consume_over_loopback.unwrap_or(0.0)
            );
        }
        if let Some(c) = &self.cold {
            s += "\n## W5 cold catch-up and W6 tiering (in-process, against the object store)\n\n";
            s += &c.to_markdown();
            if let Some(r6) = self.r6_tiering_over_produce {
                s += &format!(
                    "\nR6 = tiering hot MB/s (one core) ÷ W1 peak produce MB/s = {r6:.2}\n"
                );
            }
        }
        if let Some(w) = &self.w7 {
            let (l, b) = (&w.latency.produce_latency, self.latency.as_ref());
            s += &format!(
                "\n## W7: W2 while a consumer catches up on archived data through the node\n\n\
                 | | produce p50 | p99 | p99.9 | end-to-end p99 |\n|---|---|---|---|---|\n\
                 | W2 alone | {} | {} | {} | {} |\n\
                 | with the cold reader ({:.1} MB/s, {} records) | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n\n\
                 produce p99 with ÷ without the cold reader = {:.2}\n",
                b.map_or("-".into(), |b| format!("{:.2} ms", b.produce_latency.p50_us as f64 / 1e3)),
                b.map_or("-".into(), |b| format!("{:.2} ms", b.produce_latency.p99_us as f64 / 1e3)),
                b.map_or("-".into(), |b| format!("{:.2} ms", b.produce_latency.p999_us as f64 / 1e3)),
                b.map_or("-".into(), |b| format!("{:.2} ms", b.end_to_end_latency.p99_us as f64 / 1e3)),
                w.cold_drain.mb_per_s,
                w.cold_drain.records,
                l.p50_us as f64 / 1e3,
                l.p99_us as f64 / 1e3,
                l.p999_us as f64 / 1e3,
                w.latency.end_to_end_latency.p99_us as f64 / 1e3,
                w.p99_over_w2
            );
        }
        if let Some(p) = &self.peer {
            s += &format!(
                "\n## Peer: {} ({}), same record size and batch size, same machine and session\n\n\
                 | | MB/s | server CPU-s/GB |\n|---|---|---|\n\
                 | {} | {:.1} | {} |\n| Pyralog: {} | see W1 | see W1 |\n\n\
                 Pyralog ÷ {} MB/s = {:.2}; CPU-s/GB ratio (lower is better for Pyralog) = {}. {}\n",
                p.peer.name,
                p.peer.client,
                p.peer.name,
                p.peer.mb_per_s,
                p.peer
                    .server_cpu_s_per_gb
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
                p.ours,
                p.peer.name,
                p.mb_s_ratio,
                p.cpu_per_gb_ratio
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
                p.peer.notes
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
