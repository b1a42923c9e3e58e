//! Connection and admin calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use pyralog_proto::v1::{
    self, admin_client::AdminClient, consumer_client::ConsumerClient, groups_client::GroupsClient,
    producer_client::ProducerClient,
};
use pyralog_types::config::limits::MAX_BATCH_BYTES;
use pyralog_types::{Epoch, LogConfig, LogOffset, PartitionId, Reason, TimestampMicros};

use crate::error::ClientError;
use crate::transport::{ClientOptions, Rpc, Transport};

const MAX_MESSAGE_BYTES: usize = MAX_BATCH_BYTES as usize + 1024 * 1024;

/// A connection to a Pyralog cluster through a seed node. Cheap to clone (clones share the
/// channels and the routing table).
///
/// Produce and fetch requests go to the partition's leader: a node that does not lead
/// answers `NOT_LEADER` with the leader's address, the client remembers it for that
/// partition and sends there from then on (a fetch also retries when a routed node is
/// unreachable; a produce does not, since it may have been applied: the caller decides).
///
/// The client learns every node's address at connect time (and from redirects); when the
/// node it uses as seed stops answering, the next request goes to another one.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    /// Addresses (`host:port`) of the nodes that can serve as seed; `seed` indexes it.
    seeds: Arc<Mutex<Vec<String>>>,
    seed: Arc<std::sync::atomic::AtomicUsize>,
    channel: Rpc,
    transport: Transport,
    routes: Arc<Mutex<HashMap<(String, PartitionId), String>>>,
    channels: Arc<Mutex<HashMap<String, Rpc>>>,
}

/// Added to a request's own timeout for its gRPC deadline.
const RPC_SLACK: Duration = Duration::from_secs(5);
/// The server's default produce timeout (requests with `timeout_ms = 0`).
const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many `NOT_LEADER` redirects a request follows before giving up.
const MAX_REDIRECTS: u32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    pub partition: PartitionId,
    pub start_offset: LogOffset,
    pub high_watermark: LogOffset,
    pub epoch: Epoch,
    pub local_bytes: u64,
    pub local_segments: u32,
    /// The leader's node id and address (`None` while it has none).
    pub leader: Option<(u64, String)>,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    /// While a reassignment runs, the replica set the partition moves to (else empty).
    pub target: Vec<u64>,
    /// The answering node and its role for the partition ("leader", "follower", "none"):
    /// offsets and sizes above are that node's view.
    pub answered_by: u64,
    pub role: String,
    /// The answering node's first unreadable offset and what is damaged, while it has a
    /// damaged local segment (`pyralog logs repair` fixes it from another replica).
    pub corrupt: Option<(LogOffset, String)>,
    /// The partition's archive, when the node has a cold tier.
    pub archive: Option<ArchiveInfo>,
}

/// A partition's archive (see `ArchiveDescription` in the `.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub start_offset: LogOffset,
    /// One past the last archived offset (0: nothing archived).
    pub end_offset: LogOffset,
    pub objects: u32,
    pub bytes: u64,
    pub manifest_version: u64,
    /// µs since the epoch (0: unknown).
    pub committed_at_us: i64,
    /// Whether the log's Iceberg table reflects this manifest version (describe only).
    pub in_table: Option<bool>,
}

/// A log's Iceberg table: its current metadata file and snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub metadata_location: String,
    pub snapshot_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogInfo {
    pub name: String,
    pub config: LogConfig,
    pub partitions: Vec<PartitionInfo>,
    /// The log's Iceberg table (describe only, once published).
    pub table: Option<TableInfo>,
}

impl TryFrom<v1::LogDescription> for LogInfo {
    type Error = ClientError;
    fn try_from(d: v1::LogDescription) -> Result<Self, ClientError> {
        let config = d
            .config
            .unwrap_or_default()
            .into_domain(&LogConfig::default())
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(LogInfo {
            name: d.log,
            config,
            partitions: d
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition,
                    start_offset: LogOffset(p.start_offset),
                    high_watermark: LogOffset(p.high_watermark),
                    epoch: Epoch(p.epoch),
                    local_bytes: p.local_bytes,
                    local_segments: p.local_segments,
                    leader: (p.leader_node != 0 && !p.leader_address.is_empty())
                        .then_some((p.leader_node, p.leader_address)),
                    replicas: p.replicas,
                    isr: p.isr,
                    target: p.target_replicas,
                    answered_by: p.answered_by,
                    role: p.role,
                    corrupt: p.corrupt_offset.map(|o| (LogOffset(o), p.corrupt_detail)),
                    archive: p.archive.map(|a| ArchiveInfo {
                        start_offset: LogOffset(a.start_offset),
                        end_offset: LogOffset(a.end_offset),
                        objects: a.objects,
                        bytes: a.bytes,
                        manifest_version: a.manifest_version,
                        committed_at_us: a.committed_at_us,
                        in_table: a.in_table,
                    }),
                })
                .collect(),
            table: d.table.map(|t| TableInfo {
                metadata_location: t.metadata_location,
                snapshot_id: t.snapshot_id,
            }),
        })
    }
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:7410`) without TLS or credentials.
    pub async fn connect(url: impl Into<String>) -> Result<Client, ClientError> {
        Self::connect_with(url, ClientOptions::default()).await
    }

    /// Connects to `url` with TLS and credentials. The connection is checked at once: an
    /// unreachable node, a failed TLS handshake or refused credentials fail here.
    pub async fn connect_with(
        url: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let url = url.into();
        let transport = Transport::new(&url, &options)?;
        let channel = transport.channel(&url)?;
        let client = Client {
            url,
            seeds: Arc::default(),
            seed: Arc::default(),
            channel,
            transport,
            routes: Arc::default(),
            channels: Arc::default(),
        };
        // The other nodes, to fall back on when the seed goes away. A transport failure
        // (nothing answered, TLS refused) or refused credentials fail the connect; any other
        // answer means the node is there.
        match client.describe_cluster().await {
            Ok(cluster) => {
                for n in cluster.nodes.iter().filter(|n| !n.address.is_empty()) {
                    client.learn_seed(&n.address);
                }
            }
            Err(e @ ClientError::Server { reason: None, .. }) => {
                return Err(ClientError::Connect {
                    url: client.url.clone(),
                    detail: e.to_string(),
                })
            }
            Err(e)
                if matches!(
                    e.reason(),
                    Some(Reason::Unauthenticated | Reason::PermissionDenied)
                ) =>
            {
                return Err(e)
            }
            Err(_) => {}
        }
        Ok(client)
    }

    /// The seed's channel: the connected node, or another known node once it failed.
    pub(crate) fn seed_channel(&self) -> Rpc {
        let seeds = self.seeds.lock();
        let i = self.seed.load(std::sync::atomic::Ordering::Relaxed);
        if i == 0 || seeds.is_empty() {
            return self.channel.clone();
        }
        let address = seeds[(i - 1) % seeds.len()].clone();
        drop(seeds);
        self.channel_to(&address)
    }

    /// Remembers a node address (from a redirect) as a possible seed.
    fn learn_seed(&self, address: &str) {
        let mut seeds = self.seeds.lock();
        if !seeds.iter().any(|s| s == address) {
            seeds.push(address.to_owned());
        }
    }

    /// The seed did not answer: use the next known node (0 is the connected URL).
    fn next_seed(&self) {
        let n = self.seeds.lock().len() + 1;
        let _ = self.seed.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |i| Some((i + 1) % n),
        );
    }

    /// After a call to the seed failed: a transport failure (no answer from Pyralog) moves
    /// to the next known node.
    pub(crate) fn seed_failed(&self, e: &ClientError) {
        if e.reason().is_none()
            && matches!(e, ClientError::Server { .. } | ClientError::Connect { .. })
        {
            self.next_seed();
        }
    }

    /// The channel for a partition's known leader, or the seed's.
    fn channel_for(&self, log: &str, partition: PartitionId) -> Rpc {
        let route = self
            .routes
            .lock()
            .get(&(log.to_owned(), partition))
            .cloned();
        let Some(address) = route else {
            return self.seed_channel();
        };
        self.channel_to(&address)
    }

    fn channel_to(&self, address: &str) -> Rpc {
        let address = address.to_owned();
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(&address) {
            return c.clone();
        }
        match self.transport.channel(&address) {
            Ok(c) => {
                channels.insert(address, c.clone());
                c
            }
            Err(_) => self.channel.clone(),
        }
    }

    /// Learns from an error where the partition's leader is. Returns whether to retry, and
    /// after how long.
    pub(crate) fn reroute(
        &self,
        log: &str,
        partition: PartitionId,
        e: &ClientError,
        attempt: u32,
    ) -> Option<Duration> {
        let key = (log.to_owned(), partition);
        match e.reason() {
            Some(Reason::NotLeader) => match e.metadata("leader") {
                Some(addr) if !addr.is_empty() => {
                    self.learn_seed(addr);
                    self.routes.lock().insert(key, addr.to_owned());
                    Some(Duration::ZERO)
                }
                _ => {
                    // No leader right now (an election is running): back off and ask the seed.
                    self.routes.lock().remove(&key);
                    Some(Duration::from_millis(50 * u64::from(attempt + 1)))
                }
            },
            None if matches!(e, ClientError::Server { .. } | ClientError::Connect { .. }) => {
                // No answer from Pyralog itself (unreachable, deadline passed): the routed
                // node may be gone; forget it, the seed knows the next leader. If there was
                // no route, the seed itself failed: try another node next time.
                if self.routes.lock().remove(&key).is_none() {
                    self.next_seed();
                }
                None
            }
            _ => None,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn admin(&self) -> AdminClient<Rpc> {
        AdminClient::new(self.seed_channel())
    }

    pub(crate) fn producer_rpc_for(
        &self,
        log: &str,
        partition: PartitionId,
    ) -> ProducerClient<Rpc> {
        ProducerClient::new(self.channel_for(log, partition))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The `Groups` service of the seed node (any node answers or forwards to the controller).
    pub(crate) fn groups_rpc(&self) -> GroupsClient<Rpc> {
        GroupsClient::new(self.seed_channel())
    }

    /// A producer identity for an idempotent producer. A `name` makes it stable across
    /// restarts: the new instance gets the next epoch and the previous one is fenced.
    pub async fn init_producer(&self, name: Option<&str>) -> Result<(i64, i16), ClientError> {
        let resp = ProducerClient::new(self.seed_channel())
            .init_producer(v1::InitProducerRequest {
                name: name.map(str::to_owned),
            })
            .await?
            .into_inner();
        let epoch = i16::try_from(resp.producer_epoch)
            .map_err(|_| ClientError::Decode(format!("producer epoch {}", resp.producer_epoch)))?;
        Ok((resp.producer_id, epoch))
    }

    pub async fn list_groups(&self) -> Result<Vec<v1::GroupSummary>, ClientError> {
        Ok(self
            .groups_rpc()
            .list_groups(v1::ListGroupsRequest {})
            .await?
            .into_inner()
            .groups)
    }

    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<v1::DescribeGroupResponse, ClientError> {
        Ok(self
            .groups_rpc()
            .describe_group(v1::DescribeGroupRequest {
                group: group.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Committed offsets of `group` for `logs` (all logs if empty).
    pub async fn fetch_offsets(
        &self,
        group: &str,
        logs: &[String],
    ) -> Result<Vec<v1::CommittedOffset>, ClientError> {
        Ok(self
            .groups_rpc()
            .fetch_offsets(v1::FetchOffsetsRequest {
                group: group.to_owned(),
                logs: logs.to_vec(),
            })
            .await?
            .into_inner()
            .offsets)
    }

    /// Moves the committed offsets of a group that has no members.
    pub async fn reset_offsets(
        &self,
        req: v1::ResetOffsetsRequest,
    ) -> Result<Vec<v1::CommittedOffset>, ClientError> {
        Ok(self
            .groups_rpc()
            .reset_offsets(req)
            .await?
            .into_inner()
            .offsets)
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        self.groups_rpc()
            .delete_group(v1::DeleteGroupRequest {
                group: group.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Commits offsets as given (`member_id` empty: outside any membership, allowed only
    /// while the group has no members).
    pub async fn commit_offsets(
        &self,
        req: v1::CommitOffsetsRequest,
    ) -> Result<Vec<v1::CommittedOffset>, ClientError> {
        Ok(self
            .groups_rpc()
            .commit_offsets(req)
            .await?
            .into_inner()
            .committed)
    }

    pub(crate) fn consumer_rpc(&self) -> ConsumerClient<Rpc> {
        ConsumerClient::new(self.seed_channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Creates a log; unset fields of `config` take the server's defaults.
    pub async fn create_log(
        &self,
        name: &str,
        config: v1::LogConfig,
    ) -> Result<LogInfo, ClientError> {
        let resp = self
            .admin()
            .create_log(v1::CreateLogRequest {
                log: name.to_owned(),
                config: Some(config),
            })
            .await?
            .into_inner();
        resp.log
            .ok_or_else(|| ClientError::Decode("empty create response".into()))?
            .try_into()
    }

    pub async fn list_logs(&self) -> Result<Vec<LogInfo>, ClientError> {
        self.admin()
            .list_logs(v1::ListLogsRequest {})
            .await?
            .into_inner()
            .logs
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    pub async fn describe_log(&self, name: &str) -> Result<LogInfo, ClientError> {
        self.admin()
            .describe_log(v1::DescribeLogRequest {
                log: name.to_owned(),
            })
            .await?
            .into_inner()
            .log
            .ok_or_else(|| ClientError::Decode("empty describe response".into()))?
            .try_into()
    }

    pub async fn delete_log(&self, name: &str) -> Result<(), ClientError> {
        self.delete_log_with(name, false).await
    }

    /// Deletes `name`; `break_glass` is required (and a superuser) when it is a ledger log.
    pub async fn delete_log_with(&self, name: &str, break_glass: bool) -> Result<(), ClientError> {
        self.admin()
            .delete_log(v1::DeleteLogRequest {
                log: name.to_owned(),
                break_glass,
            })
            .await?;
        Ok(())
    }

    /// Runs a compaction pass over every partition of `name` now; one entry per partition.
    pub async fn run_compaction(&self, name: &str) -> Result<Vec<v1::CompactionPass>, ClientError> {
        let resp = self
            .admin()
            .run_compaction(v1::RunCompactionRequest {
                log: name.to_owned(),
            })
            .await?;
        Ok(resp.into_inner().partitions)
    }

    /// What the compactor has done for each partition of `name`.
    pub async fn compaction_status(
        &self,
        name: &str,
    ) -> Result<Vec<v1::PartitionCompactionStatus>, ClientError> {
        let resp = self
            .admin()
            .compaction_status(v1::CompactionStatusRequest {
                log: name.to_owned(),
            })
            .await?;
        Ok(resp.into_inner().partitions)
    }

    /// Raises `name` to `partition_count` partitions (`AddPartitions`; the same count again
    /// is a no-op, fewer is refused); answers once every partition has a leader.
    pub async fn add_partitions(
        &self,
        name: &str,
        partition_count: u32,
    ) -> Result<LogInfo, ClientError> {
        let resp = self
            .admin()
            .add_partitions(v1::AddPartitionsRequest {
                log: name.to_owned(),
                partition_count,
            })
            .await?;
        resp.into_inner()
            .log
            .ok_or_else(|| ClientError::Decode("empty add-partitions response".into()))?
            .try_into()
    }

    /// Starts moving partitions to new replica sets (`ReassignPartitions`, all or none):
    /// each `(log, partition, replicas)` names the new set, the preferred leader first.
    pub async fn reassign_partitions(
        &self,
        moves: Vec<(String, PartitionId, Vec<u64>)>,
    ) -> Result<(), ClientError> {
        let moves = moves
            .into_iter()
            .map(|(log, partition, replicas)| v1::PartitionMove {
                log,
                partition,
                replicas,
            })
            .collect();
        self.admin()
            .reassign_partitions(v1::ReassignPartitionsRequest { moves })
            .await?;
        Ok(())
    }

    /// Decommissions node `id` (`DecommissionNode`): its replicas move to other nodes.
    /// Returns how many partitions move.
    pub async fn decommission_node(&self, id: u64) -> Result<u32, ClientError> {
        Ok(self
            .admin()
            .decommission_node(v1::DecommissionNodeRequest { node_id: id })
            .await?
            .into_inner()
            .moving)
    }

    /// Closes the active segment of the given partitions (all if empty).
    pub async fn roll_segments(
        &self,
        name: &str,
        partitions: Vec<PartitionId>,
    ) -> Result<(), ClientError> {
        self.admin()
            .roll_segments(v1::RollSegmentsRequest {
                log: name.to_owned(),
                partitions,
            })
            .await?;
        Ok(())
    }

    /// Asks every replica of `name`/`partition` to repair its copy (`RepairPartition`): a
    /// replica with a damaged batch leaves the ISR, cuts its log there and fetches the rest
    /// again from a healthy leader. One answer per replica, in replica order; a standalone
    /// node answers alone.
    pub async fn repair_partition(
        &self,
        name: &str,
        partition: PartitionId,
    ) -> Result<Vec<(u64, Result<v1::RepairPartitionResponse, ClientError>)>, ClientError> {
        let request = v1::RepairPartitionRequest {
            log: name.to_owned(),
            partition,
        };
        let cluster = self.describe_cluster().await?;
        let replicas = self
            .describe_log(name)
            .await?
            .partitions
            .get(partition as usize)
            .map(|p| p.replicas.clone())
            .unwrap_or_default();
        if !cluster.clustered || replicas.is_empty() {
            // The node answers for its only copy (or with the error naming the partition).
            let resp = self.admin().repair_partition(request).await?;
            return Ok(vec![(cluster.answered_by, Ok(resp.into_inner()))]);
        }
        let mut out = Vec::with_capacity(replicas.len());
        for id in replicas {
            let Some(node) = cluster.nodes.iter().find(|n| n.node_id == id) else {
                out.push((
                    id,
                    Err(ClientError::Decode(format!(
                        "node {id} is not in the cluster"
                    ))),
                ));
                continue;
            };
            let rpc = AdminClient::new(self.channel_to(&node.address));
            let answer = rpc
                .clone()
                .repair_partition(request.clone())
                .await
                .map(tonic::Response::into_inner)
                .map_err(ClientError::from);
            out.push((id, answer));
        }
        Ok(out)
    }

    pub async fn list_offsets(
        &self,
        name: &str,
        timestamp: Option<TimestampMicros>,
    ) -> Result<Vec<v1::PartitionOffsets>, ClientError> {
        Ok(self
            .consumer_rpc()
            .list_offsets(v1::ListOffsetsRequest {
                log: name.to_owned(),
                partitions: vec![],
                timestamp_us: timestamp,
            })
            .await?
            .into_inner()
            .partitions)
    }

    /// The cluster as the connected node sees it.
    pub async fn describe_cluster(&self) -> Result<v1::DescribeClusterResponse, ClientError> {
        Ok(self
            .admin()
            .describe_cluster(v1::DescribeClusterRequest {})
            .await?
            .into_inner())
    }

    /// One raw fetch, from the partition's leader (following redirects; retried once
    /// against the seed when the routed node is unreachable). Without a `max_response_bytes`,
    /// asks for responses up to this client's receive limit (the server's default is sized for
    /// stock clients' 4 MiB).
    pub async fn fetch(&self, mut req: v1::FetchRequest) -> Result<v1::FetchResponse, ClientError> {
        req.max_response_bytes
            .get_or_insert(u32::try_from(MAX_MESSAGE_BYTES).unwrap_or(u32::MAX));
        let mut attempt = 0;
        loop {
            let channel = self.channel_for(&req.log, req.partition);
            let rpc = ConsumerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            // A deadline, so a node that stopped answering (paused, cut off) is given up on.
            let mut call = tonic::Request::new(req.clone());
            call.set_timeout(Duration::from_millis(u64::from(req.wait_ms)) + RPC_SLACK);
            let e = match rpc.clone().fetch(call).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => ClientError::from(s),
            };
            let unreachable = e.reason().is_none();
            match self.reroute(&req.log, req.partition, &e, attempt) {
                Some(wait) if attempt < MAX_REDIRECTS => tokio::time::sleep(wait).await,
                None if unreachable && attempt == 0 => {}
                _ => return Err(e),
            }
            attempt += 1;
        }
    }

    /// Produces one request as given (no batching), to the partition's leader: follows
    /// `NOT_LEADER` redirects, but never resends after a transport failure.
    pub async fn produce_raw(
        &self,
        req: v1::ProduceRequest,
    ) -> Result<v1::ProduceResponse, ClientError> {
        let mut attempt = 0;
        loop {
            let channel = self.channel_for(&req.log, req.partition);
            let rpc = ProducerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let mut call = tonic::Request::new(req.clone());
            let server_timeout = match req.timeout_ms {
                0 => DEFAULT_PRODUCE_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)),
            };
            call.set_timeout(server_timeout + RPC_SLACK);
            let e = match rpc.clone().produce(call).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => ClientError::from(s),
            };
            match self.reroute(&req.log, req.partition, &e, attempt) {
                // A NOT_LEADER answer means the write was not taken: safe to send again.
                Some(wait) if attempt < MAX_REDIRECTS => tokio::time::sleep(wait).await,
                _ => return Err(e),
            }
            attempt += 1;
        }
    }
}
