//! Partition assignment strategies for consumer groups: range, round-robin and sticky.
//!
//! The group coordinator (in [`crate::groups`]) computes assignments itself, inside the
//! replicated state machine, so these are pure deterministic functions: same members, same
//! subscriptions, same previous assignment, same answer on every voter. Members are keyed by
//! their id; iteration order is the `BTreeMap`'s, never a hash order.
//!
//! - **Range** (Kafka's default): per log, the subscribed members in id order each take a
//!   contiguous run of partitions; the first `n % k` take one more.
//! - **Round-robin**: every subscribed (log, partition) in order, dealt to the subscribed
//!   members in turn.
//! - **Sticky**: keeps every member's previous partitions where it still may have them, gives
//!   unowned partitions to the least loaded member, then moves single partitions from the
//!   most to the least loaded member until the counts differ by at most one. A member joining
//!   or leaving moves only the partitions it must (what makes cooperative rebalancing cheap).

use std::collections::{BTreeMap, BTreeSet};

use pyralog_types::{LogId, PartitionId};
use serde::{Deserialize, Serialize};

/// One partition of one log.
pub type Tp = (LogId, PartitionId);

/// How a group spreads partitions over its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    Range,
    RoundRobin,
    #[default]
    Sticky,
}

impl Strategy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::RoundRobin => "round-robin",
            Strategy::Sticky => "sticky",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "range" => Some(Strategy::Range),
            "round-robin" | "roundrobin" => Some(Strategy::RoundRobin),
            "sticky" => Some(Strategy::Sticky),
            _ => None,
        }
    }
}

/// `eligible`: every member with the partitions it may be given (those of the logs it
/// subscribes to). `previous`: what each member had (sticky only). Every eligible partition
/// goes to exactly one member that may have it.
pub fn assign(
    strategy: Strategy,
    eligible: &BTreeMap<String, BTreeSet<Tp>>,
    previous: &BTreeMap<String, BTreeSet<Tp>>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    match strategy {
        Strategy::Range => range(eligible),
        Strategy::RoundRobin => round_robin(eligible),
        Strategy::Sticky => sticky(eligible, previous),
    }
}

fn empty(eligible: &BTreeMap<String, BTreeSet<Tp>>) -> BTreeMap<String, BTreeSet<Tp>> {
    eligible
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect()
}

/// For every partition, the members that may have it, in id order.
fn candidates(eligible: &BTreeMap<String, BTreeSet<Tp>>) -> BTreeMap<Tp, Vec<&String>> {
    let mut out: BTreeMap<Tp, Vec<&String>> = BTreeMap::new();
    for (m, tps) in eligible {
        for tp in tps {
            out.entry(tp.clone()).or_default().push(m);
        }
    }
    out
}

fn range(eligible: &BTreeMap<String, BTreeSet<Tp>>) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out = empty(eligible);
    // Per log: its partitions in order and the members subscribed to it.
    let all = candidates(eligible);
    let mut logs: BTreeMap<&LogId, (Vec<PartitionId>, BTreeSet<&String>)> = BTreeMap::new();
    for (tp, members) in &all {
        let entry = logs.entry(&tp.0).or_default();
        entry.0.push(tp.1);
        entry.1.extend(members.iter().copied());
    }
    for (log, (partitions, members)) in logs {
        let k = members.len();
        let (each, extra) = (partitions.len() / k, partitions.len() % k);
        let mut at = 0;
        for (i, m) in members.into_iter().enumerate() {
            let take = each + usize::from(i < extra);
            for p in &partitions[at..at + take] {
                if let Some(set) = out.get_mut(m) {
                    set.insert((log.clone(), *p));
                }
            }
            at += take;
        }
    }
    out
}

fn round_robin(eligible: &BTreeMap<String, BTreeSet<Tp>>) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out = empty(eligible);
    let members: Vec<&String> = eligible.keys().collect();
    let mut next = 0usize;
    for (tp, allowed) in candidates(eligible) {
        // The next member in turn that may have it (subscriptions can differ).
        for step in 0..members.len() {
            let m = members[(next + step) % members.len()];
            if allowed.contains(&m) {
                if let Some(set) = out.get_mut(m) {
                    set.insert(tp.clone());
                }
                next = (next + step + 1) % members.len();
                break;
            }
        }
    }
    out
}

fn sticky(
    eligible: &BTreeMap<String, BTreeSet<Tp>>,
    previous: &BTreeMap<String, BTreeSet<Tp>>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out = empty(eligible);
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    // 1. Keep what each member had and may still have (a partition once only).
    for (m, had) in previous {
        let Some(allowed) = eligible.get(m) else {
            continue;
        };
        for tp in had {
            if allowed.contains(tp) && taken.insert(tp.clone()) {
                if let Some(set) = out.get_mut(m) {
                    set.insert(tp.clone());
                }
            }
        }
    }
    // 2. Unowned partitions to the least loaded member that may have them.
    for (tp, allowed) in candidates(eligible) {
        if taken.contains(&tp) {
            continue;
        }
        let least = allowed
            .iter()
            .min_by_key(|m| (out.get(**m).map_or(0, BTreeSet::len), **m))
            .copied();
        if let Some(m) = least {
            if let Some(set) = out.get_mut(m) {
                set.insert(tp.clone());
            }
            taken.insert(tp);
        }
    }
    // 3. Even out: move one partition at a time from a most loaded member to a least loaded
    //    one that may have it. Each move lowers the spread, so this ends.
    let bound = eligible.values().map(BTreeSet::len).sum::<usize>() + 1;
    for _ in 0..bound {
        let Some(mv) = best_move(eligible, &out) else {
            break;
        };
        let (from, to, tp) = mv;
        if let Some(set) = out.get_mut(&from) {
            set.remove(&tp);
        }
        if let Some(set) = out.get_mut(&to) {
            set.insert(tp);
        }
    }
    out
}

/// A partition to move from a member holding at least two more than the receiver, preferring
/// the most loaded giver and the least loaded receiver (ties by id, then partition order).
fn best_move(
    eligible: &BTreeMap<String, BTreeSet<Tp>>,
    out: &BTreeMap<String, BTreeSet<Tp>>,
) -> Option<(String, String, Tp)> {
    let mut givers: Vec<(&String, &BTreeSet<Tp>)> = out.iter().collect();
    givers.sort_by_key(|(m, s)| (std::cmp::Reverse(s.len()), *m));
    let mut receivers: Vec<(&String, usize)> = out.iter().map(|(m, s)| (m, s.len())).collect();
    receivers.sort_by_key(|(m, n)| (*n, *m));
    for (giver, held) in &givers {
        for (receiver, load) in &receivers {
            if held.len() < load + 2 {
                break;
            }
            let allowed = eligible.get(*receiver)?;
            if let Some(tp) = held.iter().find(|tp| allowed.contains(*tp)) {
                return Some(((*giver).clone(), (*receiver).clone(), tp.clone()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just};

    use super::*;

    fn tps(log: &str, n: u32) -> BTreeSet<Tp> {
        let log = LogId::new(log).expect("log");
        (0..n).map(|p| (log.clone(), p)).collect()
    }

    fn members(names: &[&str], subscribed: &BTreeSet<Tp>) -> BTreeMap<String, BTreeSet<Tp>> {
        names
            .iter()
            .map(|m| ((*m).to_owned(), subscribed.clone()))
            .collect()
    }

    fn counts(a: &BTreeMap<String, BTreeSet<Tp>>) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    #[test]
    fn range_gives_contiguous_runs_and_the_first_members_the_extra() {
        let a = assign(
            Strategy::Range,
            &members(&["a", "b", "c"], &tps("orders", 8)),
            &BTreeMap::new(),
        );
        let parts = |m: &str| a[m].iter().map(|tp| tp.1).collect::<Vec<_>>();
        assert_eq!(parts("a"), vec![0, 1, 2]);
        assert_eq!(parts("b"), vec![3, 4, 5]);
        assert_eq!(parts("c"), vec![6, 7]);
    }

    #[test]
    fn round_robin_deals_in_turn_across_logs() {
        let mut all = tps("a-log", 2);
        all.extend(tps("b-log", 2));
        let a = assign(
            Strategy::RoundRobin,
            &members(&["m1", "m2"], &all),
            &BTreeMap::new(),
        );
        assert_eq!(counts(&a), vec![2, 2]);
        assert!(a["m1"].contains(&(LogId::new("a-log").expect("log"), 0)));
        assert!(a["m2"].contains(&(LogId::new("a-log").expect("log"), 1)));
    }

    #[test]
    fn sticky_moves_only_what_a_new_member_needs() {
        let all = tps("orders", 12);
        let before = assign(
            Strategy::Sticky,
            &members(&["a", "b", "c"], &all),
            &BTreeMap::new(),
        );
        assert_eq!(counts(&before), vec![4, 4, 4]);
        let after = assign(
            Strategy::Sticky,
            &members(&["a", "b", "c", "d"], &all),
            &before,
        );
        assert_eq!(counts(&after), vec![3, 3, 3, 3]);
        for m in ["a", "b", "c"] {
            assert!(
                after[m].is_subset(&before[m]),
                "{m} only gives partitions away"
            );
        }
    }

    fn strategies() -> impl proptest::strategy::Strategy<Value = Strategy> {
        prop_oneof![
            Just(Strategy::Range),
            Just(Strategy::RoundRobin),
            Just(Strategy::Sticky),
        ]
    }

    proptest! {
        /// Every subscribed partition goes to exactly one member subscribed to its log; with
        /// identical subscriptions, range is balanced per log and the others overall.
        #[test]
        fn every_partition_has_exactly_one_eligible_owner(
            strategy in strategies(),
            n_members in 1usize..7,
            parts in proptest::collection::vec(1u32..9, 1..4),
            subs in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 3), 7),
            previous_seed in proptest::collection::vec(0usize..7, 0..30),
        ) {
            let logs: Vec<BTreeSet<Tp>> = parts
                .iter()
                .enumerate()
                .map(|(i, n)| tps(&format!("log-{i}"), *n))
                .collect();
            let eligible: BTreeMap<String, BTreeSet<Tp>> = (0..n_members)
                .map(|m| {
                    let mut set = BTreeSet::new();
                    for (i, l) in logs.iter().enumerate() {
                        if subs[m][i] {
                            set.extend(l.iter().cloned());
                        }
                    }
                    (format!("m{m}"), set)
                })
                .collect();
            // Some arbitrary previous ownership, also of members and partitions now gone.
            let all: Vec<Tp> = logs.iter().flatten().cloned().collect();
            let mut previous: BTreeMap<String, BTreeSet<Tp>> = BTreeMap::new();
            for (i, m) in previous_seed.iter().enumerate() {
                previous
                    .entry(format!("m{m}"))
                    .or_default()
                    .insert(all[i % all.len()].clone());
            }
            let a = assign(strategy, &eligible, &previous);
            prop_assert_eq!(a.len(), eligible.len());
            let mut owners: BTreeMap<&Tp, usize> = BTreeMap::new();
            for (m, set) in &a {
                for tp in set {
                    prop_assert!(eligible[m].contains(tp), "{m} not subscribed to {tp:?}");
                    *owners.entry(tp).or_default() += 1;
                }
            }
            for tp in eligible.values().flatten() {
                prop_assert_eq!(owners.get(tp).copied(), Some(1), "{:?}", tp);
            }
            let same_subscriptions = eligible.values().all(|s| Some(s) == eligible.values().next());
            if same_subscriptions && strategy != Strategy::Range {
                let c = counts(&a);
                let (lo, hi) = (c.iter().min().copied(), c.iter().max().copied());
                prop_assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1, "unbalanced {c:?}");
            }
        }
    }
}
