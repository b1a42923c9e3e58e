use proptest::prelude::*;

use super::*;

const LAG: Duration = Duration::from_secs(10);

fn leader(isr: Vec<NodeId>, min_isr: usize, now: Instant) -> LeaderState {
    LeaderState::new(
        1,
        Epoch(3),
        vec![1, 2, 3],
        isr,
        LogOffset(100),
        LogOffset(100),
        now,
        ReplicationConfig {
            replica_lag_max: LAG,
            min_in_sync_replicas: min_isr,
        },
    )
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn the_high_watermark_is_the_lowest_end_in_the_isr_and_never_moves_back() {
    let t0 = Instant::now();
    let mut l = leader(vec![1, 2, 3], 2, t0);
    assert_eq!(
        l.high_watermark(),
        LogOffset(100),
        "carried over from before"
    );
    assert_eq!(l.on_append(LogOffset(150)), None, "no follower has it yet");
    l.on_fetch(2, LogOffset(150), t0).expect("fetch");
    assert_eq!(
        l.high_watermark(),
        LogOffset(100),
        "follower 3 still lacks it"
    );
    let p = l.on_fetch(3, LogOffset(120), t0).expect("fetch");
    assert_eq!(p.high_watermark, Some(LogOffset(120)));
    // A follower that restarts and fetches from lower down does not pull the HW back.
    l.on_fetch(3, LogOffset(110), t0).expect("fetch");
    assert_eq!(l.high_watermark(), LogOffset(120));
}

#[test]
fn a_follower_ahead_of_the_leaders_bookkeeping_counts_at_once() {
    // The append woke the followers before the leader's on_append ran: their next fetch
    // already reports the new end, and the HW must take it then, not a long-poll later.
    let t0 = Instant::now();
    let mut l = leader(vec![1, 2, 3], 2, t0);
    l.on_fetch(2, LogOffset(130), t0).expect("fetch");
    let p = l.on_fetch(3, LogOffset(130), t0).expect("fetch");
    assert_eq!(p.high_watermark, Some(LogOffset(130)));
    assert_eq!(l.on_append(LogOffset(130)), None, "already covered");
}

#[test]
fn writes_that_wait_for_the_isr_fail_fast_below_min_in_sync_replicas() {
    let t0 = Instant::now();
    let l = leader(vec![1], 2, t0);
    assert_eq!(
        l.check_in_sync(t0),
        Err(ReplicationError::NotEnoughReplicas { isr: 1, min: 2 })
    );
    let mut l = leader(vec![1, 3], 2, t0);
    assert_eq!(l.check_in_sync(t0), Ok(()));
    // Follower 3 stops fetching while the leader appends: once it has lagged for
    // replica_lag_max the write fails fast, before any controller decision.
    l.on_append(LogOffset(150));
    assert_eq!(l.check_in_sync(secs(t0, 9)), Ok(()));
    assert_eq!(
        l.check_in_sync(secs(t0, 11)),
        Err(ReplicationError::NotEnoughReplicas { isr: 1, min: 2 })
    );
    // An idle log is not lag: a follower holding everything and still fetching is in sync.
    l.on_fetch(3, LogOffset(150), secs(t0, 11)).expect("fetch");
    l.on_fetch(3, LogOffset(150), secs(t0, 99)).expect("fetch");
    assert_eq!(l.check_in_sync(secs(t0, 100)), Ok(()));
    // A follower that stopped fetching is gone, even if it held everything.
    assert!(l.check_in_sync(secs(t0, 110)).is_err());
}

#[test]
fn a_follower_that_lags_for_replica_lag_max_is_proposed_out_and_the_hw_moves_on() {
    let t0 = Instant::now();
    let mut l = leader(vec![1, 2, 3], 2, t0);
    l.on_append(LogOffset(200));
    l.on_fetch(2, LogOffset(200), secs(t0, 1)).expect("fetch");
    assert_eq!(
        l.tick(secs(t0, 5)),
        Progress::default(),
        "within its lag budget"
    );
    let p = l.tick(secs(t0, 11));
    assert_eq!(p.propose_isr, Some(vec![1, 2]));
    assert_eq!(
        l.high_watermark(),
        LogOffset(100),
        "pending shrink: old ISR still counts"
    );
    assert_eq!(
        l.tick(secs(t0, 12)),
        Progress::default(),
        "one proposal at a time"
    );
    assert_eq!(l.isr_committed(vec![1, 2]), Some(LogOffset(200)));
    assert_eq!(l.check_in_sync(secs(t0, 11)), Ok(()));
}

#[test]
fn a_follower_that_keeps_up_with_a_moving_end_stays_in_sync() {
    let t0 = Instant::now();
    let mut l = leader(vec![1, 2, 3], 2, t0);
    // Every second the leader appends 10 and the follower fetches up to where the leader was
    // at its previous fetch: always behind the current end, never lagging.
    for s in 1..40 {
        let end = 100 + 10 * s;
        l.on_append(LogOffset(end));
        l.on_fetch(2, LogOffset(end - 10), secs(t0, s))
            .expect("fetch");
        l.on_fetch(3, LogOffset(end - 10), secs(t0, s))
            .expect("fetch");
        assert_eq!(l.tick(secs(t0, s)).propose_isr, None, "at {s}s");
    }
}

#[test]
fn a_caught_up_follower_is_proposed_back_in_and_counts_for_the_hw_at_once() {
    let t0 = Instant::now();
    let mut l = leader(vec![1, 2], 2, t0);
    l.on_append(LogOffset(130));
    l.on_fetch(3, LogOffset(90), t0).expect("fetch");
    l.on_fetch(2, LogOffset(120), t0).expect("fetch");
    assert_eq!(l.high_watermark(), LogOffset(120));
    let p = l.on_fetch(3, LogOffset(125), t0).expect("fetch");
    assert_eq!(p.propose_isr, Some(vec![1, 2, 3]));
    l.on_fetch(2, LogOffset(130), t0).expect("fetch");
    assert_eq!(
        l.high_watermark(),
        LogOffset(125),
        "the joining member holds the HW back"
    );
    assert_eq!(
        l.isr_rejected(),
        Some(LogOffset(130)),
        "refused: only the committed ISR counts again"
    );
    assert_eq!(
        l.on_fetch(4, LogOffset(0), t0),
        Err(ReplicationError::NotAReplica(4))
    );
}

#[derive(Debug, Clone)]
enum Event {
    Append(u64),
    Fetch(NodeId, u64),
    Tick(u64),
    Commit,
    Reject,
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (1..50u64).prop_map(Event::Append),
        (2..=3u64, 0..400u64).prop_map(|(n, o)| Event::Fetch(n, o)),
        (0..30u64).prop_map(Event::Tick),
        Just(Event::Commit),
        Just(Event::Reject),
    ]
}

proptest! {
    /// Whatever happens: the HW never moves back, never passes the leader's end, and never
    /// passes an offset that some member of the committed ISR lacks.
    #[test]
    fn the_hw_is_always_held_by_the_whole_isr(events in proptest::collection::vec(any_event(), 1..200)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut l = leader(vec![1, 2, 3], 2, t0);
        let mut end = 100u64;
        let mut follower_end: BTreeMap<NodeId, u64> = BTreeMap::from([(2, 0), (3, 0)]);
        let mut proposal: Option<Vec<NodeId>> = None;
        for e in events {
            let hw_before = l.high_watermark();
            match e {
                Event::Append(n) => { end += n; l.on_append(LogOffset(end)); }
                Event::Fetch(f, o) => {
                    // A follower's fetch position only moves forward (no restart in this model).
                    let o = o.min(end).max(follower_end[&f]);
                    follower_end.insert(f, o);
                    if let Some(p) = l.on_fetch(f, LogOffset(o), now).expect("replica").propose_isr {
                        proposal = Some(p);
                    }
                }
                Event::Tick(s) => {
                    now += Duration::from_secs(s);
                    if let Some(p) = l.tick(now).propose_isr { proposal = Some(p); }
                }
                Event::Commit => if let Some(p) = proposal.take() { l.isr_committed(p); },
                Event::Reject => if proposal.take().is_some() { l.isr_rejected(); },
            }
            let hw = l.high_watermark();
            prop_assert!(hw >= hw_before);
            prop_assert!(hw.0 <= end);
            for m in l.isr() {
                if *m != 1 {
                    // The HW carried over from before (100) was held by the old ISR.
                    prop_assert!(hw.0 <= follower_end[m].max(100), "{m} lacks {hw:?}");
                }
            }
        }
    }
}

#[test]
fn a_replica_added_in_the_same_epoch_is_followed_and_joins_the_isr_once_caught_up() {
    let t0 = Instant::now();
    let mut l = leader(vec![1, 2, 3], 2, t0);
    assert!(
        l.on_fetch(4, LogOffset(0), t0).is_err(),
        "not a replica yet"
    );
    l.replicas_changed(vec![1, 2, 3, 4], vec![1, 2, 3], t0);
    assert_eq!(l.replicas(), &[1, 2, 3, 4]);
    // Behind: followed, not proposed, and the HW does not wait for it.
    let p = l.on_fetch(4, LogOffset(10), t0).expect("a replica now");
    assert_eq!(p.propose_isr, None);
    l.on_fetch(2, LogOffset(100), t0).expect("fetch");
    l.on_fetch(3, LogOffset(100), t0).expect("fetch");
    assert_eq!(l.high_watermark(), LogOffset(100));
    // Caught up: proposed into the ISR.
    let p = l.on_fetch(4, LogOffset(100), t0).expect("fetch");
    assert_eq!(p.propose_isr, Some(vec![1, 2, 3, 4]));
    // The move finishes without 2 and 3: they are forgotten, the ISR is the new set.
    l.replicas_changed(vec![1, 4], vec![1, 4], t0);
    assert_eq!(l.isr(), &[1, 4]);
    assert!(
        l.on_fetch(2, LogOffset(100), t0).is_err(),
        "no longer a replica"
    );
}

#[test]
fn a_growth_in_flight_when_the_replica_set_changes_still_holds_the_high_watermark() {
    let t0 = Instant::now();
    let mut l = leader(vec![1, 3], 1, t0);
    l.on_fetch(3, LogOffset(100), t0).expect("fetch");
    // Node 2 catches up to the HW: growth proposed, in flight.
    let p = l.on_fetch(2, LogOffset(100), t0).expect("fetch");
    assert_eq!(p.propose_isr, Some(vec![1, 2, 3]));
    // A reassignment adds node 4 before the growth is answered: the growth stays pending.
    l.replicas_changed(vec![1, 2, 3, 4], vec![1, 3], t0);
    assert_eq!(l.pending(), Some(&[1, 2, 3][..]));
    l.on_append(LogOffset(150));
    l.on_fetch(3, LogOffset(150), t0).expect("fetch");
    assert_eq!(
        l.high_watermark(),
        LogOffset(100),
        "node 2 may join the ISR any moment: the HW waits for it"
    );
    l.on_fetch(2, LogOffset(150), t0).expect("fetch");
    assert_eq!(l.high_watermark(), LogOffset(150));
    // A set that drops a member of the proposal ends it.
    l.replicas_changed(vec![1, 3, 4], vec![1, 3], t0);
    assert_eq!(l.pending(), None);
}
