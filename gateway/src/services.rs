//! gRPC adapters: wire messages in, domain calls on [`Node`], wire messages out.

use std::sync::Arc;
use std::time::Duration;

use pyralog_proto::v1::{
    self, admin_server::Admin, consumer_server::Consumer, fetch_request, produce_request,
    producer_server::Producer,
};
use pyralog_types::acl::{Operation, Resource, ResourceKind};
use pyralog_types::LogOffset;
use tonic::{Request, Response, Status};

use crate::error::GatewayError;
use crate::fetch::{build_response, ResponseShape};
use crate::node::{
    FetchForm, FetchSpec, FetchStart, LogStatus, Node, ProducePayload, Produced, ProducerStamp,
};

/// Implements the `Producer`, `Consumer` and `Admin` services over one node.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    node: Arc<Node>,
}

impl Services {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Services { node }
    }
}

/// A produce request's parts: log, partition, payload, acks, timeout (`None`: the node's
/// default).
pub(crate) type ParsedProduce = (
    String,
    u32,
    ProducePayload,
    pyralog_types::AckPolicy,
    Option<Duration>,
);

/// Checks and splits a produce request (shared by `Produce` and `ProduceStream`).
pub(crate) fn parse_produce(req: v1::ProduceRequest) -> Result<ParsedProduce, GatewayError> {
    let payload = match req.payload {
        Some(produce_request::Payload::Batch(b)) => ProducePayload::Batch(b),
        Some(produce_request::Payload::Records(list)) => {
            let records = list.records.into_iter().map(Into::into).collect();
            match req.producer_id {
                None => ProducePayload::Records(records),
                Some(id) => ProducePayload::IdempotentRecords {
                    records,
                    producer: ProducerStamp {
                        id,
                        epoch: i16::try_from(req.producer_epoch).map_err(|_| {
                            GatewayError::InvalidRequest(format!(
                                "producer epoch {} is out of range",
                                req.producer_epoch
                            ))
                        })?,
                        base_sequence: i32::try_from(req.base_sequence).map_err(|_| {
                            GatewayError::InvalidRequest(format!(
                                "base sequence {} is out of range",
                                req.base_sequence
                            ))
                        })?,
                    },
                },
            }
        }
        None => {
            return Err(GatewayError::InvalidRequest(
                "produce request carries neither `batch` nor `records`".into(),
            ))
        }
    };
    let acks = v1::AckPolicy::try_from(req.acks)
        .map_err(|_| GatewayError::InvalidRequest(format!("unknown ack policy {}", req.acks)))?
        .into();
    let timeout = (req.timeout_ms > 0).then(|| Duration::from_millis(u64::from(req.timeout_ms)));
    Ok((req.log, req.partition, payload, acks, timeout))
}

/// A produce's answer on the wire.
pub(crate) fn produce_response(done: Produced) -> v1::ProduceResponse {
    v1::ProduceResponse {
        base_offset: done.base_offset.0,
        last_offset: done.last_offset.0,
        epoch: done.epoch.0,
        duplicate: done.duplicate,
        dropped: done
            .dropped
            .iter()
            .map(|(index, offset)| v1::DroppedRecord {
                index: *index,
                offset: offset.0,
            })
            .collect(),
    }
}

fn describe(s: LogStatus, me: u64) -> v1::LogDescription {
    v1::LogDescription {
        log: s.log.to_string(),
        config: Some(v1::LogConfig::from(&s.config)),
        partitions: s
            .partitions
            .into_iter()
            .map(|p| v1::PartitionDescription {
                partition: p.partition,
                start_offset: p.start_offset.0,
                high_watermark: p.high_watermark.0,
                epoch: p.epoch.0,
                leader_node: p.leader.as_ref().map_or(0, |(id, _)| *id),
                leader_address: p.leader.map(|(_, a)| a).unwrap_or_default(),
                local_bytes: p.local_bytes,
                local_segments: p.local_segments,
                replicas: p.replicas,
                isr: p.isr,
                target_replicas: p.target,
                answered_by: me,
                role: p.role.to_owned(),
                corrupt_offset: p.corrupt.as_ref().map(|c| c.offset.0),
                corrupt_detail: p.corrupt.map(|c| c.detail).unwrap_or_default(),
                archive: p.archive.map(|a| v1::ArchiveDescription {
                    start_offset: a.start.map_or(0, |o| o.0),
                    end_offset: a.end.map_or(0, |o| o.0),
                    objects: a.objects,
                    bytes: a.bytes,
                    manifest_version: a.manifest_version,
                    committed_at_us: a.committed_at.unwrap_or(0),
                    in_table: a.in_table,
                }),
            })
            .collect(),
        table: s.table.map(|t| v1::TableDescription {
            metadata_location: t.metadata_location,
            snapshot_id: t.snapshot_id,
        }),
    }
}

#[tonic::async_trait]
impl Producer for Services {
    async fn produce(
        &self,
        request: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Produce, Resource::Log(&request.get_ref().log))?;
        let (log, partition, payload, acks, timeout) = parse_produce(request.into_inner())?;
        let done = self
            .node
            .produce(&log, partition, payload, acks, timeout)
            .await?;
        Ok(Response::new(produce_response(done)))
    }

    type ProduceStreamStream = crate::produce_stream::ProduceStream;

    async fn produce_stream(
        &self,
        request: Request<tonic::Streaming<v1::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        crate::produce_stream::serve(self.node.clone(), request)
    }

    async fn init_producer(
        &self,
        request: Request<v1::InitProducerRequest>,
    ) -> Result<Response<v1::InitProducerResponse>, Status> {
        self.node
            .guard(&request)?
            .check_somewhere(Operation::Produce, ResourceKind::Log)?;
        let name = request.into_inner().name.filter(|n| !n.is_empty());
        let p = self.node.init_producer(name).await?;
        Ok(Response::new(v1::InitProducerResponse {
            producer_id: p.id,
            producer_epoch: u32::try_from(p.epoch).unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl Consumer for Services {
    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Consume, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        let start = match req.start {
            Some(fetch_request::Start::Offset(o)) => FetchStart::Offset(o),
            Some(fetch_request::Start::TimestampUs(t)) => FetchStart::Timestamp(t),
            None => FetchStart::Offset(0),
        };
        let format = v1::FetchFormat::try_from(req.format)
            .map_err(|_| GatewayError::InvalidRequest(format!("unknown format {}", req.format)))?;
        let settings = &self.node.config().fetch;
        let max_response_bytes = match req.max_response_bytes {
            None | Some(0) => settings.default_max_response_bytes,
            Some(n) => n.min(settings.max_response_bytes),
        } as usize;
        let form = match format {
            v1::FetchFormat::Arrow => FetchForm::Columns,
            v1::FetchFormat::Batches | v1::FetchFormat::Records => FetchForm::Batches,
        };
        let fetched = self
            .node
            .fetch_as(
                FetchSpec {
                    log: req.log,
                    partition: req.partition,
                    start,
                    max_bytes: req.max_bytes,
                    wait: Duration::from_millis(u64::from(req.wait_ms)),
                },
                Some(max_response_bytes),
                form,
            )
            .await?;
        let shape = ResponseShape {
            format,
            max_records: req.max_records,
            max_response_bytes,
        };
        let resp = build_response(fetched, shape)?;
        Ok(Response::new(resp))
    }

    async fn list_offsets(
        &self,
        request: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Describe, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        let offsets = self
            .node
            .list_offsets(&req.log, &req.partitions, req.timestamp_us)
            .await?;
        Ok(Response::new(v1::ListOffsetsResponse {
            partitions: offsets
                .into_iter()
                .map(|o| v1::PartitionOffsets {
                    partition: o.partition,
                    earliest: o.earliest.0,
                    latest: o.latest.0,
                    offset_for_timestamp: o.for_timestamp.map(|x: LogOffset| x.0),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl Admin for Services {
    async fn create_log(
        &self,
        request: Request<v1::CreateLogRequest>,
    ) -> Result<Response<v1::CreateLogResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Create, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        GatewayError::log_name(&req.log)?;
        let config = req
            .config
            .unwrap_or_default()
            .into_domain(self.node.log_defaults())
            .map_err(|e| GatewayError::InvalidConfig(e.to_string()))?;
        let status = self.node.create_log(&req.log, config).await?;
        Ok(Response::new(v1::CreateLogResponse {
            log: Some(describe(status, self.node.config().node_id)),
        }))
    }

    async fn list_logs(
        &self,
        request: Request<v1::ListLogsRequest>,
    ) -> Result<Response<v1::ListLogsResponse>, Status> {
        let guard = self.node.guard(&request)?;
        let logs = self.node.list_logs().await;
        Ok(Response::new(v1::ListLogsResponse {
            logs: logs
                .into_iter()
                .filter(|l| guard.allows(Operation::Describe, Resource::Log(l.log.as_str())))
                .map(|l| describe(l, self.node.config().node_id))
                .collect(),
        }))
    }

    async fn describe_log(
        &self,
        request: Request<v1::DescribeLogRequest>,
    ) -> Result<Response<v1::DescribeLogResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Describe, Resource::Log(&request.get_ref().log))?;
        let status = self.node.describe_log(&request.into_inner().log).await?;
        Ok(Response::new(v1::DescribeLogResponse {
            log: Some(describe(status, self.node.config().node_id)),
        }))
    }

    async fn delete_log(
        &self,
        request: Request<v1::DeleteLogRequest>,
    ) -> Result<Response<v1::DeleteLogResponse>, Status> {
        let guard = self.node.guard(&request)?;
        guard.check(Operation::Delete, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        if self.node.is_ledger(&req.log)? {
            // A ledger's history is the point of it: deleting it takes a superuser who says
            // so explicitly.
            if !req.break_glass {
                return Err(GatewayError::InvalidRequest(format!(
                    "log {} is a ledger (integrity = \"ledger\"): deleting it destroys its \
                     tamper-evident history; a superuser must set break_glass",
                    req.log
                ))
                .into());
            }
            guard.check_superuser(&format!("delete ledger log {}", req.log))?;
            tracing::warn!(target: "pyralog::audit", log = %req.log,
                "ledger log deleted with break_glass");
        }
        self.node.delete_log(&req.log).await?;
        Ok(Response::new(v1::DeleteLogResponse {}))
    }

    async fn describe_cluster(
        &self,
        request: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        self.node.guard(&request)?;
        let node = &self.node;
        let me = node.config().node_id;
        let Some(cluster) = node.cluster() else {
            return Ok(Response::new(v1::DescribeClusterResponse {
                clustered: false,
                answered_by: me,
                controller_leader: me,
                nodes: vec![v1::ClusterNode {
                    node_id: me,
                    address: node.config().listen.to_string(),
                    fenced: false,
                    voter: true,
                    draining: false,
                    rack: None,
                }],
            }));
        };
        let state = cluster.state();
        let voters = &cluster.controller.config().voters;
        Ok(Response::new(v1::DescribeClusterResponse {
            clustered: true,
            answered_by: me,
            controller_leader: cluster.controller.leader().unwrap_or(0),
            nodes: state
                .nodes
                .iter()
                .map(|(id, n)| v1::ClusterNode {
                    node_id: *id,
                    address: n.address.clone(),
                    fenced: n.fenced,
                    voter: voters.contains_key(id),
                    draining: n.draining,
                    rack: n.rack.clone(),
                })
                .collect(),
        }))
    }

    async fn add_partitions(
        &self,
        request: Request<v1::AddPartitionsRequest>,
    ) -> Result<Response<v1::AddPartitionsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Alter, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        GatewayError::log_name(&req.log)?;
        let status = self
            .node
            .add_partitions(&req.log, req.partition_count)
            .await?;
        Ok(Response::new(v1::AddPartitionsResponse {
            log: Some(describe(status, self.node.config().node_id)),
        }))
    }

    async fn reassign_partitions(
        &self,
        request: Request<v1::ReassignPartitionsRequest>,
    ) -> Result<Response<v1::ReassignPartitionsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::ClusterAdmin, Resource::Cluster)?;
        let moves = request
            .into_inner()
            .moves
            .into_iter()
            .map(|m| {
                Ok(pyralog_controller::PartitionMove {
                    log: GatewayError::log_name(&m.log)?,
                    partition: m.partition,
                    replicas: m.replicas,
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        self.node.reassign(moves).await?;
        Ok(Response::new(v1::ReassignPartitionsResponse {}))
    }

    async fn decommission_node(
        &self,
        request: Request<v1::DecommissionNodeRequest>,
    ) -> Result<Response<v1::DecommissionNodeResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::ClusterAdmin, Resource::Cluster)?;
        let moving = self.node.decommission(request.into_inner().node_id).await?;
        Ok(Response::new(v1::DecommissionNodeResponse { moving }))
    }

    async fn roll_segments(
        &self,
        request: Request<v1::RollSegmentsRequest>,
    ) -> Result<Response<v1::RollSegmentsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Alter, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        self.node.roll(&req.log, &req.partitions).await?;
        Ok(Response::new(v1::RollSegmentsResponse {}))
    }

    async fn repair_partition(
        &self,
        request: Request<v1::RepairPartitionRequest>,
    ) -> Result<Response<v1::RepairPartitionResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Alter, Resource::Log(&request.get_ref().log))?;
        let req = request.into_inner();
        let out = self.node.repair_partition(&req.log, req.partition).await?;
        let (cut_at, detail) = out.damaged.map(|(o, d)| (o.0, d)).unzip();
        Ok(Response::new(v1::RepairPartitionResponse {
            node: out.node,
            damaged: cut_at.is_some(),
            cut_at: cut_at.unwrap_or_default(),
            detail: detail.unwrap_or_default(),
            leader: out.leader.unwrap_or_default(),
            epoch: out.epoch.0,
        }))
    }

    async fn run_compaction(
        &self,
        request: Request<v1::RunCompactionRequest>,
    ) -> Result<Response<v1::RunCompactionResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Alter, Resource::Log(&request.get_ref().log))?;
        let passes = self.node.run_compaction(&request.into_inner().log).await?;
        Ok(Response::new(v1::RunCompactionResponse {
            partitions: passes
                .into_iter()
                .map(|(p, res)| match res {
                    Ok(r) => compaction_pass(p, &r),
                    Err(error) => v1::CompactionPass {
                        partition: p,
                        error,
                        ..Default::default()
                    },
                })
                .collect(),
        }))
    }

    async fn compaction_status(
        &self,
        request: Request<v1::CompactionStatusRequest>,
    ) -> Result<Response<v1::CompactionStatusResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::Describe, Resource::Log(&request.get_ref().log))?;
        let status = self
            .node
            .compaction_status(&request.into_inner().log)
            .await?;
        Ok(Response::new(v1::CompactionStatusResponse {
            partitions: status
                .into_iter()
                .map(|s| v1::PartitionCompactionStatus {
                    partition: s.partition,
                    mode: v1::CompactionMode::from(s.mode) as i32,
                    runs: s.state.runs,
                    last_run_at_us: s.state.last_run_at,
                    last_duration_ms: u64::try_from(s.state.last_duration.as_millis())
                        .unwrap_or(u64::MAX),
                    last: s
                        .state
                        .last
                        .as_ref()
                        .map(|r| compaction_pass(s.partition, r)),
                    last_error: s.state.last_error.clone().unwrap_or_default(),
                    cleaned_through: s.state.cleaned_through.map(|o| o.0),
                    bytes_reclaimed: s.state.bytes_reclaimed,
                    segments_rewritten: s.state.segments_rewritten,
                    lag_records: s.lag_records,
                })
                .collect(),
        }))
    }
}

fn compaction_pass(partition: u32, r: &pyralog_compactor::CompactionReport) -> v1::CompactionPass {
    v1::CompactionPass {
        partition,
        records_read: r.records_read,
        payload_bytes_read: r.payload_bytes_read,
        records_before: r.records_before,
        records_after: r.records_after,
        bytes_before: r.bytes_before,
        bytes_after: r.bytes_after,
        segments_rewritten: r.segments_rewritten(),
        segments_removed: r.cold_segments_removed,
        cleaned_through: r.cleaned_through.map(|o| o.0),
        stale: r.stale,
        error: String::new(),
        keys: r.keys,
        skipped: r.skipped,
        pending_tombstones: r.pending_tombstones,
    }
}
