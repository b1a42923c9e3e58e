//! Consumer groups and producer ids on a node: the checks a request needs before it becomes a
//! controller command, and the reads answered from the node's copy of the controller state.
//!
//! The group coordinator itself lives in the controller (`pyralog_controller::groups`): joins,
//! leaves, ownership reports and commits are Raft writes, heartbeats go to the controller
//! leader. What only a node can do happens here: resolving a commit by VLSN (reading the
//! partition), computing lag and reset positions from the partitions' offsets.
//!
//! Reads of committed offsets are linearizable (`confirm_current` first): a member that just
//! got a partition must see the final commit of its previous owner, or it would start from an
//! older offset and move the committed offset backwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use pyralog_controller::{
    ClusterState, Command, CommandResult, Committed, Controller, ControllerError, GroupHeartbeat,
    GroupHeartbeatAnswer, GroupMeta, JoinRequest, Joined, OffsetCommit, ProducerIdentity, Strategy,
    Tp,
};
use pyralog_types::batch::split_batches;
use pyralog_types::{LogId, LogOffset, PartitionId, TimestampMicros};

use super::{FetchSpec, FetchStart, Node};
use crate::error::{truncate_for_message, GatewayError};

/// Session timeouts a member may ask for.
const SESSION_TIMEOUT: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_secs(1800));
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(60);
/// How far a commit by VLSN reads to find its record.
const VLSN_SCAN_BYTES: usize = 256 << 20;
/// How long `SyncGroup` waits for this node to apply the generation asked for.
const SYNC_WAIT: Duration = Duration::from_secs(5);
pub const DEFAULT_VLSN_HEADER: &str = "vlsn";

/// Where a commit puts a partition's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitPosition {
    Offset(u64),
    /// The record carrying this VLSN in header `header` (decimal text): the committed offset
    /// is the one after it.
    Vlsn {
        vlsn: u64,
        header: String,
    },
}

#[derive(Debug, Clone)]
pub struct CommitSpec {
    pub log: String,
    pub partition: PartitionId,
    pub position: CommitPosition,
    pub metadata: String,
}

/// Where `groups reset-offsets` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    Timestamp(TimestampMicros),
}

/// A member's join.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub group: String,
    pub member: Option<String>,
    pub client: String,
    pub logs: Vec<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub strategy: Strategy,
}

/// One partition of a group, for `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub log: LogId,
    pub partition: PartitionId,
    pub committed: Option<Committed>,
    pub high_watermark: LogOffset,
    pub lag: u64,
    pub owner: Option<String>,
}

/// A committed offset as answered to clients.
pub type CommittedAt = (LogId, PartitionId, Committed);

/// Group names follow the log name rules (so they are safe in paths and metrics). Every
/// group RPC checks them first; a refused name is echoed truncated.
fn group_name(name: &str) -> Result<String, GatewayError> {
    LogId::new(name).map(|id| id.to_string()).map_err(|e| {
        GatewayError::InvalidRequest(format!(
            "invalid group name {}: {e}",
            truncate_for_message(name)
        ))
    })
}

/// Longest member id or client id a member may bring (both are echoed in errors and kept in
/// the controller's state).
const MAX_MEMBER_ID_BYTES: usize = 255;

fn member_id(what: &str, id: &str) -> Result<(), GatewayError> {
    if id.len() > MAX_MEMBER_ID_BYTES {
        return Err(GatewayError::InvalidRequest(format!(
            "{what} {} is longer than {MAX_MEMBER_ID_BYTES} bytes",
            truncate_for_message(id)
        )));
    }
    Ok(())
}

pub(crate) fn controller_error(e: ControllerError) -> GatewayError {
    match e {
        ControllerError::Rejected(r) => GatewayError::Refused {
            reason: r.reason(),
            detail: r.to_string(),
        },
        ControllerError::NotLeader { .. } | ControllerError::Timeout(_) => {
            GatewayError::Unavailable(format!("controller: {e}"))
        }
        ControllerError::ShuttingDown => GatewayError::ShuttingDown,
        other => GatewayError::Internal(format!("controller: {other}")),
    }
}

fn refused(result: CommandResult) -> Result<CommandResult, GatewayError> {
    match result {
        CommandResult::Rejected(r) => Err(GatewayError::Refused {
            reason: r.reason(),
            detail: r.to_string(),
        }),
        other => Ok(other),
    }
}

impl Node {
    fn controller(&self) -> Result<&Arc<Controller>, GatewayError> {
        self.cluster().map(|c| &c.controller).ok_or_else(|| {
            GatewayError::InvalidRequest(
                "consumer groups and producer ids need the controller (run `pyralog dev` or a cluster)".into(),
            )
        })
    }

    async fn write(&self, cmd: Command) -> Result<CommandResult, GatewayError> {
        let c = self.controller()?;
        refused(c.write(cmd).await.map_err(controller_error)?)
    }

    /// The controller state with everything decided before this call applied.
    async fn current_state(&self) -> Result<Arc<ClusterState>, GatewayError> {
        let c = self.controller()?;
        c.confirm_current(Duration::from_secs(5))
            .await
            .map_err(controller_error)?;
        let state = Arc::clone(&c.state().borrow());
        Ok(state)
    }

    fn local_state(&self) -> Result<Arc<ClusterState>, GatewayError> {
        let c = self.controller()?;
        let state = Arc::clone(&c.state().borrow());
        Ok(state)
    }

    pub async fn join_group(&self, spec: JoinSpec) -> Result<Joined, GatewayError> {
        let group = group_name(&spec.group)?;
        member_id("client id", &spec.client)?;
        member_id("member id", spec.member.as_deref().unwrap_or_default())?;
        if spec.logs.is_empty() {
            return Err(GatewayError::InvalidRequest(
                "a member must subscribe to at least one log".into(),
            ));
        }
        let state = self.local_state()?;
        let mut logs = Vec::with_capacity(spec.logs.len());
        for name in &spec.logs {
            let id = GatewayError::log_name(name)?;
            if !state.logs.contains_key(&id) {
                return Err(GatewayError::LogNotFound(id));
            }
            logs.push(id);
        }
        let (lo, hi) = SESSION_TIMEOUT;
        if spec.session_timeout < lo || spec.session_timeout > hi {
            return Err(GatewayError::InvalidRequest(format!(
                "session timeout {:?} is outside [{lo:?}, {hi:?}]",
                spec.session_timeout
            )));
        }
        let member = match spec.member {
            Some(m) if !m.is_empty() => m,
            _ => format!(
                "{}-{:016x}",
                if spec.client.is_empty() {
                    "member"
                } else {
                    spec.client.as_str()
                },
                rand::random::<u64>()
            ),
        };
        let request = JoinRequest {
            member,
            client: spec.client,
            logs,
            session_timeout_ms: u64::try_from(spec.session_timeout.as_millis()).unwrap_or(u64::MAX),
            rebalance_timeout_ms: u64::try_from(spec.rebalance_timeout.as_millis())
                .unwrap_or(u64::MAX),
            strategy: spec.strategy,
        };
        match self.write(Command::JoinGroup { group, request }).await? {
            CommandResult::Joined(j) => Ok(*j),
            other => Err(GatewayError::Internal(format!("join answered {other:?}"))),
        }
    }

    /// The member's assignment once this node applied `generation` (or newer).
    pub async fn sync_group(
        &self,
        group: &str,
        member: &str,
        generation: u64,
    ) -> Result<(u64, BTreeSet<Tp>), GatewayError> {
        group_name(group)?;
        let c = self.controller()?;
        let mut rx = c.state();
        let reached = |s: &ClusterState| {
            s.groups
                .get(group)
                .is_none_or(|g| g.generation >= generation)
        };
        // Waiting is best effort: past the deadline the answer is what this node has.
        let _ = tokio::time::timeout(SYNC_WAIT, rx.wait_for(|s| reached(s))).await;
        let state = Arc::clone(&rx.borrow());
        let m = state
            .groups
            .get(group)
            .and_then(|g| g.members.get(member))
            .ok_or_else(|| unknown_member(group, member))?;
        Ok((m.generation, m.assigned.clone()))
    }

    pub async fn group_heartbeat(
        &self,
        group: &str,
        member: &str,
        owned: BTreeSet<Tp>,
    ) -> Result<GroupHeartbeatAnswer, GatewayError> {
        group_name(group)?;
        self.controller()?
            .group_heartbeat(GroupHeartbeat {
                group: group.to_owned(),
                member: member.to_owned(),
                owned,
            })
            .await
            .map_err(controller_error)
    }

    pub async fn leave_group(&self, group: &str, member: &str) -> Result<(), GatewayError> {
        let group = group_name(group)?;
        self.write(Command::LeaveGroup {
            group,
            members: vec![member.to_owned()],
        })
        .await?;
        Ok(())
    }

    /// Commits positions for a member (`(id, generation)`) or, with `None`, for a consumer
    /// outside any membership.
    pub async fn commit_offsets(
        &self,
        group: &str,
        member: Option<(String, u64)>,
        specs: Vec<CommitSpec>,
    ) -> Result<Vec<CommittedAt>, GatewayError> {
        let group = group_name(group)?;
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut offsets = Vec::with_capacity(specs.len());
        for s in specs {
            let log = GatewayError::log_name(&s.log)?;
            // The partition must exist (like Kafka's UNKNOWN_TOPIC_OR_PARTITION). Offsets are
            // not checked against the high watermark, as in Kafka (a node that does not lead
            // the partition may trail it); a member starting past the end gets
            // OFFSET_OUT_OF_RANGE and applies its reset policy. Only the "end" sentinel is no
            // position at all.
            self.partition(log.as_str(), s.partition)?;
            let committed = match s.position {
                CommitPosition::Offset(offset) if offset == LogOffset::MAX.0 => {
                    return Err(GatewayError::InvalidRequest(format!(
                        "offset {offset} for {log}/{} is not a position (u64::MAX means \"the end\"; commit the next offset to consume)",
                        s.partition
                    )))
                }
                CommitPosition::Offset(offset) => Committed {
                    offset,
                    metadata: s.metadata,
                    vlsn: None,
                },
                CommitPosition::Vlsn { vlsn, header } => {
                    let offset = self
                        .offset_after_vlsn(&group, &log, s.partition, vlsn, &header)
                        .await?;
                    Committed {
                        offset,
                        metadata: s.metadata,
                        vlsn: Some(vlsn),
                    }
                }
            };
            offsets.push(OffsetCommit {
                log,
                partition: s.partition,
                committed,
            });
        }
        let answer = offsets
            .iter()
            .map(|c| (c.log.clone(), c.partition, c.committed.clone()))
            .collect();
        self.write(Command::CommitOffsets {
            group,
            member,
            offsets,
        })
        .await?;
        Ok(answer)
    }

    /// The offset after the record whose header `header` holds `vlsn`, searching from the
    /// group's committed offset (VLSNs grow with offsets, so the record is after it).
    async fn offset_after_vlsn(
        &self,
        group: &str,
        log: &LogId,
        partition: PartitionId,
        vlsn: u64,
        header: &str,
    ) -> Result<u64, GatewayError> {
        let header = if header.is_empty() {
            DEFAULT_VLSN_HEADER
        } else {
            header
        };
        let state = self.local_state()?;
        let p = self.partition(log.as_str(), partition)?;
        let committed = state
            .groups
            .get(group)
            .and_then(|g| g.offsets.get(log))
            .and_then(|o| o.get(&partition))
            .map(|c| LogOffset(c.offset));
        let mut at = committed.unwrap_or(LogOffset::ZERO).max(p.earliest());
        let end = p.high_watermark();
        let mut scanned = 0usize;
        while at < end && scanned < VLSN_SCAN_BYTES {
            let f = self
                .fetch(FetchSpec {
                    log: log.to_string(),
                    partition,
                    start: FetchStart::Offset(at.0),
                    max_bytes: 0,
                    wait: Duration::ZERO,
                })
                .await?;
            if f.batches.is_empty() {
                break;
            }
            scanned += f.batches.len();
            for batch in split_batches(f.batches) {
                let batch = batch.map_err(GatewayError::CorruptBatch)?;
                for r in batch.records().map_err(GatewayError::CorruptBatch)? {
                    let carries = r.headers.iter().any(|h| {
                        h.key == header
                            && std::str::from_utf8(&h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                == Some(vlsn)
                    });
                    if carries && r.offset >= at {
                        return Ok(r.offset.0 + 1);
                    }
                }
            }
            at = f.next_offset.max(LogOffset(at.0 + 1));
        }
        Err(GatewayError::InvalidRequest(format!(
            "no record with header {header}={vlsn} in {log}/{partition} between the committed offset and the high watermark {end}"
        )))
    }

    /// Committed offsets of `group` (for `logs`, or all).
    pub async fn fetch_offsets(
        &self,
        group: &str,
        logs: &[String],
    ) -> Result<Vec<CommittedAt>, GatewayError> {
        group_name(group)?;
        let state = self.current_state().await?;
        let Some(g) = state.groups.get(group) else {
            return Ok(Vec::new());
        };
        let wanted: Vec<LogId> = logs
            .iter()
            .map(|l| GatewayError::log_name(l))
            .collect::<Result<_, _>>()?;
        Ok(g.offsets
            .iter()
            .filter(|(log, _)| wanted.is_empty() || wanted.contains(log))
            .flat_map(|(log, parts)| parts.iter().map(move |(p, c)| (log.clone(), *p, c.clone())))
            .collect())
    }

    pub fn list_groups(&self) -> Result<Vec<(String, GroupMeta)>, GatewayError> {
        let state = self.local_state()?;
        Ok(state
            .groups
            .iter()
            .map(|(name, g)| (name.clone(), g.clone()))
            .collect())
    }

    /// The group and, for every partition of the logs it subscribes to or committed for,
    /// its committed offset, high watermark, lag and owner.
    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<(GroupMeta, Vec<PartitionLag>), GatewayError> {
        group_name(group)?;
        let state = self.current_state().await?;
        let g = state
            .groups
            .get(group)
            .cloned()
            .ok_or_else(|| GatewayError::Refused {
                reason: pyralog_types::Reason::GroupNotFound,
                detail: format!("group {group} does not exist"),
            })?;
        let mut logs: BTreeSet<LogId> = g.offsets.keys().cloned().collect();
        logs.extend(g.members.values().flat_map(|m| m.logs.iter().cloned()));
        let owners: BTreeMap<&Tp, &String> = g
            .members
            .iter()
            .flat_map(|(id, m)| m.assigned.iter().map(move |tp| (tp, id)))
            .collect();
        let mut out = Vec::new();
        for log in logs {
            let Some(meta) = state.logs.get(&log) else {
                continue;
            };
            for p in 0..meta.partitions.len() as PartitionId {
                let committed = g.offsets.get(&log).and_then(|o| o.get(&p)).cloned();
                let (earliest, hw) = match self.partition(log.as_str(), p) {
                    Ok(part) => (part.earliest(), part.high_watermark()),
                    Err(_) => (LogOffset::ZERO, LogOffset::ZERO),
                };
                let from = committed.as_ref().map_or(earliest, |c| LogOffset(c.offset));
                out.push(PartitionLag {
                    owner: owners.get(&(log.clone(), p)).map(|m| (*m).clone()),
                    log: log.clone(),
                    partition: p,
                    committed,
                    high_watermark: hw,
                    lag: hw.0.saturating_sub(from.0),
                });
            }
        }
        Ok((g, out))
    }

    /// Moves the committed offsets of a group without members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        log: &str,
        partitions: &[PartitionId],
        to: ResetTo,
        dry_run: bool,
    ) -> Result<Vec<CommittedAt>, GatewayError> {
        let group = group_name(group)?;
        let open = self.log(log)?;
        let targets: Vec<PartitionId> = if partitions.is_empty() {
            (0..open.config.partition_count).collect()
        } else {
            partitions.to_vec()
        };
        let mut offsets = Vec::with_capacity(targets.len());
        for p in targets {
            let part = self.partition(log, p)?;
            let (earliest, hw) = (part.earliest(), part.high_watermark());
            let offset = match to {
                ResetTo::Earliest => earliest,
                ResetTo::Latest => hw,
                ResetTo::Offset(o) => LogOffset(o).clamp(earliest, hw),
                ResetTo::Timestamp(ts) => part.offset_for_timestamp(ts).await?.unwrap_or(hw),
            };
            offsets.push(OffsetCommit {
                log: open.id.clone(),
                partition: p,
                committed: Committed {
                    offset: offset.0,
                    metadata: "reset".into(),
                    vlsn: None,
                },
            });
        }
        let answer = offsets
            .iter()
            .map(|c| (c.log.clone(), c.partition, c.committed.clone()))
            .collect();
        if !dry_run {
            self.write(Command::CommitOffsets {
                group,
                member: None,
                offsets,
            })
            .await?;
        }
        Ok(answer)
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), GatewayError> {
        let group = group_name(group)?;
        self.write(Command::DeleteGroup { group }).await?;
        Ok(())
    }

    /// A producer identity for an idempotent producer (`name`: fence earlier instances).
    pub async fn init_producer(
        &self,
        name: Option<String>,
    ) -> Result<ProducerIdentity, GatewayError> {
        match self.write(Command::InitProducer { name }).await? {
            CommandResult::Producer(p) => Ok(p),
            other => Err(GatewayError::Internal(format!(
                "init producer answered {other:?}"
            ))),
        }
    }
}

fn unknown_member(group: &str, member: &str) -> GatewayError {
    GatewayError::Refused {
        reason: pyralog_types::Reason::UnknownMember,
        detail: format!(
            "member {} is not in group {group}; join again",
            truncate_for_message(member)
        ),
    }
}
