//! W5/W6 at the cold-tier layer: tiering throughput and cold catch-up reads against the same
//! object store, each next to a raw `object_store` baseline measured in the same run.
//!
//! Steps, all on one store and one prefix:
//! 1. JSON-like records are built into hot-format batches (their size is the hot-tier size);
//! 2. **tiering**: each segment is encoded to Parquet on one thread and uploaded, then
//!    committed to a manifest (records/s and hot MB/s per second of wall time on one core);
//! 3. **raw GET**: every object is read whole, sequentially (the baseline for reads), and a
//!    tiny ranged GET is timed (one round trip);
//! 4. **cold read, empty cache**: a consumer reads the whole partition from offset 0 through
//!    [`ColdPartition::read`] with a fresh read cache; the time to the first record is noted;
//! 5. **cold read, warm cache**: the same again, served from the cache.
//! 6. **many readers**: the same records tiered into `readers` partitions, then one consumer
//!    per partition, all at once, through one reader and a fresh cache with the node's
//!    default sizes (and one decode thread, the node's default on two cores): aggregate MB/s, and the process's resident memory while they read next
//!    to the memory the configuration allows.
//!
//! Requests are counted by wrapping the store ([`FaultyStore`] with no faults planned).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_cold_tier::{
    encode_records, upload_segment, CacheSettings, ChunkCache, ColdPartition, ColdReader,
    EncodeOptions, FaultyStore, Layout, ManifestStore, UploadOptions,
};
use pyralog_types::batch::{split_batches, BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, Header, LogId, LogOffset, Record};
use serde::Serialize;

use crate::BenchError;

/// What to run.
#[derive(Debug, Clone)]
pub struct ColdOptions {
    pub store: Arc<dyn ObjectStore>,
    pub layout: Layout,
    pub records: u64,
    /// Records per segment (a segment is one Parquet object).
    pub segment_records: u64,
    /// Directory for the read cache's disk file.
    pub cache_dir: std::path::PathBuf,
    /// Concurrent consumers of step 6, one per partition (0 or 1 skips it).
    pub readers: usize,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct ColdReport {
    pub records: u64,
    pub segments: usize,
    pub hot_bytes: u64,
    pub parquet_bytes: u64,
    /// Parquet bytes ÷ hot-tier bytes of the same records.
    pub parquet_over_hot: f64,
    pub tiering_records_s: f64,
    pub tiering_hot_mb_s: f64,
    pub raw_get_mb_s: f64,
    /// Raw PUTs of objects of the same sizes (copies of the segments), sequential.
    pub raw_put_mb_s: f64,
    pub get_round_trip_ms: f64,
    pub cold_read_mb_s: f64,
    pub cold_read_hot_mb_s: f64,
    pub first_record_ms: f64,
    pub warm_read_mb_s: f64,
    pub warm_read_hot_mb_s: f64,
    pub cold_requests_per_gb: f64,
    /// cold read ÷ raw GET, both in Parquet bytes per second.
    pub r5_cold_over_raw_get: f64,
    pub warm_over_raw_get: f64,
    pub many: Option<ManyReaders>,
}

/// Step 6: concurrent cold consumers on different partitions.
#[derive(Debug, Clone, Serialize)]
pub struct ManyReaders {
    pub readers: usize,
    pub records: u64,
    /// Hot-equivalent MB/s of all consumers together, empty cache.
    pub hot_mb_s: f64,
    /// Largest growth of the process's resident memory while they read.
    pub rss_growth_mb: f64,
    /// What the configuration lets them hold: chunk-cache memory, decoded cache, and one
    /// read-ahead window per reader in flight.
    pub configured_mb: f64,
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// A JSON event like an application log or clickstream record.
fn event(i: u64) -> NewRecord {
    let value = format!(
        r#"{{"event_id":{i},"user":"user-{}","type":"{}","amount_cents":{},"country":"{}","ts":{},"session":"{:016x}"}}"#,
        i % 5000,
        ["click", "view", "purchase", "signup"][(i % 4) as usize],
        (i * 37) % 100_000,
        ["DE", "US", "FR", "JP", "BR"][(i % 5) as usize],
        1_700_000_000_000 + i,
        xxhash_rust::xxh3::xxh3_64(&(i / 20).to_le_bytes()),
    );
    NewRecord {
        timestamp: 1_700_000_000_000_000 + i as i64 * 100,
        key: Some(Bytes::from(format!("user-{}", i % 5000))),
        value: Some(Bytes::from(value)),
        headers: vec![Header {
            key: "source".into(),
            value: Bytes::from_static(b"bench"),
        }],
    }
}

/// Hot-format records of `[from, to)` (64 KiB batches, offsets assigned) and their size.
fn hot_segment(from: u64, to: u64) -> Result<(Vec<Record>, u64), BenchError> {
    let mut records = Vec::with_capacity((to - from) as usize);
    let mut hot_bytes = 0u64;
    let mut i = from;
    while i < to {
        let base = i;
        let mut b = BatchBuilder::new(Compression::None);
        while i < to && b.estimated_size() < 64 * 1024 {
            b.push(&event(i));
            i += 1;
        }
        let mut bytes = b
            .build()
            .map_err(|e| BenchError::Invalid(e.to_string()))?
            .to_vec();
        pyralog_types::batch::assign(&mut bytes, LogOffset(base), Epoch(1));
        hot_bytes += bytes.len() as u64;
        for batch in split_batches(Bytes::from(bytes)) {
            let batch = batch.map_err(|e| BenchError::Invalid(e.to_string()))?;
            records.extend(
                batch
                    .records()
                    .map_err(|e| BenchError::Invalid(e.to_string()))?,
            );
        }
    }
    Ok((records, hot_bytes))
}

/// Records per segment for segments of about `hot_bytes` in the hot tier's format (the
/// hot tier's default `segment_bytes` is 256 MiB: the objects a node archives by default).
pub fn records_per_segment(hot_bytes: u64) -> Result<u64, BenchError> {
    const SAMPLE: u64 = 1000;
    let (_, bytes) = hot_segment(0, SAMPLE)?;
    Ok((hot_bytes.saturating_mul(SAMPLE) / bytes.max(1)).max(1))
}

/// Runs steps 1-5 of the module doc.
pub async fn run(opts: &ColdOptions) -> Result<ColdReport, BenchError> {
    let invalid = |e: &dyn std::fmt::Display| BenchError::Invalid(e.to_string());
    let counting = Arc::new(FaultyStore::new(opts.store.clone()));
    let plan = counting.plan().clone();
    let store: Arc<dyn ObjectStore> = counting;
    let log = LogId::new("bench-cold").map_err(|e| invalid(&e))?;
    let manifests = ManifestStore::new(store.clone(), opts.layout.clone());
    let writer = ColdPartition::open(
        log.clone(),
        0,
        manifests.clone(),
        Arc::new(ColdReader::new(store.clone())),
    )
    .await
    .map_err(|e| invalid(&e))?;
    if writer.end_offset().is_some() {
        return Err(BenchError::Invalid(
            "the prefix already holds an archive; use an empty prefix".into(),
        ));
    }

    // 2. Tiering on one core: encode (this thread) + upload + commit, segment by segment.
    let mut hot_bytes = 0u64;
    let mut tiering_secs = 0.0;
    let mut from = 0u64;
    while from < opts.records {
        let to = (from + opts.segment_records).min(opts.records);
        let (records, hot) = hot_segment(from, to)?;
        hot_bytes += hot;
        let t = Instant::now();
        let encoded =
            encode_records(&records, &EncodeOptions::default()).map_err(|e| invalid(&e))?;
        let seg = upload_segment(
            store.as_ref(),
            &opts.layout,
            &log,
            0,
            &encoded,
            &UploadOptions::default(),
        )
        .await
        .map_err(|e| invalid(&e))?;
        writer.append_segment(seg).await.map_err(|e| invalid(&e))?;
        tiering_secs += t.elapsed().as_secs_f64();
        from = to;
    }
    let manifest = writer.manifest();
    let parquet_bytes: u64 = manifest.segments.iter().map(|s| s.size_bytes).sum();

    // 3. Raw GETs of the same objects, whole and sequential; and one round trip.
    let t = Instant::now();
    let mut bodies = Vec::with_capacity(manifest.segments.len());
    for s in &manifest.segments {
        let bytes = store
            .get(&s.path())
            .await
            .map_err(|e| invalid(&e))?
            .bytes()
            .await
            .map_err(|e| invalid(&e))?;
        bodies.push(bytes);
    }
    let raw_get_secs = t.elapsed().as_secs_f64();
    let got: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    // The PUT baseline: the same bytes written again under a scratch key, one at a time.
    let t = Instant::now();
    let mut put = 0u64;
    for (i, b) in bodies.into_iter().enumerate() {
        let key = opts
            .layout
            .prefix()
            .clone()
            .join("_bench_put")
            .join(format!("{i}").as_str());
        put += b.len() as u64;
        store
            .put(&key, object_store::PutPayload::from(b))
            .await
            .map_err(|e| invalid(&e))?;
    }
    let raw_put_mb_s = mb_s(put, t.elapsed().as_secs_f64());
    let mut rtts = Vec::new();
    if let Some(s) = manifest.segments.first() {
        for _ in 0..21 {
            let t = Instant::now();
            store
                .get_range(&s.path(), 0..8)
                .await
                .map_err(|e| invalid(&e))?;
            rtts.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    rtts.sort_by(f64::total_cmp);
    let get_round_trip_ms = rtts.get(rtts.len() / 2).copied().unwrap_or(0.0);

    // 4 and 5. A consumer from offset 0 through a fresh cache, then again warm.
    let settings = CacheSettings {
        memory_bytes: 256 << 20,
        disk_bytes: usize::try_from(parquet_bytes.saturating_mul(2)).unwrap_or(usize::MAX),
        // Room for the whole log decoded (about its hot size), so the warm pass measures a
        // re-read from decoded row groups.
        decoded_bytes: usize::try_from(hot_bytes.saturating_mul(2)).unwrap_or(usize::MAX),
        ..CacheSettings::default()
    };
    let cache = ChunkCache::open(&settings, opts.cache_dir.clone())
        .await
        .map_err(|e| invalid(&e))?;
    let reader = Arc::new(
        ColdReader::new(store.clone())
            .with_cache(cache, settings.readahead())
            .with_decoded_cache(settings.decoded_bytes),
    );
    let cold = ColdPartition::open(log, 0, manifests, reader)
        .await
        .map_err(|e| invalid(&e))?;
    plan.reset_stats();
    let (cold_secs, first_record_ms) = read_all(&cold, opts.records).await?;
    let cold_requests = plan.stats().gets;
    let (warm_secs, _) = read_all(&cold, opts.records).await?;

    let many = match opts.readers {
        0 | 1 => None,
        n => Some(many_readers(opts, n, hot_bytes).await?),
    };

    let cold_read_mb_s = mb_s(parquet_bytes, cold_secs);
    let raw_get_mb_s = mb_s(got, raw_get_secs);
    let warm_read_mb_s = mb_s(parquet_bytes, warm_secs);
    Ok(ColdReport {
        records: opts.records,
        segments: manifest.segments.len(),
        hot_bytes,
        parquet_bytes,
        parquet_over_hot: parquet_bytes as f64 / hot_bytes.max(1) as f64,
        tiering_records_s: opts.records as f64 / tiering_secs.max(1e-9),
        tiering_hot_mb_s: mb_s(hot_bytes, tiering_secs),
        raw_get_mb_s,
        raw_put_mb_s,
        get_round_trip_ms,
        cold_read_mb_s,
        cold_read_hot_mb_s: mb_s(hot_bytes, cold_secs),
        first_record_ms,
        warm_read_mb_s,
        warm_read_hot_mb_s: mb_s(hot_bytes, warm_secs),
        cold_requests_per_gb: cold_requests as f64 / (parquet_bytes as f64 / 1e9).max(1e-9),
        r5_cold_over_raw_get: cold_read_mb_s / raw_get_mb_s.max(1e-9),
        warm_over_raw_get: warm_read_mb_s / raw_get_mb_s.max(1e-9),
        many,
    })
}

/// Step 6 (module doc): `readers` partitions of `opts.records / readers` records each.
async fn many_readers(
    opts: &ColdOptions,
    readers: usize,
    hot_bytes: u64,
) -> Result<ManyReaders, BenchError> {
    let invalid = |e: &dyn std::fmt::Display| BenchError::Invalid(e.to_string());
    let per = (opts.records / readers as u64).max(1);
    let log = LogId::new("bench-cold-many").map_err(|e| invalid(&e))?;
    let manifests = ManifestStore::new(opts.store.clone(), opts.layout.clone());
    let settings = CacheSettings::default();
    let cache = ChunkCache::open(&settings, opts.cache_dir.join("many"))
        .await
        .map_err(|e| invalid(&e))?;
    let reader = Arc::new(
        ColdReader::new(opts.store.clone())
            .with_cache(cache, settings.readahead())
            .with_decoded_cache(settings.decoded_bytes),
    );
    let mut partitions = Vec::with_capacity(readers);
    for p in 0..readers as u32 {
        let cold = ColdPartition::open(log.clone(), p, manifests.clone(), reader.clone())
            .await
            .map_err(|e| invalid(&e))?;
        let mut from = 0u64;
        while from < per {
            let to = (from + opts.segment_records).min(per);
            let (records, _) = hot_segment(from, to)?;
            let encoded =
                encode_records(&records, &EncodeOptions::default()).map_err(|e| invalid(&e))?;
            let seg = upload_segment(
                opts.store.as_ref(),
                &opts.layout,
                &log,
                p,
                &encoded,
                &UploadOptions::default(),
            )
            .await
            .map_err(|e| invalid(&e))?;
            cold.append_segment(seg).await.map_err(|e| invalid(&e))?;
            from = to;
        }
        partitions.push(cold);
    }

    let pid = std::process::id();
    let before = crate::process::rss_bytes(pid).unwrap_or(0);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let now = crate::process::rss_bytes(pid).unwrap_or(0);
                peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let consumers: Vec<_> = partitions
        .into_iter()
        .map(|cold| tokio::spawn(async move { read_all(&cold, per).await }))
        .collect();
    for c in consumers {
        c.await
            .map_err(|e| BenchError::Invalid(format!("consumer task: {e}")))??;
    }
    let secs = t.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let configured = settings.memory_bytes as u64
        + settings.decoded_bytes as u64
        + readers as u64 * settings.readahead_bytes;
    // The records of the single-consumer steps have the same average size.
    let per_record = hot_bytes as f64 / opts.records.max(1) as f64;
    Ok(ManyReaders {
        readers,
        records: per * readers as u64,
        hot_mb_s: per_record * (per * readers as u64) as f64 / 1e6 / secs.max(1e-9),
        rss_growth_mb: mib(peak.saturating_sub(before)),
        configured_mb: mib(configured),
    })
}

/// Reads `[0, records)` following `next_offset`; returns (seconds, ms to the first record).
async fn read_all(cold: &ColdPartition, records: u64) -> Result<(f64, f64), BenchError> {
    let t = Instant::now();
    let mut first = None;
    let mut at = LogOffset::ZERO;
    let mut seen = 0u64;
    while at.0 < records {
        let read = cold
            .read(at, 4 << 20)
            .await
            .map_err(|e| BenchError::Invalid(e.to_string()))?
            .ok_or_else(|| BenchError::Invalid(format!("nothing archived at {at}")))?;
        for b in split_batches(read.batches) {
            let b = b.map_err(|e| BenchError::Invalid(e.to_string()))?;
            seen += u64::from(b.record_count());
        }
        first.get_or_insert_with(|| t.elapsed().as_secs_f64() * 1e3);
        at = read.next_offset;
    }
    if seen != records {
        return Err(BenchError::Invalid(format!(
            "read {seen} records of {records}"
        )));
    }
    Ok((t.elapsed().as_secs_f64(), first.unwrap_or(0.0)))
}

impl ColdReport {
    pub fn to_markdown(&self) -> String {
        format!(
            "| figure | value | baseline (same run) | ratio |\n|---|---|---|---|\n\
             | records / segments (objects of {:.1} MB) | {} / {} | | |\n\
             | Parquet bytes ÷ hot-tier bytes (JSON-like values) | {} / {} | | {:.3} |\n\
             | tiering (encode+upload+commit, one core) | {:.0} rec/s, {:.1} hot MB/s, {:.1} Parquet MB/s | raw PUT {:.1} MB/s | {:.2} |\n\
             | raw GET, whole objects, sequential | {:.1} MB/s | | |\n\
             | one GET round trip (8-byte range, median of 21) | {:.2} ms | | |\n\
             | cold read from offset 0, empty cache | {:.1} Parquet MB/s ({:.1} hot MB/s) | raw GET {:.1} MB/s | R5 = {:.2} |\n\
             | time to first record, empty cache | {:.2} ms | one GET round trip {:.2} ms | {:.1}x |\n\
             | cold re-read, warm cache | {:.1} Parquet MB/s ({:.1} hot MB/s) | raw GET {:.1} MB/s | {:.2} |\n\
             | object-store GETs per GB read (empty cache) | {:.0} | | |\n",
            self.parquet_bytes as f64 / self.segments.max(1) as f64 / 1e6,
            self.records,
            self.segments,
            self.parquet_bytes,
            self.hot_bytes,
            self.parquet_over_hot,
            self.tiering_records_s,
            self.tiering_hot_mb_s,
            self.tiering_hot_mb_s * self.parquet_over_hot,
            self.raw_put_mb_s,
            self.tiering_hot_mb_s * self.parquet_over_hot / self.raw_put_mb_s.max(1e-9),
            self.raw_get_mb_s,
            self.get_round_trip_ms,
            self.cold_read_mb_s,
            self.cold_read_hot_mb_s,
            self.raw_get_mb_s,
            self.r5_cold_over_raw_get,
            self.first_record_ms,
            self.get_round_trip_ms,
            self.first_record_ms / self.get_round_trip_ms.max(1e-9),
            self.warm_read_mb_s,
            self.warm_read_hot_mb_s,
            self.raw_get_mb_s,
            self.warm_over_raw_get,
            self.cold_requests_per_gb,
        ) + &self.many.as_ref().map_or(String::new(), |m| {
            format!(
                "| {} concurrent cold consumers, one per partition, empty cache | {:.1} hot MB/s in all | one consumer {:.1} hot MB/s | {:.2} |\n\
                 | resident memory growth while they read | {:.0} MiB | configured bound {:.0} MiB | {:.2} |\n",
                m.readers,
                m.hot_mb_s,
                self.cold_read_hot_mb_s,
                m.hot_mb_s / self.cold_read_hot_mb_s.max(1e-9),
                m.rss_growth_mb,
                m.configured_mb,
                m.rss_growth_mb / m.configured_mb.max(1e-9),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smoke_run_on_a_local_folder_measures_every_figure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("store"),
        );
        let report = run(&ColdOptions {
            store,
            layout: Layout::new("").expect("layout"),
            records: 20_000,
            segment_records: 5_000,
            cache_dir: dir.path().join("cache"),
            readers: 4,
        })
        .await
        .expect("run");
        assert_eq!(report.segments, 4);
        let many = report.many.as_ref().expect("many-readers step");
        assert_eq!((many.readers, many.records), (4, 20_000));
        assert!(many.hot_mb_s > 0.0 && many.configured_mb > 0.0, "{many:?}");
        assert!(report.to_markdown().contains("4 concurrent cold consumers"));
        assert!(
            report.parquet_over_hot > 0.0 && report.parquet_over_hot < 1.0,
            "{report:?}"
        );
        for v in [
            report.tiering_hot_mb_s,
            report.raw_get_mb_s,
            report.raw_put_mb_s,
            report.cold_read_mb_s,
            report.warm_read_mb_s,
        ] {
            assert!(v.is_finite() && v > 0.0, "{report:?}");
        }
        assert!(report.cold_requests_per_gb > 0.0);
    }
}
