//! Fetch responses a stock gRPC client can receive, and the node's budget of fetch memory.
//!
//! `max_bytes` bounds the *stored* bytes a fetch reads; what travels is the encoded response,
//! which for `FETCH_FORMAT_RECORDS` is larger (each small record gains its offset, epoch and
//! timestamp as fields: a 4 MiB backlog of small records encodes to ~8 MB) and, for zstd
//! batches, larger still. Stock gRPC clients refuse messages over 4 MiB, so every response is
//! cut to `max_response_bytes` of *encoded* size ([`build_response`]): whole batches or whole
//! records while they fit, at least one, and a single one that alone is larger is refused with
//! an error naming the setting rather than sent to a client that cannot read it.
//!
//! [`FetchBudget`] bounds the bytes all fetches of a node hold at once: a fetch takes its share
//! after its long-poll (an idle consumer holds nothing) and keeps it until its response is
//! built; when the budget is spent, fetches wait rather than fail.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use pyralog_cold_tier::codec::{encode_ipc, wire_to_columns, IpcError};
use pyralog_proto::v1;
use pyralog_types::batch::split_batches;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;
use crate::node::Fetched;

/// Encoded size of a response's fixed fields at their largest (three varint `uint64` fields).
const FIXED_FIELDS_BYTES: usize = 3 * (1 + 10);

/// Bytes of fetches in flight on a node (`fetch.max_in_flight_bytes`).
#[derive(Debug, Clone)]
pub(crate) struct FetchBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// A fetch's share of the budget, given back when the last clone drops.
pub(crate) type BudgetShare = Arc<OwnedSemaphorePermit>;

impl FetchBudget {
    pub(crate) fn new(total: u64) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        FetchBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits until `bytes` (at most the whole budget) are free and takes them.
    pub(crate) async fn take(&self, bytes: usize) -> Result<BudgetShare, GatewayError> {
        let n = u32::try_from(bytes.clamp(1, self.total)).unwrap_or(u32::MAX);
        self.bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .map(Arc::new)
            .map_err(|_| GatewayError::ShuttingDown)
    }

    /// Bytes not taken right now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// What a client asked to receive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseShape {
    pub(crate) format: v1::FetchFormat,
    /// 0 = no bound (records and Arrow formats; batches are never cut inside).
    pub(crate) max_records: u32,
    /// Bound on the encoded response.
    pub(crate) max_response_bytes: usize,
}

/// The response for `fetched`, at most `shape.max_response_bytes` encoded.
pub(crate) fn build_response(
    fetched: Fetched,
    shape: ResponseShape,
) -> Result<v1::FetchResponse, GatewayError> {
    let mut resp = v1::FetchResponse {
        batches: Bytes::new(),
        records: Vec::new(),
        arrow: Bytes::new(),
        next_offset: fetched.next_offset.0,
        high_watermark: fetched.high_watermark.0,
        log_start_offset: fetched.log_start_offset.0,
    };
    let cap = shape.max_response_bytes;
    let room = cap.saturating_sub(FIXED_FIELDS_BYTES);
    match shape.format {
        v1::FetchFormat::Batches => {
            let mut taken = 0usize;
            let mut next = None;
            for batch in split_batches(fetched.batches.clone()) {
                let batch = batch.map_err(|e| GatewayError::CorruptData(e.to_string()))?;
                let after = taken + batch.size();
                if prost::encoding::key_len(1) + varint_and(after) > room {
                    if taken == 0 {
                        return Err(too_large(
                            false,
                            batch.base_offset().0,
                            after + FIXED_FIELDS_BYTES,
                            cap,
                        ));
                    }
                    break;
                }
                taken = after;
                next = Some(batch.last_offset().0.saturating_add(1));
            }
            if let Some(next) = next {
                resp.batches = fetched.batches.slice(..taken);
                resp.next_offset = next;
            }
        }
        v1::FetchFormat::Arrow => {
            let limit = match shape.max_records {
                0 => usize::MAX,
                n => n as usize,
            };
            let columns = match fetched.columns {
                Some(columns) => columns,
                None => wire_to_columns(&fetched.batches, fetched.from)
                    .map_err(|e| GatewayError::CorruptData(e.to_string()))?,
            };
            // Room for the stream inside the `arrow` field's tag and length.
            let field = field_header_len(6, room);
            let ipc =
                encode_ipc(&columns, limit, room.saturating_sub(field)).map_err(|e| match e {
                    IpcError::FirstRowTooLarge { offset, needed } => {
                        too_large(true, offset, needed + field + FIXED_FIELDS_BYTES, cap)
                    }
                    IpcError::Encode(reason) => GatewayError::CorruptData(reason),
                })?;
            if !ipc.complete {
                resp.next_offset = ipc.next_offset.map_or(fetched.from.0, |o| o.0);
            }
            resp.arrow = ipc.bytes;
        }
        v1::FetchFormat::Records => {
            let limit = match shape.max_records {
                0 => usize::MAX,
                n => n as usize,
            };
            let mut used = 0usize;
            'batches: for batch in split_batches(fetched.batches) {
                let batch = batch.map_err(|e| GatewayError::CorruptData(e.to_string()))?;
                let records = batch
                    .records()
                    .map_err(|e| GatewayError::CorruptData(e.to_string()))?;
                for r in records {
                    if r.offset < fetched.from {
                        continue;
                    }
                    if resp.records.len() >= limit {
                        break 'batches;
                    }
                    let offset = r.offset.0;
                    let record = v1::Record::from(r);
                    let size = prost::encoding::message::encoded_len(2, &record);
                    if used + size > room {
                        if resp.records.is_empty() {
                            return Err(too_large(true, offset, size + FIXED_FIELDS_BYTES, cap));
                        }
                        break 'batches;
                    }
                    used += size;
                    resp.next_offset = offset + 1;
                    resp.records.push(record);
                }
            }
        }
    }
    debug_assert!(resp.encoded_len() <= cap.max(FIXED_FIELDS_BYTES));
    Ok(resp)
}

/// Most bytes the tag and length of field `tag` take when the field holds up to `room` bytes.
fn field_header_len(tag: u32, room: usize) -> usize {
    prost::encoding::key_len(tag) + prost::encoding::encoded_len_varint(room as u64)
}

/// Length of a `bytes` field holding `n` bytes, minus its tag.
fn varint_and(n: usize) -> usize {
    prost::encoding::encoded_len_varint(n as u64) + n
}

fn too_large(record: bool, offset: u64, needed: usize, cap: usize) -> GatewayError {
    GatewayError::ResponseTooLarge {
        record,
        offset,
        needed,
        max_response_bytes: cap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
    use pyralog_types::{Epoch, LogOffset};

    /// `batches` batches of `per_batch` records of `value_len` bytes, from offset 0.
    fn fetched(batches: u64, per_batch: u64, value_len: usize) -> Fetched {
        let mut all = Vec::new();
        for b in 0..batches {
            let mut builder = BatchBuilder::new(Compression::None);
            for _ in 0..per_batch {
                builder.push(&NewRecord {
                    value: Some(Bytes::from(vec![7u8; value_len])),
                    timestamp: 1_700_000_000_000_000,
                    ..Default::default()
                });
            }
            let mut bytes = builder.build().expect("batch").to_vec();
            pyralog_types::batch::assign(&mut bytes, LogOffset(b * per_batch), Epoch(3));
            all.extend_from_slice(&bytes);
        }
        Fetched {
            from: LogOffset::ZERO,
            batches: Bytes::from(all),
            columns: None,
            next_offset: LogOffset(batches * per_batch),
            high_watermark: LogOffset(batches * per_batch),
            log_start_offset: LogOffset::ZERO,
            _budget: None,
        }
    }

    fn shape(format: v1::FetchFormat, cap: usize) -> ResponseShape {
        ResponseShape {
            format,
            max_records: 0,
            max_response_bytes: cap,
        }
    }

    #[test]
    fn records_are_cut_to_the_encoded_bound_and_continue_where_cut() {
        // ~3.5 MB of 10-byte records: encoded as records this is about twice as large.
        let f = fetched(32, 6000, 10);
        assert!(f.batches.len() <= 4 << 20);
        let cap = 1 << 20;
        let resp = build_response(f, shape(v1::FetchFormat::Records, cap)).expect("fits");
        assert!(resp.encoded_len() <= cap, "{}", resp.encoded_len());
        assert!(resp.encoded_len() > cap - 100, "fills the bound");
        let n = resp.records.len() as u64;
        assert_eq!(resp.next_offset, n);
        assert_eq!(resp.records.last().map(|r| r.offset), Some(n - 1));
    }

    #[test]
    fn arrow_streams_are_cut_to_the_encoded_bound_and_continue_where_cut() {
        let f = fetched(32, 6000, 10);
        let cap = 1 << 20;
        let resp = build_response(f.clone(), shape(v1::FetchFormat::Arrow, cap)).expect("fits");
        assert!(resp.encoded_len() <= cap, "{}", resp.encoded_len());
        assert!(resp.batches.is_empty() && resp.records.is_empty());
        let rows: u64 = arrow_ipc::reader::StreamReader::try_new(
            std::io::Cursor::new(resp.arrow.to_vec()),
            None,
        )
        .expect("stream")
        .map(|rb| rb.expect("batch").num_rows() as u64)
        .sum();
        assert!(rows > 0 && rows < 32 * 6000, "{rows} rows");
        assert_eq!(resp.next_offset, rows, "continues after the last row sent");

        // All of it under a large bound: next_offset is the read's.
        let resp =
            build_response(f.clone(), shape(v1::FetchFormat::Arrow, 64 << 20)).expect("fits");
        assert_eq!(resp.next_offset, 32 * 6000);

        // One record over the bound is refused like a record.
        let e = build_response(fetched(1, 1, 5000), shape(v1::FetchFormat::Arrow, 4096))
            .expect_err("too large");
        assert_eq!(e.reason(), pyralog_types::Reason::RecordTooLarge);
    }

    #[test]
    fn batches_are_whole_and_within_the_bound() {
        let f = fetched(10, 100, 1000);
        let one = f.batches.len() / 10;
        let cap = 3 * one + one / 2;
        let resp = build_response(f, shape(v1::FetchFormat::Batches, cap)).expect("fits");
        assert!(resp.encoded_len() <= cap);
        assert_eq!(resp.batches.len(), 3 * one);
        assert_eq!(resp.next_offset, 300);
    }

    #[test]
    fn one_record_or_batch_over_the_bound_is_refused_naming_the_setting() {
        let f = fetched(1, 1, 5000);
        let e = build_response(f.clone(), shape(v1::FetchFormat::Records, 4096))
            .expect_err("too large");
        assert_eq!(e.reason(), pyralog_types::Reason::RecordTooLarge);
        assert!(e.to_string().contains("max_response_bytes"), "{e}");
        let e = build_response(f, shape(v1::FetchFormat::Batches, 4096)).expect_err("too large");
        assert_eq!(e.reason(), pyralog_types::Reason::BatchTooLarge);
        assert!(e.to_string().contains("max_response_bytes"), "{e}");
    }

    #[tokio::test]
    async fn the_budget_makes_fetches_wait_not_fail() {
        let budget = FetchBudget::new(100);
        let first = budget.take(80).await.expect("free");
        assert_eq!(budget.available(), 20);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(50).await.map(|_| ()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "waits for budget");
        drop(first);
        waiting.await.expect("join").expect("gets it");
        // A share larger than the whole budget takes the whole budget.
        let all = budget.take(1000).await.expect("clamped");
        assert_eq!(budget.available(), 0);
        drop(all);
    }
}
