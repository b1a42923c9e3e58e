//! The Grafana dashboard charts only metrics a node exports.

use std::collections::{BTreeMap, BTreeSet};

use pyralog_e2e::TestNode;
use serde_json::Value;

use crate::support::*;

/// Sample names of a Prometheus text exposition (`pyralog_errors_total`, `..._bucket`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("pyralog_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every metric of the node's registry, each family given one sample: the names of metrics
/// that a running node shows only after a rare event (a damaged segment, a refused
/// connection, a duplicate batch).
fn registry_names() -> BTreeSet<String> {
    use pyralog_gateway::metrics::{
        ConnLabels, ErrorLabels, ListenerLabels, LogLabels, Metrics, PartitionLabels,
    };
    let m = Metrics::new();
    let log = LogLabels { log: "l".into() };
    m.produced_records.get_or_create(&log).inc();
    m.produced_bytes.get_or_create(&log).inc();
    m.duplicate_batches.get_or_create(&log).inc();
    m.fetched_bytes.get_or_create(&log).inc();
    m.compaction_lag_records.get_or_create(&log).set(1);
    m.errors
        .get_or_create(&ErrorLabels {
            rpc: "r".into(),
            reason: "x".into(),
        })
        .inc();
    m.corrupt_segments
        .get_or_create(&PartitionLabels {
            log: "l".into(),
            partition: 0,
        })
        .set(1);
    let conn = ConnLabels {
        listener: "client".into(),
        reason: "x".into(),
    };
    m.connections_refused.get_or_create(&conn).inc();
    m.connections_closed.get_or_create(&conn).inc();
    m.connections_open
        .get_or_create(&ListenerLabels {
            listener: "client".into(),
        })
        .set(1);
    sample_names(&m.encode())
}

/// `pyralog_*` names in a PromQL expression.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("pyralog_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_dashboard_charts_is_one_a_running_node_exports() {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/pyralog.json")).expect("dashboard JSON");
    assert!(!str_at(&dashboard, "/title").is_empty());
    assert!(!str_at(&dashboard, "/uid").is_empty());
    let templating = dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .expect("templating");
    assert!(
        templating
            .iter()
            .any(|t| t["name"] == "datasource" && t["query"] == "prometheus"),
        "a Prometheus data source variable"
    );

    let mut charted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for p in panels {
        let title = str_at(p, "/title").to_owned();
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "id twice");
        assert!(p.pointer("/gridPos/w").is_some(), "{title} placed");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(str_at(p, "/datasource/uid"), "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} charts something");
        for t in targets {
            let found = promql_metrics(str_at(t, "/expr"));
            assert!(!found.is_empty(), "{title}: {t}");
            for m in found {
                charted.entry(m).or_default().push(title.clone());
            }
        }
    }
    for t in templating {
        if let Some(q) = t.pointer("/query/query").and_then(Value::as_str) {
            for m in promql_metrics(q) {
                charted
                    .entry(m)
                    .or_default()
                    .push(format!("${}", t["name"]));
            }
        }
    }

    // A real node, after produce, fetch and a refused produce.
    let node = TestNode::start();
    for (args, input) in [
        (&["logs", "create", "charted"][..], None),
        (&["produce", "charted"][..], Some(&b"a\nb\nc\n"[..])),
        (&["consume", "charted", "--from-beginning"][..], None),
    ] {
        let out = node.cli(args, input);
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
    }
    let out = node.cli(&["produce", "no-such-log"], Some(b"a\n"));
    assert_eq!(out.code, Some(2), "{out:?}");
    let scraped = sample_names(&node.scrape_metrics());
    for m in [
        "pyralog_produced_records_total",
        "pyralog_fetched_bytes_total",
        "pyralog_produce_seconds_bucket",
        "pyralog_errors_total",
    ] {
        assert!(scraped.contains(m), "{m} not in {scraped:?}");
    }
    let registry = registry_names();
    assert!(
        scraped.is_subset(&registry),
        "the registry is the node's: {:?}",
        scraped.difference(&registry).collect::<Vec<_>>()
    );
    let unknown: Vec<_> = charted
        .iter()
        .filter(|(m, _)| !scraped.contains(*m) && !registry.contains(*m))
        .collect();
    assert!(
        unknown.is_empty(),
        "charted but never exported: {unknown:?}"
    );
    // Every metric the node has is on the dashboard.
    let uncharted: Vec<_> = registry
        .iter()
        .filter(|m| {
            let family = m
                .trim_end_matches("_total")
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            !charted.keys().any(|c| c.starts_with(family))
        })
        .collect();
    assert!(uncharted.is_empty(), "not on the dashboard: {uncharted:?}");
}
