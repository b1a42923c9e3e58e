//! Per-record dedup ids on the partition log.

use pyralog_types::Header;

use super::*;

/// A batch of records `"{id}"`, each carrying dedup id `id` (`None`: no id).
fn with_ids(ids: &[Option<&str>], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, id) in ids.iter().enumerate() {
        b.push(&NewRecord {
            timestamp: ts + i as i64,
            key: None,
            value: Some(Bytes::from(id.unwrap_or("no-id").to_owned())),
            headers: id
                .map(|id| vec![Header::dedup_id(id.to_owned())])
                .unwrap_or_default(),
        });
    }
    b.build().expect("build")
}

fn values(log: &PartitionLog) -> Vec<(u64, String)> {
    read_all(log, 0)
        .into_iter()
        .map(|r| {
            (
                r.offset.0,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|(o, s)| (*o, (*s).to_owned())).collect()
}

#[test]
fn a_record_whose_id_was_stored_recently_is_dropped_and_answered_with_the_stored_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 256), &clock);
    log.append(with_ids(&[Some("a"), Some("b")], T0), Epoch(1))
        .expect("append");
    // b is stored; the second c repeats the batch's first c; records without an id stay.
    let info = log
        .append(
            with_ids(&[Some("b"), Some("c"), Some("c"), None, Some("d")], T0),
            Epoch(1),
        )
        .expect("append");
    assert!(!info.duplicate);
    assert_eq!(
        (info.base_offset, info.last_offset),
        (LogOffset(2), LogOffset(4))
    );
    assert_eq!(info.dropped, vec![(0, LogOffset(1)), (2, LogOffset(2))]);
    // Every record already stored: nothing written, the stored offsets answered.
    let all = log
        .append(with_ids(&[Some("d"), Some("a")], T0), Epoch(1))
        .expect("append");
    assert!(all.duplicate);
    assert_eq!(
        (all.base_offset, all.last_offset),
        (LogOffset(0), LogOffset(4))
    );
    assert_eq!(all.dropped, vec![(0, LogOffset(4)), (1, LogOffset(0))]);
    assert_eq!(
        values(&log),
        pairs(&[(0, "a"), (1, "b"), (2, "c"), (3, "no-id"), (4, "d")])
    );
}

#[test]
fn the_window_is_rebuilt_from_the_log_after_a_reopen_or_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    {
        let log = open(dir.path(), options(1 << 20, 256), &clock);
        log.append(with_ids(&[Some("a")], T0), Epoch(1))
            .expect("append");
        log.roll().expect("roll");
        log.append(with_ids(&[Some("b")], T0), Epoch(1))
            .expect("append");
        log.close().expect("close");
    }
    {
        let log = open(dir.path(), options(1 << 20, 256), &clock);
        let info = log
            .append(with_ids(&[Some("a"), Some("b"), Some("c")], T0), Epoch(1))
            .expect("append");
        assert_eq!(info.dropped, vec![(0, LogOffset(0)), (1, LogOffset(1))]);
        // Dropped without close: the next open recovers (crash).
    }
    let log = open(dir.path(), options(1 << 20, 256), &clock);
    assert!(
        log.append(with_ids(&[Some("c")], T0), Epoch(1))
            .expect("append")
            .duplicate
    );
    assert_eq!(values(&log), pairs(&[(0, "a"), (1, "b"), (2, "c")]));
}

#[test]
fn ids_older_than_the_window_are_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 256), &clock);
    log.append(with_ids(&[Some("a")], T0), Epoch(1))
        .expect("append");
    clock.advance(crate::DedupSettings::default().window + Duration::from_secs(1));
    let now = T0
        + i64::try_from(
            (crate::DedupSettings::default().window + Duration::from_secs(1)).as_micros(),
        )
        .expect("fits");
    let info = log
        .append(with_ids(&[Some("a"), Some("x")], now), Epoch(1))
        .expect("append");
    assert!(info.dropped.is_empty(), "a left the window");
}

#[test]
fn a_truncation_forgets_the_ids_it_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 256), &clock);
    log.append(with_ids(&[Some("a")], T0), Epoch(1))
        .expect("append");
    log.append(with_ids(&[Some("b")], T0), Epoch(1))
        .expect("append");
    log.truncate_to(LogOffset(1)).expect("truncate");
    let info = log
        .append(with_ids(&[Some("b"), Some("a")], T0), Epoch(2))
        .expect("append");
    assert_eq!(
        info.dropped,
        vec![(1, LogOffset(0))],
        "b was cut, a was not"
    );
    assert_eq!(values(&log), pairs(&[(0, "a"), (1, "b")]));
}

#[test]
fn a_follower_that_becomes_leader_knows_the_ids_it_copied() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let leader = open(leader_dir.path(), options(1 << 20, 256), &clock);
    let follower = open(follower_dir.path(), options(1 << 20, 256), &clock);
    leader
        .append(with_ids(&[Some("a"), Some("b")], T0), Epoch(1))
        .expect("append");
    let copied = leader
        .read(LogOffset(0), 1 << 20, LogOffset::MAX)
        .expect("read");
    for b in split_batches(copied.batches) {
        follower
            .append_replicated(b.expect("batch").into_bytes())
            .expect("replicate");
    }
    let info = follower
        .append(with_ids(&[Some("b"), Some("c")], T0), Epoch(2))
        .expect("append as the new leader");
    assert_eq!(info.dropped, vec![(0, LogOffset(1))]);
}

#[test]
fn an_idempotent_batch_is_never_cut_by_dedup_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = open(dir.path(), options(1 << 20, 256), &clock);
    log.append(with_ids(&[Some("a")], T0), Epoch(1))
        .expect("append");
    // Sequences count every record of an idempotent batch: it is stored whole.
    let mut b = BatchBuilder::new(Compression::None).with_producer(7, 0, 0);
    b.push(&NewRecord {
        timestamp: T0,
        key: None,
        value: Some(Bytes::from_static(b"a-again")),
        headers: vec![Header::dedup_id(Bytes::from_static(b"a"))],
    });
    let info = log
        .append(b.build().expect("build"), Epoch(1))
        .expect("append");
    assert!(info.dropped.is_empty());
    assert_eq!(info.base_offset, LogOffset(1));
}
