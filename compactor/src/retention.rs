//! Total retention on the cold tier: the oldest archived segments leave the manifest.

use std::time::Duration;

use pyralog_cold_tier::{ColdPartition, ColdSegment};
use pyralog_types::{Retention, TimestampMicros};

use crate::error::CompactorError;

/// What total retention removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub removed: Vec<ColdSegment>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Removes whole cold segments, oldest first, while `retention` says so: a segment goes when
/// its newest record is older than the age limit, or while the archived bytes exceed the
/// size limit. `Infinite` removes nothing.
pub async fn apply_total_retention(
    cold: &ColdPartition,
    retention: Retention,
    now: TimestampMicros,
) -> Result<RetentionReport, CompactorError> {
    let (max_age, max_bytes) = (retention.max_age(), retention.max_bytes());
    if max_age.is_none() && max_bytes.is_none() {
        return Ok(RetentionReport::default());
    }
    let cutoff = max_age.map(|age| now.saturating_sub(micros(age)));
    let removed = cold
        .remove_oldest(|m| {
            let mut remaining: u64 = m.segments.iter().map(|s| s.size_bytes).sum();
            m.segments
                .iter()
                .take_while(|s| {
                    let too_old = cutoff.is_some_and(|c| s.max_timestamp < c);
                    let too_big = max_bytes.is_some_and(|limit| remaining > limit);
                    if too_old || too_big {
                        remaining -= s.size_bytes;
                    }
                    too_old || too_big
                })
                .count()
        })
        .await?;
    Ok(RetentionReport { removed })
}
