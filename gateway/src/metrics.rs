//! Prometheus metrics of a node, in an explicit registry owned by the node (no global
//! recorder), served as text on `GET /metrics` of the metrics listener.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabels {
    pub log: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub log: String,
    pub partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub rpc: String,
    pub reason: String,
}

/// Every metric the node records.
#[derive(Debug)]
pub struct Metrics {
    pub produced_records: Family<LogLabels, Counter>,
    pub produced_bytes: Family<LogLabels, Counter>,
    /// Idempotent-producer retries answered from the log instead of appended again.
    pub duplicate_batches: Family<LogLabels, Counter>,
    pub fetched_bytes: Family<LogLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    /// Produce request latency (validation + append + fsync), seconds.
    pub produce_seconds: Histogram,
    pub segments_deleted: Counter,
    /// Segments and Parquet bytes committed to the cold tier, and failed archive runs.
    pub segments_archived: Counter,
    pub archived_bytes: Counter,
    pub archive_errors: Counter,
    /// 1 while a partition has a damaged local segment the archiver cannot read, else 0.
    pub corrupt_segments: Family<PartitionLabels, prometheus_client::metrics::gauge::Gauge>,
    pub compaction_runs: Counter,
    pub compaction_errors: Counter,
    pub compaction_bytes_reclaimed: Counter,
    pub compaction_segments_rewritten: Counter,
    /// Records above the compacted range, per log (summed over partitions).
    pub compaction_lag_records: Family<LogLabels, prometheus_client::metrics::gauge::Gauge>,
    /// Connections closed at accept by a `[server]` budget, by listener and limit.
    pub connections_refused: Family<ConnLabels, Counter>,
    /// Accepted connections the server closed (silent, idle, failed handshake).
    pub connections_closed: Family<ConnLabels, Counter>,
    pub connections_open: Family<ListenerLabels, prometheus_client::metrics::gauge::Gauge>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("pyralog");
        let produced_records = Family::<LogLabels, Counter>::default();
        let produced_bytes = Family::<LogLabels, Counter>::default();
        let duplicate_batches = Family::<LogLabels, Counter>::default();
        registry.register(
            "duplicate_batches",
            "Idempotent-producer retries answered with the original offsets (not appended)",
            duplicate_batches.clone(),
        );
        let fetched_bytes = Family::<LogLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let produce_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let segments_deleted = Counter::default();
        let segments_archived = Counter::default();
        let archived_bytes = Counter::default();
        let archive_errors = Counter::default();
        registry.register(
            "archived_segments",
            "Segments committed to the cold tier",
            segments_archived.clone(),
        );
        registry.register(
            "archived_bytes",
            "Parquet bytes committed to the cold tier",
            archived_bytes.clone(),
        );
        registry.register(
            "archive_errors",
            "Archive runs of a partition that failed (retried)",
            archive_errors.clone(),
        );
        let corrupt_segments =
            Family::<PartitionLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "corrupt_segments",
            "Damaged local segments the archiver stopped at (repair: pyralog logs repair)",
            corrupt_segments.clone(),
        );
        registry.register(
            "produced_records",
            "Records appended",
            produced_records.clone(),
        );
        registry.register(
            "produced_bytes",
            "Batch bytes appended",
            produced_bytes.clone(),
        );
        registry.register("fetched_bytes", "Batch bytes served", fetched_bytes.clone());
        registry.register("errors", "Requests answered with an error", errors.clone());
        registry.register(
            "produce_seconds",
            "Produce request latency",
            produce_seconds.clone(),
        );
        registry.register(
            "retention_deleted_segments",
            "Segments deleted by retention",
            segments_deleted.clone(),
        );
        let compaction_runs = Counter::default();
        let compaction_errors = Counter::default();
        let compaction_bytes_reclaimed = Counter::default();
        let compaction_segments_rewritten = Counter::default();
        let compaction_lag_records =
            Family::<LogLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "compaction_runs",
            "Compaction passes run (one per partition)",
            compaction_runs.clone(),
        );
        registry.register(
            "compaction_errors",
            "Compaction passes that failed (retried next interval)",
            compaction_errors.clone(),
        );
        registry.register(
            "compaction_reclaimed_bytes",
            "Stored bytes freed by compaction rewrites, both tiers",
            compaction_bytes_reclaimed.clone(),
        );
        registry.register(
            "compaction_rewritten_segments",
            "Segments rewritten by compaction, both tiers",
            compaction_segments_rewritten.clone(),
        );
        registry.register(
            "compaction_lag_records",
            "Offsets between the compacted range and the high watermark",
            compaction_lag_records.clone(),
        );
        let connections_refused = Family::<ConnLabels, Counter>::default();
        let connections_closed = Family::<ConnLabels, Counter>::default();
        let connections_open =
            Family::<ListenerLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "connections_refused",
            "Connections closed right after accept: a [server] connection budget was full",
            connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Accepted connections closed by the server (first_bytes_timeout, idle_timeout, handshake_failed)",
            connections_closed.clone(),
        );
        registry.register(
            "connections_open",
            "Connections a listener holds",
            connections_open.clone(),
        );
        Arc::new(Metrics {
            produced_records,
            produced_bytes,
            duplicate_batches,
            fetched_bytes,
            errors,
            produce_seconds,
            segments_deleted,
            segments_archived,
            archived_bytes,
            archive_errors,
            corrupt_segments,
            compaction_runs,
            compaction_errors,
            compaction_bytes_reclaimed,
            compaction_segments_rewritten,
            compaction_lag_records,
            connections_refused,
            connections_closed,
            connections_open,
            registry,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl pyralog_security::limits::ConnObserver for Metrics {
    fn refused(&self, listener: &'static str, why: pyralog_security::limits::Refusal) {
        self.connections_refused
            .get_or_create(&ConnLabels {
                listener: listener.to_owned(),
                reason: why.as_str().to_owned(),
            })
            .inc();
    }

    fn closed(&self, listener: &'static str, why: pyralog_security::limits::Closed) {
        self.connections_closed
            .get_or_create(&ConnLabels {
                listener: listener.to_owned(),
                reason: why.as_str().to_owned(),
            })
            .inc();
    }

    fn open(&self, listener: &'static str, count: usize) {
        self.connections_open
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    metrics: Arc<Metrics>,
    security: Arc<crate::access::NodeSecurity>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let m = metrics.clone();
            let security = security.clone();
            async move {
                use axum::response::IntoResponse;
                let auth = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if !security.metrics_authorized(auth) {
                    tracing::warn!(target: "pyralog::audit", "metrics request without the metrics token refused");
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Bearer")],
                        "metrics need `authorization: Bearer <metrics token>`\n",
                    )
                        .into_response();
                }
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
