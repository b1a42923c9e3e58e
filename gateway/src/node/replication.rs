//! The node's side of cluster mode: the reconciler task, the ISR ticker, and the leader's
//! answers to follower fetches (the `Replication` gRPC service). The decisions themselves
//! live in `pyralog_hot_tier::replication` and `crate::cluster`.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::Stream;
use pyralog_controller::{ClusterState, PeerNode};
use pyralog_proto::internal::replication_server::Replication;
use pyralog_proto::internal::{
    EpochEndOffsetRequest, EpochEndOffsetResponse, ReplicaFetchRequest, ReplicaFetchResponse,
};
use pyralog_types::{Epoch, LogOffset, NodeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::warn;

use super::{Node, OpenLog};
use crate::cluster::{gateway_meta, propose_isr, reconcile_partition, Cluster};
use crate::error::GatewayError;
use crate::partition::Role;
use crate::replica_chain;

/// How often leaders check their followers' lag.
const ISR_TICK: Duration = Duration::from_millis(200);

impl Node {
    /// Follows the controller's applied state: opens logs this node stores, removes deleted
    /// ones, and sets every partition's role. Also re-runs every second, so a failed open or
    /// leadership take-over is retried.
    pub(super) fn spawn_reconciler(self: &Arc<Self>, cluster: Arc<Cluster>) {
        let node = Arc::downgrade(self);
        let cancel = self.shutdown.clone();
        let mut states = cluster.controller.state();
        self.tasks.spawn(async move {
            loop {
                let state = states.borrow_and_update().clone();
                {
                    let Some(node) = node.upgrade() else { break };
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = node.reconcile(&cluster, &state) => {}
                    }
                    node.reconciled.send_modify(|n| *n += 1);
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = states.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    async fn reconcile(self: &Arc<Self>, cluster: &Arc<Cluster>, state: &ClusterState) {
        self.open_failures
            .lock()
            .retain(|id, _| state.logs.contains_key(id));
        for (id, meta) in &state.logs {
            let existing = self.logs.read().get(id).cloned();
            let open = match existing {
                Some(o)
                    if o.incarnation == meta.incarnation
                        && o.partitions.len() < meta.partitions.len() =>
                {
                    match self.grow_log(&o, gateway_meta(meta)).await {
                        Ok(grown) => {
                            self.logs.write().insert(id.clone(), grown.clone());
                            if let Some(cold) = &self.cold {
                                if let Err(e) = cold.register(id, &meta.config).await {
                                    warn!(log = %id, error = %e, "cannot register in the bucket");
                                }
                            }
                            grown
                        }
                        Err(e) => {
                            // The partitions it has keep their roles; the new ones are
                            // tried again at the next pass.
                            warn!(log = %id, error = %e, "cannot open the log's new partitions");
                            o
                        }
                    }
                }
                Some(o) if o.incarnation == meta.incarnation => o,
                other => {
                    if let Some(old) = other {
                        if let Err(e) = self.remove_local(&old, false).await {
                            warn!(log = %id, error = %e, "cannot remove an old incarnation");
                            continue;
                        }
                    }
                    match self
                        .open_log(id.clone(), gateway_meta(meta), meta.incarnation)
                        .await
                    {
                        Ok(o) => {
                            self.open_failures.lock().remove(id);
                            self.logs.write().insert(id.clone(), o.clone());
                            if let Some(cold) = &self.cold {
                                if let Err(e) = cold.register(id, &meta.config).await {
                                    warn!(log = %id, error = %e, "cannot register in the bucket");
                                }
                            }
                            o
                        }
                        Err(e) => {
                            warn!(log = %id, error = %e, "cannot open log");
                            self.open_failures
                                .lock()
                                .insert(id.clone(), (meta.incarnation, e.to_string()));
                            continue;
                        }
                    }
                }
            };
            for (i, pm) in meta.partitions.iter().enumerate() {
                let Some(p) = open.partitions.get(i) else {
                    continue;
                };
                // New appends must be in a newer epoch than anything archived (a replaced or
                // restored disk continues after the archive): only the controller bumps it.
                let archived = p.cold().map_or(0, |c| c.last_epoch());
                let behind = p.behind_archive.load(Ordering::Acquire);
                if behind && archived < pm.epoch.0 {
                    p.behind_archive.store(false, Ordering::Release);
                }
                if behind && pm.leader == Some(cluster.me) && archived >= pm.epoch.0 {
                    let cmd = pyralog_controller::Command::AdvanceEpoch {
                        log: id.clone(),
                        partition: i as u32,
                        above: Epoch(archived),
                    };
                    if let Err(e) = cluster.controller.write(cmd).await {
                        warn!(log = %id, partition = i, error = %e, "cannot advance the epoch past the archive");
                    }
                    continue;
                }
                let task = reconcile_partition(
                    cluster,
                    state,
                    id,
                    i as u32,
                    p,
                    pm,
                    meta.config.min_in_sync_replicas,
                )
                .await;
                if let Some(task) = task {
                    self.tasks.spawn(task.run());
                }
            }
        }
        let gone: Vec<Arc<OpenLog>> = self
            .logs
            .read()
            .values()
            .filter(|o| !state.logs.contains_key(&o.id))
            .cloned()
            .collect();
        for log in gone {
            if let Err(e) = self.remove_local(&log, false).await {
                warn!(log = %log.id, error = %e, "cannot remove a deleted log");
            }
        }
    }

    /// The alive ticker behind pause detection (see `Cluster::check_leadership`).
    pub(super) fn spawn_alive_ticker(self: &Arc<Self>, cluster: Arc<Cluster>) {
        cluster.tick_alive();
        self.spawn_ticker(
            Duration::from_millis(100),
            self.shutdown.clone(),
            move || {
                let cluster = cluster.clone();
                async move {
                    cluster.tick_alive();
                    true
                }
            },
        );
    }

    /// Waits (at most 30 s) until the reconciler has completed a pass over the state as it
    /// is now: `passes` more if a change may be mid-pass, or until `passes` in total.
    pub(super) async fn wait_reconciled(&self, passes: u64, relative: bool) {
        let mut rx = self.reconciled.subscribe();
        let target = if relative {
            *rx.borrow_and_update() + passes
        } else {
            passes
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|n| *n >= target)).await;
    }

    /// Waits until the controller lists this node as live (it registers itself on start).
    pub(super) async fn wait_registered(&self, cluster: &Cluster, timeout: Duration) -> bool {
        let mut states = cluster.controller.state();
        let me = cluster.me;
        let registered = tokio::time::timeout(timeout, async {
            states.wait_for(|s| s.is_live(me)).await.is_ok()
        })
        .await;
        matches!(registered, Ok(true))
    }

    /// Logs the bucket's registry knows but the controller does not (every disk of the
    /// cluster was lost or replaced) are created again, so their archives serve again. Runs
    /// once the controller's state is confirmed current, so a deleted log is not revived.
    pub(super) async fn restore_from_registry(&self, cluster: &Cluster) -> bool {
        let Some(cold) = &self.cold else {
            return false;
        };
        if let Err(e) = cluster
            .controller
            .confirm_current(Duration::from_secs(10))
            .await
        {
            warn!(error = %e, "cannot confirm the controller's state; not restoring logs from the bucket");
            return false;
        }
        let registered = match cold.registered_logs().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot list the bucket's log registry");
                return false;
            }
        };
        let known = cluster.state();
        let mut restored = false;
        for (id, config) in registered {
            if known.logs.contains_key(&id) {
                continue;
            }
            tracing::info!(log = %id, "restoring log from the cold tier's registry");
            match self.metadata.create_log(&id, &config).await {
                Ok(_) => restored = true,
                Err(e) => warn!(log = %id, error = %e, "cannot restore log from the bucket"),
            }
        }
        restored
    }

    /// Leaders propose dropping followers that lag past `replica_lag_max`.
    pub(super) fn spawn_replication_ticker(self: &Arc<Self>, cluster: Arc<Cluster>) {
        let node: Weak<Node> = Arc::downgrade(self);
        self.spawn_ticker(ISR_TICK, self.shutdown.clone(), move || {
            let node = node.clone();
            let cluster = cluster.clone();
            async move {
                let Some(node) = node.upgrade() else {
                    return false;
                };
                let logs: Vec<_> = node.logs.read().values().cloned().collect();
                let now = Instant::now();
                for log in logs {
                    for (i, p) in log.partitions.iter().enumerate() {
                        let proposal = {
                            let mut r = p.role();
                            let epoch = r.epoch;
                            match &mut r.role {
                                Role::Leader(s) => {
                                    let progress = s.tick(now);
                                    progress.propose_isr.map(|isr| (epoch, isr))
                                }
                                _ => None,
                            }
                        };
                        if let Some((epoch, isr)) = proposal {
                            propose_isr(
                                cluster.clone(),
                                log.id.clone(),
                                i as u32,
                                p.clone(),
                                epoch,
                                isr,
                            );
                        }
                    }
                }
                true
            }
        });
    }

    /// One follower fetch, answered by the leader of `leader_epoch`. `peer` is the node the
    /// cluster listener proved the request comes from (mutual TLS), if it could.
    async fn replica_fetch(
        &self,
        req: ReplicaFetchRequest,
        peer: Option<NodeId>,
    ) -> Result<ReplicaFetchResponse, GatewayError> {
        check_replica(peer, req.replica_id)?;
        let cluster = self
            .cluster
            .clone()
            .ok_or_else(|| GatewayError::InvalidRequest("not a clustered node".into()))?;
        let log = self.log(&req.log)?;
        let p = self.partition(&req.log, req.partition)?;
        let asked = Epoch(req.leader_epoch);
        let from = LogOffset(req.fetch_offset);
        let holds = from;
        let throttled;
        let (epoch, hw) = {
            let mut r = p.role();
            let epoch = r.epoch;
            if asked > epoch {
                // The follower knows a newer epoch than this node's state: it may have been
                // replaced. The next write here re-confirms with the controller first (the
                // follower's word alone does not demote it: a wrong epoch must not stall the
                // partition).
                cluster.suspect_stale();
                return Err(GatewayError::NotLeader {
                    leader: None,
                    detail: format!("fetch for epoch {asked}; this node knows epoch {epoch}"),
                });
            }
            let Role::Leader(state) = &mut r.role else {
                return Err(r.not_leader());
            };
            if asked < epoch {
                return Err(GatewayError::NotLeader {
                    leader: Some(cluster.address.clone()),
                    detail: format!("fetch for epoch {asked}; the current epoch is {epoch}"),
                });
            }
            // A follower copies this log, so it never holds more than it: a position past the
            // end is refused (the follower cuts back to the end), never counted towards the
            // HW. Only the leader of the asked epoch may say so: a follower cuts its log on
            // this answer, and a former leader whose copy is shorter (a repair cut it) must
            // never make a stale follower cut committed records.
            let end = p.log().end_offset();
            if from > end {
                return Err(GatewayError::OffsetOutOfRange {
                    requested: from.0,
                    earliest: p.start_offset(),
                    latest: end,
                });
            }
            let mut progress = state
                .on_fetch(req.replica_id, holds, Instant::now())
                .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
            // A fenced node joins no ISR (the controller refuses it) until it registers
            // again; proposing it anyway would keep a pending growth, and the HW waiting for
            // it, alive proposal after proposal.
            let controller_state = cluster.state();
            throttled = cluster.move_throttle.limits()
                && controller_state
                    .logs
                    .get(&log.id)
                    .and_then(|l| l.partitions.get(req.partition as usize))
                    .is_some_and(|m| is_move_copy(m, req.replica_id));
            if progress
                .propose_isr
                .as_ref()
                .is_some_and(|isr| isr.iter().any(|n| !controller_state.is_live(*n)))
            {
                progress.propose_isr = None;
                if let Some(hw) = state.isr_rejected() {
                    progress.high_watermark =
                        Some(progress.high_watermark.map_or(hw, |h| h.max(hw)));
                }
            }
            if let Some(isr) = progress.propose_isr {
                propose_isr(
                    cluster.clone(),
                    log.id.clone(),
                    req.partition,
                    p.clone(),
                    epoch,
                    isr,
                );
            }
            (epoch, progress.high_watermark)
        };
        if let Some(hw) = hw {
            p.advance_hw(hw);
        }
        let hot = p.log().clone();
        if from >= hot.end_offset() {
            // Caught up: wait for an append (or a role change) before answering.
            let wait = Duration::from_millis(u64::from(req.max_wait_ms))
                .min(cluster.settings.replica_fetch_wait);
            let mut ends = hot.subscribe_end();
            let mut roles = p.subscribe_roles();
            roles.borrow_and_update();
            tokio::select! {
                _ = ends.wait_for(|end| *end > from) => {}
                _ = roles.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut max = usize::try_from(req.max_bytes.max(1)).unwrap_or(usize::MAX);
        if throttled {
            max = cluster.move_throttle.max_bytes(max);
        }
        let (read, (chain_before, chain_after)) = tokio::task::spawn_blocking(move || {
            let read = hot.read(from, max, LogOffset::MAX)?;
            let claims = replica_chain::leader_claims(
                &hot,
                from,
                read.next_offset,
                !read.batches.is_empty(),
            )?;
            Ok::<_, GatewayError>((read, claims))
        })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))??;
        if throttled {
            let bytes = read.batches.len();
            let wait = cluster.move_throttle.take(Instant::now(), bytes);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(ReplicaFetchResponse {
            batches: read.batches,
            high_watermark: p.high_watermark().0,
            log_start_offset: p.start_offset().0,
            leader_epoch: epoch.0,
            chain_before: chain_before.into(),
            chain_after: chain_after.into(),
        })
    }

    fn epoch_end_offset(
        &self,
        req: &EpochEndOffsetRequest,
        peer: Option<NodeId>,
    ) -> Result<EpochEndOffsetResponse, GatewayError> {
        check_replica(peer, req.replica_id)?;
        let p = self.partition(&req.log, req.partition)?;
        {
            let r = p.role();
            if !matches!(r.role, Role::Leader(_)) || r.epoch != Epoch(req.leader_epoch) {
                return Err(r.not_leader());
            }
        }
        Ok(match p.log().epoch_end(Epoch(req.epoch)) {
            Some((epoch, end)) => EpochEndOffsetResponse {
                epoch: epoch.0,
                end_offset: end.0,
                found: true,
            },
            None => EpochEndOffsetResponse {
                epoch: 0,
                end_offset: 0,
                found: false,
            },
        })
    }
}

/// With a proven peer, a replica may only fetch as itself (a node that fetched as another
/// could move the high watermark over records that replica does not hold).
fn check_replica(peer: Option<NodeId>, replica: NodeId) -> Result<(), GatewayError> {
    match peer {
        Some(p) if p != replica => Err(GatewayError::Refused {
            reason: pyralog_types::Reason::PermissionDenied,
            detail: format!("node {p} may not fetch as replica {replica}"),
        }),
        _ => Ok(()),
    }
}

/// The `Replication` gRPC service over a node.
#[derive(Debug, Clone)]
pub(crate) struct ReplicationService {
    pub(crate) node: Arc<Node>,
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<ReplicaFetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for ReplicationService {
    type FetchStream = FetchStream;

    async fn fetch(
        &self,
        request: Request<Streaming<ReplicaFetchRequest>>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let peer = request.extensions().get::<PeerNode>().map(|p| p.0);
        let mut inbound = request.into_inner();
        let node = self.node.clone();
        let (tx, rx) = mpsc::channel(1);
        let stop = node.shutdown_token().clone();
        tokio::spawn(async move {
            // One request at a time: the follower sends its next position after appending.
            // Shutdown ends the stream, so the server can drain.
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = inbound.message() => next,
                };
                let Ok(Some(req)) = next else { break };
                let answer = node
                    .replica_fetch(req, peer)
                    .await
                    .map_err(GatewayError::into_status);
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn epoch_end_offset(
        &self,
        request: Request<EpochEndOffsetRequest>,
    ) -> Result<Response<EpochEndOffsetResponse>, Status> {
        let peer = request.extensions().get::<PeerNode>().map(|p| p.0);
        self.node
            .epoch_end_offset(request.get_ref(), peer)
            .map(Response::new)
            .map_err(GatewayError::into_status)
    }
}

/// Whether `replica` copies `partition` for a move: a member of the target set it moves to
/// that is not in sync yet (the copy throttle applies to it, `cluster.move_copy_rate`).
fn is_move_copy(partition: &pyralog_controller::PartitionMeta, replica: NodeId) -> bool {
    partition
        .target
        .as_ref()
        .is_some_and(|t| t.contains(&replica) && !partition.isr.contains(&replica))
}
