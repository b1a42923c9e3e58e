//! Records as Arrow columns for analytic consumers (`FETCH_FORMAT_ARROW`).
//!
//! A cold read already holds each row group decoded as Arrow arrays ([`crate::decoded`]), so
//! serving columns costs no re-encoding: [`ColumnSlicer`] keeps zero-copy slices of those
//! arrays (the rows at or after the fetch offset, up to `max_bytes`), checked by the same
//! [`RowOrder`] rule as the batch path. Hot-tier batches are converted once
//! ([`wire_to_columns`]). Either way the result goes out as one Arrow IPC stream
//! ([`encode_ipc`]): the schema, then record batches with the archive's columns (`offset`,
//! `epoch`, `timestamp`, `key`, `value`, `headers`), cut to the response bound so a stock
//! gRPC client can receive it.

use std::ops::Range;

use arrow_array::{Array, RecordBatch};
use arrow_ipc::writer::StreamWriter;
use bytes::Bytes;
use pyralog_types::batch::split_batches;
use pyralog_types::{LogOffset, Record};

use super::rows::{RowOrder, RowSink, SinkOutput};
use super::{arrow_schema, to_record_batch, Columns};
use crate::error::ColdError;

/// Bytes a row costs in Arrow beyond its payload: offset, epoch and timestamp (8 each), and
/// the offsets of the key, value and header list (4 each), rounded up.
pub(crate) const ARROW_ROW_FIXED_BYTES: usize = 40;

/// Keeps the rows of decoded batches from `start` on, as slices, up to about `max_bytes`
/// (at least one row).
pub(crate) struct ColumnSlicer {
    start: LogOffset,
    max_bytes: usize,
    order: RowOrder,
    used: usize,
    out: Vec<RecordBatch>,
    record_count: usize,
    written_end: Option<LogOffset>,
    full: bool,
}

impl ColumnSlicer {
    pub(crate) fn new(start: LogOffset, max_bytes: usize) -> Self {
        ColumnSlicer {
            start,
            max_bytes,
            order: RowOrder::default(),
            used: 0,
            out: Vec::new(),
            record_count: 0,
            written_end: None,
            full: false,
        }
    }
}

impl RowSink for ColumnSlicer {
    type Batches = Vec<RecordBatch>;

    fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn expect_offsets(&mut self, allowed: Range<u64>) {
        self.order.expect(allowed);
    }

    fn push(&mut self, rb: &RecordBatch, cols: &Columns<'_>) -> Result<(), String> {
        let mut taken: Option<Range<usize>> = None;
        for row in 0..cols.len() {
            let offset = cols.offset(row);
            self.order.check(offset)?;
            if offset < self.start {
                continue;
            }
            let size = cols.row_bytes(row, ARROW_ROW_FIXED_BYTES);
            if self.used > 0 && self.used + size > self.max_bytes {
                self.full = true;
                break;
            }
            self.used += size;
            self.written_end = Some(LogOffset(offset.0 + 1));
            taken = Some(taken.map_or(row..row + 1, |t| t.start..row + 1));
        }
        if let Some(rows) = taken {
            // Downsampled segments carry metric columns besides the record columns: a fetch
            // returns the record columns, by name, under the one schema of the stream.
            let schema = arrow_schema();
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    rb.schema()
                        .index_of(f.name())
                        .map(|i| rb.column(i).clone())
                        .map_err(|_| format!("no {} column", f.name()))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let projected = RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())?;
            self.record_count += rows.len();
            self.out.push(projected.slice(rows.start, rows.len()));
        }
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.full
    }

    fn finish(self) -> Result<SinkOutput<Vec<RecordBatch>>, String> {
        Ok(SinkOutput {
            batches: self.out,
            record_count: self.record_count,
            next_offset: self.written_end,
            full: self.full,
        })
    }
}

/// The records of hot-format `batches` at or after `from`, as one Arrow batch (none when no
/// record is at or after `from`).
pub fn wire_to_columns(batches: &Bytes, from: LogOffset) -> Result<Vec<RecordBatch>, ColdError> {
    let mut records: Vec<Record> = Vec::new();
    for batch in split_batches(batches.clone()) {
        let batch = batch.map_err(|e| ColdError::InvalidInput(format!("batch: {e}")))?;
        let rs = batch.records().map_err(|e| {
            ColdError::InvalidInput(format!("batch at {}: {e}", batch.base_offset()))
        })?;
        records.extend(rs.into_iter().filter(|r| r.offset >= from));
    }
    if records.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![to_record_batch(&records, None)?])
}

/// An Arrow IPC stream of records.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrowIpc {
    /// Schema message, record batches, end-of-stream marker; empty when no row is in it.
    pub bytes: Bytes,
    pub record_count: usize,
    /// One past the last row in the stream.
    pub next_offset: Option<LogOffset>,
    /// Whether every row given to [`encode_ipc`] is in the stream.
    pub complete: bool,
}

/// Why [`encode_ipc`] sent nothing.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("the record at offset {offset} alone needs {needed} bytes of Arrow IPC")]
    FirstRowTooLarge { offset: u64, needed: usize },
    #[error("arrow ipc: {0}")]
    Encode(String),
}

/// Encodes the first rows of `batches` (at most `max_rows`, in order) as one Arrow IPC stream
/// of at most `max_bytes`: as many rows as fit, at least one, or [`IpcError::FirstRowTooLarge`].
pub fn encode_ipc(
    batches: &[RecordBatch],
    max_rows: usize,
    max_bytes: usize,
) -> Result<ArrowIpc, IpcError> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if total == 0 || max_rows == 0 {
        return Ok(ArrowIpc {
            bytes: Bytes::new(),
            record_count: 0,
            next_offset: None,
            complete: total == 0,
        });
    }
    // A first guess from the rows' sizes, then fewer rows while the stream is too large:
    // the guess is close, so this rarely encodes twice.
    let mut rows = estimate_rows(batches, max_rows.min(total), max_bytes);
    loop {
        let prefix = first_rows(batches, rows);
        let bytes = write_stream(&prefix)?;
        if bytes.len() <= max_bytes {
            let last = prefix.last().and_then(last_offset);
            return Ok(ArrowIpc {
                bytes: Bytes::from(bytes),
                record_count: rows,
                next_offset: last.map(|o| LogOffset(o + 1)),
                complete: rows == total,
            });
        }
        if rows == 1 {
            let offset = prefix.first().and_then(first_offset).unwrap_or_default();
            return Err(IpcError::FirstRowTooLarge {
                offset,
                needed: bytes.len(),
            });
        }
        let scaled = (rows as u128 * max_bytes as u128 * 9 / 10 / bytes.len() as u128) as usize;
        rows = scaled.clamp(1, rows - 1);
    }
}

/// Overhead of the stream beyond its rows: the schema message and end marker, plus each
/// batch's message header and padding.
const STREAM_OVERHEAD_BYTES: usize = 1024;
const BATCH_OVERHEAD_BYTES: usize = 512;

fn estimate_rows(batches: &[RecordBatch], max_rows: usize, max_bytes: usize) -> usize {
    let mut used = STREAM_OVERHEAD_BYTES;
    let mut rows = 0;
    for rb in batches {
        used += BATCH_OVERHEAD_BYTES;
        let Ok(cols) = Columns::of(rb) else {
            return rows.max(1);
        };
        for row in 0..cols.len() {
            used += cols.row_bytes(row, ARROW_ROW_FIXED_BYTES);
            if rows == max_rows || (rows > 0 && used > max_bytes) {
                return rows;
            }
            rows += 1;
        }
    }
    rows.max(1)
}

/// The first `rows` rows of `batches`, as zero-copy slices.
fn first_rows(batches: &[RecordBatch], mut rows: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for rb in batches {
        if rows == 0 {
            break;
        }
        let n = rb.num_rows().min(rows);
        out.push(rb.slice(0, n));
        rows -= n;
    }
    out
}

fn write_stream(batches: &[RecordBatch]) -> Result<Vec<u8>, IpcError> {
    let encode = |e: arrow_schema::ArrowError| IpcError::Encode(e.to_string());
    let mut w = StreamWriter::try_new(Vec::new(), &arrow_schema()).map_err(encode)?;
    for rb in batches {
        w.write(rb).map_err(encode)?;
    }
    w.finish().map_err(encode)?;
    w.into_inner().map_err(encode)
}

fn offsets(rb: &RecordBatch) -> Option<&arrow_array::Int64Array> {
    rb.column(0).as_any().downcast_ref()
}

fn first_offset(rb: &RecordBatch) -> Option<u64> {
    offsets(rb)
        .filter(|o| !o.is_empty())
        .and_then(|o| u64::try_from(o.value(0)).ok())
}

fn last_offset(rb: &RecordBatch) -> Option<u64> {
    offsets(rb)
        .filter(|o| !o.is_empty())
        .and_then(|o| u64::try_from(o.value(o.len() - 1)).ok())
}

#[cfg(test)]
mod tests {
    use arrow_ipc::reader::StreamReader;
    use proptest::prelude::*;

    use super::*;
    use crate::codec::records_to_batches;
    use crate::codec::tests::{incompressible, record};

    fn records(n: u64, value_len: usize) -> Vec<Record> {
        let mut x = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|i| {
                record(
                    100 + i,
                    2,
                    1_700_000_000_000_000 + i as i64,
                    &incompressible(&mut x, value_len),
                )
            })
            .collect()
    }

    fn wire(records: &[Record]) -> Bytes {
        let batches = records_to_batches(records, 4096).expect("batches");
        Bytes::from(batches.concat())
    }

    /// Reads an IPC stream back into records, as a client would.
    fn read_back(ipc: &ArrowIpc) -> Vec<Record> {
        if ipc.bytes.is_empty() {
            return Vec::new();
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(ipc.bytes.to_vec()), None)
            .expect("a valid stream");
        assert_eq!(reader.schema(), arrow_schema());
        reader
            .flat_map(|rb| {
                let rb = rb.expect("batch");
                let cols = Columns::of(&rb).expect("columns");
                (0..cols.len()).map(|r| cols.record(r)).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn hot_batches_become_columns_from_the_fetch_offset() {
        let recs = records(50, 30);
        let cols = wire_to_columns(&wire(&recs), LogOffset(120)).expect("convert");
        let ipc = encode_ipc(&cols, usize::MAX, 1 << 20).expect("encode");
        assert!(ipc.complete);
        assert_eq!(read_back(&ipc), recs[20..]);
        assert_eq!(ipc.next_offset, Some(LogOffset(150)));
        assert!(wire_to_columns(&wire(&recs), LogOffset(150))
            .expect("convert")
            .is_empty());
    }

    #[test]
    fn max_rows_is_exact() {
        let recs = records(50, 30);
        let cols = wire_to_columns(&wire(&recs), LogOffset(0)).expect("convert");
        let ipc = encode_ipc(&cols, 7, 1 << 20).expect("encode");
        assert_eq!(read_back(&ipc), recs[..7]);
        assert_eq!((ipc.record_count, ipc.complete), (7, false));
        assert_eq!(ipc.next_offset, Some(LogOffset(107)));
    }

    #[test]
    fn a_first_row_larger_than_the_bound_is_refused() {
        let recs = records(3, 10_000);
        let cols = wire_to_columns(&wire(&recs), LogOffset(0)).expect("convert");
        match encode_ipc(&cols, usize::MAX, 4096) {
            Err(IpcError::FirstRowTooLarge { offset, needed }) => {
                assert_eq!(offset, 100);
                assert!(needed > 10_000, "{needed}");
            }
            other => panic!("expected FirstRowTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn nothing_to_send_is_an_empty_stream() {
        let ipc = encode_ipc(&[], usize::MAX, 1024).expect("encode");
        assert!(ipc.bytes.is_empty() && ipc.complete && ipc.next_offset.is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the bound, the stream fits it, holds a prefix of the rows (at least one),
        /// and says where to continue.
        #[test]
        fn the_stream_fits_the_bound_and_holds_a_prefix(
            n in 1u64..400,
            value_len in 0usize..600,
            max_bytes in 2048usize..200_000,
            split in 1usize..5,
        ) {
            let recs = records(n, value_len);
            // Several input batches, as a cold read's slices of several row groups.
            let per = (recs.len() / split).max(1);
            let cols: Vec<RecordBatch> = recs
                .chunks(per)
                .flat_map(|c| wire_to_columns(&wire(c), LogOffset(0)).expect("convert"))
                .collect();
            match encode_ipc(&cols, usize::MAX, max_bytes) {
                Ok(ipc) => {
                    prop_assert!(ipc.bytes.len() <= max_bytes);
                    let back = read_back(&ipc);
                    prop_assert!(!back.is_empty());
                    prop_assert_eq!(&back[..], &recs[..back.len()]);
                    prop_assert_eq!(ipc.complete, back.len() == recs.len());
                    prop_assert_eq!(ipc.next_offset, Some(LogOffset(back[back.len() - 1].offset.0 + 1)));
                }
                Err(IpcError::FirstRowTooLarge { needed, .. }) => prop_assert!(needed > max_bytes),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
