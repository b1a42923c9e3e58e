//! Consumer groups and the idempotent producer: the figures of the issue, all from one run
//! against a running node or cluster.
//!
//! - Produce throughput with idempotence off, then on, same records and batches (the "off"
//!   run is the baseline of the ratio).
//! - Commit throughput: one member commits a new position for every partition it owns, as
//!   fast as answers come back (each commit is one controller write).
//! - Rebalance times, measured by members in this process: a second member joins (until both
//!   hold their share), it leaves (until the first holds everything again), a third joins and
//!   is killed without leaving (until its partitions are back: about the session timeout).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pyralog_client::{
    AssignmentStrategy, Client, GroupConfig, GroupConsumer, LogPartition, OffsetReset,
};
use pyralog_proto::v1;
use pyralog_types::batch::Compression;
use pyralog_types::AckPolicy;
use serde::Serialize;
use tokio::sync::watch;

use crate::workload::{self, hist, Latency, ProduceResult, ProduceSpec};
use crate::BenchError;

#[derive(Debug, Clone)]
pub struct GroupsOptions {
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: u32,
    pub commit_seconds: u64,
    pub session_timeout: Duration,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommitResult {
    pub commits: u64,
    pub partitions_per_commit: u32,
    pub commits_per_s: f64,
    pub partition_offsets_per_s: f64,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebalanceResult {
    pub join_ms: f64,
    pub leave_ms: f64,
    pub kill_ms: f64,
    pub session_timeout_ms: f64,
    pub heartbeat_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupsReport {
    pub git_revision: String,
    pub cores: usize,
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: u32,
    pub produce_plain: ProduceResult,
    pub produce_idempotent: ProduceResult,
    /// Idempotent MB/s ÷ plain MB/s (baseline: the plain run).
    pub idempotent_over_plain: f64,
    pub commits: CommitResult,
    pub rebalance: RebalanceResult,
}

fn spec(opts: &GroupsOptions, name: &str) -> ProduceSpec {
    ProduceSpec {
        log: format!("bench-{name}-{}", std::process::id()),
        partitions: opts.partitions,
        records: opts.records,
        record_bytes: opts.record_bytes,
        batch_bytes: 1 << 20,
        acks: AckPolicy::Leader,
        fsync: "100ms".into(),
        compression: Compression::None,
        replication_factor: 1,
        min_in_sync_replicas: 1,
    }
}

pub async fn run(client: &Client, opts: &GroupsOptions) -> Result<GroupsReport, BenchError> {
    // Two rounds, alternating, so neither setting always runs first on a cold machine; each
    // setting reports its better round.
    let plain = spec(opts, "plain");
    let idem = spec(opts, "idempotent");
    let mut produce_plain: Option<ProduceResult> = None;
    let mut produce_idempotent: Option<ProduceResult> = None;
    for _round in 0..2 {
        for (spec, idempotent, best) in [
            (&plain, false, &mut produce_plain),
            (&idem, true, &mut produce_idempotent),
        ] {
            workload::create_log(client, spec).await?;
            let r = workload::produce_peak_with(client, spec, opts.progress, idempotent).await?;
            if best
                .as_ref()
                .is_none_or(|b| r.throughput.mb_per_s > b.throughput.mb_per_s)
            {
                *best = Some(r);
            }
        }
    }
    let (Some(produce_plain), Some(produce_idempotent)) = (produce_plain, produce_idempotent)
    else {
        return Err(BenchError::Invalid("no produce run".into()));
    };
    let commits = commit_throughput(client, &plain.log, opts).await?;
    let rebalance = rebalance_times(client, &plain.log, opts).await?;
    for log in [&plain.log, &idem.log] {
        let _ = client.delete_log(log).await;
    }
    Ok(GroupsReport {
        git_revision: crate::report::git_revision(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        records: opts.records,
        record_bytes: opts.record_bytes,
        partitions: opts.partitions,
        idempotent_over_plain: produce_idempotent.throughput.mb_per_s
            / produce_plain.throughput.mb_per_s,
        produce_plain,
        produce_idempotent,
        commits,
        rebalance,
    })
}

fn group_config(group: &str, log: &str, opts: &GroupsOptions) -> GroupConfig {
    let mut c = GroupConfig::new(group, vec![log.to_owned()]);
    c.client_id = "bench".into();
    c.strategy = AssignmentStrategy::Sticky;
    c.session_timeout = opts.session_timeout;
    c.heartbeat_interval = opts.session_timeout / 10;
    c.auto_commit = None;
    c.reset = OffsetReset::Earliest;
    c
}

async fn commit_throughput(
    client: &Client,
    log: &str,
    opts: &GroupsOptions,
) -> Result<CommitResult, BenchError> {
    let group = format!("bench-commits-{}", std::process::id());
    // The loop below only commits (no polls, so no heartbeats): a session that outlasts it.
    let mut config = group_config(&group, log, opts);
    config.session_timeout = Duration::from_secs(opts.commit_seconds * 2 + 30);
    let member = GroupConsumer::subscribe(client.clone(), config).await?;
    let owned: Vec<LogPartition> = member.assignment().into_iter().collect();
    let mut h = hist()?;
    let t = Instant::now();
    let until = t + Duration::from_secs(opts.commit_seconds);
    let mut n = 0u64;
    while Instant::now() < until {
        let offsets = owned
            .iter()
            .map(|(l, p)| v1::PartitionCommit {
                log: l.clone(),
                partition: *p,
                position: Some(v1::partition_commit::Position::Offset(n + 1)),
                ..Default::default()
            })
            .collect();
        let sent = Instant::now();
        client
            .commit_offsets(v1::CommitOffsetsRequest {
                group: group.clone(),
                member_id: member.member_id().to_owned(),
                generation: member.generation(),
                offsets,
            })
            .await?;
        let _ = h.record(sent.elapsed().as_micros() as u64);
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    member.close().await?;
    let _ = client.delete_group(&group).await;
    let per = u32::try_from(owned.len()).unwrap_or(u32::MAX);
    Ok(CommitResult {
        commits: n,
        partitions_per_commit: per,
        commits_per_s: n as f64 / secs,
        partition_offsets_per_s: n as f64 * f64::from(per) / secs,
        latency: Latency::of(&h),
    })
}

/// A member polling in a task, publishing its assignment; `stop` ends it with a leave,
/// aborting the task is a crash.
struct Running {
    assignment: watch::Receiver<BTreeSet<LogPartition>>,
    leave: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(client: &Client, config: GroupConfig) -> Result<Running, BenchError> {
    let mut member = GroupConsumer::subscribe(client.clone(), config).await?;
    let (tx, rx) = watch::channel(member.assignment());
    let (leave, mut left) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut left => {
                    let _ = member.close().await;
                    return;
                }
                r = member.poll(Duration::from_millis(50)) => {
                    if r.is_err() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            tx.send_replace(member.assignment());
        }
    });
    Ok(Running {
        assignment: rx,
        leave,
        task,
    })
}

async fn wait_sizes(
    members: &mut [&mut Running],
    want: &[usize],
    timeout: Duration,
) -> Result<Duration, BenchError> {
    let t = Instant::now();
    loop {
        let mut sizes: Vec<usize> = members
            .iter()
            .map(|m| m.assignment.borrow().len())
            .collect();
        sizes.sort_unstable();
        if sizes == want {
            return Ok(t.elapsed());
        }
        if t.elapsed() > timeout {
            return Err(BenchError::Invalid(format!(
                "rebalance did not reach {want:?} within {timeout:?}: {sizes:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn rebalance_times(
    client: &Client,
    log: &str,
    opts: &GroupsOptions,
) -> Result<RebalanceResult, BenchError> {
    let group = format!("bench-rebalance-{}", std::process::id());
    let config = group_config(&group, log, opts);
    let n = opts.partitions as usize;
    let limit = opts.session_timeout * 4 + Duration::from_secs(10);
    let mut a = start(client, config.clone()).await?;
    wait_sizes(&mut [&mut a], &[n], limit).await?;
    let half = [n / 2, n - n / 2];

    let mut b = start(client, config.clone()).await?;
    let join = wait_sizes(&mut [&mut a, &mut b], &half, limit).await?;

    let _ = b.leave.send(());
    let _ = b.task.await;
    let leave = wait_sizes(&mut [&mut a], &[n], limit).await?;

    let mut c = start(client, config.clone()).await?;
    wait_sizes(&mut [&mut a, &mut c], &half, limit).await?;
    c.task.abort();
    let kill = wait_sizes(&mut [&mut a], &[n], limit).await?;

    let _ = a.leave.send(());
    let _ = a.task.await;
    let _ = client.delete_group(&group).await;
    Ok(RebalanceResult {
        join_ms: join.as_secs_f64() * 1e3,
        leave_ms: leave.as_secs_f64() * 1e3,
        kill_ms: kill.as_secs_f64() * 1e3,
        session_timeout_ms: opts.session_timeout.as_secs_f64() * 1e3,
        heartbeat_ms: (opts.session_timeout / 10).as_secs_f64() * 1e3,
    })
}

impl GroupsReport {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s += "# Consumer groups and the idempotent producer (same run)\n\n";
        s += &format!(
            "Revision `{}`, {} cores, {} records of {} B, {} partitions, 1 MiB batches, acks=leader, \
             fsync every 100 ms; produce: the better of two alternating rounds per setting.\n\n",
            self.git_revision, self.cores, self.records, self.record_bytes, self.partitions
        );
        s +=
            "| produce | records/s | MB/s | ack p50 µs | ack p99 µs |\n|---|---:|---:|---:|---:|\n";
        for (name, r) in [
            ("idempotence off (baseline)", &self.produce_plain),
            ("idempotence on", &self.produce_idempotent),
        ] {
            s += &format!(
                "| {name} | {:.0} | {:.1} | {} | {} |\n",
                r.throughput.records_per_s,
                r.throughput.mb_per_s,
                r.ack_latency.p50_us,
                r.ack_latency.p99_us
            );
        }
        s += &format!(
            "\nIdempotent ÷ plain MB/s: **{:.2}**.\n\n",
            self.idempotent_over_plain
        );
        let c = &self.commits;
        s += &format!(
            "Commits: {:.0}/s of {} partitions each ({:.0} partition offsets/s), latency p50 {} µs, p99 {} µs ({} commits).\n\n",
            c.commits_per_s, c.partitions_per_commit, c.partition_offsets_per_s, c.latency.p50_us, c.latency.p99_us, c.commits
        );
        let r = &self.rebalance;
        s += &format!(
            "Rebalance (session timeout {:.0} ms, heartbeat {:.0} ms): join {:.0} ms, leave {:.0} ms, kill {:.0} ms.\n",
            r.session_timeout_ms, r.heartbeat_ms, r.join_ms, r.leave_ms, r.kill_ms
        );
        s
    }
}
