//! Hot-format batches straight from Arrow columns.
//!
//! A cold read used to turn every Parquet row into a [`pyralog_types::Record`] (copying its
//! key, value and headers into fresh buffers), rebuild batches from those records (another
//! copy per record, then one per batch), and parse the batches it had just built. The cold
//! path was bound by that CPU, not by the object store. Here each row goes from the Arrow
//! arrays into the batch being built in one copy ([`BatchBuilder::push_slices_at`]), and the
//! batches are checked once, as rows arrive: inside the segment's and the row group's offset
//! range, in increasing order. Damage is reported as a reason string, which the reader turns
//! into [`crate::ColdError::Corrupt`] naming the object.

use std::ops::Range;

use arrow_array::{
    Array, BinaryArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use bytes::Bytes;
use pyralog_types::batch::{BatchBuilder, Compression};
use pyralog_types::{Epoch, Header, LogOffset, Record};

use super::rows::{RowOrder, RowSink, SinkOutput};

/// The typed columns of one Arrow batch of a segment file, checked once.
pub(crate) struct Columns<'a> {
    offsets: &'a Int64Array,
    epochs: &'a Int64Array,
    timestamps: &'a TimestampMicrosecondArray,
    keys: &'a BinaryArray,
    values: &'a BinaryArray,
    header_offsets: &'a [i32],
    header_keys: &'a StringArray,
    header_values: &'a BinaryArray,
}

fn column<'a, T: 'static>(rb: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    rb.column_by_name(name)
        .ok_or_else(|| format!("missing column {name}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has an unexpected type"))
}

impl<'a> Columns<'a> {
    /// The columns of `rb`, or why they are not a segment's.
    pub(crate) fn of(rb: &'a RecordBatch) -> Result<Self, String> {
        let offsets = column::<Int64Array>(rb, "offset")?;
        let epochs = column::<Int64Array>(rb, "epoch")?;
        if offsets
            .values()
            .iter()
            .chain(epochs.values().iter())
            .any(|&v| v < 0)
        {
            return Err("negative offset or epoch".into());
        }
        let timestamps = column::<TimestampMicrosecondArray>(rb, "timestamp")?;
        let keys = column::<BinaryArray>(rb, "key")?;
        let values = column::<BinaryArray>(rb, "value")?;
        let headers = column::<ListArray>(rb, "headers")?;
        let items = headers
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or("headers are not a list of structs")?;
        let header_keys = items
            .column_by_name("key")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or("header key column missing or mistyped")?;
        let header_values = items
            .column_by_name("value")
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or("header value column missing or mistyped")?;
        if offsets.null_count() + epochs.null_count() + timestamps.null_count() > 0
            || headers.null_count() + header_keys.null_count() + header_values.null_count() > 0
        {
            return Err("null in a non-nullable column".into());
        }
        let header_offsets = headers.value_offsets();
        let rows = rb.num_rows();
        let lists_fit = header_offsets.len() == rows + 1
            && header_offsets.windows(2).all(|w| w[0] <= w[1])
            && header_offsets.first().is_some_and(|&f| f >= 0)
            && header_offsets
                .last()
                .and_then(|&l| usize::try_from(l).ok())
                .is_some_and(|l| l <= header_keys.len() && l <= header_values.len());
        if !lists_fit {
            return Err("bad header list offsets".into());
        }
        Ok(Columns {
            offsets,
            epochs,
            timestamps,
            keys,
            values,
            header_offsets,
            header_keys,
            header_values,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    pub(crate) fn offset(&self, row: usize) -> LogOffset {
        LogOffset(self.offsets.value(row) as u64)
    }

    fn opt(a: &BinaryArray, row: usize) -> Option<&[u8]> {
        (!a.is_null(row)).then(|| a.value(row))
    }

    /// Row `row` as an owned record (its bytes copied), for callers that need records.
    pub(crate) fn record(&self, row: usize) -> Record {
        let owned = |b: Option<&[u8]>| b.map(Bytes::copy_from_slice);
        let (from, to) = self.header_range(row);
        Record {
            offset: self.offset(row),
            epoch: Epoch(self.epochs.value(row) as u64),
            timestamp: self.timestamps.value(row),
            key: owned(Self::opt(self.keys, row)),
            value: owned(Self::opt(self.values, row)),
            headers: (from..to)
                .map(|h| Header {
                    key: self.header_keys.value(h).to_owned(),
                    value: Bytes::copy_from_slice(self.header_values.value(h)),
                })
                .collect(),
        }
    }

    /// Bytes row `row` holds: key, value, header keys and values, and `fixed` for its
    /// offset, epoch, timestamp and the column offsets pointing at it.
    pub(crate) fn row_bytes(&self, row: usize, fixed: usize) -> usize {
        let (from, to) = self.header_range(row);
        let headers: usize = (from..to)
            .map(|h| self.header_keys.value(h).len() + self.header_values.value(h).len() + 8)
            .sum();
        let len = |a: &BinaryArray| {
            if a.is_null(row) {
                0
            } else {
                a.value(row).len()
            }
        };
        len(self.keys) + len(self.values) + headers + fixed
    }

    /// Row `row`'s headers: indexes into the header columns (checked in [`Columns::of`]).
    fn header_range(&self, row: usize) -> (usize, usize) {
        (
            self.header_offsets[row] as usize,
            self.header_offsets[row + 1] as usize,
        )
    }
}

/// Most bytes of output reserved up front (larger outputs grow as needed).
const OUT_PREALLOCATION: usize = 4 << 20;

/// The batch being filled.
struct OpenBatch {
    base: LogOffset,
    epoch: Epoch,
    last: LogOffset,
    builder: BatchBuilder,
}

/// Builds hot-format batches from rows pushed in offset order: consecutive rows of one epoch
/// share a batch of at most about `batch_bytes`; offset gaps are kept; the output stops at
/// about `max_bytes` (always at least one batch).
pub(crate) struct WireWriter {
    /// Rows below this offset are skipped (a read starting inside a row group).
    start: LogOffset,
    order: RowOrder,
    batch_bytes: usize,
    max_bytes: usize,
    /// Sealed batches back to back; while a batch is open the buffer is inside its builder,
    /// which appends to it (no batch is copied into place).
    out: Vec<u8>,
    current: Option<OpenBatch>,
    written_end: Option<LogOffset>,
    /// Length of `out` up to the last sealed batch.
    written_bytes: usize,
    record_count: usize,
    full: bool,
}

impl WireWriter {
    /// A writer of batches of about `batch_bytes` (at most `max_bytes` in all, at least one
    /// batch) from the rows at or after `start`.
    pub(crate) fn new(start: LogOffset, batch_bytes: usize, max_bytes: usize) -> Self {
        WireWriter {
            start,
            order: RowOrder::default(),
            batch_bytes: batch_bytes.max(1),
            max_bytes,
            out: Vec::with_capacity(max_bytes.min(OUT_PREALLOCATION) + batch_bytes.max(1)),
            current: None,
            written_end: None,
            written_bytes: 0,
            record_count: 0,
            full: false,
        }
    }

    /// Pushes every row of `cols` (until the output is full).
    fn push_columns(&mut self, cols: &Columns<'_>) -> Result<(), String> {
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        for row in 0..cols.len() {
            if self.full {
                return Ok(());
            }
            let offset = cols.offset(row);
            self.order.check(offset)?;
            if offset < self.start {
                continue;
            }
            let epoch = Epoch(cols.epochs.value(row) as u64);
            headers.clear();
            let (from, to) = cols.header_range(row);
            for h in from..to {
                headers.push((cols.header_keys.value(h), cols.header_values.value(h)));
            }
            let key = Columns::opt(cols.keys, row);
            let value = Columns::opt(cols.values, row);
            let payload = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
            let delta = self.current.as_ref().and_then(|open| {
                let delta = u32::try_from(offset.0 - open.base.0).ok()?;
                let room = open.builder.estimated_size() + payload + 32 <= self.batch_bytes;
                (open.epoch == epoch && room).then_some(delta)
            });
            let delta = match delta {
                Some(d) => d,
                None => {
                    self.seal()?;
                    if self.full {
                        return Ok(());
                    }
                    self.current = Some(OpenBatch {
                        base: offset,
                        epoch,
                        last: offset,
                        builder: BatchBuilder::appending_to(
                            Compression::None,
                            std::mem::take(&mut self.out),
                        ),
                    });
                    0
                }
            };
            if let Some(open) = self.current.as_mut() {
                open.builder
                    .push_slices_at(delta, cols.timestamps.value(row), key, value, &headers)
                    .map_err(|e| format!("rebuilding the batch at offset {offset}: {e}"))?;
                open.last = offset;
            }
        }
        Ok(())
    }

    /// Closes the batch being built and appends it, unless it would cross `max_bytes`.
    fn seal(&mut self) -> Result<(), String> {
        let Some(OpenBatch {
            base,
            epoch,
            last,
            builder,
        }) = self.current.take()
        else {
            return Ok(());
        };
        let count = builder.record_count() as usize;
        let before = self.written_bytes;
        self.out = builder
            .append_at(base, epoch)
            .map_err(|e| format!("rebuilding the batch at offset {base}: {e}"))?;
        if before > 0 && self.out.len() > self.max_bytes {
            self.out.truncate(before);
            self.full = true;
            return Ok(());
        }
        self.written_bytes = self.out.len();
        self.record_count += count;
        self.written_end = Some(LogOffset(last.0 + 1));
        Ok(())
    }
}

impl RowSink for WireWriter {
    type Batches = Bytes;

    fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn expect_offsets(&mut self, allowed: Range<u64>) {
        self.order.expect(allowed);
    }

    fn push(&mut self, _rb: &RecordBatch, cols: &Columns<'_>) -> Result<(), String> {
        self.push_columns(cols)
    }

    fn is_full(&self) -> bool {
        self.full
    }

    fn finish(mut self) -> Result<SinkOutput<Bytes>, String> {
        if !self.full {
            self.seal()?;
        }
        Ok(SinkOutput {
            batches: Bytes::from(self.out),
            record_count: self.record_count,
            next_offset: self.written_end,
            full: self.full,
        })
    }
}
