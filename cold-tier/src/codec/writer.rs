//! Writing a segment file one row group at a time.
//!
//! [`SegmentWriter`] takes records in offset order and writes a row group to its sink each
//! time [`EncodeOptions::row_group_bytes`] of payload have arrived, so what it holds is at
//! most one row group (the records, their Arrow columns and the encoded pages) whatever the
//! segment's size. The segment's metadata (offset, time and epoch ranges) is only known at the
//! end, so it is accumulated as rows arrive and written into the footer by
//! [`SegmentWriter::finish`]: the footer is the last thing Parquet writes.
//!
//! The sink is any [`Write`]: a `Vec<u8>` for a small compacted segment, or the part sink of
//! a streaming upload ([`crate::upload::part_channel`]) when the archiver tiers a segment.

use std::io::Write;

use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use pyralog_types::{LogOffset, Record};

use super::ledger::{ledger_schema, LedgerState};
use super::{
    arrow_schema, meta_keys, metrics_schema, to_record_batch, writer_properties, EncodeOptions,
    EpochStart, MetricRow, SegmentMeta, SCHEMA_VERSION,
};
use crate::error::ColdError;

/// Fixed cost of a row in the row-group size estimate (offset, epoch, timestamp, list offsets).
const ROW_OVERHEAD_BYTES: usize = 24;

/// A sink that counts what goes through it: the footer's size is the file's size minus
/// where the data ended.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one segment file to `W`, a row group at a time. See the module documentation.
pub struct SegmentWriter<W: Write + Send> {
    writer: ArrowWriter<Counted<W>>,
    opts: EncodeOptions,
    /// Whether rows carry the metric columns of a downsampled segment.
    with_metrics: bool,
    pending: Vec<Record>,
    pending_metrics: Vec<Option<MetricRow>>,
    pending_bytes: usize,
    meta: MetaBuilder,
    /// The hash chain and Merkle tree of a ledger log's segment (see `codec::ledger`).
    ledger: Option<LedgerState>,
}

impl<W: Write + Send> std::fmt::Debug for SegmentWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("with_metrics", &self.with_metrics)
            .field("pending_rows", &self.pending.len())
            .field("pending_bytes", &self.pending_bytes)
            .field("records", &self.meta.count)
            .field("ledger", &self.ledger.is_some())
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> SegmentWriter<W> {
    /// A writer of plain record segments ([`arrow_schema`]).
    pub fn new(sink: W, opts: &EncodeOptions) -> Result<Self, ColdError> {
        Self::build(sink, opts, false, None)
    }

    /// A writer of a ledger log's segment ([`super::ledger_schema`]): each row also gets the
    /// chain head through it, continuing from `chain_start` (the previous object's chain end,
    /// or the partition's genesis), and the footer gets the object's [`super::LedgerSeal`].
    pub fn with_ledger(
        sink: W,
        opts: &EncodeOptions,
        chain_start: pyralog_ledger::Hash,
    ) -> Result<Self, ColdError> {
        Self::with_ledger_version(
            sink,
            opts,
            chain_start,
            pyralog_ledger::ChainVersion::CURRENT,
        )
    }

    /// [`SegmentWriter::with_ledger`] for a log whose chain has the definition `version`
    /// (named in the seal, so verifiers replay it the same way).
    pub fn with_ledger_version(
        sink: W,
        opts: &EncodeOptions,
        chain_start: pyralog_ledger::Hash,
        version: pyralog_ledger::ChainVersion,
    ) -> Result<Self, ColdError> {
        Self::build(
            sink,
            opts,
            false,
            Some(LedgerState::new(chain_start, version)),
        )
    }

    /// A writer of downsampled segments ([`metrics_schema`]); rows go in with
    /// [`SegmentWriter::push_metric`].
    pub fn with_metrics(sink: W, opts: &EncodeOptions) -> Result<Self, ColdError> {
        Self::build(sink, opts, true, None)
    }

    fn build(
        sink: W,
        opts: &EncodeOptions,
        with_metrics: bool,
        ledger: Option<LedgerState>,
    ) -> Result<Self, ColdError> {
        let schema = match (with_metrics, &ledger) {
            (true, _) => metrics_schema(),
            (false, Some(_)) => ledger_schema(),
            (false, None) => arrow_schema(),
        };
        let props = writer_properties(opts)?;
        let sink = Counted {
            inner: sink,
            written: 0,
        };
        let writer = ArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|e| ColdError::InvalidInput(format!("parquet writer: {e}")))?;
        Ok(SegmentWriter {
            writer,
            opts: opts.clone(),
            with_metrics,
            pending: Vec::new(),
            pending_metrics: Vec::new(),
            pending_bytes: 0,
            meta: MetaBuilder::default(),
            ledger,
        })
    }

    /// Adds a record. Offsets must increase and epochs must not decrease across calls.
    pub fn push(&mut self, record: Record) -> Result<(), ColdError> {
        if self.with_metrics {
            return self.push_metric(record, None);
        }
        self.meta.observe(&record)?;
        if let Some(ledger) = &mut self.ledger {
            ledger.observe(&record);
        }
        self.pending_bytes += record.payload_len() + ROW_OVERHEAD_BYTES;
        self.pending.push(record);
        self.cut_if_full()
    }

    /// Adds a row of a downsampled segment: a record and its bucket values (`None` for a raw
    /// record kept as it was).
    pub fn push_metric(
        &mut self,
        record: Record,
        metric: Option<MetricRow>,
    ) -> Result<(), ColdError> {
        if !self.with_metrics {
            return Err(ColdError::InvalidInput(
                "metric rows need a writer made with SegmentWriter::with_metrics".into(),
            ));
        }
        self.meta.observe(&record)?;
        self.pending_bytes += record.payload_len() + ROW_OVERHEAD_BYTES;
        self.pending.push(record);
        self.pending_metrics.push(metric);
        self.cut_if_full()
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u64 {
        self.meta.count
    }

    fn cut_if_full(&mut self) -> Result<(), ColdError> {
        if self.pending_bytes >= self.opts.row_group_bytes.max(1) {
            self.write_row_group()?;
        }
        Ok(())
    }

    /// Writes `records` (with their metric rows for a downsampled segment) as row groups
    /// cut by `row_group_bytes`, straight from the slice: the path of callers that already
    /// hold the whole segment (compaction), which would otherwise copy every record into the
    /// pending row group. Rows pushed before are written first.
    pub fn write_all(
        &mut self,
        records: &[Record],
        metrics: Option<&[Option<MetricRow>]>,
    ) -> Result<(), ColdError> {
        if metrics.is_some() != self.with_metrics
            || metrics.is_some_and(|m| m.len() != records.len())
        {
            return Err(ColdError::InvalidInput(format!(
                "{} metric rows for {} records in a {} segment",
                metrics.map_or(0, <[_]>::len),
                records.len(),
                if self.with_metrics {
                    "downsampled"
                } else {
                    "plain"
                }
            )));
        }
        self.write_row_group()?;
        let target = self.opts.row_group_bytes.max(1);
        let (mut start, mut bytes) = (0, 0);
        for (i, r) in records.iter().enumerate() {
            self.meta.observe(r)?;
            if let Some(ledger) = &mut self.ledger {
                ledger.observe(r);
            }
            bytes += r.payload_len() + ROW_OVERHEAD_BYTES;
            if bytes >= target || i + 1 == records.len() {
                self.write_rows(&records[start..=i], metrics.map(|m| &m[start..=i]))?;
                (start, bytes) = (i + 1, 0);
            }
        }
        Ok(())
    }

    fn write_row_group(&mut self) -> Result<(), ColdError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let metrics = std::mem::take(&mut self.pending_metrics);
        let with_metrics = self.with_metrics;
        self.write_rows(&rows, with_metrics.then_some(metrics.as_slice()))?;
        // Keep the buffers' capacity for the next row group.
        self.pending = rows;
        self.pending.clear();
        self.pending_metrics = metrics;
        self.pending_metrics.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes `records` as one row group.
    fn write_rows(
        &mut self,
        records: &[Record],
        metrics: Option<&[Option<MetricRow>]>,
    ) -> Result<(), ColdError> {
        let mut rb = to_record_batch(records, metrics)?;
        if let Some(ledger) = &mut self.ledger {
            rb = ledger.append_column(rb)?;
        }
        self.writer
            .write(&rb)
            .and_then(|()| self.writer.flush())
            .map_err(|e| ColdError::InvalidInput(format!("parquet write: {e}")))
    }

    /// Writes the last row group and the footer (with the segment's metadata) and returns
    /// the sink and what the file holds. A segment needs at least one record.
    pub fn finish(mut self) -> Result<(W, SegmentMeta), ColdError> {
        self.write_row_group()?;
        let mut meta = self.meta.build()?;
        meta.ledger = self.ledger.as_ref().map(LedgerState::seal);
        for kv in footer_metadata(&meta)? {
            self.writer.append_key_value_metadata(kv);
        }
        let close = |e: parquet::errors::ParquetError| {
            ColdError::InvalidInput(format!("parquet close: {e}"))
        };
        self.writer.flush().map_err(close)?;
        let data_end = self.writer.bytes_written() as u64;
        let sink = self.writer.into_inner().map_err(close)?;
        meta.footer_bytes = sink.written.saturating_sub(data_end);
        Ok((sink.inner, meta))
    }
}

/// The file key-value metadata that lets a node rebuild a manifest entry from the object.
fn footer_metadata(meta: &SegmentMeta) -> Result<Vec<KeyValue>, ColdError> {
    let epochs = serde_json::to_string(&meta.epochs)
        .map_err(|e| ColdError::InvalidInput(format!("epochs metadata: {e}")))?;
    let kv = |k: &str, v: String| KeyValue::new(k.to_owned(), v);
    let mut entries = vec![
        kv(meta_keys::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
        kv(meta_keys::BASE_OFFSET, meta.base_offset.0.to_string()),
        kv(meta_keys::LAST_OFFSET, meta.last_offset.0.to_string()),
        kv(meta_keys::MIN_TIMESTAMP, meta.min_timestamp.to_string()),
        kv(meta_keys::MAX_TIMESTAMP, meta.max_timestamp.to_string()),
        kv(meta_keys::RECORD_COUNT, meta.record_count.to_string()),
        kv(meta_keys::EPOCHS, epochs),
    ];
    if let Some(seal) = &meta.ledger {
        use pyralog_ledger::to_hex;
        entries.extend([
            kv(meta_keys::LEDGER_CHAIN_START, to_hex(&seal.chain_start)),
            kv(meta_keys::LEDGER_CHAIN_END, to_hex(&seal.chain_end)),
            kv(meta_keys::LEDGER_MERKLE_ROOT, to_hex(&seal.merkle_root)),
            kv(
                meta_keys::LEDGER_CHAIN_VERSION,
                seal.chain_version.to_string(),
            ),
        ]);
    }
    Ok(entries)
}

/// The segment's metadata, accumulated record by record, checking the order rules.
#[derive(Debug, Default)]
struct MetaBuilder {
    first: Option<LogOffset>,
    last: Option<(LogOffset, pyralog_types::Epoch)>,
    min_ts: i64,
    max_ts: i64,
    count: u64,
    epochs: Vec<EpochStart>,
}

impl MetaBuilder {
    fn observe(&mut self, r: &Record) -> Result<(), ColdError> {
        match self.last {
            None => {
                self.first = Some(r.offset);
                self.min_ts = r.timestamp;
                self.max_ts = r.timestamp;
                self.epochs.push(EpochStart {
                    epoch: r.epoch,
                    start_offset: r.offset,
                });
            }
            Some((offset, epoch)) => {
                if r.offset <= offset {
                    return Err(ColdError::InvalidInput(format!(
                        "offsets must increase: {offset} then {}",
                        r.offset
                    )));
                }
                if r.epoch < epoch {
                    return Err(ColdError::InvalidInput(format!(
                        "epochs must not decrease: {epoch} at {offset} then {} at {}",
                        r.epoch, r.offset
                    )));
                }
                if r.epoch != epoch {
                    self.epochs.push(EpochStart {
                        epoch: r.epoch,
                        start_offset: r.offset,
                    });
                }
                self.min_ts = self.min_ts.min(r.timestamp);
                self.max_ts = self.max_ts.max(r.timestamp);
            }
        }
        self.last = Some((r.offset, r.epoch));
        self.count += 1;
        Ok(())
    }

    fn build(self) -> Result<SegmentMeta, ColdError> {
        match (self.first, self.last) {
            (Some(base_offset), Some((last_offset, _))) => Ok(SegmentMeta {
                base_offset,
                last_offset,
                min_timestamp: self.min_ts,
                max_timestamp: self.max_ts,
                record_count: self.count,
                epochs: self.epochs,
                footer_bytes: 0,
                ledger: None,
            }),
            _ => Err(ColdError::InvalidInput(
                "a segment needs at least one record".into(),
            )),
        }
    }
}
