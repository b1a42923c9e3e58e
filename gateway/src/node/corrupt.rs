//! Damaged local segments, as the archiver meets them.
//!
//! A batch that fails its checks in a closed segment cannot be archived, and nothing after it
//! can either (the archive is a contiguous prefix of the log). The archiver archives what lies
//! before it, stops there, and this module keeps the partition's [`CorruptState`]: one clear
//! log line when the damage is found (not one per `archive_interval`), the
//! `pyralog_corrupt_segments` gauge, the flag `logs describe` shows, and a backoff so the
//! damaged segment is not reread every interval. Local retention keeps running below the
//! archived end meanwhile.
//!
//! `pyralog logs repair` is the way out when another replica holds the data
//! ([`Node::repair_partition`]): the damaged replica leaves the ISR through the controller
//! (`LeaveIsr`, which hands leadership to another live in-sync replica if it led), so no
//! election can pick a copy that holds less than the high watermark; then its follower task
//! of the new epoch cuts the log at the damaged batch and fetches the rest from the leader,
//! rejoining the ISR once caught up like any follower. With no other in-sync replica the
//! controller refuses and nothing is cut.

use std::time::Duration;

use pyralog_compactor::CorruptSegment;
use pyralog_controller::{Command, CommandResult};
use pyralog_hot_tier::{HotError, PartitionLog};
use pyralog_types::{Epoch, LogId, LogOffset, NodeId, PartitionId};
use tracing::{debug, error, info, warn};

use super::Node;
use crate::error::GatewayError;
use crate::metrics::PartitionLabels;
use crate::partition::{CorruptState, Partition, CORRUPT_RETRY_MAX};

/// How long `logs repair` waits for the replica to cut its copy after leaving the ISR.
const REPAIR_CUT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `logs repair` did on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOutcome {
    pub node: NodeId,
    /// The first damaged offset and what was wrong there; `None`: this copy is healthy.
    pub damaged: Option<(LogOffset, String)>,
    /// The partition's leader and epoch after the repair started.
    pub leader: Option<NodeId>,
    pub epoch: Epoch,
}

impl Node {
    /// The archiver's limit for `p`: its high watermark, or, while a known damaged segment
    /// waits for its next retry, that segment's base (everything before it is still archived).
    pub(super) fn archive_limit(&self, p: &Partition) -> (LogOffset, bool) {
        let hw = p.high_watermark();
        match &*p.corrupt.lock() {
            Some(c) if tokio::time::Instant::now() < c.retry_at => {
                (hw.min(c.segment.base_offset), true)
            }
            _ => (hw, false),
        }
    }

    /// Records what an archive run of `p` found: `found` is the damaged segment it stopped at
    /// (if any); `backing_off` says the run left a known damaged segment alone.
    pub(super) fn note_archive_corruption(
        &self,
        log: &LogId,
        partition: PartitionId,
        p: &Partition,
        found: Option<&CorruptSegment>,
        backing_off: bool,
        interval: Duration,
    ) {
        let mut state = p.corrupt.lock();
        let gauge = self
            .metrics
            .corrupt_segments
            .get_or_create(&PartitionLabels {
                log: log.to_string(),
                partition,
            });
        let now = tokio::time::Instant::now();
        match (found, state.as_mut()) {
            (Some(c), Some(known)) if known.segment == *c => {
                known.backoff = (known.backoff * 2).min(CORRUPT_RETRY_MAX.max(interval));
                known.retry_at = now + known.backoff;
                debug!(%log, partition, offset = %c.offset, retry_in = ?known.backoff,
                    "damaged segment still unreadable");
            }
            (Some(c), _) => {
                error!(%log, partition, segment = %c.base_offset, offset = %c.offset,
                    detail = %c.detail,
                    "damaged local segment: archiving stops before it and serving stops at \
                     the damaged batch until it is repaired (pyralog logs repair {log} \
                     --partition {partition})");
                let backoff = (interval * 2).min(CORRUPT_RETRY_MAX.max(interval));
                *state = Some(CorruptState {
                    segment: c.clone(),
                    backoff,
                    retry_at: now + backoff,
                });
                gauge.set(1);
            }
            (None, Some(known)) if !backing_off && gone(p, known.segment.offset) => {
                info!(%log, partition, segment = %known.segment.base_offset,
                    "the damaged segment reads again (repaired or removed)");
                *state = None;
                gauge.set(0);
            }
            (None, _) => {}
        }
    }

    /// Repairs this node's copy of `name`/`partition` from a healthy replica (see the module
    /// docs). A healthy copy is left alone (`damaged: None`).
    pub async fn repair_partition(
        &self,
        name: &str,
        partition: PartitionId,
    ) -> Result<RepairOutcome, GatewayError> {
        let log = self.log(name)?;
        let p = self.partition(name, partition)?;
        let me = self.config.node_id;
        let known = p
            .corrupt
            .lock()
            .as_ref()
            .map(|c| (c.segment.offset, c.segment.detail.clone()));
        let damaged = match known {
            Some(d) => Some(d),
            None => {
                let hot = p.log().clone();
                tokio::task::spawn_blocking(move || find_damage(&hot))
                    .await
                    .map_err(|e| GatewayError::Internal(e.to_string()))??
            }
        };
        let Some((at, detail)) = damaged else {
            return Ok(RepairOutcome {
                node: me,
                damaged: None,
                leader: None,
                epoch: p.epoch(),
            });
        };
        let what_else = format!(
            "records before offset {at} still serve; to go on without the damaged batch, \
             consumers can move past it (`pyralog groups reset-offsets GROUP {} --partition \
             {partition} --to-offset N`), or the log can be recreated from another copy of \
             its data",
            log.id
        );
        let Some(cluster) = &self.cluster else {
            return Err(GatewayError::NotEnoughReplicas(format!(
                "node {me} holds the only copy of {}/{partition}, damaged from offset {at} \
                 ({detail}); no replica can restore it: {what_else}",
                log.id
            )));
        };
        let asked = p.epoch();
        *p.repair_from.lock() = Some((at, asked));
        let cmd = Command::LeaveIsr {
            log: log.id.clone(),
            partition,
            node: me,
        };
        let refused = match cluster.controller.write(cmd).await {
            Ok(CommandResult::Done) => None,
            Ok(CommandResult::Rejected(r)) => Some(GatewayError::NotEnoughReplicas(format!(
                "cannot repair {}/{partition} on node {me} (damaged from offset {at}: \
                 {detail}): {r}; no healthy in-sync replica to copy from: {what_else}",
                log.id
            ))),
            Ok(other) => Some(GatewayError::Internal(format!(
                "unexpected controller answer {other:?}"
            ))),
            Err(e) => Some(GatewayError::Unavailable(format!(
                "the controller did not take the repair: {e}"
            ))),
        };
        if let Some(e) = refused {
            *p.repair_from.lock() = None;
            return Err(e);
        }
        warn!(log = %log.id, partition, offset = %at, %detail,
            "repair: left the ISR to cut the damaged copy and fetch it again");
        // The follower task of the new epoch cuts first; wait for it.
        let deadline = tokio::time::Instant::now() + REPAIR_CUT_TIMEOUT;
        while p.repair_from.lock().is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(GatewayError::Unavailable(format!(
                    "node {me} left the ISR of {}/{partition} but has not cut its copy at \
                     {at} yet (is a leader reachable?); it does so as soon as it follows one",
                    log.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.clear_corruption(&log.id, partition);
        let role = p.role();
        let leader = match &role.role {
            crate::partition::Role::Follower { leader, .. } => Some(*leader),
            _ => None,
        };
        Ok(RepairOutcome {
            node: me,
            damaged: Some((at, detail)),
            leader,
            epoch: role.epoch,
        })
    }

    /// Zeroes the damaged-segment gauge of a partition (after a repair cut the damage away).
    fn clear_corruption(&self, log: &LogId, partition: PartitionId) {
        self.metrics
            .corrupt_segments
            .get_or_create(&PartitionLabels {
                log: log.to_string(),
                partition,
            })
            .set(0);
    }
}

/// Whether the damaged batch at `offset` is behind us: archived past (it read again), or no
/// longer in the local log (retention removed it, or a repair cut it away).
fn gone(p: &Partition, offset: LogOffset) -> bool {
    let archived = p.cold().and_then(|c| c.end_offset());
    archived.is_some_and(|e| e > offset)
        || p.log().start_offset() > offset
        || p.log().end_offset() <= offset
}

/// Reads the whole local copy, checking every batch (and a ledger's chain): the first offset
/// that cannot be read and why, or `None` when all of it reads.
fn find_damage(hot: &PartitionLog) -> Result<Option<(LogOffset, String)>, GatewayError> {
    let mut at = hot.start_offset();
    loop {
        let end = hot.end_offset();
        if at >= end {
            return chain_damage(hot);
        }
        match hot.read(at, 16 << 20, end) {
            Ok(r) if r.batches.is_empty() || r.next_offset <= at => return chain_damage(hot),
            Ok(r) => at = r.next_offset,
            Err(e @ HotError::Corrupt { .. }) => return Ok(Some((at, e.to_string()))),
            // Retention moved the start under the scan: go on from there.
            Err(HotError::OffsetOutOfRange { start, .. }) if start > at => at = start,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A ledger's copy whose every batch reads may still hold records altered after they were
/// written: the first batch that no longer hashes to the chain journal (`None` when the
/// journal holds no head at the log start to recompute from).
fn chain_damage(hot: &PartitionLog) -> Result<Option<(LogOffset, String)>, GatewayError> {
    let start = hot.start_offset();
    if !hot.is_ledger() || hot.chain_head_at(start)?.is_none() {
        return Ok(None);
    }
    Ok(hot
        .verify_chain(start, hot.end_offset())?
        .map(|m| (m.offset, m.detail)))
}
