//! Connection and admin calls.

use std::time::Duration;

use pyralog_proto::v1::{
    self, admin_client::AdminClient, consumer_client::ConsumerClient,
    producer_client::ProducerClient,
};
use pyralog_types::config::limits::MAX_BATCH_BYTES;
use pyralog_types::{Epoch, LogConfig, LogOffset, PartitionId, TimestampMicros};
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

const MAX_MESSAGE_BYTES: usize = MAX_BATCH_BYTES as usize + 1024 * 1024;

/// A connection to a Pyralog node. Cheap to clone (clones share the channel).
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    channel: Channel,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    pub partition: PartitionId,
    pub start_offset: LogOffset,
    pub high_watermark: LogOffset,
    pub epoch: Epoch,
    pub local_bytes: u64,
    pub local_segments: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogInfo {
    pub name: String,
    pub config: LogConfig,
    pub partitions: Vec<PartitionInfo>,
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
                })
                .collect(),
        })
    }
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:7410`).
    pub async fn connect(url: impl Into<String>) -> Result<Client, ClientError> {
        let url = url.into();
        let err = |detail: String| ClientError::Connect {
            url: url.clone(),
            detail,
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Batches and fetch responses are up to tens of MiB: windows that fit them.
            .initial_stream_window_size(16 * 1024 * 1024)
            .initial_connection_window_size(64 * 1024 * 1024);
        let channel = endpoint.connect().await.map_err(|e| err(e.to_string()))?;
        Ok(Client { url, channel })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    pub(crate) fn producer_rpc(&self) -> ProducerClient<Channel> {
        ProducerClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn consumer_rpc(&self) -> ConsumerClient<Channel> {
        ConsumerClient::new(self.channel.clone())
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
        self.admin()
            .delete_log(v1::DeleteLogRequest {
                log: name.to_owned(),
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

    /// One raw fetch.
    pub async fn fetch(&self, req: v1::FetchRequest) -> Result<v1::FetchResponse, ClientError> {
        Ok(self.consumer_rpc().fetch(req).await?.into_inner())
    }

    /// Produces one request as given (no batching, no retries).
    pub async fn produce_raw(
        &self,
        req: v1::ProduceRequest,
    ) -> Result<v1::ProduceResponse, ClientError> {
        Ok(self.producer_rpc().produce(req).await?.into_inner())
    }
}
