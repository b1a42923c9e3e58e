//! Reading a cold segment with ranged GETs.
//!
//! A fetch at offset `o` must not download a whole segment. [`ColdReader`] reads the Parquet
//! footer once per object (suffix GET, then cached in a bounded LRU), uses the `offset`
//! min/max statistics of each row group to find the first one that can hold `o`, and fetches
//! only the byte ranges of the row groups needed to fill `max_bytes` (one `get_ranges` call).
//! The rows go from the Arrow columns straight into hot-format batches (`codec::wire`), so
//! the gateway serves cold and hot data in the same wire format, and decoded row groups stay
//! in memory ([`crate::decoded`]) for the next reader.
//!
//! Failure policy: a store failure is returned as a retriable [`ColdError::Store`]; content
//! that contradicts the footer or the manifest (rows outside the segment or row-group range,
//! offsets not increasing, an unknown schema) is [`ColdError::Corrupt`]. Wrong data is never
//! returned.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::{Buf, Bytes};
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use pyralog_types::{LogOffset, Record, TimestampMicros};

use tracing::debug;

use crate::cache::ChunkCache;
use crate::codec::{
    check_schema_version, decode_groups_arrow, decode_row_groups, ColumnSlicer, Columns, RowSink,
    WireWriter, COL_OFFSET, COL_TIMESTAMP,
};
use crate::decoded::{DecodePool, DecodedCache, DecodedGroup, GroupKey};
use crate::error::ColdError;
use crate::lru::Lru;
use crate::manifest::ColdSegment;

/// Bytes of an object's head fetched together with its footer when a reader enters it.
const FIRST_WINDOW: u64 = 1024 * 1024;

/// First guess of the footer size; one more GET if the footer is larger.
const FOOTER_GUESS: u64 = 64 * 1024;

/// The answer to a cold read: hot-format batches (`B = Bytes`, whole batches back to back)
/// or Arrow record batches (`B = Vec<RecordBatch>`, slices of the decoded row groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdRead<B = Bytes> {
    pub batches: B,
    /// The offset to read next (past the last returned record, or past the segment).
    pub next_offset: LogOffset,
    pub record_count: usize,
}

/// What the footer of one object tells the reader.
#[derive(Debug)]
struct Footer {
    meta: ArrowReaderMetadata,
    groups: Vec<Group>,
}

#[derive(Debug, Clone)]
struct Group {
    offsets: Range<u64>, // min..=max as min..max+1
    max_timestamp: Option<TimestampMicros>,
    bytes: Range<u64>,
    uncompressed: u64,
}

/// How far ahead of a sequential reader row groups are fetched into the cache: at least
/// `groups` row groups and at least `bytes` of Parquet (`groups = 0` turns read-ahead off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readahead {
    pub groups: usize,
    pub bytes: u64,
}

/// Reads cold segments; shareable across tasks.
#[derive(Debug)]
pub struct ColdReader {
    store: Arc<dyn ObjectStore>,
    footers: Mutex<Lru<(String, u64), Arc<Footer>>>,
    max_batch_bytes: usize,
    cache: Option<Arc<ChunkCache>>,
    readahead: Readahead,
    /// Cache keys of read-ahead fetches under way (not fetched twice).
    in_flight: Arc<Mutex<std::collections::HashSet<String>>>,
    decoded: Option<DecodedCache>,
    pool: DecodePool,
}

impl ColdReader {
    /// A reader caching up to 256 footers and rebuilding batches of up to 256 KiB.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ColdReader {
            store,
            footers: Mutex::new(Lru::new(256)),
            max_batch_bytes: 256 * 1024,
            cache: None,
            readahead: Readahead::default(),
            in_flight: Arc::default(),
            decoded: None,
            pool: DecodePool::new(1),
        }
    }

    /// Lets up to `n` reads decode at once (default 1: one core's worth for cold catch-up,
    /// whatever the number of cold readers).
    pub fn with_decode_concurrency(mut self, n: usize) -> Self {
        self.pool = DecodePool::new(n);
        self
    }

    /// Serves row groups from `cache` when it has them, and keeps a read-ahead window of
    /// row groups past every read in it, fetched in the background (see [`Readahead`]).
    pub fn with_cache(mut self, cache: Arc<ChunkCache>, readahead: Readahead) -> Self {
        self.cache = Some(cache);
        self.readahead = readahead;
        self
    }

    /// Keeps up to `bytes` of row groups decoded in memory, so a re-read skips the Parquet
    /// decode (see [`crate::decoded`]); 0 turns it off.
    pub fn with_decoded_cache(mut self, bytes: usize) -> Self {
        self.decoded = (bytes > 0).then(|| DecodedCache::new(bytes));
        self
    }

    pub fn with_footer_cache(mut self, entries: usize) -> Self {
        self.footers = Mutex::new(Lru::new(entries));
        self
    }

    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Reads records from `start` on, up to about `max_bytes` of batches (at least one batch
    /// when any record is left, so a consumer always makes progress).
    pub async fn read(
        &self,
        seg: &ColdSegment,
        start: LogOffset,
        max_bytes: usize,
    ) -> Result<ColdRead, ColdError> {
        let batch_bytes = self.max_batch_bytes.min(max_bytes.max(1));
        self.read_into(seg, start, WireWriter::new(start, batch_bytes, max_bytes))
            .await
    }

    /// [`ColdReader::read`] as Arrow record batches: zero-copy slices of the decoded row
    /// groups, with the record columns of [`crate::codec::arrow_schema`].
    pub async fn read_columns(
        &self,
        seg: &ColdSegment,
        start: LogOffset,
        max_bytes: usize,
    ) -> Result<ColdRead<Vec<RecordBatch>>, ColdError> {
        self.read_into(seg, start, ColumnSlicer::new(start, max_bytes))
            .await
    }

    /// Reads the rows from `start` on into `sink` (which stops at its `max_bytes`).
    pub(crate) async fn read_into<S: RowSink>(
        &self,
        seg: &ColdSegment,
        start: LogOffset,
        mut sink: S,
    ) -> Result<ColdRead<S::Batches>, ColdError> {
        let past_segment = LogOffset(seg.last_offset.0.saturating_add(1).max(start.0));
        let empty = || ColdRead {
            batches: S::Batches::default(),
            next_offset: past_segment,
            record_count: 0,
        };
        if start > seg.last_offset {
            return Ok(empty());
        }
        let footer = self.footer(seg, Some(start)).await?;
        let Some(first) = footer.groups.iter().position(|g| g.offsets.end > start.0) else {
            return Ok(empty());
        };
        let max_bytes = sink.max_bytes();
        // Row groups to fetch: enough uncompressed bytes to fill max_bytes, at least one.
        let mut chosen = vec![first];
        let mut planned = footer.groups[first].uncompressed;
        for (i, g) in footer.groups.iter().enumerate().skip(first + 1) {
            if planned >= max_bytes as u64 {
                break;
            }
            planned += g.uncompressed;
            chosen.push(i);
        }
        // With decode-ahead (a decoded cache fed in the background, see `ahead.rs`), a read
        // decodes at most one row group itself, so the first records of an object come after
        // one group's decode, not `max_bytes` of them; the following groups are decoded while
        // the consumer takes this answer.
        let ahead = self.decoded.is_some() && self.cache.is_some();
        let group_key = |g: usize| -> GroupKey { (seg.key.clone(), seg.size_bytes, g) };
        let ready = |g: usize| {
            self.decoded
                .as_ref()
                .is_some_and(|c| c.is_ready(&group_key(g)))
        };
        if ahead {
            // Up to the first group not ready, and the ready ones right after it.
            if let Some(at) = chosen.iter().position(|&g| !ready(g)) {
                let end = chosen[at + 1..]
                    .iter()
                    .position(|&g| !ready(g))
                    .map_or(chosen.len(), |p| at + 1 + p);
                chosen.truncate(end);
            }
        }
        // Groups no one has decoded: their bytes in one call (chunk cache, then ranged GETs).
        let unready: Vec<usize> = chosen.iter().copied().filter(|&g| !ready(g)).collect();
        let window = if unready.is_empty() {
            None
        } else {
            Some(self.fetch_window(seg, &footer, &unready).await?)
        };
        let next_group = chosen.last().map_or(0, |&l| l + 1);
        self.read_ahead(seg, &footer, next_group);
        let mut decoded = Vec::with_capacity(chosen.len());
        for &g in &chosen {
            let bytes = window.clone().filter(|_| unready.contains(&g));
            decoded.push(self.group(seg, &footer, g, bytes).await?);
        }
        if ahead {
            self.decode_ahead(seg, &footer, next_group, max_bytes);
        }
        let read_all = chosen.last() == Some(&(footer.groups.len() - 1));
        let what = seg.key.clone();
        let seg_range = seg.base_offset.0..seg.last_offset.0.saturating_add(1);
        self.pool
            .run(move || {
                for (&g, group) in chosen.iter().zip(&decoded) {
                    let offsets = &footer.groups[g].offsets;
                    sink.expect_offsets(
                        offsets.start.max(seg_range.start)..offsets.end.min(seg_range.end),
                    );
                    for rb in group.iter() {
                        let cols = Columns::of(rb).map_err(|r| ColdError::corrupt(&what, r))?;
                        sink.push(rb, &cols)
                            .map_err(|r| ColdError::corrupt(&what, r))?;
                        if sink.is_full() {
                            break;
                        }
                    }
                    if sink.is_full() {
                        break;
                    }
                }
                let out = sink.finish().map_err(|r| ColdError::corrupt(&what, r))?;
                let next = match out.next_offset {
                    Some(n) if !read_all || out.full => n,
                    _ => past_segment,
                };
                Ok(ColdRead {
                    batches: out.batches,
                    next_offset: next,
                    record_count: out.record_count,
                })
            })
            .await
    }

    /// Row group `g` decoded: from memory, or decoded from `window` (or bytes fetched now),
    /// once however many readers ask at the same time.
    async fn group(
        &self,
        seg: &ColdSegment,
        footer: &Arc<Footer>,
        g: usize,
        window: Option<Window>,
    ) -> Result<DecodedGroup, ColdError> {
        let decode = async {
            let window = match window {
                Some(w) => w,
                None => self.fetch_window(seg, footer, &[g]).await?,
            };
            decode_group(&self.pool, window, footer.clone(), g, seg.key.clone()).await
        };
        match &self.decoded {
            Some(cache) => {
                cache
                    .get_or_decode((seg.key.clone(), seg.size_bytes, g), decode)
                    .await
            }
            None => decode.await,
        }
    }

    /// The first offset in the segment whose timestamp is `>= ts`, reading one row group.
    pub async fn offset_for_timestamp(
        &self,
        seg: &ColdSegment,
        ts: TimestampMicros,
    ) -> Result<Option<LogOffset>, ColdError> {
        let footer = self.footer(seg, None).await?;
        for (i, g) in footer.groups.iter().enumerate() {
            if g.max_timestamp.is_some_and(|m| m < ts) {
                continue;
            }
            let records = self.fetch_groups(seg, &footer, &[i]).await?;
            if let Some(r) = records.iter().find(|r| r.timestamp >= ts) {
                return Ok(Some(r.offset));
            }
        }
        Ok(None)
    }

    /// Fetches and decodes row groups, checking rows against the footer and the manifest.
    async fn fetch_groups(
        &self,
        seg: &ColdSegment,
        footer: &Arc<Footer>,
        chosen: &[usize],
    ) -> Result<Vec<Record>, ColdError> {
        let window = self.fetch_window(seg, footer, chosen).await?;
        let (seg, footer, chosen) = (seg.clone(), footer.clone(), chosen.to_vec());
        self.pool
            .run(move || decode_checked(window, &seg, &footer, &chosen))
            .await
    }

    /// The bytes of the chosen row groups (cache first, then one ranged-GET call).
    async fn fetch_window(
        &self,
        seg: &ColdSegment,
        footer: &Footer,
        chosen: &[usize],
    ) -> Result<Window, ColdError> {
        let ranges: Vec<Range<u64>> = chosen
            .iter()
            .map(|&i| footer.groups[i].bytes.clone())
            .collect();
        let pieces = self.get_ranges(seg, &ranges).await?;
        Ok(Window {
            file_len: seg.size_bytes,
            pieces: ranges.iter().map(|r| r.start).zip(pieces).collect(),
        })
    }

    /// The bytes of `ranges` of the segment's object: from the cache where it has them, the
    /// rest with one ranged-GET call (whose answers then go into the cache).
    async fn get_ranges(
        &self,
        seg: &ColdSegment,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, ColdError> {
        let mut pieces: Vec<Option<Bytes>> = vec![None; ranges.len()];
        if let Some(cache) = &self.cache {
            for (piece, r) in pieces.iter_mut().zip(ranges) {
                *piece = cache
                    .get(&ChunkCache::key(&seg.key, seg.size_bytes, r.start, r.end))
                    .await;
            }
        }
        let missing: Vec<Range<u64>> = ranges
            .iter()
            .zip(&pieces)
            .filter(|(_, p)| p.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        if !missing.is_empty() {
            let fetched = fetch_exact(self.store.as_ref(), seg, &missing).await?;
            let mut fetched = fetched.into_iter();
            for (piece, r) in pieces.iter_mut().zip(ranges) {
                if piece.is_none() {
                    let b = fetched.next().unwrap_or_default();
                    if let Some(cache) = &self.cache {
                        let key = ChunkCache::key(&seg.key, seg.size_bytes, r.start, r.end);
                        cache.insert(key, b.clone());
                    }
                    *piece = Some(b);
                }
            }
        }
        Ok(pieces.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The object's footer (cached). `entering` is where a reader starts in the object, if
    /// one does: see [`ColdReader::open_object`].
    async fn footer(
        &self,
        seg: &ColdSegment,
        entering: Option<LogOffset>,
    ) -> Result<Arc<Footer>, ColdError> {
        let cache_key = (seg.key.clone(), seg.size_bytes);
        if let Some(f) = self.footers.lock().get(&cache_key) {
            return Ok(f);
        }
        let f = Arc::new(self.open_object(seg, entering).await?);
        self.footers.lock().insert(cache_key, Arc::clone(&f));
        Ok(f)
    }

    /// Reads an object's footer and, in the same round trip, the bytes a reader entering it
    /// needs first, so the first record of an object costs one round trip, not two:
    /// - an object within the read-ahead window is one GET of all of it;
    /// - a reader entering at the object's first offset gets the footer and the object's
    ///   first MiB as two GETs sent at once (the first row group starts right after the
    ///   file's magic bytes, so no footer is needed to find it);
    /// - a seek into the middle reads the footer, then the row group (two round trips).
    ///
    /// Row groups wholly inside the fetched bytes go into the chunk cache, where the read
    /// that follows finds them. Without a chunk cache only the footer is read.
    async fn open_object(
        &self,
        seg: &ColdSegment,
        entering: Option<LogOffset>,
    ) -> Result<Footer, ColdError> {
        let window = match &self.cache {
            Some(_) if self.readahead.groups > 0 => self.readahead.bytes,
            _ => 0,
        };
        let size = seg.size_bytes;
        if window > 0 && size <= window.max(FOOTER_GUESS) {
            let all = fetch_one(self.store.as_ref(), seg, 0..size).await?;
            let footer = match parse_footer(seg, &all)? {
                Parsed::Footer(f) => f,
                Parsed::NeedMore(n) => {
                    return Err(ColdError::corrupt(
                        &seg.key,
                        format!("footer needs {n} bytes, more than the object's {size}"),
                    ))
                }
            };
            self.cache_groups(seg, &footer, 0, &all);
            return Ok(footer);
        }
        // Only the object's head: the first read needs one row group, and the read-ahead
        // that follows it fetches the rest of the window in the background.
        let prefix = (window > 0 && entering.is_some_and(|o| o <= seg.base_offset))
            .then(|| 0..window.min(FIRST_WINDOW).min(size));
        let first_window = async {
            match prefix {
                Some(r) => Some(fetch_one(self.store.as_ref(), seg, r).await),
                None => None,
            }
        };
        let (footer, first) = futures::join!(self.load_footer(seg), first_window);
        let footer = footer?;
        match first {
            Some(Ok(bytes)) => self.cache_groups(seg, &footer, 0, &bytes),
            Some(Err(e)) => debug!(key = %seg.key, error = %e, "first window failed"),
            None => {}
        }
        Ok(footer)
    }

    /// Puts the row groups lying wholly inside `bytes` (which start at file offset `at`) into
    /// the chunk cache, each as its own copy (a slice would keep the whole buffer alive).
    fn cache_groups(&self, seg: &ColdSegment, footer: &Footer, at: u64, bytes: &Bytes) {
        let Some(cache) = &self.cache else {
            return;
        };
        let end = at + bytes.len() as u64;
        for g in &footer.groups {
            if g.bytes.start >= at && g.bytes.end <= end {
                let piece = &bytes[(g.bytes.start - at) as usize..(g.bytes.end - at) as usize];
                let key = ChunkCache::key(&seg.key, seg.size_bytes, g.bytes.start, g.bytes.end);
                cache.insert(key, Bytes::copy_from_slice(piece));
            }
        }
    }

    async fn load_footer(&self, seg: &ColdSegment) -> Result<Footer, ColdError> {
        let path = seg.path();
        let size = seg.size_bytes;
        let mut want = size.min(match seg.footer_bytes {
            0 => FOOTER_GUESS,
            known => known,
        });
        loop {
            let tail = self
                .store
                .get_range(&path, size - want..size)
                .await
                .map_err(|e| ColdError::store("get", &path, e))?;
            match parse_footer(seg, &tail)? {
                Parsed::Footer(f) => return Ok(f),
                Parsed::NeedMore(n) if n > want && n <= size => want = n,
                Parsed::NeedMore(n) => {
                    return Err(ColdError::corrupt(
                        &seg.key,
                        format!("footer needs {n} bytes of a {size}-byte object"),
                    ))
                }
            }
        }
    }
}

/// What the last bytes of an object tell: its footer, or how many bytes the footer needs.
enum Parsed {
    Footer(Footer),
    NeedMore(u64),
}

/// Parses the footer from `tail`, the object's last bytes (or all of it), and checks every
/// row group's statistics and byte range.
fn parse_footer(seg: &ColdSegment, tail: &Bytes) -> Result<Parsed, ColdError> {
    let size = seg.size_bytes;
    let corrupt = |e: &dyn std::fmt::Display| ColdError::corrupt(&seg.key, e);
    let meta = {
        let mut parser = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
        match parser.try_parse_sized(tail, size) {
            Ok(()) => parser.finish().map_err(|e| corrupt(&e))?,
            Err(ParquetError::NeedMoreData(n)) => return Ok(Parsed::NeedMore(n as u64)),
            Err(e) => return Err(corrupt(&e)),
        }
    };
    check_schema_version(&meta, &seg.key)?;
    let meta = ArrowReaderMetadata::try_new(Arc::new(meta), ArrowReaderOptions::new())
        .map_err(|e| corrupt(&e))?;
    let mut groups = Vec::with_capacity(meta.metadata().num_row_groups());
    for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
        let Some(Statistics::Int64(s)) = rg.column(COL_OFFSET).statistics() else {
            return Err(corrupt(&format!("row group {i} has no offset statistics")));
        };
        let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) else {
            return Err(corrupt(&format!("row group {i} has no offset min/max")));
        };
        let max_timestamp = match rg.column(COL_TIMESTAMP).statistics() {
            Some(Statistics::Int64(t)) => t.max_opt().copied(),
            _ => None,
        };
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for c in rg.columns() {
            // `ColumnChunkMetaData::byte_range`, without its panic on the negative start or
            // length a damaged footer can hold (found by the `cold_read` fuzz target).
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(c.compressed_size()))
            else {
                return Err(corrupt(&format!(
                    "row group {i} has a column chunk at a negative offset or of negative size"
                )));
            };
            lo = lo.min(start);
            hi = hi.max(start.saturating_add(len));
        }
        let (min, max) = (min as u64, max as u64);
        let sane = min <= max
            && lo < hi
            && hi <= size
            && groups.last().is_none_or(|p: &Group| p.offsets.end <= min);
        if !sane {
            return Err(corrupt(&format!(
                "row group {i} has inconsistent statistics or byte range"
            )));
        }
        groups.push(Group {
            offsets: min..max.saturating_add(1),
            max_timestamp,
            bytes: lo..hi,
            uncompressed: u64::try_from(rg.total_byte_size()).unwrap_or(0),
        });
    }
    Ok(Parsed::Footer(Footer { meta, groups }))
}

/// One ranged GET of exactly `range`.
async fn fetch_one(
    store: &dyn ObjectStore,
    seg: &ColdSegment,
    range: Range<u64>,
) -> Result<Bytes, ColdError> {
    let mut pieces = fetch_exact(store, seg, std::slice::from_ref(&range)).await?;
    Ok(pieces.pop().unwrap_or_default())
}

/// One ranged-GET call for `ranges`; every answer must have exactly the asked length.
async fn fetch_exact(
    store: &dyn ObjectStore,
    seg: &ColdSegment,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>, ColdError> {
    let path = seg.path();
    let pieces = store
        .get_ranges(&path, ranges)
        .await
        .map_err(|e| ColdError::store("get", &path, e))?;
    if pieces.len() != ranges.len()
        || pieces
            .iter()
            .zip(ranges)
            .any(|(p, r)| p.len() as u64 != r.end - r.start)
    {
        return Err(ColdError::store(
            "get",
            &path,
            object_store::Error::Generic {
                store: "cold-reader",
                source: "short ranged read".into(),
            },
        ));
    }
    Ok(pieces)
}

/// Rows must lie inside their row group's statistics and the manifest's range, in order.
/// Decodes the chosen row groups from `window` and checks them against footer and manifest.
fn decode_checked(
    window: Window,
    seg: &ColdSegment,
    footer: &Footer,
    chosen: &[usize],
) -> Result<Vec<Record>, ColdError> {
    let records = decode_row_groups(window, &footer.meta, chosen.to_vec(), &seg.key)?;
    check_rows(seg, footer, chosen, &records)?;
    Ok(records)
}

fn check_rows(
    seg: &ColdSegment,
    footer: &Footer,
    chosen: &[usize],
    records: &[Record],
) -> Result<(), ColdError> {
    let lo = chosen
        .first()
        .map_or(0, |&i| footer.groups[i].offsets.start);
    let hi = chosen.last().map_or(0, |&i| footer.groups[i].offsets.end);
    let mut prev: Option<LogOffset> = None;
    for r in records {
        let o = r.offset;
        if !seg.contains(o) || o.0 < lo || o.0 >= hi || prev.is_some_and(|p| p >= o) {
            return Err(ColdError::corrupt(
                &seg.key,
                format!("row with offset {o} is out of place"),
            ));
        }
        prev = Some(o);
    }
    Ok(())
}

/// The parts of a file fetched by ranged GETs, addressed by file offsets.
#[derive(Clone)]
struct Window {
    file_len: u64,
    pieces: Vec<(u64, Bytes)>,
}

impl Window {
    fn slice(&self, start: u64, len: Option<usize>) -> parquet::errors::Result<Bytes> {
        for (at, b) in &self.pieces {
            let end = at + b.len() as u64;
            // The piece must hold at least one byte at `start` (or the whole requested
            // length), so a range ending exactly where the next begins is never picked.
            let need = len.map_or(1, |n| n as u64);
            if *at <= start && start.saturating_add(need) <= end {
                let from = (start - at) as usize;
                let to = match len {
                    Some(n) => from.checked_add(n).filter(|&t| t <= b.len()),
                    None => Some(b.len()),
                };
                if let Some(to) = to {
                    return Ok(b.slice(from..to));
                }
            }
        }
        Err(ParquetError::General(format!(
            "bytes at {start} (+{len:?}) were not fetched"
        )))
    }
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// Decodes row group `g` from `window` on the pool.
async fn decode_group(
    pool: &DecodePool,
    window: Window,
    footer: Arc<Footer>,
    g: usize,
    what: String,
) -> Result<DecodedGroup, ColdError> {
    pool.run(move || {
        decode_groups_arrow(window, &footer.meta, &[g], &what)?
            .pop()
            .map(DecodedGroup::from)
            .ok_or_else(|| ColdError::corrupt(&what, format!("row group {g} decoded to nothing")))
    })
    .await
}

mod ahead;
#[cfg(test)]
mod tests;
