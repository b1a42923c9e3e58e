//! What security costs: the same produce workload against a plaintext node and a node with
//! TLS and authentication (mutual TLS client certificate) in the same run, connection set-up
//! time with and without TLS, and the server CPU one TLS handshake takes.

use std::time::{Duration, Instant};

use pyralog_client::{AckPolicy, Client, ClientOptions, Compression};
use serde::Serialize;

use crate::process;
use crate::workload::{create_log, produce_open_loop, produce_peak, Latency, ProduceSpec};
use crate::BenchError;

/// One node to measure.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub options: ClientOptions,
    /// The node's pid, for its CPU seconds.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub plain: Target,
    pub secure: Target,
    pub records: u64,
    pub record_bytes: usize,
    /// Connections opened to time set-up and handshake CPU.
    pub connections: u32,
    pub latency_seconds: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub produce_mb_s: f64,
    pub produce_p99_us: u64,
    /// Open-loop latency at a quarter of the plaintext peak (the same rate on both sides):
    /// low enough that the disk's own stalls do not swamp what TLS adds.
    pub latency: Latency,
    pub connect_p50_us: u64,
    pub connect_p99_us: u64,
    /// Server CPU per connection (handshake + one small call), microseconds.
    pub server_cpu_per_connection_us: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    pub records: u64,
    pub record_bytes: usize,
    pub plain: Side,
    pub secure: Side,
}

impl TlsReport {
    pub fn to_markdown(&self) -> String {
        let (p, t) = (&self.plain, &self.secure);
        let row = |name: &str, a: f64, b: f64, digits: usize| {
            let ratio = if a > 0.0 { b / a } else { 0.0 };
            format!("| {name} | {a:.digits$} | {b:.digits$} | {ratio:.2} |\n")
        };
        let cpu = |s: &Side| {
            s.server_cpu_per_connection_us
                .map_or("n/a".to_owned(), |c| format!("{c:.0}"))
        };
        let mut out = format!(
            "## TLS and authentication cost (same run)\n\n\
             {} records of {} B, acks=leader, fsync every batch, 1 partition; open-loop \
             latency at a quarter of the plaintext peak, the same rate on both nodes.\n\n\
             | figure | plaintext | TLS + mTLS auth | TLS ÷ plaintext |\n|---|---:|---:|---:|\n",
            self.records, self.record_bytes
        );
        out += &row("produce peak MB/s", p.produce_mb_s, t.produce_mb_s, 1);
        out += &row(
            "produce ack p99 at peak (µs)",
            p.produce_p99_us as f64,
            t.produce_p99_us as f64,
            0,
        );
        out += &row(
            "produce p50, open loop (µs)",
            p.latency.p50_us as f64,
            t.latency.p50_us as f64,
            0,
        );
        out += &row(
            "produce p99, open loop (µs)",
            p.latency.p99_us as f64,
            t.latency.p99_us as f64,
            0,
        );
        out += &row(
            "connection set-up p50 (µs)",
            p.connect_p50_us as f64,
            t.connect_p50_us as f64,
            0,
        );
        out += &row(
            "connection set-up p99 (µs)",
            p.connect_p99_us as f64,
            t.connect_p99_us as f64,
            0,
        );
        out += &format!(
            "| server CPU per connection (µs) | {} | {} | |\n",
            cpu(p),
            cpu(t)
        );
        out
    }
}

fn spec(o: &TlsOptions, log: &str) -> ProduceSpec {
    ProduceSpec {
        log: log.to_owned(),
        partitions: 1,
        records: o.records,
        record_bytes: o.record_bytes,
        batch_bytes: 1 << 20,
        acks: AckPolicy::Leader,
        fsync: "every_batch".to_owned(),
        compression: Compression::None,
        replication_factor: 1,
        min_in_sync_replicas: 1,
    }
}

/// Opens `n` connections one after another (each: TCP, TLS if any, one call); returns the
/// set-up times and the server's CPU per connection.
async fn connections(t: &Target, n: u32) -> Result<(Vec<u64>, Option<f64>), BenchError> {
    let before = t.pid.and_then(process::stats);
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = Instant::now();
        let c = Client::connect_with(t.url.clone(), t.options.clone()).await?;
        times.push(start.elapsed().as_micros() as u64);
        drop(c);
    }
    // Let the server finish closing the connections before reading its CPU.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = t.pid.and_then(process::stats);
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some((a.cpu_seconds - b.cpu_seconds) * 1e6 / f64::from(n.max(1))),
        _ => None,
    };
    times.sort_unstable();
    Ok((times, cpu))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn side(o: &TlsOptions, t: &Target, rate: Option<f64>) -> Result<(Side, f64), BenchError> {
    // Connections first, on an idle node: its CPU then is the connections' alone.
    let (times, cpu) = connections(t, o.connections).await?;
    let client = Client::connect_with(t.url.clone(), t.options.clone()).await?;
    let s = spec(o, "bench-tls");
    create_log(&client, &s).await?;
    let peak = produce_peak(&client, &s, o.progress).await?;
    let rate = rate.unwrap_or(peak.throughput.records_per_s / 4.0);
    let latency = produce_open_loop(
        &client,
        &s,
        rate,
        Duration::from_secs(o.latency_seconds),
        o.progress,
    )
    .await?;
    let _ = client.delete_log(&s.log).await;
    Ok((
        Side {
            produce_mb_s: peak.throughput.mb_per_s,
            produce_p99_us: peak.ack_latency.p99_us,
            latency: latency.produce_latency,
            connect_p50_us: percentile(&times, 0.5),
            connect_p99_us: percentile(&times, 0.99),
            server_cpu_per_connection_us: cpu,
        },
        rate,
    ))
}

/// Plaintext first, then TLS at the same open-loop rate.
pub async fn run(o: &TlsOptions) -> Result<TlsReport, BenchError> {
    let (plain, rate) = side(o, &o.plain, None).await?;
    let (secure, _) = side(o, &o.secure, Some(rate)).await?;
    Ok(TlsReport {
        records: o.records,
        record_bytes: o.record_bytes,
        plain,
        secure,
    })
}
