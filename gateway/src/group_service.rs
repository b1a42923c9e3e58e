//! The `Groups` gRPC service: wire messages in, [`Node`] group calls, wire messages out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use pyralog_controller::{Strategy, Tp};
use pyralog_proto::v1::{self, groups_server::Groups, partition_commit, reset_offsets_request};
use pyralog_types::acl::{Operation, Resource};
use pyralog_types::LogId;
use tonic::{Request, Response, Status};

use crate::error::GatewayError;
use crate::node::{
    CommitPosition, CommitSpec, CommittedAt, JoinSpec, Node, ResetTo, DEFAULT_REBALANCE_TIMEOUT,
    DEFAULT_SESSION_TIMEOUT,
};

#[derive(Debug, Clone)]
pub(crate) struct GroupService {
    node: Arc<Node>,
}

impl GroupService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        GroupService { node }
    }
}

fn strategy_from_wire(s: i32) -> Result<Strategy, GatewayError> {
    match v1::AssignmentStrategy::try_from(s) {
        Ok(v1::AssignmentStrategy::Range) => Ok(Strategy::Range),
        Ok(v1::AssignmentStrategy::RoundRobin) => Ok(Strategy::RoundRobin),
        Ok(v1::AssignmentStrategy::Sticky | v1::AssignmentStrategy::Unspecified) => {
            Ok(Strategy::Sticky)
        }
        Err(_) => Err(GatewayError::InvalidRequest(format!(
            "unknown assignment strategy {s}"
        ))),
    }
}

fn strategy_to_wire(s: Strategy) -> i32 {
    match s {
        Strategy::Range => v1::AssignmentStrategy::Range,
        Strategy::RoundRobin => v1::AssignmentStrategy::RoundRobin,
        Strategy::Sticky => v1::AssignmentStrategy::Sticky,
    }
    .into()
}

/// Partitions grouped by log, logs in order.
pub(crate) fn to_wire<'a>(tps: impl IntoIterator<Item = &'a Tp>) -> Vec<v1::LogPartitions> {
    let mut by_log: BTreeMap<&LogId, Vec<u32>> = BTreeMap::new();
    for (log, p) in tps {
        by_log.entry(log).or_default().push(*p);
    }
    by_log
        .into_iter()
        .map(|(log, partitions)| v1::LogPartitions {
            log: log.to_string(),
            partitions,
        })
        .collect()
}

fn from_wire(lps: Vec<v1::LogPartitions>) -> Result<BTreeSet<Tp>, GatewayError> {
    let mut out = BTreeSet::new();
    for lp in lps {
        let log = GatewayError::log_name(&lp.log)?;
        out.extend(lp.partitions.into_iter().map(|p| (log.clone(), p)));
    }
    Ok(out)
}

fn committed_to_wire((log, partition, c): CommittedAt) -> v1::CommittedOffset {
    v1::CommittedOffset {
        log: log.to_string(),
        partition,
        offset: c.offset,
        metadata: c.metadata,
        vlsn: c.vlsn,
    }
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

#[tonic::async_trait]
impl Groups for GroupService {
    async fn join_group(
        &self,
        request: Request<v1::JoinGroupRequest>,
    ) -> Result<Response<v1::JoinGroupResponse>, Status> {
        {
            let guard = self.node.guard(&request)?;
            let req = request.get_ref();
            guard.check(Operation::Group, Resource::Group(&req.group))?;
            for log in &req.logs {
                guard.check(Operation::Consume, Resource::Log(log))?;
            }
        }
        let req = request.into_inner();
        let spec = JoinSpec {
            group: req.group,
            member: Some(req.member_id).filter(|m| !m.is_empty()),
            client: req.client_id,
            logs: req.logs,
            session_timeout: millis_or(req.session_timeout_ms, DEFAULT_SESSION_TIMEOUT),
            rebalance_timeout: millis_or(req.rebalance_timeout_ms, DEFAULT_REBALANCE_TIMEOUT),
            strategy: strategy_from_wire(req.strategy)?,
        };
        let joined = self.node.join_group(spec).await?;
        Ok(Response::new(v1::JoinGroupResponse {
            member_id: joined.member,
            generation: joined.generation,
            assignment: to_wire(&joined.assigned),
        }))
    }

    async fn sync_group(
        &self,
        request: Request<v1::SyncGroupRequest>,
    ) -> Result<Response<v1::SyncGroupResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Group, Resource::Group(&request.get_ref().group))?;
        let req = request.into_inner();
        let (generation, assigned) = self
            .node
            .sync_group(&req.group, &req.member_id, req.generation)
            .await?;
        Ok(Response::new(v1::SyncGroupResponse {
            generation,
            assignment: to_wire(&assigned),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::GroupHeartbeatRequest>,
    ) -> Result<Response<v1::GroupHeartbeatResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Group, Resource::Group(&request.get_ref().group))?;
        let req = request.into_inner();
        let owned = from_wire(req.owned)?;
        let answer = self
            .node
            .group_heartbeat(&req.group, &req.member_id, owned)
            .await?;
        Ok(Response::new(v1::GroupHeartbeatResponse {
            generation: answer.generation,
            group_generation: answer.group_generation,
            assignment: to_wire(&answer.assigned),
        }))
    }

    async fn leave_group(
        &self,
        request: Request<v1::LeaveGroupRequest>,
    ) -> Result<Response<v1::LeaveGroupResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Group, Resource::Group(&request.get_ref().group))?;
        let req = request.into_inner();
        self.node.leave_group(&req.group, &req.member_id).await?;
        Ok(Response::new(v1::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        request: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        {
            let guard = self.node.guard(&request)?;
            let req = request.get_ref();
            guard.check(Operation::Group, Resource::Group(&req.group))?;
            for c in &req.offsets {
                guard.check(Operation::Consume, Resource::Log(&c.log))?;
            }
        }
        let req = request.into_inner();
        let mut specs = Vec::with_capacity(req.offsets.len());
        for c in req.offsets {
            let position = match c.position {
                Some(partition_commit::Position::Offset(o)) => CommitPosition::Offset(o),
                Some(partition_commit::Position::Vlsn(vlsn)) => CommitPosition::Vlsn {
                    vlsn,
                    header: c.vlsn_header,
                },
                None => {
                    return Err(Status::from(GatewayError::InvalidRequest(format!(
                        "commit for {}/{} names neither an offset nor a vlsn",
                        c.log, c.partition
                    ))))
                }
            };
            specs.push(CommitSpec {
                log: c.log,
                partition: c.partition,
                position,
                metadata: c.metadata,
            });
        }
        let member = Some(req.member_id)
            .filter(|m| !m.is_empty())
            .map(|m| (m, req.generation));
        let committed = self.node.commit_offsets(&req.group, member, specs).await?;
        Ok(Response::new(v1::CommitOffsetsResponse {
            committed: committed.into_iter().map(committed_to_wire).collect(),
        }))
    }

    async fn fetch_offsets(
        &self,
        request: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        self.node.guard(&request)?.check(
            Operation::Describe,
            Resource::Group(&request.get_ref().group),
        )?;
        let req = request.into_inner();
        let offsets = self.node.fetch_offsets(&req.group, &req.logs).await?;
        Ok(Response::new(v1::FetchOffsetsResponse {
            offsets: offsets.into_iter().map(committed_to_wire).collect(),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let guard = self.node.guard(&request)?;
        let groups = self.node.list_groups()?;
        Ok(Response::new(v1::ListGroupsResponse {
            groups: groups
                .into_iter()
                .filter(|(group, _)| guard.allows(Operation::Describe, Resource::Group(group)))
                .map(|(group, g)| v1::GroupSummary {
                    group,
                    members: u32::try_from(g.members.len()).unwrap_or(u32::MAX),
                    generation: g.generation,
                    strategy: strategy_to_wire(g.strategy),
                })
                .collect(),
        }))
    }

    async fn describe_group(
        &self,
        request: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::DescribeGroupResponse>, Status> {
        self.node.guard(&request)?.check(
            Operation::Describe,
            Resource::Group(&request.get_ref().group),
        )?;
        let req = request.into_inner();
        let (g, lags) = self.node.describe_group(&req.group).await?;
        Ok(Response::new(v1::DescribeGroupResponse {
            group: req.group,
            generation: g.generation,
            strategy: strategy_to_wire(g.strategy),
            members: g
                .members
                .iter()
                .map(|(id, m)| v1::GroupMemberDescription {
                    member_id: id.clone(),
                    client_id: m.client.clone(),
                    logs: m.logs.iter().map(ToString::to_string).collect(),
                    assignment: to_wire(&m.assigned),
                    revoking: to_wire(m.revoking()),
                    generation: m.generation,
                })
                .collect(),
            partitions: lags
                .into_iter()
                .map(|l| v1::PartitionLag {
                    log: l.log.to_string(),
                    partition: l.partition,
                    committed: l.committed.as_ref().map(|c| c.offset),
                    high_watermark: l.high_watermark.0,
                    lag: l.lag,
                    vlsn: l.committed.as_ref().and_then(|c| c.vlsn),
                    owner: l.owner.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn reset_offsets(
        &self,
        request: Request<v1::ResetOffsetsRequest>,
    ) -> Result<Response<v1::ResetOffsetsResponse>, Status> {
        {
            let guard = self.node.guard(&request)?;
            let req = request.get_ref();
            guard.check(Operation::Alter, Resource::Group(&req.group))?;
            guard.check(Operation::Describe, Resource::Log(&req.log))?;
        }
        let req = request.into_inner();
        let to = match req.to {
            Some(reset_offsets_request::To::Earliest(_)) => ResetTo::Earliest,
            Some(reset_offsets_request::To::Latest(_)) => ResetTo::Latest,
            Some(reset_offsets_request::To::Offset(o)) => ResetTo::Offset(o),
            Some(reset_offsets_request::To::TimestampUs(ts)) => ResetTo::Timestamp(ts),
            None => {
                return Err(Status::from(GatewayError::InvalidRequest(
                    "say where to: earliest, latest, an offset or a timestamp".into(),
                )))
            }
        };
        let offsets = self
            .node
            .reset_offsets(&req.group, &req.log, &req.partitions, to, req.dry_run)
            .await?;
        Ok(Response::new(v1::ResetOffsetsResponse {
            offsets: offsets.into_iter().map(committed_to_wire).collect(),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Delete, Resource::Group(&request.get_ref().group))?;
        let req = request.into_inner();
        self.node.delete_group(&req.group).await?;
        Ok(Response::new(v1::DeleteGroupResponse {}))
    }
}
