//! Where the rows of a cold read go, and the checks every row passes on the way.
//!
//! A cold read decodes row groups into Arrow columns once and then hands the rows to a
//! [`RowSink`]: [`super::WireWriter`] rebuilds hot-format batches (the `BATCHES` and
//! `RECORDS` fetch formats), [`super::ColumnSlicer`] keeps the Arrow columns as they are
//! (the `ARROW` format). Both apply the same rule to what they are given, through
//! [`RowOrder`]: a row's offset lies inside its segment's and row group's range and is
//! larger than the previous row's. Anything else is damage, never data.

use std::ops::Range;

use arrow_array::RecordBatch;
use pyralog_types::LogOffset;

use super::Columns;

/// What a sink hands back when the read is over.
#[derive(Debug)]
pub(crate) struct SinkOutput<T> {
    pub(crate) batches: T,
    pub(crate) record_count: usize,
    /// One past the last record written (`None`: nothing written).
    pub(crate) next_offset: Option<LogOffset>,
    /// Whether rows were left out because they would have crossed the read's `max_bytes`.
    pub(crate) full: bool,
}

/// Takes the rows of decoded Arrow batches, in offset order, until it is full.
pub(crate) trait RowSink: Send + 'static {
    type Batches: Default + Send + 'static;

    /// About how many bytes of output the sink takes (it always takes at least one row).
    fn max_bytes(&self) -> usize;

    /// Sets the offsets the rows pushed next may have (their row group's, within the
    /// segment's); a row outside is damage.
    fn expect_offsets(&mut self, allowed: Range<u64>);

    /// Takes the rows of `rb` (whose checked columns are `cols`) until the sink is full.
    fn push(&mut self, rb: &RecordBatch, cols: &Columns<'_>) -> Result<(), String>;

    /// Whether the output has reached its `max_bytes`: further rows are not needed.
    fn is_full(&self) -> bool;

    fn finish(self) -> Result<SinkOutput<Self::Batches>, String>;
}

/// The order check shared by every sink.
#[derive(Debug)]
pub(crate) struct RowOrder {
    allowed: Range<u64>,
    previous: Option<LogOffset>,
}

impl Default for RowOrder {
    fn default() -> Self {
        RowOrder {
            allowed: 0..u64::MAX,
            previous: None,
        }
    }
}

impl RowOrder {
    pub(crate) fn expect(&mut self, allowed: Range<u64>) {
        self.allowed = allowed;
    }

    /// Accepts `offset` as the next row, or says why it is out of place.
    pub(crate) fn check(&mut self, offset: LogOffset) -> Result<(), String> {
        if !self.allowed.contains(&offset.0) || self.previous.is_some_and(|p| p >= offset) {
            return Err(format!("row with offset {offset} is out of place"));
        }
        self.previous = Some(offset);
        Ok(())
    }
}
