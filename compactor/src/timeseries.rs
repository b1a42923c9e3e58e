//! Time-series downsampling: the pure transformation, no I/O.
//!
//! A log that declares a [`TimeSeriesSpec`] has a number per record (a field of its JSON
//! value) and a series identity (its key, or named tag fields of the value). Once a bucket of
//! a tier's width has ended more than the tier's `after` ago, all of a series' rows in it
//! become one *bucket record* holding `count`, `sum`, `min` and `max` (avg = sum / count).
//!
//! A bucket record:
//! - takes the **offset** (and epoch) of the newest row it replaces, so offsets stay unique
//!   and increasing and a consumer's position keeps its meaning;
//! - has the bucket start as **timestamp**, the series as **key** (the original key when the
//!   series is the key), a JSON **value**
//!   `{"series","bucket_start","bucket_seconds","count","sum","min","max","avg"}`, and the
//!   header `pyralog.bucket` = width in seconds, which marks it as downsampled;
//! - is re-aggregated by a coarser tier later (widths nest: each is a multiple of the last).
//!
//! Records whose value is not JSON or lacks the field pass through untouched.

use std::collections::BTreeMap;

use bytes::Bytes;
use pyralog_cold_tier::MetricRow;
use pyralog_types::{Epoch, Header, LogOffset, Record, TimeSeriesSpec, TimestampMicros};
use serde::{Deserialize, Serialize};

/// The header that marks a bucket record; its value is the bucket width in seconds.
pub const BUCKET_HEADER: &str = "pyralog.bucket";

const MICROS: i64 = 1_000_000;

/// The JSON value of a bucket record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketValue {
    pub series: String,
    /// Bucket start, µs since the Unix epoch.
    pub bucket_start: i64,
    pub bucket_seconds: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

impl From<&MetricRow> for BucketValue {
    fn from(m: &MetricRow) -> Self {
        BucketValue {
            series: m.series.clone(),
            bucket_start: m.bucket_start,
            bucket_seconds: m.bucket_seconds,
            count: m.count,
            sum: m.sum,
            min: m.min,
            max: m.max,
            avg: m.sum / m.count.max(1) as f64,
        }
    }
}

/// One output row: a record and, for bucket records, its typed values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub record: Record,
    pub metric: Option<MetricRow>,
    /// Whether this row differs from the input (a new or re-aggregated bucket).
    pub changed: bool,
}

/// What a record contributes to a bucket.
#[derive(Debug, Clone)]
struct Sample {
    series: String,
    key: Option<Bytes>,
    /// The record's time (a bucket record: its bucket start).
    at: TimestampMicros,
    /// Width it already has (0 for a raw sample).
    width: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

#[derive(Debug)]
struct Agg {
    key: Option<Bytes>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    newest: (LogOffset, Epoch),
    members: usize,
    /// One member that already was this very bucket (then a single member means unchanged).
    was_bucket: bool,
}

/// Reads what a record says as a sample, or `None` if it is not one.
fn sample(spec: &TimeSeriesSpec, r: &Record) -> Option<Sample> {
    let value = r.value.as_ref()?;
    if let Some(h) = r.headers.iter().find(|h| h.key == BUCKET_HEADER) {
        let width: u64 = std::str::from_utf8(&h.value).ok()?.parse().ok()?;
        let b: BucketValue = serde_json::from_slice(value).ok()?;
        // Only widths this log declares: a forged header stays an ordinary record.
        let declared = spec.tiers.iter().any(|t| t.bucket.as_secs() == width);
        if !declared || b.bucket_seconds != width || b.count == 0 {
            return None;
        }
        return Some(Sample {
            series: b.series,
            key: r.key.clone(),
            at: b.bucket_start,
            width,
            count: b.count,
            sum: b.sum,
            min: b.min,
            max: b.max,
        });
    }
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    let v = json.get(&spec.value_field)?.as_f64()?;
    let series = if spec.tags.is_empty() {
        String::from_utf8_lossy(r.key.as_ref()?).into_owned()
    } else {
        let mut parts = Vec::with_capacity(spec.tags.len());
        for t in &spec.tags {
            let tag = match json.get(t)? {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{t}={tag}"));
        }
        parts.join(",")
    };
    let key = if spec.tags.is_empty() {
        r.key.clone()
    } else {
        Some(Bytes::from(series.clone()))
    };
    Some(Sample {
        series,
        key,
        at: r.timestamp,
        width: 0,
        count: 1,
        sum: v,
        min: v,
        max: v,
    })
}

fn floor(at: TimestampMicros, seconds: u64) -> TimestampMicros {
    let w = i64::try_from(seconds).unwrap_or(i64::MAX / MICROS) * MICROS;
    at - at.rem_euclid(w)
}

/// The coarsest tier width whose bucket around `at` ended more than its `after` ago.
fn target_width(spec: &TimeSeriesSpec, at: TimestampMicros, now: TimestampMicros) -> Option<u64> {
    spec.tiers.iter().rev().find_map(|t| {
        let secs = t.bucket.as_secs();
        let end = floor(at, secs) + i64::try_from(secs).ok()? * MICROS;
        let after = i64::try_from(t.after.as_micros()).ok()?;
        (end <= now.saturating_sub(after)).then_some(secs)
    })
}

/// Downsamples `records` (one partition's range, offset order) as of `now`. The output is in
/// offset order; rows that change are marked.
pub fn downsample(spec: &TimeSeriesSpec, records: Vec<Record>, now: TimestampMicros) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::with_capacity(records.len() / 4);
    let mut buckets: BTreeMap<(String, TimestampMicros, u64), Agg> = BTreeMap::new();
    for r in records {
        let Some(s) = sample(spec, &r) else {
            out.push(Row {
                record: r,
                metric: None,
                changed: false,
            });
            continue;
        };
        let width = match target_width(spec, s.at, now) {
            Some(w) if w > s.width => w,
            // Already that coarse: still grouped, so partial buckets of one width merge.
            Some(_) if s.width > 0 => s.width,
            _ => {
                out.push(Row {
                    record: r,
                    metric: None,
                    changed: false,
                });
                continue;
            }
        };
        let start = floor(s.at, width);
        let agg = buckets
            .entry((s.series.clone(), start, width))
            .or_insert_with(|| Agg {
                key: s.key.clone(),
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                newest: (r.offset, r.epoch),
                members: 0,
                was_bucket: false,
            });
        agg.count = agg.count.saturating_add(s.count);
        agg.sum += s.sum;
        agg.min = agg.min.min(s.min);
        agg.max = agg.max.max(s.max);
        agg.newest = agg.newest.max((r.offset, r.epoch));
        agg.members += 1;
        agg.was_bucket |= s.width == width;
    }
    for ((series, start, width), a) in buckets {
        let metric = MetricRow {
            series,
            bucket_start: start,
            bucket_seconds: width,
            count: a.count,
            sum: a.sum,
            min: a.min,
            max: a.max,
        };
        let json = serde_json::to_vec(&BucketValue::from(&metric)).unwrap_or_default();
        out.push(Row {
            record: Record {
                offset: a.newest.0,
                epoch: a.newest.1,
                timestamp: start,
                key: a.key,
                value: Some(Bytes::from(json)),
                headers: vec![Header {
                    key: BUCKET_HEADER.into(),
                    value: Bytes::from(width.to_string()),
                }],
            },
            metric: Some(metric),
            changed: !(a.members == 1 && a.was_bucket),
        });
    }
    out.sort_by_key(|r| r.record.offset);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use pyralog_types::DownsampleTier;

    use super::*;

    const DAY: i64 = 86_400 * MICROS;
    const NOW: i64 = 1_800_000_000 * MICROS;

    fn spec() -> TimeSeriesSpec {
        TimeSeriesSpec {
            value_field: "v".into(),
            tags: Vec::new(),
            tiers: vec![
                DownsampleTier {
                    after: Duration::from_secs(86_400),
                    bucket: Duration::from_secs(600),
                },
                DownsampleTier {
                    after: Duration::from_secs(7 * 86_400),
                    bucket: Duration::from_secs(3600),
                },
            ],
        }
    }

    fn sample_rec(offset: u64, series: &str, at: i64, v: f64) -> Record {
        Record {
            offset: LogOffset(offset),
            epoch: Epoch(1),
            timestamp: at,
            key: Some(Bytes::from(series.to_owned())),
            value: Some(Bytes::from(format!("{{\"v\":{v}}}"))),
            headers: Vec::new(),
        }
    }

    fn bucket(row: &Row) -> BucketValue {
        serde_json::from_slice(row.record.value.as_ref().expect("value")).expect("bucket json")
    }

    #[test]
    fn young_data_stays_raw_old_data_becomes_tiered_buckets() {
        let recs = vec![
            sample_rec(0, "s", NOW - 8 * DAY, 1.0),
            sample_rec(1, "s", NOW - 8 * DAY + 60 * MICROS, 3.0),
            sample_rec(2, "s", NOW - 2 * DAY, 5.0),
            sample_rec(3, "s", NOW - 2 * DAY + 60 * MICROS, 7.0),
            sample_rec(4, "s", NOW - 60 * MICROS, 9.0),
        ];
        let rows = downsample(&spec(), recs, NOW);
        assert_eq!(rows.len(), 3);
        let (old, mid, young) = (bucket(&rows[0]), bucket(&rows[1]), &rows[2]);
        assert_eq!(
            (old.bucket_seconds, old.count, old.sum, old.min, old.max),
            (3600, 2, 4.0, 1.0, 3.0)
        );
        assert_eq!((mid.bucket_seconds, mid.count, mid.avg), (600, 2, 6.0));
        assert_eq!(
            rows[0].record.offset,
            LogOffset(1),
            "newest member's offset"
        );
        assert!(young.metric.is_none() && !young.changed);
        // A second pass at the same time changes nothing.
        let again = downsample(
            &spec(),
            rows.iter().map(|r| r.record.clone()).collect(),
            NOW,
        );
        assert!(again.iter().all(|r| !r.changed));
        // A week later the 10-minute bucket is folded into its hour.
        let later = downsample(
            &spec(),
            rows.iter().map(|r| r.record.clone()).collect(),
            NOW + 7 * DAY,
        );
        let mid_later = bucket(&later[1]);
        assert_eq!(
            (mid_later.bucket_seconds, mid_later.count, mid_later.sum),
            (3600, 2, 12.0)
        );
    }

    proptest! {
        /// Every bucket equals the aggregate of the raw samples it covers, and none is lost.
        #[test]
        fn buckets_equal_the_raw_aggregates(
            samples in prop::collection::vec((0u8..3, 0i64..(10 * 86_400), -1000i32..1000), 1..200),
        ) {
            let mut recs: Vec<Record> = samples.iter().enumerate().map(|(i, (s, age_s, v))| {
                sample_rec(i as u64, &format!("s{s}"), NOW - age_s * MICROS, f64::from(*v))
            }).collect();
            recs.sort_by_key(|r| r.offset);
            let rows = downsample(&spec(), recs.clone(), NOW);
            let mut total = 0u64;
            for row in &rows {
                match &row.metric {
                    None => total += 1,
                    Some(m) => {
                        let w = i64::try_from(m.bucket_seconds).expect("w") * MICROS;
                        let members: Vec<f64> = recs.iter()
                            .filter(|r| r.key.as_deref() == Some(m.series.as_bytes()))
                            .filter(|r| (m.bucket_start..m.bucket_start + w).contains(&r.timestamp))
                            .filter(|r| target_width(&spec(), r.timestamp, NOW) == Some(m.bucket_seconds))
                            .map(|r| sample(&spec(), r).expect("sample").sum)
                            .collect();
                        prop_assert_eq!(m.count as usize, members.len());
                        prop_assert_eq!(m.sum, members.iter().sum::<f64>());
                        prop_assert_eq!(m.min, members.iter().cloned().fold(f64::INFINITY, f64::min));
                        prop_assert_eq!(m.max, members.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
                        total += m.count;
                    }
                }
            }
            prop_assert_eq!(total as usize, recs.len());
            prop_assert!(rows.windows(2).all(|w| w[0].record.offset < w[1].record.offset));
        }
    }
}
