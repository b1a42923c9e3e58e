//! The controller's two gRPC services, mounted on the node's server.
//!
//! - `Raft`: decodes openraft's requests from JSON and hands them to the local Raft; the
//!   answer is the JSON of openraft's `Result`, errors included (see [`crate::network`]).
//! - `Controller`: `Write` commits a command on the leader and answers its JSON result;
//!   `Heartbeat` renews a node's lease; `AddLearner` adds a broker-only node to the Raft
//!   membership as a learner (see `controller::learners`). A non-leader answers `NOT_LEADER` with the leader's
//!   address in the `leader` metadata (when it knows it) and never forwards itself: the caller
//!   retries at the leader, so a request cannot loop between voters during an election.
//! - When the cluster listener proved the caller's identity ([`PeerNode`], mutual TLS), no
//!   node may speak for another: a Raft request must come from the voter it names as
//!   candidate or leader, a heartbeat, registration, learner join or ISR change from the node
//!   it is about,
//!   and fencing is never accepted over the wire (only the Raft leader's own lease checker
//!   fences).

use std::sync::Arc;

use pyralog_proto::internal::controller_server::Controller as ControllerRpc;
use pyralog_proto::internal::raft_server::Raft as RaftRpc;
use pyralog_proto::internal::{
    AddLearnerRequest, AddLearnerResponse, HeartbeatRequest, HeartbeatResponse, RaftPayload,
};
use pyralog_proto::status::status;
use pyralog_types::{NodeId, Reason};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::controller::{Controller, GroupHeartbeat, GroupHeartbeatAnswer};
use crate::error::ControllerError;
use crate::network::PeerNode;
use crate::state::{Command, Rejection};

/// The `Raft` service of one voter.
#[derive(Debug, Clone)]
pub(crate) struct RaftService {
    pub(crate) controller: Arc<Controller>,
}

/// The `Controller` service of one voter.
#[derive(Debug, Clone)]
pub(crate) struct ControllerService {
    pub(crate) controller: Arc<Controller>,
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&payload.json).map_err(|e| {
        status(
            Reason::InvalidRequest,
            format!("undecodable controller payload: {e}"),
            &[],
        )
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(RaftPayload { json: json.into() }))
        .map_err(|e| status(Reason::Internal, format!("encoding an answer: {e}"), &[]))
}

/// The status for a controller error.
pub(crate) fn to_status(e: &ControllerError) -> Status {
    match e {
        ControllerError::NotLeader {
            leader: Some(address),
        } => status(
            Reason::NotLeader,
            e.to_string(),
            &[("leader", address.clone())],
        ),
        _ => status(e.reason(), e.to_string(), &[]),
    }
}

impl RaftService {
    fn check_running(&self) -> Result<(), Status> {
        if self.controller.is_shutting_down() {
            return Err(to_status(&ControllerError::ShuttingDown));
        }
        Ok(())
    }

    /// A Raft message names the voter it speaks for (candidate or leader): with a proven
    /// peer, it must be that peer, and a voter.
    fn check_speaker<T>(
        &self,
        request: &Request<T>,
        vote: &openraft::Vote<NodeId>,
    ) -> Result<(), Status> {
        let Some(peer) = peer_of(request) else {
            return Ok(());
        };
        if !self.controller.config().voters.contains_key(&peer) {
            return Err(denied(format!("node {peer} is not a controller voter")));
        }
        match vote.leader_id().voted_for() {
            Some(n) if n == peer => Ok(()),
            other => Err(denied(format!(
                "node {peer} sent a Raft message for node {other:?}"
            ))),
        }
    }
}

/// The node a request comes from, when the cluster listener proved it.
fn peer_of<T>(request: &Request<T>) -> Option<NodeId> {
    request.extensions().get::<PeerNode>().map(|p| p.0)
}

fn denied(message: String) -> Status {
    tracing::warn!(target: "pyralog::audit", denied = %message, "cluster request refused");
    status(Reason::PermissionDenied, message, &[])
}

/// With a proven peer, a node-specific claim must be about that peer.
fn check_claim(peer: Option<NodeId>, claimed: NodeId, what: &str) -> Result<(), Status> {
    match peer {
        Some(p) if p != claimed => Err(denied(format!(
            "node {p} may not {what} for node {claimed}"
        ))),
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_running()?;
        let req: openraft::raft::AppendEntriesRequest<crate::raft_types::TypeConfig> =
            decode(request.get_ref())?;
        self.check_speaker(&request, &req.vote)?;
        encode(&self.controller.raft().append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_running()?;
        let req: openraft::raft::VoteRequest<NodeId> = decode(request.get_ref())?;
        self.check_speaker(&request, &req.vote)?;
        encode(&self.controller.raft().vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_running()?;
        let req: openraft::raft::InstallSnapshotRequest<crate::raft_types::TypeConfig> =
            decode(request.get_ref())?;
        self.check_speaker(&request, &req.vote)?;
        encode(&self.controller.raft().install_snapshot(req).await)
    }
}

#[tonic::async_trait]
impl ControllerRpc for ControllerService {
    async fn write(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let cmd: Command = decode(request.get_ref())?;
        let peer = peer_of(&request);
        match &cmd {
            Command::RegisterNode { id, .. } => check_claim(peer, *id, "register")?,
            Command::AlterIsr { leader, .. } => check_claim(peer, *leader, "change an ISR")?,
            Command::LeaveIsr { node, .. } => check_claim(peer, *node, "leave an ISR")?,
            Command::LeaveCluster { id } => check_claim(peer, *id, "leave the cluster")?,
            Command::BalanceLeaders => {
                return Err(denied(
                    "balancing leaders over the wire: only the controller leader proposes it"
                        .to_owned(),
                ))
            }
            Command::FenceNode { id } => {
                return Err(denied(format!(
                    "fencing node {id} over the wire: only the controller leader's lease checker fences"
                )))
            }
            Command::AdvanceEpoch { log, partition, .. } => {
                if let Some(p) = peer {
                    let state = self.controller.state().borrow().clone();
                    let leader = state.partition(log, *partition).and_then(|m| m.leader);
                    if leader != Some(p) {
                        return Err(denied(format!(
                            "node {p} does not lead {log}/{partition}; it may not advance its epoch"
                        )));
                    }
                }
            }
            _ => {}
        }
        match self.controller.write_as_leader(cmd).await {
            Ok(result) => encode(&result),
            Err(e) => Err(to_status(&e)),
        }
    }

    async fn group_heartbeat(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let hb: GroupHeartbeat = decode(request.get_ref())?;
        match self.controller.group_heartbeat_as_leader(hb).await {
            Ok(answer) => encode(&Ok::<_, Rejection>(answer)),
            // A refusal is an answer (the member must rejoin), not a transport error.
            Err(ControllerError::Rejected(r)) => encode(&Err::<GroupHeartbeatAnswer, _>(r)),
            Err(e) => Err(to_status(&e)),
        }
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<AddLearnerResponse>, Status> {
        check_claim(
            peer_of(&request),
            request.get_ref().node_id,
            "join the controller",
        )?;
        let req = request.into_inner();
        match self
            .controller
            .add_learner_as_leader(req.node_id, req.cluster_address)
            .await
        {
            Ok(leader_id) => Ok(Response::new(AddLearnerResponse { leader_id })),
            Err(e) => Err(to_status(&e)),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        check_claim(peer_of(&request), request.get_ref().node_id, "heartbeat")?;
        let req = request.into_inner();
        match self.controller.heartbeat_as_leader(req.node_id) {
            Ok(leader_id) => Ok(Response::new(HeartbeatResponse {
                leader_id,
                applied_index: self.controller.applied_index(),
            })),
            Err(e) => Err(to_status(&e)),
        }
    }
}
