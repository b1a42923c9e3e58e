//! Produce: check or encode the payload, append on the leader, wait for the acks asked for.

use std::time::Duration;

use bytes::Bytes;
use pyralog_types::batch::{Batch, BatchBuilder, BatchError, BatchRules, Compression, NewRecord};
use pyralog_types::{AckPolicy, Epoch, LogConfig, LogOffset, PartitionId};
use tracing::warn;

use super::Node;
use crate::error::GatewayError;
use crate::metrics::LogLabels;
use crate::partition::Role;

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

impl Node {
    pub async fn produce(
        &self,
        name: &str,
        partition: PartitionId,
        payload: ProducePayload,
        acks: AckPolicy,
        timeout: Option<Duration>,
    ) -> Result<Produced, GatewayError> {
        let log = self.log(name)?;
        let p = self.partition(name, partition)?;
        let (batch, records) = self.validate_payload(&log.config, payload)?;
        let labels = LogLabels {
            log: log.id.to_string(),
        };
        let bytes = batch.len() as u64;
        if let Some(cluster) = &self.cluster {
            let epoch = {
                let r = p.role();
                match r.role {
                    Role::Leader(_) => r.epoch,
                    _ => return Err(r.not_leader()),
                }
            };
            cluster.check_leadership(&log.id, partition, epoch).await?;
        }
        if acks == AckPolicy::None {
            let id = log.id.clone();
            let epoch = p.epoch();
            tokio::spawn(async move {
                if let Err(e) = p.append(batch, false).await {
                    warn!(log = %id, partition, error = %e, "acks=none append failed");
                }
            });
            return Ok(Produced {
                base_offset: LogOffset::MAX,
                last_offset: LogOffset::MAX,
                epoch,
                duplicate: false,
                dropped: Vec::new(),
            });
        }
        // Leader answers after the local append; Quorum and All once the HW covers the batch,
        // i.e. every ISR member holds it (see `pyralog_hot_tier::replication` for why the ISR
        // is the write quorum). Standalone, the HW covers a batch as soon as it is appended.
        let wait_for_isr = matches!(acks, AckPolicy::Quorum | AckPolicy::All);
        let timeout = timeout.unwrap_or(self.config.produce.default_timeout);
        let started = std::time::Instant::now();
        let (info, epoch) = tokio::time::timeout(timeout, p.append(batch, wait_for_isr))
            .await
            .map_err(|_| GatewayError::Timeout(timeout))??;
        if wait_for_isr {
            let left = timeout.saturating_sub(started.elapsed());
            p.wait_replicated(info.end_offset, epoch, left)
                .await
                .map_err(|e| match e {
                    GatewayError::Timeout(_) => GatewayError::Timeout(timeout),
                    other => other,
                })?;
        }
        self.metrics
            .produce_seconds
            .observe(started.elapsed().as_secs_f64());
        if info.duplicate {
            self.metrics.duplicate_batches.get_or_create(&labels).inc();
        } else {
            self.metrics
                .produced_records
                .get_or_create(&labels)
                .inc_by(u64::from(records));
            self.metrics
                .produced_bytes
                .get_or_create(&labels)
                .inc_by(bytes);
        }
        Ok(Produced {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            epoch,
            duplicate: info.duplicate,
            dropped: info.dropped,
        })
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
