//! Cluster mode: the node as one replica among many (design §3, §5).
//!
//! - The [`Controller`] (openraft) holds the metadata; every node runs a voter and reads the
//!   applied [`ClusterState`] locally.
//! - The **reconciler** turns that state into local facts: it opens the logs this node
//!   stores and gives each partition its role for the current epoch: leader (with a
//!   [`LeaderState`] tracking followers), follower (with a task pulling from the leader), or
//!   elsewhere. Roles only change here, and only to what the controller decided.
//! - **Followers** first ask the leader where their last epoch ends and truncate there
//!   (KIP-101/279), then keep one streaming fetch open, append what arrives, and take the HW
//!   the leader reports (capped at their own end).
//! - The **leader** answers those fetches (`Replication` service): a fetch from offset `o`
//!   tells it the follower holds everything below `o`, which moves the HW and may grow the
//!   ISR; a ticker proposes dropping followers that lag. ISR changes go through the
//!   controller (`AlterIsr`), which refuses stale epochs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_controller::{
    ClusterState, Command, CommandResult, Controller, ControllerConfig, PartitionMeta,
    PeerChannels, Rejection,
};
use pyralog_hot_tier::replication::{LeaderState, ReplicationConfig};
use pyralog_hot_tier::HotError;
use pyralog_proto::internal::replication_client::ReplicationClient;
use pyralog_proto::internal::{
    EpochEndOffsetRequest, EpochEndOffsetResponse, ReplicaFetchRequest, ReplicaFetchResponse,
};
use pyralog_types::batch::split_batches;
use pyralog_types::{Epoch, FsyncPolicy, LogId, LogOffset, NodeId, PartitionId, Reason};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

use crate::config::{ClusterSettings, NodeConfig};
use crate::copy_throttle::CopyThrottle;
use crate::error::GatewayError;
use crate::metadata::{Acls, LogMeta, MetadataError, MetadataStore};
use crate::node::NodeError;
use crate::partition::{Partition, Role};
use crate::replica_chain;
use crate::server::MAX_MESSAGE_BYTES;

/// This node's membership: who it is, the controller, and connections to peers.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) me: NodeId,
    pub(crate) address: String,
    pub(crate) controller: Arc<Controller>,
    pub(crate) settings: ClusterSettings,
    /// Channels to other nodes' cluster listeners (mutual TLS in a secure cluster).
    channels: Arc<dyn PeerChannels>,
    peers: parking_lot::Mutex<HashMap<String, Channel>>,
    /// Every voter's cluster listener address.
    voters: std::collections::BTreeMap<NodeId, String>,
    /// Pause detection: when the alive ticker last ran (ms since `started`), and whether a
    /// gap was seen that leadership has not been re-confirmed since.
    started: Instant,
    alive_ms: AtomicU64,
    suspect: AtomicBool,
    /// The rate limit of the copies this node serves to replicas a move adds.
    pub(crate) move_throttle: CopyThrottle,
}

impl Cluster {
    pub(crate) async fn start(
        config: &NodeConfig,
        channels: Arc<dyn PeerChannels>,
    ) -> Result<Option<Arc<Cluster>>, NodeError> {
        let Some(settings) = config.cluster.clone() else {
            return Ok(None);
        };
        let voters = settings.voter_map()?;
        let address = settings
            .advertise
            .clone()
            .unwrap_or_else(|| config.listen.to_string());
        let mut cc = ControllerConfig::new(
            config.node_id,
            address.clone(),
            config.data_dir.join("controller"),
            voters.clone(),
        );
        cc.raft_heartbeat = settings.raft_heartbeat;
        cc.election_timeout_min = settings.election_timeout_min;
        cc.election_timeout_max = settings.election_timeout_max;
        cc.node_lease = settings.node_lease;
        cc.node_heartbeat = settings.node_heartbeat;
        cc.leader_balance_interval = settings.leader_balance_interval;
        cc.roles = pyralog_controller::Roles {
            controller: settings.is_controller(),
            broker: settings.is_broker(),
        };
        cc.rack = settings.rack.clone();
        cc.cluster_address = settings
            .advertise_cluster
            .clone()
            .or_else(|| (!settings.is_controller()).then(|| settings.listen.to_string()));
        let controller = Controller::start_with(cc, channels.clone())
            .await
            .map_err(|e| NodeError::Controller(e.to_string()))?;
        let settings_rate = settings.move_copy_rate;
        Ok(Some(Arc::new(Cluster {
            me: config.node_id,
            address,
            controller,
            settings,
            channels,
            peers: parking_lot::Mutex::new(HashMap::new()),
            voters,
            started: Instant::now(),
            alive_ms: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            move_throttle: CopyThrottle::new(settings_rate, Instant::now()),
        })))
    }

    /// How long the node may go without running its alive ticker before it suspects it was
    /// paused (SIGSTOP, a VM freeze, a stalled runtime) and re-confirms its leaderships.
    fn pause_threshold(&self) -> Duration {
        (self.settings.node_lease / 2).max(Duration::from_millis(300))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The alive ticker's beat (every 100 ms).
    pub(crate) fn tick_alive(&self) {
        let now = self.now_ms();
        let last = self.alive_ms.swap(now, Ordering::AcqRel);
        if Duration::from_millis(now.saturating_sub(last)) > self.pause_threshold() {
            warn!(
                gap_ms = now - last,
                "this node was paused: leaderships are re-confirmed before the next write"
            );
            self.suspect.store(true, Ordering::Release);
        }
    }

    /// Something suggests this node's state is behind (a follower named a newer epoch): the
    /// next write re-confirms with the controller first.
    pub(crate) fn suspect_stale(&self) {
        self.suspect.store(true, Ordering::Release);
    }

    /// Before a leader appends: is it still the leader of `epoch`? A node that was paused
    /// (its alive ticker fell behind) first confirms with the controller that its state is
    /// current, since a new leader may have been elected meanwhile and its own state not
    /// yet updated; then the controller's state must name it leader of this epoch. This is
    /// what keeps a woken-up old leader from appending under its stale epoch.
    pub(crate) async fn check_leadership(
        &self,
        log: &LogId,
        partition: PartitionId,
        epoch: Epoch,
    ) -> Result<(), GatewayError> {
        let gap = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.alive_ms.load(Ordering::Acquire)),
        );
        if gap > self.pause_threshold() {
            self.suspect.store(true, Ordering::Release);
        }
        if self.suspect.load(Ordering::Acquire) {
            self.controller
                .confirm_current(Duration::from_secs(2))
                .await
                .map_err(|e| GatewayError::NotLeader {
                    leader: None,
                    detail: format!("cannot confirm leadership after a pause: {e}"),
                })?;
            self.alive_ms.store(self.now_ms(), Ordering::Release);
            self.suspect.store(false, Ordering::Release);
        }
        let state = self.state();
        let Some(pm) = state.partition(log, partition) else {
            return Err(GatewayError::LogNotFound(log.clone()));
        };
        if pm.leader == Some(self.me) && pm.epoch == epoch {
            return Ok(());
        }
        let leader = pm.leader.and_then(|l| state.address(l).map(str::to_owned));
        Err(GatewayError::NotLeader {
            detail: format!(
                "epoch {epoch} is over: the controller says epoch {} led by {:?}",
                pm.epoch, pm.leader
            ),
            leader,
        })
    }

    pub(crate) fn state(&self) -> Arc<ClusterState> {
        self.controller.state().borrow().clone()
    }

    /// A (lazily connected, shared) channel to node `node`'s cluster listener at `address`.
    pub(crate) fn channel(&self, node: NodeId, address: &str) -> Result<Channel, GatewayError> {
        if let Some(c) = self.peers.lock().get(address) {
            return Ok(c.clone());
        }
        let channel = self
            .channels
            .channel(node, address)
            .map_err(|e| GatewayError::Internal(format!("peer address {address}: {e}")))?;
        self.peers
            .lock()
            .insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Where `node`'s cluster listener is: as it registered it, else the voter list.
    pub(crate) fn cluster_address(&self, state: &ClusterState, node: NodeId) -> Option<String> {
        state
            .cluster_address(node)
            .map(str::to_owned)
            .or_else(|| self.voters.get(&node).cloned())
    }

    /// The role this node has for a partition the controller describes.
    pub(crate) fn desired_role(&self, state: &ClusterState, p: &PartitionMeta) -> Desired {
        let leader = p
            .leader
            .and_then(|l| state.address(l).map(|a| (l, a.to_owned())));
        if !state.is_live(self.me) {
            // Fenced (its lease ran out, or it is leaving): it leads nothing and is in no
            // ISR, so it does not copy either until it registers again; a leaving node's
            // fetches would only have its leaders propose it back into their ISRs.
            return Desired::Elsewhere { leader };
        }
        match (p.leader, leader) {
            (Some(l), _) if l == self.me => Desired::Leader,
            (Some(l), Some((_, address))) if p.replicas.contains(&self.me) => {
                match self.cluster_address(state, l) {
                    Some(cluster_address) => Desired::Follower {
                        leader: l,
                        address,
                        cluster_address,
                    },
                    None => Desired::Elsewhere {
                        leader: Some((l, address)),
                    },
                }
            }
            (_, leader) => Desired::Elsewhere { leader },
        }
    }

    pub(crate) fn replication_config(&self, min_isr: u16) -> ReplicationConfig {
        ReplicationConfig {
            replica_lag_max: self.settings.replica_lag_max,
            min_in_sync_replicas: usize::from(min_isr.max(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Desired {
    Leader,
    Follower {
        leader: NodeId,
        /// The leader's client address (for redirects) and cluster address (to fetch from).
        address: String,
        cluster_address: String,
    },
    Elsewhere {
        leader: Option<(NodeId, String)>,
    },
}

/// Brings a partition's role in line with the controller's decision for `meta`. Returns a
/// follower task to spawn, if the partition now follows a new leader or epoch.
pub(crate) async fn reconcile_partition(
    cluster: &Arc<Cluster>,
    state: &ClusterState,
    log: &LogId,
    partition: PartitionId,
    p: &Arc<Partition>,
    meta: &PartitionMeta,
    min_isr: u16,
) -> Option<FollowerTask> {
    let desired = cluster.desired_role(state, meta);
    let (cur_epoch, same) = {
        let r = p.role();
        let same = r.epoch == meta.epoch
            && match (&r.role, &desired) {
                (Role::Leader(_), Desired::Leader) => true,
                (
                    Role::Follower {
                        leader,
                        address,
                        cluster_address,
                    },
                    Desired::Follower {
                        leader: l,
                        address: a,
                        cluster_address: c,
                    },
                ) => leader == l && address == a && cluster_address == c,
                (Role::Elsewhere { leader }, Desired::Elsewhere { leader: l }) => leader == l,
                _ => false,
            };
        (r.epoch, same)
    };
    if same {
        if matches!(desired, Desired::Leader) {
            // The controller committed an ISR change (ours, or a fencing).
            let hw = {
                let mut r = p.role();
                match &mut r.role {
                    // A reassignment added or removed replicas, this node still leading.
                    Role::Leader(s) if s.replicas() != meta.replicas.as_slice() => {
                        s.replicas_changed(meta.replicas.clone(), meta.isr.clone(), Instant::now())
                    }
                    Role::Leader(s) if s.isr() != meta.isr.as_slice() => {
                        s.isr_committed(meta.isr.clone())
                    }
                    _ => None,
                }
            };
            if let Some(hw) = hw {
                p.advance_hw(hw);
            }
        }
        return None;
    }
    if meta.epoch < cur_epoch {
        // Never go back to an older epoch (a state from before a restart's replay finished).
        return None;
    }
    match desired {
        Desired::Leader => {
            let hot = p.log().clone();
            let epoch = meta.epoch;
            let begun = tokio::task::spawn_blocking(move || {
                hot.begin_epoch(epoch)?;
                Ok::<_, HotError>(hot.end_offset())
            })
            .await;
            let end = match begun {
                Ok(Ok(end)) => end,
                Ok(Err(e)) => {
                    warn!(%log, partition, epoch = %meta.epoch, error = %e, "cannot take leadership");
                    return None;
                }
                Err(e) => {
                    warn!(%log, partition, error = %e, "leadership task failed");
                    return None;
                }
            };
            let state = LeaderState::new(
                cluster.me,
                meta.epoch,
                meta.replicas.clone(),
                meta.isr.clone(),
                end,
                p.high_watermark(),
                Instant::now(),
                cluster.replication_config(min_isr),
            );
            let hw = state.high_watermark();
            p.set_role(meta.epoch, Role::Leader(Box::new(state)));
            p.advance_hw(hw);
            info!(%log, partition, epoch = %meta.epoch, end = %end, isr = ?meta.isr, "leading");
            None
        }
        Desired::Follower {
            leader,
            address,
            cluster_address,
        } => {
            p.set_role(
                meta.epoch,
                Role::Follower {
                    leader,
                    address,
                    cluster_address: cluster_address.clone(),
                },
            );
            info!(%log, partition, epoch = %meta.epoch, leader, %cluster_address, "following");
            Some(FollowerTask {
                cluster: cluster.clone(),
                log: log.clone(),
                partition,
                p: p.clone(),
                epoch: meta.epoch,
                leader,
                address: cluster_address,
            })
        }
        Desired::Elsewhere { leader } => {
            p.set_role(meta.epoch, Role::Elsewhere { leader });
            None
        }
    }
}

/// Longest wait between fetches a follower retries after its copy was refused as corrupt.
const CORRUPT_FETCH_BACKOFF: Duration = Duration::from_secs(10);

/// A follower's replication loop for one partition in one epoch; ends when the role changes.
#[derive(Debug)]
pub(crate) struct FollowerTask {
    cluster: Arc<Cluster>,
    log: LogId,
    partition: PartitionId,
    p: Arc<Partition>,
    epoch: Epoch,
    leader: NodeId,
    /// The leader's cluster listener.
    address: String,
}

impl FollowerTask {
    fn still_current(&self) -> bool {
        let r = self.p.role();
        r.epoch == self.epoch
            && matches!(&r.role, Role::Follower { cluster_address, .. } if *cluster_address == self.address)
    }

    pub(crate) async fn run(self) {
        let mut roles = self.p.subscribe_roles();
        roles.borrow_and_update();
        let mut backoff = Duration::from_millis(50);
        while self.still_current() {
            match self.follow(&mut roles).await {
                Ok(()) => {}
                Err(e) => {
                    debug!(log = %self.log, partition = self.partition, error = %e,
                        "replica fetch failed; retrying");
                    // A copy refused as corrupt (a ledger chain mismatch) will not pass by
                    // retrying at once: wait longer before fetching it again.
                    let ceiling = match e {
                        GatewayError::CorruptData(_) => CORRUPT_FETCH_BACKOFF,
                        _ => Duration::from_millis(500),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = roles.changed() => {}
                    }
                    backoff = (backoff * 2).min(ceiling);
                }
            }
        }
    }

    fn rpc(&self) -> Result<ReplicationClient<Channel>, GatewayError> {
        Ok(
            ReplicationClient::new(self.cluster.channel(self.leader, &self.address)?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }

    /// Truncates to where this replica and the leader agree, then fetches until the role
    /// changes (`Ok`) or something fails (`Err`, retried).
    async fn follow(
        &self,
        roles: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), GatewayError> {
        let mut rpc = self.rpc()?;
        self.truncate(&mut rpc).await?;
        let hot = self.p.log().clone();
        let request = |offset: LogOffset| ReplicaFetchRequest {
            log: self.log.to_string(),
            partition: self.partition,
            replica_id: self.cluster.me,
            leader_epoch: self.epoch.0,
            fetch_offset: offset.0,
            max_bytes: self.cluster.settings.replica_fetch_max_bytes,
            max_wait_ms: u32::try_from(self.cluster.settings.replica_fetch_wait.as_millis())
                .unwrap_or(u32::MAX),
        };
        let (tx, rx) = mpsc::channel(1);
        tx.send(request(hot.end_offset()))
            .await
            .map_err(|_| GatewayError::Internal("fetch stream closed".into()))?;
        let mut responses = rpc
            .fetch(ReceiverStream::new(rx))
            .await
            .map_err(peer_error)?
            .into_inner();
        let every_batch = self.p.fsync_policy() == FsyncPolicy::EveryBatch;
        loop {
            let msg = tokio::select! {
                m = responses.message() => m,
                _ = roles.changed() => return Ok(()),
            };
            let resp: ReplicaFetchResponse = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return Err(GatewayError::Internal("leader closed the fetch".into())),
                Err(status) => return Err(self.on_fetch_error(status).await),
            };
            if !self.still_current() {
                return Ok(());
            }
            if !resp.batches.is_empty() {
                let hot = hot.clone();
                let batches = resp.batches;
                let (before, after) = (resp.chain_before, resp.chain_after);
                let (log, partition) = (self.log.clone(), self.partition);
                tokio::task::spawn_blocking(move || {
                    let from = hot.end_offset();
                    replica_chain::check_before(&hot, &before)?;
                    if let Err(e) = append_all(&hot, batches, every_batch) {
                        // A ledger keeps no copied prefix its leader's chain did not vouch for.
                        if hot.is_ledger() {
                            hot.truncate_to(from)?;
                        }
                        return Err(e);
                    }
                    replica_chain::check_after(&hot, from, &after)
                })
                .await
                .map_err(|e| GatewayError::Internal(e.to_string()))?
                .inspect_err(|e| {
                    if matches!(e, GatewayError::CorruptData(_)) {
                        error!(%log, partition, error = %e, "replica copy refused");
                    }
                })?;
            }
            let end = hot.end_offset();
            self.p.advance_hw(LogOffset(resp.high_watermark).min(end));
            tx.send(request(end))
                .await
                .map_err(|_| GatewayError::Internal("fetch stream closed".into()))?;
        }
    }

    /// KIP-101/279: ask where the leader's copy of our last epoch ends; cut our log there.
    async fn truncate(&self, rpc: &mut ReplicationClient<Channel>) -> Result<(), GatewayError> {
        let hot = self.p.log().clone();
        let repair = *self.p.repair_from.lock();
        if let Some((at, _)) = repair.filter(|(_, asked)| self.epoch > *asked) {
            // `logs repair`: this replica left the ISR; cut the damaged copy, fetch it again.
            let cut = hot.clone();
            tokio::task::spawn_blocking(move || cut.truncate_to(at))
                .await
                .map_err(|e| GatewayError::Internal(e.to_string()))??;
            self.p.lower_hw(hot.end_offset());
            *self.p.corrupt.lock() = None;
            *self.p.repair_from.lock() = None;
            warn!(log = %self.log, partition = self.partition, offset = %at, leader = self.leader,
                epoch = %self.epoch, "repair: cut the damaged copy; fetching it again from the leader");
        }
        let Some(mine) = hot.latest_epoch() else {
            return Ok(());
        };
        let resp: EpochEndOffsetResponse = rpc
            .epoch_end_offset(EpochEndOffsetRequest {
                log: self.log.to_string(),
                partition: self.partition,
                replica_id: self.cluster.me,
                leader_epoch: self.epoch.0,
                epoch: mine.0,
            })
            .await
            .map_err(peer_error)?
            .into_inner();
        let end = hot.end_offset();
        let target = if resp.found {
            let (epoch, leader_end) = (Epoch(resp.epoch), LogOffset(resp.end_offset));
            // Our own end of that epoch: where our next newer epoch starts.
            let ours = hot.end_offset_for_epoch(epoch).unwrap_or(end);
            leader_end.min(ours).min(end)
        } else {
            // The leader has nothing as old as our last epoch: keep only what it has shown
            // us as committed.
            self.p.high_watermark().min(end)
        };
        if target < end {
            warn!(log = %self.log, partition = self.partition, from = %end, to = %target,
                epoch = %self.epoch, "truncating a diverged tail");
            tokio::task::spawn_blocking(move || hot.truncate_to(target))
                .await
                .map_err(|e| GatewayError::Internal(e.to_string()))??;
        }
        Ok(())
    }

    /// Out of range: our end is below the leader's start (its retention moved on: restart
    /// our log there) or above its end (cut back to it).
    async fn on_fetch_error(&self, status: tonic::Status) -> GatewayError {
        if let Some((Reason::OffsetOutOfRange, meta)) = pyralog_proto::status::reason_of(&status) {
            let earliest = meta.get("earliest").and_then(|v| v.parse().ok());
            let latest = meta.get("latest").and_then(|v| v.parse().ok());
            let hot = self.p.log().clone();
            let end = hot.end_offset();
            let fix = tokio::task::spawn_blocking(move || match (earliest, latest) {
                (Some(start), _) if end.0 < start => hot.reset_to(LogOffset(start)),
                (_, Some(last)) if end.0 > last => hot.truncate_to(LogOffset(last)),
                _ => Ok(()),
            })
            .await;
            if let Ok(Err(e)) = fix {
                return e.into();
            }
        }
        peer_error(status)
    }
}

fn append_all(
    hot: &pyralog_hot_tier::PartitionLog,
    batches: Bytes,
    every_batch: bool,
) -> Result<(), GatewayError> {
    for batch in split_batches(batches) {
        let batch = batch.map_err(GatewayError::CorruptBatch)?;
        batch.verify_crc().map_err(GatewayError::CorruptBatch)?;
        hot.append_replicated(batch.into_bytes())?;
    }
    if every_batch {
        hot.flush()?;
    }
    Ok(())
}

fn peer_error(status: tonic::Status) -> GatewayError {
    match pyralog_proto::status::reason_of(&status) {
        Some((Reason::NotLeader, meta)) => GatewayError::NotLeader {
            leader: meta.get("leader").cloned(),
            detail: status.message().to_owned(),
        },
        _ => GatewayError::Storage(format!("peer: {}", status.message())),
    }
}

/// Carries out an ISR proposal of a leader: through the controller, then back into the
/// leader's state (a refusal clears the pending proposal; a success arrives through the
/// reconciler as the new committed ISR).
pub(crate) fn propose_isr(
    cluster: Arc<Cluster>,
    log: LogId,
    partition: PartitionId,
    p: Arc<Partition>,
    epoch: Epoch,
    isr: Vec<NodeId>,
) {
    tokio::spawn(async move {
        let cmd = Command::AlterIsr {
            log: log.clone(),
            partition,
            leader: cluster.me,
            epoch,
            isr: isr.clone(),
        };
        // An unknown outcome (no answer in time) is never taken as a refusal: the command
        // may still commit, and a leader that forgot the growth would let its HW pass the
        // member it adds. The same proposal is sent again (committing it twice changes
        // nothing) while this leader of `epoch` still has it pending.
        let outcome = loop {
            match cluster.controller.write(cmd.clone()).await {
                Err(e) => {
                    debug!(%log, partition, error = %e, "ISR change not answered; sending it again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let still_pending = {
                        let r = p.role();
                        r.epoch == epoch
                            && matches!(&r.role, Role::Leader(s) if s.pending() == Some(isr.as_slice()))
                    };
                    if !still_pending {
                        return;
                    }
                }
                Ok(answer) => break answer,
            }
        };
        let refused = match &outcome {
            CommandResult::Done => {
                info!(%log, partition, %epoch, ?isr, "ISR changed");
                false
            }
            other => {
                debug!(%log, partition, ?other, "ISR change refused");
                true
            }
        };
        if refused {
            let hw = {
                let mut r = p.role();
                let same_epoch = r.epoch == epoch;
                match &mut r.role {
                    Role::Leader(s) if same_epoch => s.isr_rejected(),
                    _ => None,
                }
            };
            // Without the growth the HW may cover more: waiting writes are answered now.
            if let Some(hw) = hw {
                p.advance_hw(hw);
            }
        }
    });
}

/// The gateway's [`MetadataStore`] in cluster mode: logs live in the controller.
#[derive(Debug)]
pub(crate) struct ControllerMetadata {
    pub(crate) cluster: Arc<Cluster>,
}

/// The gateway's view of a controller log entry.
pub(crate) fn gateway_meta(meta: &pyralog_controller::LogMeta) -> LogMeta {
    LogMeta {
        config: meta.config.clone(),
        epochs: meta.partitions.iter().map(|p| p.epoch).collect(),
    }
}

#[async_trait::async_trait]
impl MetadataStore for ControllerMetadata {
    async fn create_log(
        &self,
        log: &LogId,
        config: &pyralog_types::LogConfig,
    ) -> Result<LogMeta, MetadataError> {
        // A random request id makes the controller's retries (after a lost answer) come back
        // as "created", not "already exists".
        let cmd = Command::CreateLog {
            log: log.clone(),
            config: config.clone(),
            request: rand::random::<u64>().max(1),
        };
        match self.cluster.controller.write(cmd).await {
            Ok(CommandResult::LogCreated(meta)) => Ok(gateway_meta(&meta)),
            Ok(CommandResult::Rejected(Rejection::LogAlreadyExists(l))) => {
                Err(MetadataError::AlreadyExists(l))
            }
            Ok(CommandResult::Rejected(r)) => Err(MetadataError::Rejected(r.to_string())),
            Ok(other) => Err(MetadataError::Unavailable(format!(
                "controller answered a create with {other:?}"
            ))),
            Err(e) => Err(MetadataError::Unavailable(e.to_string())),
        }
    }

    async fn delete_log(&self, log: &LogId) -> Result<(), MetadataError> {
        match self
            .cluster
            .controller
            .write(Command::DeleteLog { log: log.clone() })
            .await
        {
            Ok(CommandResult::Rejected(Rejection::LogNotFound(l))) => {
                Err(MetadataError::NotFound(l))
            }
            Ok(CommandResult::Rejected(r)) => Err(MetadataError::Rejected(r.to_string())),
            Ok(_) => Ok(()),
            Err(e) => Err(MetadataError::Unavailable(e.to_string())),
        }
    }

    async fn add_partitions(
        &self,
        log: &LogId,
        partition_count: u32,
    ) -> Result<LogMeta, MetadataError> {
        let cmd = Command::AddPartitions {
            log: log.clone(),
            partition_count,
        };
        match self.cluster.controller.write(cmd).await {
            Ok(CommandResult::Rejected(Rejection::LogNotFound(l))) => {
                Err(MetadataError::NotFound(l))
            }
            Ok(CommandResult::Rejected(r)) => Err(MetadataError::Rejected(r.to_string())),
            Ok(_) => {
                let state = self.cluster.controller.state().borrow().clone();
                state
                    .logs
                    .get(log)
                    .map(gateway_meta)
                    .ok_or_else(|| MetadataError::NotFound(log.clone()))
            }
            Err(e) => Err(MetadataError::Unavailable(e.to_string())),
        }
    }

    async fn list_logs(&self) -> Result<BTreeMap<LogId, LogMeta>, MetadataError> {
        Ok(self
            .cluster
            .state()
            .logs
            .iter()
            .map(|(id, m)| (id.clone(), gateway_meta(m)))
            .collect())
    }

    fn acls(&self) -> Acls {
        Acls::from_cluster(self.cluster.state())
    }

    async fn alter_acls(
        &self,
        add: Vec<pyralog_types::acl::AclEntry>,
        remove: Vec<pyralog_types::acl::AclEntry>,
    ) -> Result<(), MetadataError> {
        for (entries, adding) in [(add, true), (remove, false)] {
            if entries.is_empty() {
                continue;
            }
            let cmd = if adding {
                Command::AddAcls { entries }
            } else {
                Command::RemoveAcls { entries }
            };
            match self.cluster.controller.write(cmd).await {
                Ok(CommandResult::Rejected(r)) => {
                    return Err(MetadataError::Rejected(r.to_string()))
                }
                Ok(_) => {}
                Err(e) => return Err(MetadataError::Unavailable(e.to_string())),
            }
        }
        Ok(())
    }
}
