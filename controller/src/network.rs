//! openraft's network over the node's gRPC server.
//!
//! Each RPC carries openraft's own request and response types as JSON in a `RaftPayload`
//! (see `cluster.proto`): the controller owns their shape, and JSON keeps them readable when
//! debugging a cluster. The answer is the JSON of `Result<Response, RaftError>`, so a remote
//! Raft error reaches openraft as such. Everything that goes wrong on the way (connection
//! refused, timeout, a voter shutting down) becomes `Unreachable`, which makes openraft back off
//! and retry; bytes that do not decode become `NetworkError`.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use pyralog_proto::internal::raft_client::RaftClient;
use pyralog_proto::internal::RaftPayload;
use pyralog_types::NodeId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::raft_types::TypeConfig;

/// Largest message a voter sends or accepts (snapshot chunks are kept well below it).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Opens channels to other nodes' cluster listeners. The default is plaintext TCP; a node
/// with `[security] cluster_tls` plugs in mutual TLS that also checks the peer is the node it
/// meant to reach.
pub trait PeerChannels: Send + Sync + std::fmt::Debug {
    /// A lazily connected channel to node `node`'s cluster listener at `address`.
    fn channel(&self, node: NodeId, address: &str) -> Result<Channel, String>;
}

/// Plaintext channels (a trusted network, tests, a one-node `pyralog dev`).
#[derive(Debug, Clone)]
pub struct PlainChannels {
    pub connect_timeout: Duration,
}

impl PeerChannels for PlainChannels {
    fn channel(&self, _node: NodeId, address: &str) -> Result<Channel, String> {
        Ok(Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy())
    }
}

/// The node a request on the cluster listener came from, as its certificate proves (set by
/// the node's authentication layer). Absent on a plaintext cluster listener, where nothing
/// can be proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNode(pub NodeId);

/// Creates one client per peer for openraft. Addresses come from the static voter list
/// (falling back to the address stored in the Raft membership), so a voter that restarts on a
/// new address is reached there.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) voters: Arc<BTreeMap<NodeId, String>>,
    pub(crate) channels: Arc<dyn PeerChannels>,
    /// Pause after a peer was unreachable.
    pub(crate) backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let address = self
            .voters
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        let client = self
            .channels
            .channel(target, &address)
            .map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            })
            .map_err(|e| e.to_string());
        PeerClient {
            target,
            node: node.clone(),
            address,
            client,
            backoff: self.backoff,
        }
    }
}

/// One peer's Raft RPCs.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    node: BasicNode,
    address: String,
    /// `Err` when the address cannot be a URI; every RPC is then `Unreachable`.
    client: Result<RaftClient<Channel>, String>,
    backoff: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// A transport failure, for openraft's error types.
#[derive(Debug, thiserror::Error)]
#[error("{rpc:?} to controller voter {target} at {address}: {message}")]
struct TransportError {
    rpc: Rpc,
    target: NodeId,
    address: String,
    message: String,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn fail(&self, rpc: Rpc, message: impl Into<String>) -> TransportError {
        TransportError {
            rpc,
            target: self.target,
            address: self.address.clone(),
            message: message.into(),
        }
    }

    async fn call<Req, Resp, E>(&mut self, rpc: Rpc, req: &Req, ttl: Duration) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                let e = self.fail(rpc, format!("bad address: {e}"));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let json = serde_json::to_vec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.fail(rpc, e.to_string()))))?;
        let mut request = tonic::Request::new(RaftPayload { json: json.into() });
        request.set_timeout(ttl);
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let answer = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                let e = self.fail(rpc, format!("no answer within {ttl:?}"));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(status)) => {
                let e = self.fail(rpc, format!("{}: {}", status.code(), status.message()));
                return Err(match status.code() {
                    Code::InvalidArgument | Code::Internal | Code::Unimplemented => {
                        RPCError::Network(NetworkError::new(&e))
                    }
                    _ => RPCError::Unreachable(Unreachable::new(&e)),
                });
            }
            Ok(Ok(answer)) => answer.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&answer.json)
            .map_err(|e| {
                let e = self.fail(rpc, format!("undecodable answer: {e}"));
                RPCError::Network(NetworkError::new(&e))
            })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.backoff))
    }
}
