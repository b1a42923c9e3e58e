//! Produce: check or encode the payload, append on the leader, wait for the acks asked for.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyralog_hot_tier::AppendInfo;
use pyralog_types::batch::{Batch, BatchBuilder, BatchError, BatchRules, Compression, NewRecord};
use pyralog_types::{AckPolicy, Epoch, LogConfig, LogId, LogOffset, PartitionId};
use tracing::warn;

use super::{Node, OpenLog};
use crate::error::GatewayError;
use crate::metrics::{LogLabels, Metrics};
use crate::partition::{Partition, Role};

/// What a produce request carries.
#[derive(Debug, Clone)]
pub enum ProducePayload {
    /// An encoded batch (binary batch format).
    Batch(Bytes),
    /// Records for the node to encode.
    Records(Vec<NewRecord>),
    /// Records of an idempotent producer: the batch carries its id, epoch and sequence.
    IdempotentRecords {
        records: Vec<NewRecord>,
        producer: ProducerStamp,
    },
}

/// An idempotent producer's identity and the sequence of a batch's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub base_offset: LogOffset,
    pub last_offset: LogOffset,
    pub epoch: Epoch,
    /// A retry of a batch already in the log: nothing was written; the offsets are the
    /// original's.
    pub duplicate: bool,
    /// Records left out for their dedup id: (index in the batch, offset of the stored copy).
    pub dropped: Vec<(u32, LogOffset)>,
}

/// A produce request whose batch is in the local log (offsets assigned), waiting for the
/// acknowledgement its `acks` asks for: [`PendingProduce::acknowledged`].
#[derive(Debug)]
pub struct PendingProduce {
    partition: Arc<Partition>,
    partition_id: PartitionId,
    info: AppendInfo,
    epoch: Epoch,
    acks: AckPolicy,
    timeout: Duration,
    started: std::time::Instant,
    labels: LogLabels,
    records: u32,
    bytes: u64,
    metrics: Arc<Metrics>,
}

impl Node {
    /// Produces one batch and waits for its acknowledgement:
    /// [`Node::produce_write`] then [`PendingProduce::acknowledged`].
    pub async fn produce(
        &self,
        name: &str,
        partition: PartitionId,
        payload: ProducePayload,
        acks: AckPolicy,
        timeout: Option<Duration>,
    ) -> Result<Produced, GatewayError> {
        if acks == AckPolicy::None {
            return self.produce_unacknowledged(name, partition, payload).await;
        }
        self.produce_write(name, partition, payload, acks, timeout)
            .await?
            .acknowledged()
            .await
    }

    /// The first half of a produce: validates the payload, checks leadership and writes the
    /// batch to the local log. Batches of one partition are stored in the order of their
    /// `produce_write` calls, so a pipelined producer awaits each before the next and the
    /// acknowledgements concurrently. With `AckPolicy::None` the returned produce answers at
    /// once, making the batch durable and visible in the background.
    pub async fn produce_write(
        &self,
        name: &str,
        partition: PartitionId,
        payload: ProducePayload,
        acks: AckPolicy,
        timeout: Option<Duration>,
    ) -> Result<PendingProduce, GatewayError> {
        let started = std::time::Instant::now();
        let (log, p, batch, records) = self.prepare(name, partition, payload).await?;
        let bytes = batch.len() as u64;
        // Leader answers after the local append; Quorum and All once the HW covers the batch,
        // i.e. every ISR member holds it (see `pyralog_hot_tier::replication` for why the ISR
        // is the write quorum). Standalone, the HW covers a batch as soon as it is appended.
        let wait_for_isr = matches!(acks, AckPolicy::Quorum | AckPolicy::All);
        let timeout = timeout.unwrap_or(self.config.produce.default_timeout);
        let (info, epoch) = tokio::time::timeout(timeout, p.write(batch, wait_for_isr))
            .await
            .map_err(|_| GatewayError::Timeout(timeout))??;
        Ok(PendingProduce {
            partition: p,
            partition_id: partition,
            info,
            epoch,
            acks,
            timeout,
            started,
            labels: LogLabels {
                log: log.id.to_string(),
            },
            records,
            bytes,
            metrics: self.metrics.clone(),
        })
    }

    /// `acks = NONE` over the unary call: the answer comes before the append, which runs in
    /// the background.
    async fn produce_unacknowledged(
        &self,
        name: &str,
        partition: PartitionId,
        payload: ProducePayload,
    ) -> Result<Produced, GatewayError> {
        let (log, p, batch, _) = self.prepare(name, partition, payload).await?;
        let id = log.id.clone();
        let epoch = p.epoch();
        tokio::spawn(async move {
            if let Err(e) = p.append(batch, false).await {
                warn!(log = %id, partition, error = %e, "acks=none append failed");
            }
        });
        Ok(Produced::unknown(epoch))
    }

    /// What every produce does before its append: find the log and partition, validate (or
    /// encode) the payload, check leadership. Returns the batch and its record count.
    async fn prepare(
        &self,
        name: &str,
        partition: PartitionId,
        payload: ProducePayload,
    ) -> Result<(Arc<OpenLog>, Arc<Partition>, Bytes, u32), GatewayError> {
        let log = self.log(name)?;
        let p = self.partition(name, partition)?;
        let (batch, records) = self.validate_payload(&log.config, payload)?;
        self.check_leadership(&log.id, partition, &p).await?;
        Ok((log, p, batch, records))
    }

    /// In a cluster: this node leads the partition in the epoch the controller knows.
    async fn check_leadership(
        &self,
        log: &LogId,
        partition: PartitionId,
        p: &Partition,
    ) -> Result<(), GatewayError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let epoch = {
            let r = p.role();
            match r.role {
                Role::Leader(_) => r.epoch,
                _ => return Err(r.not_leader()),
            }
        };
        cluster.check_leadership(log, partition, epoch).await
    }

    pub(super) fn validate_payload(
        &self,
        config: &LogConfig,
        payload: ProducePayload,
    ) -> Result<(Bytes, u32), GatewayError> {
        let max_batch = config.max_batch_bytes;
        let max_record = config.max_record_bytes as usize;
        match payload {
            ProducePayload::Batch(bytes) => {
                if bytes.len() > max_batch as usize {
                    return Err(GatewayError::BatchTooLarge {
                        size: bytes.len(),
                        limit: max_batch,
                    });
                }
                let batch = Batch::parse_verified(bytes).map_err(GatewayError::CorruptBatch)?;
                let rules = BatchRules::produce(max_record, max_batch as usize);
                batch.validate_records(&rules).map_err(|e| match e {
                    BatchError::RecordTooLarge { size, limit } => {
                        GatewayError::RecordTooLarge { size, limit }
                    }
                    e @ BatchError::UncompressedTooLarge { .. } => GatewayError::Refused {
                        reason: pyralog_types::Reason::BatchTooLarge,
                        detail: format!("{e} (max_batch_bytes)"),
                    },
                    other => GatewayError::CorruptBatch(other),
                })?;
                let count = batch.record_count();
                Ok((batch.into_bytes(), count))
            }
            ProducePayload::Records(records) => self.encode_records(config, records, None),
            ProducePayload::IdempotentRecords { records, producer } => {
                self.encode_records(config, records, Some(producer))
            }
        }
    }

    pub(super) fn encode_records(
        &self,
        config: &LogConfig,
        records: Vec<NewRecord>,
        producer: Option<ProducerStamp>,
    ) -> Result<(Bytes, u32), GatewayError> {
        let max_batch = config.max_batch_bytes;
        let max_record = config.max_record_bytes as usize;
        {
            {
                if records.is_empty() {
                    return Err(GatewayError::InvalidRequest(
                        "produce request has no records".into(),
                    ));
                }
                let now = self.clock.now_micros();
                let mut builder = BatchBuilder::new(Compression::None);
                if let Some(p) = producer {
                    builder = builder.with_producer(p.id, p.epoch, p.base_sequence);
                }
                for mut r in records {
                    let size = r.key.as_ref().map_or(0, Bytes::len)
                        + r.value.as_ref().map_or(0, Bytes::len)
                        + r.headers
                            .iter()
                            .map(|h| h.key.len() + h.value.len())
                            .sum::<usize>();
                    if size > max_record {
                        return Err(GatewayError::RecordTooLarge {
                            size,
                            limit: max_record,
                        });
                    }
                    if r.timestamp == 0 {
                        r.timestamp = now;
                    }
                    builder.push(&r);
                    if builder.estimated_size() > max_batch as usize {
                        return Err(GatewayError::BatchTooLarge {
                            size: builder.estimated_size(),
                            limit: max_batch,
                        });
                    }
                }
                let count = builder.record_count();
                Ok((builder.build().map_err(GatewayError::CorruptBatch)?, count))
            }
        }
    }
}

impl Produced {
    /// The answer to `acks = NONE`: offsets not known (`u64::MAX`).
    fn unknown(epoch: Epoch) -> Produced {
        Produced {
            base_offset: LogOffset::MAX,
            last_offset: LogOffset::MAX,
            epoch,
            duplicate: false,
            dropped: Vec::new(),
        }
    }
}

impl PendingProduce {
    /// The second half of a produce: waits until the batch is acknowledged as its `acks`
    /// asks (durable under `fsync = every_batch`; for `QUORUM` and `ALL` held by every ISR
    /// member), within what is left of the request's timeout. With `NONE` it answers at once
    /// and finishes the append in the background.
    pub async fn acknowledged(self) -> Result<Produced, GatewayError> {
        let p = &self.partition;
        if self.acks == AckPolicy::None {
            let (p, info, epoch, id) = (
                self.partition.clone(),
                self.info,
                self.epoch,
                self.labels.log,
            );
            let partition = self.partition_id;
            tokio::spawn(async move {
                if let Err(e) = p.settle(&info, epoch).await {
                    warn!(log = %id, partition, error = %e, "acks=none append failed");
                }
            });
            return Ok(Produced::unknown(epoch));
        }
        let left = |timeout: Duration| timeout.saturating_sub(self.started.elapsed());
        tokio::time::timeout(left(self.timeout), p.settle(&self.info, self.epoch))
            .await
            .map_err(|_| GatewayError::Timeout(self.timeout))??;
        if matches!(self.acks, AckPolicy::Quorum | AckPolicy::All) {
            p.wait_replicated(self.info.end_offset, self.epoch, left(self.timeout))
                .await
                .map_err(|e| match e {
                    GatewayError::Timeout(_) => GatewayError::Timeout(self.timeout),
                    other => other,
                })?;
        }
        let m = &self.metrics;
        m.produce_seconds
            .observe(self.started.elapsed().as_secs_f64());
        if self.info.duplicate {
            m.duplicate_batches.get_or_create(&self.labels).inc();
        } else {
            m.produced_records
                .get_or_create(&self.labels)
                .inc_by(u64::from(self.records));
            m.produced_bytes
                .get_or_create(&self.labels)
                .inc_by(self.bytes);
        }
        Ok(Produced {
            base_offset: self.info.base_offset,
            last_offset: self.info.last_offset,
            epoch: self.epoch,
            duplicate: self.info.duplicate,
            dropped: self.info.dropped,
        })
    }
}
