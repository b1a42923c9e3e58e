//! The controller runtime around openraft: start-up and bootstrap, writes from any voter,
//! node heartbeats, and the leader's lease checker.
//!
//! - Bootstrap: the voters are static (config). A Raft that has never been initialized (no
//!   vote, no log on disk) is initialized by the voter with the smallest id, with every voter
//!   as a member; the others wait to be contacted. One voter initializes itself and leads.
//! - Writes: on the leader a command goes straight to Raft; elsewhere it is forwarded to the
//!   leader's `Controller.Write`, retried with backoff across elections until
//!   `write_timeout`. A retry after a lost answer can apply a command twice; every command is
//!   safe to repeat (a second `CreateLog` answers `LogAlreadyExists`, a second
//!   `RegisterNode`/`FenceNode` changes nothing, a stale `AlterIsr` is rejected).
//! - Liveness: every node heartbeats the leader and registers itself whenever the applied
//!   state does not show it registered, at its address and unfenced. The Raft leader keeps
//!   the leases ([`Leases`]) in memory and fences nodes whose lease ran out.
//! - Leaving and balancing (`handoff`): a stopping node hands off its leaderships itself
//!   ([`Controller::leave`]) and no longer registers; the Raft leader gives partitions back
//!   to their preferred replicas every `leader_balance_interval`.
//!
//! Background tasks follow one pattern: a ticker, a [`CancellationToken`] checked at every
//! await, and a [`TaskTracker`] that [`Controller::shutdown`] drains before stopping Raft.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use pyralog_proto::internal::controller_client::ControllerClient;
use pyralog_proto::internal::controller_server::ControllerServer;
use pyralog_proto::internal::raft_server::RaftServer;
use pyralog_proto::internal::{HeartbeatRequest, RaftPayload};
use pyralog_proto::status::reason_of;
use pyralog_types::{NodeId, Reason};
use tokio::sync::{watch, OnceCell};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;
use tonic::Code;

use crate::assign::Tp;
use crate::config::ControllerConfig;
use crate::error::ControllerError;
use crate::leases::{Leases, MemberSessions};
use crate::network::{Network, PeerChannels, PlainChannels, MAX_MESSAGE_BYTES};
use crate::raft_types::Raft;
use crate::service::{ControllerService, RaftService};
use crate::state::{ClusterState, Command, CommandResult, Rejection};
use crate::store::log::log_dir;
use crate::store::state_machine::snapshot_dir;
use crate::store::{LogStore, StateMachineStore};

mod handoff;
mod learners;
pub use handoff::Leave;
pub use learners::check_learner;

/// Snapshot chunks stay far below [`MAX_MESSAGE_BYTES`] even as JSON arrays of numbers.
const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// How often the leader looks for group members whose session ran out.
const MEMBER_SESSION_CHECK: Duration = Duration::from_millis(100);

/// One controller voter: a Raft member with its storage, services and background tasks.
pub struct Controller {
    config: ControllerConfig,
    raft: Raft,
    state: watch::Receiver<Arc<ClusterState>>,
    leases: Mutex<Leases>,
    /// Consumer group members' sessions (meaningful on the leader only).
    sessions: Mutex<MemberSessions>,
    /// `Controller` clients of the other voters, by address.
    peers: Mutex<HashMap<String, ControllerClient<Channel>>>,
    channels: Arc<dyn PeerChannels>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    stopped: OnceCell<()>,
    /// Set by [`Controller::leave`]: this node is stopping and must not register again.
    leaving: AtomicBool,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.config.node_id)
            .field("address", &self.config.address)
            .field("leader", &self.leader())
            .field("shutting_down", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Whether a failed write attempt is worth another try.
fn retriable(e: &ControllerError) -> bool {
    matches!(
        e,
        ControllerError::NotLeader { .. } | ControllerError::Timeout(_)
    )
}

impl Controller {
    /// Opens the storage (rebuilding the state from the snapshot and the committed log),
    /// starts Raft, bootstraps a new cluster when this is the first voter, and starts the
    /// heartbeat and lease tasks. The gRPC services must be served at `config.address` for
    /// the other voters to reach this one.
    pub async fn start(config: ControllerConfig) -> Result<Arc<Controller>, ControllerError> {
        let channels = Arc::new(PlainChannels {
            connect_timeout: config.connect_timeout,
        });
        Self::start_with(config, channels).await
    }

    /// [`Controller::start`] with the channels to other voters supplied (mutual TLS).
    pub async fn start_with(
        config: ControllerConfig,
        channels: Arc<dyn PeerChannels>,
    ) -> Result<Arc<Controller>, ControllerError> {
        config.validate()?;
        let mut raft_config = config.raft_config()?;
        raft_config.snapshot_max_chunk_size = SNAPSHOT_CHUNK_BYTES;
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?,
        );

        let log_store = LogStore::open(log_dir(&config.dir)).await?;
        let state_machine = StateMachineStore::open(snapshot_dir(&config.dir)).await?;
        let state = state_machine.subscribe();
        let network = Network {
            voters: Arc::new(config.voters.clone()),
            channels: channels.clone(),
            backoff: config.raft_heartbeat * 2,
        };
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ControllerError::raft("start", e))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::raft("start", e))?;
        let first_voter = config.voters.keys().next().copied();
        if !initialized && config.is_voter() && first_voter == Some(config.node_id) {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            tracing::info!(node = config.node_id, voters = ?config.voters, "initializing the controller Raft");
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ControllerError::raft("initialize", e)),
            }
        }

        let controller = Arc::new(Controller {
            leases: Mutex::new(Leases::new(config.node_lease, Instant::now())),
            sessions: Mutex::new(MemberSessions::default()),
            config,
            raft,
            state,
            peers: Mutex::new(HashMap::new()),
            channels,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            stopped: OnceCell::new(),
            leaving: AtomicBool::new(false),
        });
        controller.spawn_tasks();
        Ok(controller)
    }

    /// The Raft gRPC service, for the node to add to its tonic server.
    pub fn raft_service(
        self: &Arc<Self>,
    ) -> RaftServer<impl pyralog_proto::internal::raft_server::Raft> {
        RaftServer::new(RaftService {
            controller: Arc::clone(self),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The Controller gRPC service (writes and heartbeats), for the node's tonic server.
    pub fn controller_service(
        self: &Arc<Self>,
    ) -> ControllerServer<impl pyralog_proto::internal::controller_server::Controller> {
        ControllerServer::new(ControllerService {
            controller: Arc::clone(self),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Proposes `cmd` and returns its result once committed and applied. On a non-leader it
    /// forwards to the current leader, retrying across leader changes with backoff until
    /// `config.write_timeout`; [`ControllerError::Timeout`] then means the command may or may
    /// not have been applied.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, ControllerError> {
        let deadline = tokio::time::Instant::now() + self.config.write_timeout;
        let mut delay = RETRY_MIN;
        // A leader address learnt from a NOT_LEADER answer, tried before our own view.
        let mut hint: Option<String> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ControllerError::ShuttingDown);
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ControllerError::Timeout(self.config.write_timeout));
            }
            let target = match hint.take() {
                Some(addr) if self.is_own_address(&addr) => Some(None),
                Some(addr) => Some(Some(addr)),
                None => match self.leader() {
                    Some(id) if id == self.config.node_id => Some(None),
                    Some(id) => self.config.voters.get(&id).cloned().map(Some),
                    None => None,
                },
            };
            let attempt = match target {
                // This voter leads (as far as it knows).
                Some(None) => self.write_local(cmd.clone(), remaining).await,
                Some(Some(addr)) => self.forward(&addr, &cmd, remaining).await,
                None => Err(ControllerError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(result) => return Ok(result),
                Err(e) if retriable(&e) => {
                    tracing::debug!(error = %e, "controller write: retrying");
                    if let ControllerError::NotLeader { leader: Some(addr) } = e {
                        if !addr.is_empty() {
                            hint = Some(addr);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
            let pause = delay.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(ControllerError::ShuttingDown),
                _ = tokio::time::sleep(pause) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    /// This voter's applied state; changes whenever a command is applied or a snapshot
    /// installed.
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        let mut rx = self.state.clone();
        rx.borrow_and_update();
        rx
    }

    /// The Raft leader as this voter knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The address of the Raft leader as this voter knows it.
    pub fn leader_address(&self) -> Option<String> {
        self.leader()
            .and_then(|id| self.config.voters.get(&id).cloned())
    }

    /// Whether this voter is the Raft leader now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.config.node_id)
    }

    /// The index of the last log entry this voter applied (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Stops the background tasks and Raft; idempotent (concurrent calls all wait for the
    /// one shutdown).
    pub async fn shutdown(&self) {
        self.stopped
            .get_or_init(|| async {
                self.cancel.cancel();
                self.tasks.close();
                self.tasks.wait().await;
                if let Err(e) = self.raft.shutdown().await {
                    tracing::warn!(error = %e, "controller Raft did not stop cleanly");
                }
                tracing::info!(node = self.config.node_id, "controller stopped");
            })
            .await;
    }

    fn is_own_address(&self, address: &str) -> bool {
        address == self.config.address
            || self
                .config
                .voters
                .get(&self.config.node_id)
                .map(String::as_str)
                == Some(address)
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn not_leader(&self) -> ControllerError {
        ControllerError::NotLeader {
            leader: self
                .leader()
                .filter(|l| *l != self.config.node_id)
                .and_then(|id| self.config.voters.get(&id).cloned()),
        }
    }

    /// `Controller.Write` on this voter: commit on the leader, `NotLeader` elsewhere.
    pub(crate) async fn write_as_leader(
        &self,
        cmd: Command,
    ) -> Result<CommandResult, ControllerError> {
        if self.cancel.is_cancelled() {
            return Err(ControllerError::ShuttingDown);
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.write_local(cmd, self.config.write_timeout).await
    }

    /// `Controller.Heartbeat` on this voter: renew the lease on the leader.
    pub(crate) fn heartbeat_as_leader(&self, node: NodeId) -> Result<NodeId, ControllerError> {
        if self.cancel.is_cancelled() {
            return Err(ControllerError::ShuttingDown);
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.leases.lock().heartbeat(node, Instant::now());
        Ok(self.config.node_id)
    }

    /// A group member's heartbeat: renews its session on the Raft leader (forwarding there
    /// from any other voter) and, when the member reports it gave up partitions taken from it,
    /// commits that report. Answers the member's current generation and assignment.
    pub async fn group_heartbeat(
        &self,
        hb: GroupHeartbeat,
    ) -> Result<GroupHeartbeatAnswer, ControllerError> {
        if self.is_leader() {
            return self.group_heartbeat_as_leader(hb).await;
        }
        let address = self
            .leader_address()
            .ok_or(ControllerError::NotLeader { leader: None })?;
        let json = serde_json::to_vec(&hb).map_err(ControllerError::Decode)?;
        let mut client = self.peer(&address)?;
        let timeout = self.config.write_timeout;
        let mut request = tonic::Request::new(RaftPayload { json: json.into() });
        request.set_timeout(timeout);
        let answer = tokio::time::timeout(timeout, client.group_heartbeat(request))
            .await
            .map_err(|_| ControllerError::Timeout(timeout))?;
        match answer {
            Ok(resp) => {
                let answer: Result<GroupHeartbeatAnswer, Rejection> =
                    serde_json::from_slice(&resp.into_inner().json)
                        .map_err(ControllerError::Decode)?;
                answer.map_err(ControllerError::Rejected)
            }
            Err(status) => Err(match reason_of(&status) {
                Some((Reason::NotLeader, meta)) => ControllerError::NotLeader {
                    leader: meta.get("leader").cloned(),
                },
                _ => ControllerError::NotLeader { leader: None },
            }),
        }
    }

    /// `Controller.GroupHeartbeat` on this voter.
    pub(crate) async fn group_heartbeat_as_leader(
        &self,
        hb: GroupHeartbeat,
    ) -> Result<GroupHeartbeatAnswer, ControllerError> {
        if self.cancel.is_cancelled() {
            return Err(ControllerError::ShuttingDown);
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let gave_up = {
            let state = Arc::clone(&self.state.borrow());
            let member = state
                .groups
                .get(&hb.group)
                .and_then(|g| g.members.get(&hb.member))
                .ok_or_else(|| {
                    ControllerError::Rejected(Rejection::UnknownMember {
                        group: hb.group.clone(),
                        member: hb.member.clone(),
                    })
                })?;
            let gave_up = member.revoking().any(|tp| !hb.owned.contains(tp));
            gave_up
        };
        self.sessions
            .lock()
            .heartbeat(&hb.group, &hb.member, Instant::now());
        if gave_up {
            let cmd = Command::ReportOwned {
                group: hb.group.clone(),
                member: hb.member.clone(),
                owned: hb.owned.clone(),
            };
            if let CommandResult::Rejected(r) =
                self.write_local(cmd, self.config.write_timeout).await?
            {
                return Err(ControllerError::Rejected(r));
            }
        }
        let state = Arc::clone(&self.state.borrow());
        let g = state.groups.get(&hb.group);
        let member = g.and_then(|g| g.members.get(&hb.member)).ok_or_else(|| {
            ControllerError::Rejected(Rejection::UnknownMember {
                group: hb.group.clone(),
                member: hb.member.clone(),
            })
        })?;
        Ok(GroupHeartbeatAnswer {
            generation: member.generation,
            group_generation: g.map_or(0, |g| g.generation),
            assigned: member.assigned.clone(),
        })
    }

    async fn write_local(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<CommandResult, ControllerError> {
        let written = tokio::select! {
            _ = self.cancel.cancelled() => return Err(ControllerError::ShuttingDown),
            r = tokio::time::timeout(timeout, self.raft.client_write(cmd)) => r,
        };
        match written {
            Err(_) => Err(ControllerError::Timeout(timeout)),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ControllerError::NotLeader {
                    leader: f
                        .leader_id
                        .filter(|l| *l != self.config.node_id)
                        .and_then(|id| self.config.voters.get(&id).cloned()),
                })
            }
            Ok(Err(RaftError::APIError(e @ ClientWriteError::ChangeMembershipError(_)))) => {
                Err(ControllerError::raft("write", e))
            }
            Ok(Err(RaftError::Fatal(f))) => {
                if self.cancel.is_cancelled() {
                    Err(ControllerError::ShuttingDown)
                } else if self.raft.metrics().borrow().running_state.is_ok() {
                    // The answer was dropped (leadership lost) but Raft runs on: the command
                    // may or may not commit; the caller retries.
                    Err(ControllerError::NotLeader { leader: None })
                } else {
                    Err(ControllerError::raft("write", f))
                }
            }
        }
    }

    /// The voter whose cluster listener is at `address` (0 if none is).
    fn voter_at(&self, address: &str) -> NodeId {
        self.config
            .voters
            .iter()
            .find(|(_, a)| a.as_str() == address)
            .map_or(0, |(id, _)| *id)
    }

    fn peer(&self, address: &str) -> Result<ControllerClient<Channel>, ControllerError> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(address) {
            return Ok(c.clone());
        }
        let node = self.voter_at(address);
        let ch = self.channels.channel(node, address).map_err(|e| {
            ControllerError::InvalidConfig(format!("bad voter address {address}: {e}"))
        })?;
        let client = ControllerClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        peers.insert(address.to_owned(), client.clone());
        Ok(client)
    }

    /// One attempt at the leader's `Controller.Write`.
    async fn forward(
        &self,
        address: &str,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<CommandResult, ControllerError> {
        let json = serde_json::to_vec(cmd).map_err(ControllerError::Decode)?;
        let mut client = self.peer(address)?;
        let mut request = tonic::Request::new(RaftPayload { json: json.into() });
        request.set_timeout(timeout);
        let answer = tokio::select! {
            _ = self.cancel.cancelled() => return Err(ControllerError::ShuttingDown),
            r = tokio::time::timeout(timeout, client.write(request)) => r,
        };
        let status = match answer {
            Err(_) => return Err(ControllerError::Timeout(timeout)),
            Ok(Ok(resp)) => {
                return serde_json::from_slice(&resp.into_inner().json)
                    .map_err(ControllerError::Decode)
            }
            Ok(Err(status)) => status,
        };
        let node = self.voter_at(address);
        match reason_of(&status) {
            Some((Reason::NotLeader, meta)) => Err(ControllerError::NotLeader {
                leader: meta.get("leader").cloned(),
            }),
            // The leader is going away or could not commit in time: try again.
            Some((Reason::ShuttingDown | Reason::Timeout, _)) => {
                Err(ControllerError::NotLeader { leader: None })
            }
            Some(_) => Err(ControllerError::Remote {
                node,
                message: status.message().to_owned(),
            }),
            // No Pyralog reason: the transport failed (refused, reset, timed out).
            None => match status.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted => Err(ControllerError::NotLeader { leader: None }),
                _ => Err(ControllerError::Remote {
                    node,
                    message: format!("{}: {}", status.code(), status.message()),
                }),
            },
        }
    }

    fn spawn_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let cancel = self.cancel.clone();
        let period = self.config.node_heartbeat;
        if self.config.roles.broker {
            // Only brokers hold leases: a controller-only node hosts no partitions.
            self.tasks.spawn(every(
                period,
                cancel.clone(),
                weak.clone(),
                |c| async move {
                    c.send_heartbeat().await;
                },
            ));
            self.tasks
                .spawn(register_loop(weak.clone(), cancel.clone()));
        }
        if !self.config.is_voter() {
            self.tasks
                .spawn(learners::join_loop(weak.clone(), cancel.clone()));
        }
        let mut was_leader = false;
        // Group members' sessions are checked more often than node leases: a dead member's
        // partitions wait for this check after its session timeout.
        let mut was_member_leader = false;
        self.tasks.spawn(every(
            MEMBER_SESSION_CHECK,
            cancel.clone(),
            weak.clone(),
            move |c| {
                let leader = c.is_leader();
                // A new leader knows nothing of past heartbeats: everyone starts a full session.
                let became_leader = leader && !was_member_leader;
                was_member_leader = leader;
                async move {
                    if became_leader {
                        c.sessions.lock().reset();
                    } else if leader {
                        c.expire_members(Instant::now()).await;
                    }
                }
            },
        ));
        if !self.config.leader_balance_interval.is_zero() {
            self.tasks.spawn(every(
                self.config.leader_balance_interval,
                cancel.clone(),
                weak.clone(),
                |c| async move { c.balance_leaders().await },
            ));
        }
        let check = (self.config.node_lease / 4).max(Duration::from_millis(10));
        self.tasks.spawn(every(check, cancel, weak, move |c| {
            let became_leader = c.is_leader() && !was_leader;
            was_leader = c.is_leader();
            async move { c.check_leases(became_leader).await }
        }));
    }

    /// Confirms that this voter's applied state holds every decision the controller made
    /// before the call: as the Raft leader, by a quorum round (`ensure_linearizable`);
    /// otherwise by a heartbeat to the leader and waiting until this voter has applied at
    /// least as much as the leader had. A node that may have been away (paused, cut off) calls
    /// this before acting on its state again; it fails without a controller quorum.
    pub async fn confirm_current(&self, timeout: Duration) -> Result<(), ControllerError> {
        let work = async {
            if self.is_leader() {
                self.raft
                    .ensure_linearizable()
                    .await
                    .map_err(|e| ControllerError::Raft {
                        context: "confirming leadership",
                        source: Box::new(e),
                    })?;
                return Ok(());
            }
            let address = self
                .leader_address()
                .ok_or(ControllerError::NotLeader { leader: None })?;
            let mut client = self
                .peer(&address)
                .map_err(|_| ControllerError::NotLeader {
                    leader: Some(address.clone()),
                })?;
            let answer = client
                .heartbeat(HeartbeatRequest {
                    node_id: self.config.node_id,
                    address: self.config.address.clone(),
                })
                .await
                .map_err(|status| ControllerError::Remote {
                    node: self.leader().unwrap_or_default(),
                    message: status.message().to_owned(),
                })?
                .into_inner();
            self.raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(answer.applied_index), "confirm_current")
                .await
                .map_err(|_| ControllerError::Timeout(timeout))?;
            Ok(())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| ControllerError::Timeout(timeout))?
    }

    /// This node's heartbeat to the leader (recorded locally when this voter leads).
    async fn send_heartbeat(&self) {
        let me = self.config.node_id;
        if self.is_leader() {
            self.leases.lock().heartbeat(me, Instant::now());
            return;
        }
        let Some(address) = self.leader_address() else {
            return;
        };
        let Ok(mut client) = self.peer(&address) else {
            return;
        };
        let mut request = tonic::Request::new(HeartbeatRequest {
            node_id: me,
            address: self.config.address.clone(),
        });
        request.set_timeout(self.config.node_heartbeat);
        let sent =
            tokio::time::timeout(self.config.node_heartbeat, client.heartbeat(request)).await;
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => tracing::debug!(%status, leader = %address, "heartbeat refused"),
            Err(_) => tracing::debug!(leader = %address, "heartbeat timed out"),
        }
    }

    /// Whether the applied state lists this node registered at its address and unfenced.
    fn registered(&self) -> bool {
        let state = self.state.borrow();
        state.nodes.get(&self.config.node_id).is_some_and(|n| {
            !n.fenced && n.address == self.config.address && n.rack == self.config.rack
        })
    }

    /// On the leader: fence every node whose lease ran out. `became_leader` starts the leases
    /// afresh (a new leader knows nothing of past heartbeats).
    async fn check_leases(&self, became_leader: bool) {
        if !self.is_leader() {
            return;
        }
        let now = Instant::now();
        if became_leader {
            self.leases.lock().reset(now);
            return;
        }
        let state = Arc::clone(&self.state.borrow());
        let expired = self.leases.lock().expired(&state, now);
        for id in expired {
            tracing::warn!(node = id, lease = ?self.config.node_lease, "node lease expired: fencing it");
            if let Err(e) = self
                .write_local(Command::FenceNode { id }, self.config.node_lease)
                .await
            {
                tracing::warn!(node = id, error = %e, "fencing failed");
                return;
            }
        }
    }
}

impl Controller {
    /// On the leader: removes group members whose session or rebalance time ran out.
    async fn expire_members(&self, now: Instant) {
        let state = Arc::clone(&self.state.borrow());
        let expired = self.sessions.lock().expired(&state, now);
        let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, member) in expired {
            by_group.entry(group).or_default().push(member);
        }
        for (group, members) in by_group {
            tracing::info!(%group, ?members, "group members' sessions expired: removing them");
            let cmd = Command::LeaveGroup { group, members };
            if let Err(e) = self.write_local(cmd, self.config.write_timeout).await {
                tracing::warn!(error = %e, "removing expired group members failed");
                return;
            }
        }
    }
}

/// A group member's heartbeat, as forwarded to the controller leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupHeartbeat {
    pub group: String,
    pub member: String,
    /// The partitions the member still consumes.
    pub owned: std::collections::BTreeSet<Tp>,
}

/// The leader's answer to a group heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupHeartbeatAnswer {
    /// The generation at which the member's assignment last changed.
    pub generation: u64,
    pub group_generation: u64,
    /// What the member may consume now.
    pub assigned: std::collections::BTreeSet<Tp>,
}

/// Runs `f` every `period` while the controller lives and `cancel` is not cancelled.
async fn every<F, Fut>(
    period: Duration,
    cancel: CancellationToken,
    weak: Weak<Controller>,
    mut f: F,
) where
    F: FnMut(Arc<Controller>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(controller) = weak.upgrade() else {
            return;
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            () = f(controller) => {}
        }
    }
}

/// Registers this node whenever the applied state does not show it registered and unfenced.
async fn register_loop(weak: Weak<Controller>, cancel: CancellationToken) {
    let (mut state, period, id, address, cluster_address) = match weak.upgrade() {
        Some(c) => (
            c.state(),
            c.config.node_heartbeat,
            c.config.node_id,
            c.config.address.clone(),
            c.config.own_cluster_address(),
        ),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = state.changed() => if changed.is_err() { return },
        }
        let Some(controller) = weak.upgrade() else {
            return;
        };
        if controller.leaving.load(Ordering::Acquire)
            || controller.registered()
            || controller.leader().is_none()
        {
            continue;
        }
        let cmd = Command::RegisterNode {
            id,
            address: address.clone(),
            cluster_address: cluster_address.clone(),
            rack: controller.config.rack.clone(),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = controller.write(cmd) => match r {
                Ok(_) => tracing::info!(node = id, %address, "registered with the controller"),
                Err(e) => tracing::debug!(node = id, error = %e, "registration failed; will retry"),
            },
        }
    }
}
