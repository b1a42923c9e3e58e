//! `pyralog bench`.

use pyralog_bench::{baseline, cold, report};

use crate::args::{BenchArgs, BenchWorkload};
use crate::client_cmds::Target;
use crate::error::{CliError, CliResult};

/// Hot bytes per archived segment in the cold benchmarks: the hot tier's default
/// `segment_bytes`, so objects are the size a node archives by default.
fn default_segment_bytes() -> u64 {
    pyralog_types::LogConfig::default().segment_bytes
}

pub(crate) async fn bench(server: &Target, args: BenchArgs) -> CliResult {
    match args.workload {
        BenchWorkload::Baseline { dir } => {
            let d = baseline::disk(&dir, 256 << 20, 1 << 20)
                .map_err(|e| CliError::runtime(e.to_string()))?;
            let tcp =
                baseline::loopback_tcp(1 << 30).map_err(|e| CliError::runtime(e.to_string()))?;
            println!(
                "raw append+fsync (1 MiB writes) in {}: {:.1} MB/s, fsync p50 {} us p99 {} us",
                dir.display(),
                d.append_fsync_mb_s,
                d.fsync_p50_us,
                d.fsync_p99_us
            );
            println!("loopback TCP: {tcp:.0} MB/s");
        }
        BenchWorkload::Tls(a) => {
            if a.records == 0 || a.record_bytes == 0 || a.connections == 0 {
                return Err(CliError::usage(
                    "--records, --record-bytes and --connections must be positive",
                ));
            }
            let opts = pyralog_bench::tls::TlsOptions {
                plain: pyralog_bench::tls::Target {
                    url: server.server.clone(),
                    options: pyralog_client::ClientOptions::default(),
                    pid: a.server_pid,
                },
                secure: pyralog_bench::tls::Target {
                    url: a.secure_server.clone(),
                    options: server.options.clone(),
                    pid: a.secure_pid,
                },
                records: a.records,
                record_bytes: a.record_bytes,
                connections: a.connections,
                latency_seconds: a.latency_seconds,
                progress: !a.quiet,
            };
            let rep = pyralog_bench::tls::run(&opts)
                .await
                .map_err(|e| CliError::runtime(e.to_string()))?;
            let md = rep.to_markdown();
            println!("{md}");
            if let Some(p) = a.markdown {
                std::fs::write(p, &md)?;
            }
            if let Some(p) = a.json {
                let json = serde_json::to_string_pretty(&rep)
                    .map_err(|e| CliError::runtime(e.to_string()))?;
                std::fs::write(p, json)?;
            }
        }
        BenchWorkload::Cold(a) => {
            if a.records == 0 || a.segment_records == Some(0) {
                return Err(CliError::usage(
                    "--records and --segment-records must be positive",
                ));
            }
            let (store, layout) = bench_store(&a.object_store, a.endpoint.as_deref())?;
            let tmp =
                std::env::temp_dir().join(format!("pyralog-bench-cache-{}", std::process::id()));
            let opts = cold::ColdOptions {
                store,
                layout,
                records: a.records,
                segment_records: match a.segment_records {
                    Some(n) => n,
                    None => cold::records_per_segment(default_segment_bytes())
                        .map_err(|e| CliError::runtime(e.to_string()))?,
                },
                cache_dir: a.cache_dir.clone().unwrap_or_else(|| tmp.clone()),
                readers: a.readers,
            };
            let result = cold::run(&opts).await;
            let _ = std::fs::remove_dir_all(&tmp);
            let rep = result.map_err(|e| CliError::runtime(e.to_string()))?;
            println!("{}", rep.to_markdown());
            if let Some(p) = a.json {
                let json = serde_json::to_string_pretty(&rep)
                    .map_err(|e| CliError::runtime(e.to_string()))?;
                std::fs::write(&p, json)?;
            }
        }
        BenchWorkload::Ledger(a) => {
            if a.records == 0 || a.segment_records == 0 {
                return Err(CliError::usage(
                    "--records and --segment-records must be positive",
                ));
            }
            let (store, layout) = bench_store(&a.object_store, a.endpoint.as_deref())?;
            let mut report = pyralog_bench::ledger::run(&pyralog_bench::ledger::LedgerOptions {
                store,
                layout,
                records: a.records,
                record_bytes: a.record_bytes,
                segment_records: a.segment_records,
            })
            .await
            .map_err(|e| CliError::runtime(e.to_string()))?;
            if a.produce_records > 0 {
                let client = connect(server).await?;
                let opts = pyralog_bench::ledger_produce::ProduceCompareOptions {
                    records: a.produce_records,
                    record_bytes: a.record_bytes,
                    rounds: a.produce_rounds.max(1),
                    fsync: a.produce_fsync.clone(),
                    progress: !a.quiet,
                };
                report.produce = Some(
                    pyralog_bench::ledger_produce::run(&client, &opts)
                        .await
                        .map_err(|e| CliError::runtime(e.to_string()))?,
                );
            }
            publish(
                &report.to_markdown(),
                &report,
                a.markdown.as_deref(),
                a.json.as_deref(),
            )?;
        }
        BenchWorkload::Replication(a) => {
            if a.records == 0 || a.record_bytes == 0 || a.partitions == 0 {
                return Err(CliError::usage(
                    "--records, --record-bytes and --partitions must be positive",
                ));
            }
            let client = connect(server).await?;
            let opts = pyralog_bench::replication::ReplicationOptions {
                records: a.records,
                record_bytes: a.record_bytes,
                partitions: a.partitions,
                latency_seconds: a.latency_seconds,
                progress: !a.quiet,
            };
            let report = pyralog_bench::replication::run(&client, &opts)
                .await
                .map_err(|e| CliError::runtime(e.to_string()))?;
            publish(
                &report.markdown(),
                &report,
                a.markdown.as_deref(),
                a.json.as_deref(),
            )?;
        }
        BenchWorkload::Groups(a) => {
            if a.records == 0 || a.record_bytes == 0 || a.partitions < 2 {
                return Err(CliError::usage(
                    "--records and --record-bytes must be positive and --partitions at least 2",
                ));
            }
            let client = connect(server).await?;
            let opts = pyralog_bench::groups::GroupsOptions {
                records: a.records,
                record_bytes: a.record_bytes,
                partitions: a.partitions,
                commit_seconds: a.commit_seconds,
                session_timeout: std::time::Duration::from_millis(a.session_timeout_ms),
                progress: !a.quiet,
            };
            let report = pyralog_bench::groups::run(&client, &opts)
                .await
                .map_err(|e| CliError::runtime(e.to_string()))?;
            publish(
                &report.markdown(),
                &report,
                a.markdown.as_deref(),
                a.json.as_deref(),
            )?;
        }
        BenchWorkload::Suite(a) => {
            if a.partitions.is_empty() || a.partitions.contains(&0) {
                return Err(CliError::usage("--partitions needs positive counts"));
            }
            if a.record_bytes.is_empty() || a.record_bytes.contains(&0) {
                return Err(CliError::usage("--record-bytes needs positive sizes"));
            }
            let client = connect(server).await?;
            let tmp =
                std::env::temp_dir().join(format!("pyralog-bench-cache-{}", std::process::id()));
            let cold = match &a.object_store {
                None => None,
                Some(url) => {
                    // W5/W6 write under their own fresh prefix of the node's store.
                    let url = format!(
                        "{}/bench-w5-{}",
                        url.trim_end_matches('/'),
                        std::process::id()
                    );
                    let cfg = pyralog_gateway::ObjectStoreConfig {
                        allow_http: a.endpoint.is_some(),
                        endpoint: a.endpoint.clone(),
                        ..pyralog_gateway::ObjectStoreConfig::for_url(url)
                    };
                    let store = pyralog_cold_tier::open_store(&cfg)
                        .map_err(|e| CliError::usage(e.to_string()))?;
                    let layout = cfg.layout().map_err(|e| CliError::usage(e.to_string()))?;
                    Some(report::ColdSuite {
                        options: cold::ColdOptions {
                            store,
                            layout,
                            records: a.cold_records,
                            segment_records: cold::records_per_segment(default_segment_bytes())
                                .map_err(|e| CliError::runtime(e.to_string()))?,
                            cache_dir: tmp.clone(),
                            readers: 32,
                        },
                        w7_mb: a.w7_mb,
                    })
                }
            };
            let peer = match &a.peer {
                None => None,
                Some(p) => {
                    let text = std::fs::read_to_string(p)?;
                    Some(
                        serde_json::from_str(&text)
                            .map_err(|e| CliError::usage(format!("--peer {}: {e}", p.display())))?,
                    )
                }
            };
            let opts = report::SuiteOptions {
                data_dir: a.data_dir,
                server_pid: a.server_pid,
                records: a.records,
                record_sizes: a.record_bytes,
                partitions: a.partitions,
                latency_seconds: a.latency_seconds,
                drain_mb: a.drain_mb,
                cold,
                peer,
                progress: !a.quiet,
            };
            let rep = report::run_suite(&client, &opts).await;
            let _ = std::fs::remove_dir_all(&tmp);
            let rep = rep.map_err(|e| CliError::runtime(e.to_string()))?;
            let md = rep.to_markdown();
            println!("{md}");
            if let Some(p) = a.json {
                let json = serde_json::to_string_pretty(&rep)
                    .map_err(|e| CliError::runtime(e.to_string()))?;
                std::fs::write(&p, json)?;
            }
            if let Some(p) = a.markdown {
                std::fs::write(&p, md)?;
            }
        }
    }
    Ok(())
}

/// Prints a report's Markdown and writes it, and its JSON, where asked.
fn publish(
    markdown: &str,
    report: &impl serde::Serialize,
    markdown_path: Option<&std::path::Path>,
    json_path: Option<&std::path::Path>,
) -> CliResult {
    println!("{markdown}");
    if let Some(path) = markdown_path {
        std::fs::write(path, markdown)?;
    }
    if let Some(path) = json_path {
        let json =
            serde_json::to_string_pretty(report).map_err(|e| CliError::runtime(e.to_string()))?;
        std::fs::write(path, json)?;
    }
    Ok(())
}

/// A client for a bench run; failing to connect is a runtime error (exit 1).
async fn connect(server: &Target) -> Result<pyralog_client::Client, CliError> {
    pyralog_client::Client::connect_with(&server.server, server.options.clone())
        .await
        .map_err(|e| CliError::runtime(e.to_string()))
}

/// The object store a cold-tier or ledger bench writes to (a custom endpoint allows http).
fn bench_store(
    url: &str,
    endpoint: Option<&str>,
) -> Result<
    (
        std::sync::Arc<dyn object_store::ObjectStore>,
        pyralog_cold_tier::Layout,
    ),
    CliError,
> {
    let cfg = pyralog_gateway::ObjectStoreConfig {
        allow_http: endpoint.is_some(),
        endpoint: endpoint.map(str::to_owned),
        ..pyralog_gateway::ObjectStoreConfig::for_url(url)
    };
    let store = pyralog_cold_tier::open_store(&cfg).map_err(|e| CliError::usage(e.to_string()))?;
    let layout = cfg.layout().map_err(|e| CliError::usage(e.to_string()))?;
    Ok((store, layout))
}
