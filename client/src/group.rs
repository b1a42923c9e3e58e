//! The group consumer: a member of a consumer group that consumes the partitions the
//! coordinator assigns it.
//!
//! Everything happens inside [`GroupConsumer::poll`] (and [`GroupConsumer::close`]), on the
//! caller's task: heartbeats when due, applying a new assignment, auto-commits, fetching. So
//! when `poll` commits, the records the previous `poll` returned have been processed: with
//! auto-commit or with [`GroupConsumer::commit`] after processing, every record is processed
//! at least once, whoever consumes the partition next.
//!
//! Rebalancing is cooperative (see the `Groups` service in the proto): when the coordinator
//! takes partitions away, this member commits them (auto-commit mode), tells the listener,
//! stops fetching them, and reports at once so their new owner can start. Partitions it keeps
//! are consumed throughout. A member the coordinator removed (its session ran out) loses its
//! partitions (`on_lost`: they may already be consumed elsewhere; commits would be refused)
//! and joins again as a new member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pyralog_proto::v1;
use pyralog_types::{LogOffset, PartitionId, Reason, Record};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::client::Client;
use crate::consumer::records_from;
use crate::error::ClientError;

/// One partition of one log.
pub type LogPartition = (String, PartitionId);

/// Where to start a partition the group has no (valid) committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    Earliest,
    #[default]
    Latest,
    /// Fail the poll with the server's `OFFSET_OUT_OF_RANGE`, or a client error when
    /// nothing is committed.
    Error,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    pub logs: Vec<String>,
    /// Shown in `groups describe`; also the prefix of the member id.
    pub client_id: String,
    pub strategy: v1::AssignmentStrategy,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Commit positions this often from `poll` (and on revocation and close); `None`: only
    /// [`GroupConsumer::commit`] commits.
    pub auto_commit: Option<Duration>,
    pub reset: OffsetReset,
    /// Bytes per partition fetch (0 = server default).
    pub max_bytes: u32,
}

impl GroupConfig {
    pub fn new(group: impl Into<String>, logs: Vec<String>) -> Self {
        GroupConfig {
            group: group.into(),
            logs,
            client_id: "pyralog-rs".into(),
            strategy: v1::AssignmentStrategy::Sticky,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            auto_commit: Some(Duration::from_secs(5)),
            reset: OffsetReset::Latest,
            max_bytes: 0,
        }
    }
}

/// Told about assignment changes, from inside `poll`.
pub trait RebalanceListener: Send + Sync {
    /// Partitions this member consumes from now on.
    fn on_assigned(&mut self, _partitions: &[LogPartition]) {}
    /// Partitions taken away; in auto-commit mode their positions were committed first.
    fn on_revoked(&mut self, _partitions: &[LogPartition]) {}
    /// Partitions lost without a handover (this member was removed from the group): another
    /// member may already consume them.
    fn on_lost(&mut self, _partitions: &[LogPartition]) {}
}

/// A record with the partition it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub log: String,
    pub partition: PartitionId,
    pub record: Record,
}

/// A group member. See the module doc.
pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    member: String,
    generation: u64,
    /// Assigned partitions and the next offset to read in each.
    positions: BTreeMap<LogPartition, u64>,
    /// What was last committed (or read as committed) per partition.
    committed: BTreeMap<LogPartition, u64>,
    next_heartbeat: Instant,
    next_commit: Option<Instant>,
    /// Where the next fetch round starts (fairness across partitions).
    cursor: usize,
    listener: Option<Box<dyn RebalanceListener>>,
    /// Removed by the coordinator: join again on the next poll.
    rejoin: bool,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("member", &self.member)
            .field("generation", &self.generation)
            .field("partitions", &self.positions.len())
            .finish_non_exhaustive()
    }
}

fn to_set(lps: &[v1::LogPartitions]) -> BTreeSet<LogPartition> {
    lps.iter()
        .flat_map(|lp| lp.partitions.iter().map(|p| (lp.log.clone(), *p)))
        .collect()
}

fn to_wire(set: impl IntoIterator<Item = LogPartition>) -> Vec<v1::LogPartitions> {
    let mut by_log: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (log, p) in set {
        by_log.entry(log).or_default().push(p);
    }
    by_log
        .into_iter()
        .map(|(log, partitions)| v1::LogPartitions { log, partitions })
        .collect()
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl GroupConsumer {
    /// Joins the group and takes the partitions it is given.
    pub async fn subscribe(client: Client, config: GroupConfig) -> Result<Self, ClientError> {
        if config.logs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "subscribe to at least one log".into(),
            ));
        }
        let mut c = GroupConsumer {
            client,
            next_heartbeat: Instant::now(),
            next_commit: config.auto_commit.map(|d| Instant::now() + d),
            config,
            member: String::new(),
            generation: 0,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            cursor: 0,
            listener: None,
            rejoin: false,
        };
        c.join().await?;
        Ok(c)
    }

    /// Sets the listener; it is told about the current assignment at once.
    pub fn set_listener(&mut self, mut listener: Box<dyn RebalanceListener>) {
        let now: Vec<LogPartition> = self.positions.keys().cloned().collect();
        if !now.is_empty() {
            listener.on_assigned(&now);
        }
        self.listener = Some(listener);
    }

    pub fn member_id(&self) -> &str {
        &self.member
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn assignment(&self) -> BTreeSet<LogPartition> {
        self.positions.keys().cloned().collect()
    }

    /// Moves the position of an assigned partition back (or forward) to `offset`: the next
    /// poll reads from there, and commits commit it. Ignored for a partition not assigned.
    pub fn seek(&mut self, log: &str, partition: PartitionId, offset: u64) {
        let key = (log.to_owned(), partition);
        if let Some(pos) = self.positions.get_mut(&key) {
            *pos = offset;
        }
    }

    /// The next offset this member reads in each assigned partition.
    pub fn positions(&self) -> &BTreeMap<LogPartition, u64> {
        &self.positions
    }

    async fn join(&mut self) -> Result<(), ClientError> {
        let resp = self
            .client
            .groups_rpc()
            .join_group(v1::JoinGroupRequest {
                group: self.config.group.clone(),
                member_id: String::new(),
                client_id: self.config.client_id.clone(),
                logs: self.config.logs.clone(),
                session_timeout_ms: millis(self.config.session_timeout),
                rebalance_timeout_ms: millis(self.config.rebalance_timeout),
                strategy: self.config.strategy as i32,
            })
            .await?
            .into_inner();
        info!(group = %self.config.group, member = %resp.member_id, generation = resp.generation, "joined group");
        self.member = resp.member_id;
        self.rejoin = false;
        self.apply(resp.generation, to_set(&resp.assignment))
            .await?;
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        Ok(())
    }

    /// Moves to the coordinator's assignment of `generation`: commits and gives up what was
    /// taken, starts what was added (at the committed offsets).
    async fn apply(
        &mut self,
        generation: u64,
        assigned: BTreeSet<LogPartition>,
    ) -> Result<(), ClientError> {
        self.generation = generation;
        let current = self.assignment();
        let revoked: Vec<LogPartition> = current.difference(&assigned).cloned().collect();
        let added: Vec<LogPartition> = assigned.difference(&current).cloned().collect();
        if !revoked.is_empty() {
            if self.config.auto_commit.is_some() {
                // Best effort: if it fails, the next owner starts from the previous commit
                // and processes some records again (at least once still holds).
                if let Err(e) = self.commit_partitions(&revoked).await {
                    tracing::warn!(group = %self.config.group, error = %e, "commit on revocation failed");
                }
            }
            if let Some(l) = &mut self.listener {
                l.on_revoked(&revoked);
            }
            for tp in &revoked {
                self.positions.remove(tp);
                self.committed.remove(tp);
            }
            debug!(group = %self.config.group, member = %self.member, ?revoked, "gave up partitions");
        }
        if !added.is_empty() {
            let committed = self.client.fetch_offsets(&self.config.group, &[]).await?;
            for tp in &added {
                let at = committed
                    .iter()
                    .find(|c| c.log == tp.0 && c.partition == tp.1)
                    .map(|c| c.offset);
                let start = match at {
                    Some(o) => o,
                    None => self.reset_position(tp, None).await?,
                };
                if let Some(o) = at {
                    self.committed.insert(tp.clone(), o);
                }
                self.positions.insert(tp.clone(), start);
            }
            if let Some(l) = &mut self.listener {
                l.on_assigned(&added);
            }
            debug!(group = %self.config.group, member = %self.member, ?added, "took partitions");
        }
        Ok(())
    }

    /// Where to start `tp` by the reset policy (`range`: the partition's [earliest, latest)
    /// when known from an out-of-range answer).
    async fn reset_position(
        &self,
        tp: &LogPartition,
        range: Option<(u64, u64)>,
    ) -> Result<u64, ClientError> {
        let (earliest, latest) = match range {
            Some(r) => r,
            None => {
                let offsets = self.client.list_offsets(&tp.0, None).await?;
                let p = offsets
                    .iter()
                    .find(|o| o.partition == tp.1)
                    .ok_or_else(|| {
                        ClientError::Decode("partition missing from ListOffsets".into())
                    })?;
                (p.earliest, p.latest)
            }
        };
        match self.config.reset {
            OffsetReset::Earliest => Ok(earliest),
            OffsetReset::Latest => Ok(latest),
            OffsetReset::Error => Err(ClientError::InvalidArgument(format!(
                "group {} has no valid committed offset for {}/{} and the reset policy is `error`",
                self.config.group, tp.0, tp.1
            ))),
        }
    }

    /// Heartbeats the coordinator, reporting what this member consumes, and applies the
    /// answer.
    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        // Twice at most: after giving partitions up, report at once so they can move.
        for _ in 0..2 {
            let owned = to_wire(self.assignment());
            let answer = self
                .client
                .groups_rpc()
                .heartbeat(v1::GroupHeartbeatRequest {
                    group: self.config.group.clone(),
                    member_id: self.member.clone(),
                    generation: self.generation,
                    owned,
                })
                .await;
            let answer = match answer {
                Ok(a) => a.into_inner(),
                Err(status) => {
                    let e = ClientError::from(status);
                    if e.reason() == Some(Reason::UnknownMember) {
                        self.lose_all();
                        return Ok(());
                    }
                    return Err(e);
                }
            };
            self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
            let assigned = to_set(&answer.assignment);
            let gave_up = !self.assignment().is_subset(&assigned);
            if answer.generation == self.generation && !gave_up {
                let added = !assigned.is_subset(&self.assignment());
                if !added {
                    return Ok(());
                }
            }
            self.apply(answer.generation, assigned).await?;
            if !gave_up {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The coordinator removed this member: its partitions may be consumed elsewhere already.
    fn lose_all(&mut self) {
        let lost: Vec<LogPartition> = self.positions.keys().cloned().collect();
        info!(group = %self.config.group, member = %self.member, partitions = lost.len(), "removed from the group; joining again");
        self.positions.clear();
        self.committed.clear();
        if let Some(l) = &mut self.listener {
            if !lost.is_empty() {
                l.on_lost(&lost);
            }
        }
        self.rejoin = true;
    }

    /// Keeps the membership alive: rejoin, heartbeat and auto-commit when due.
    async fn maintain(&mut self) -> Result<(), ClientError> {
        if self.rejoin {
            self.join().await?;
        }
        if Instant::now() >= self.next_heartbeat {
            let beat = self.heartbeat().await;
            self.tolerate(beat, "heartbeat")?;
            if self.rejoin {
                self.join().await?;
            }
        }
        if let (Some(at), Some(every)) = (self.next_commit, self.config.auto_commit) {
            if Instant::now() >= at {
                let committed = self.commit().await;
                self.tolerate(committed, "auto-commit")?;
                self.next_commit = Some(Instant::now() + every);
            }
        }
        Ok(())
    }

    /// A heartbeat or auto-commit that failed for a passing reason (a controller election, a
    /// node going away) is tried again at the next poll: the session outlasts a few misses,
    /// and an uncommitted position is committed later. Other failures end the poll.
    fn tolerate(&mut self, r: Result<(), ClientError>, what: &str) -> Result<(), ClientError> {
        match r {
            Err(e) if e.is_retriable() || e.reason().is_none() => {
                self.client.seed_failed(&e);
                tracing::warn!(group = %self.config.group, error = %e, "{what} failed; will retry");
                self.next_heartbeat = Instant::now() + self.config.heartbeat_interval / 4;
                Ok(())
            }
            // Removed from the group (its partitions are already given up): it joins again
            // at the next poll.
            Err(e) if e.reason() == Some(Reason::UnknownMember) && self.rejoin => Ok(()),
            other => other,
        }
    }

    /// Returns the next records of the assigned partitions, waiting up to `timeout` when
    /// there are none. Commits (auto-commit) and rebalances happen here.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<GroupRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Err(e) = self.maintain().await {
                self.client.seed_failed(&e);
                return Err(e);
            }
            let tps: Vec<LogPartition> = self.positions.keys().cloned().collect();
            let mut out = Vec::new();
            if !tps.is_empty() {
                let n = tps.len();
                for i in 0..n {
                    let tp = &tps[(self.cursor + i) % n];
                    out.extend(self.fetch(tp, Duration::ZERO).await?);
                }
                self.cursor = (self.cursor + 1) % n;
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            // Nothing anywhere: long-poll one partition until the next heartbeat is due.
            let wait = left
                .min(
                    self.next_heartbeat
                        .saturating_duration_since(Instant::now()),
                )
                .max(Duration::from_millis(1));
            match tps.get(self.cursor % tps.len().max(1)) {
                Some(tp) => {
                    let got = self.fetch(tp, wait).await?;
                    if !got.is_empty() {
                        return Ok(got);
                    }
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    async fn fetch(
        &mut self,
        tp: &LogPartition,
        wait: Duration,
    ) -> Result<Vec<GroupRecord>, ClientError> {
        let Some(&from) = self.positions.get(tp) else {
            return Ok(Vec::new());
        };
        let req = v1::FetchRequest {
            log: tp.0.clone(),
            partition: tp.1,
            start: Some(v1::fetch_request::Start::Offset(from)),
            max_records: 0,
            max_bytes: self.config.max_bytes,
            wait_ms: millis(wait),
            format: v1::FetchFormat::Batches as i32,
            max_response_bytes: None,
        };
        let resp = match self.client.fetch(req).await {
            Ok(r) => r,
            Err(e) if e.reason() == Some(Reason::OffsetOutOfRange) => {
                let bound = |k: &str| e.metadata(k).and_then(|v| v.parse::<u64>().ok());
                let range = bound("earliest").zip(bound("latest"));
                if self.config.reset == OffsetReset::Error {
                    return Err(e);
                }
                let to = self.reset_position(tp, range).await?;
                info!(group = %self.config.group, log = %tp.0, partition = tp.1, from, to, "position out of range: reset");
                self.positions.insert(tp.clone(), to);
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let (records, next) = records_from(resp, LogOffset(from), true)?;
        self.positions.insert(tp.clone(), next.0);
        Ok(records
            .into_iter()
            .map(|record| GroupRecord {
                log: tp.0.clone(),
                partition: tp.1,
                record,
            })
            .collect())
    }

    /// Commits the position of every assigned partition that moved since its last commit.
    /// If the assignment changed meanwhile (`ILLEGAL_GENERATION`), it catches up with the
    /// coordinator and commits what it still owns.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let tps: Vec<LogPartition> = self.positions.keys().cloned().collect();
        match self.commit_partitions(&tps).await {
            Err(e) if e.reason() == Some(Reason::IllegalGeneration) => {
                self.heartbeat().await?;
                let tps: Vec<LogPartition> = self.positions.keys().cloned().collect();
                self.commit_partitions(&tps).await
            }
            other => other,
        }
    }

    async fn commit_partitions(&mut self, tps: &[LogPartition]) -> Result<(), ClientError> {
        let offsets: Vec<v1::PartitionCommit> = tps
            .iter()
            .filter_map(|tp| {
                let pos = *self.positions.get(tp)?;
                (self.committed.get(tp) != Some(&pos)).then(|| v1::PartitionCommit {
                    log: tp.0.clone(),
                    partition: tp.1,
                    position: Some(v1::partition_commit::Position::Offset(pos)),
                    ..Default::default()
                })
            })
            .collect();
        self.send_commit(offsets).await
    }

    /// Commits by VLSN: the position after the record of `log`/`partition` whose header
    /// `header` (empty: `vlsn`) holds `vlsn`.
    pub async fn commit_vlsn(
        &mut self,
        log: &str,
        partition: PartitionId,
        vlsn: u64,
        header: &str,
    ) -> Result<(), ClientError> {
        self.send_commit(vec![v1::PartitionCommit {
            log: log.to_owned(),
            partition,
            position: Some(v1::partition_commit::Position::Vlsn(vlsn)),
            metadata: String::new(),
            vlsn_header: header.to_owned(),
        }])
        .await
    }

    async fn send_commit(&mut self, offsets: Vec<v1::PartitionCommit>) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let req = v1::CommitOffsetsRequest {
            group: self.config.group.clone(),
            member_id: self.member.clone(),
            generation: self.generation,
            offsets,
        };
        match self.client.commit_offsets(req.clone()).await {
            Ok(done) => {
                for c in done {
                    self.committed.insert((c.log, c.partition), c.offset);
                }
                Ok(())
            }
            Err(e) if e.reason() == Some(Reason::UnknownMember) => {
                self.lose_all();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Commits (auto-commit mode) and leaves the group, so its partitions move at once.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.config.auto_commit.is_some() && !self.rejoin {
            self.commit().await?;
        }
        if !self.rejoin {
            self.client
                .groups_rpc()
                .leave_group(v1::LeaveGroupRequest {
                    group: self.config.group.clone(),
                    member_id: self.member.clone(),
                })
                .await?;
        }
        Ok(())
    }
}
