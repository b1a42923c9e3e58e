//! Client commands: logs, produce, consume, offsets.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use pyralog_client::{
    AckPolicy, Client, ClientError, ClientOptions, Compression, ConsumerConfig, DeliveryFuture,
    Header, LogInfo, LogOffset, PartitionConsumer, ProduceRecord, Producer, ProducerConfig, Record,
};
use pyralog_proto::v1;
use tokio::sync::mpsc;

use crate::args::{
    Acks, ClusterArgs, ClusterCommand, CompactionArgs, CompactionCommand, ConsumeArgs, CreateArgs,
    LogsArgs, LogsCommand, OffsetsArgs, OutputFormat, ProduceArgs,
};
use crate::error::{CliError, CliResult};

/// Where client commands connect, and with which TLS files and credentials.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) server: String,
    pub(crate) options: ClientOptions,
}

pub(crate) async fn connect(server: &Target) -> Result<Client, CliError> {
    Client::connect_with(&server.server, server.options.clone())
        .await
        .map_err(|e| match e {
            ClientError::Connect { .. } => {
                CliError::runtime(format!("{e} (is a node running? try `pyralog dev`)"))
            }
            other => other.into(),
        })
}

fn parse_duration_ms(field: &str, s: &str) -> Result<u64, CliError> {
    humantime::parse_duration(s)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| CliError::usage(format!("--{field} {s:?}: {e}")))
}

/// RFC 3339 (`2026-11-24T10:00:00Z`) or microseconds since the Unix epoch.
pub(crate) fn parse_timestamp(s: &str) -> Result<i64, CliError> {
    if let Ok(us) = s.parse::<i64>() {
        return Ok(us);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        CliError::usage(format!(
            "timestamp {s:?}: {e} (use RFC 3339 or microseconds since the epoch)"
        ))
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| CliError::usage(format!("timestamp {s:?} is before 1970")))?;
    Ok(d.as_micros() as i64)
}

pub(crate) async fn logs(server: &Target, args: LogsArgs) -> CliResult {
    match args.command {
        LogsCommand::Create(c) => {
            let config = create_config(&c)?;
            let client = connect(server).await?;
            let info = client.create_log(&c.name, config).await?;
            println!(
                "created log {} with {} partitions",
                info.name, info.config.partition_count
            );
        }
        LogsCommand::List => {
            let client = connect(server).await?;
            let logs = client.list_logs().await?;
            println!("{:<40} {:>10} {:>16}", "LOG", "PARTITIONS", "RECORDS");
            for l in logs {
                let records: u64 = l
                    .partitions
                    .iter()
                    .map(|p| p.high_watermark.0 - p.start_offset.0)
                    .sum();
                println!(
                    "{:<40} {:>10} {:>16}",
                    l.name, l.config.partition_count, records
                );
            }
        }
        LogsCommand::Describe { name } => {
            let client = connect(server).await?;
            print_description(&client.describe_log(&name).await?)?;
        }
        LogsCommand::Delete { name, break_glass } => {
            let client = connect(server).await?;
            client.delete_log_with(&name, break_glass).await?;
            println!("deleted log {name}");
        }
        LogsCommand::Alter { name, partitions } => {
            let client = connect(server).await?;
            let info = client.add_partitions(&name, partitions).await?;
            println!("log {name} has {} partitions", info.config.partition_count);
        }
        LogsCommand::Roll { name, partition } => {
            let client = connect(server).await?;
            client.roll_segments(&name, partition).await?;
            println!("rolled segments of {name}");
        }
        LogsCommand::Repair { name, partition } => {
            let client = connect(server).await?;
            let mut failed = None;
            for (node, answer) in client.repair_partition(&name, partition).await? {
                match answer {
                    Ok(r) if r.damaged => println!(
                        "node {node}: damaged from offset {} ({}); left the ISR, cut its copy \
                         there and fetches it again from node {} (epoch {})",
                        r.cut_at, r.detail, r.leader, r.epoch
                    ),
                    Ok(_) => println!("node {node}: healthy, nothing to repair"),
                    Err(e) => {
                        println!("node {node}: {e}");
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// `--<flag> AGE|infinite` and `--<flag>-bytes N` as one retention.
fn retention_arg(
    flag: &str,
    age: Option<&str>,
    bytes: Option<u64>,
) -> Result<Option<v1::Retention>, CliError> {
    Ok(match (age, bytes) {
        (None, None) => None,
        (Some("infinite"), bytes) => Some(v1::Retention {
            max_age_ms: None,
            max_bytes: bytes,
        }),
        (Some(r), bytes) => Some(v1::Retention {
            max_age_ms: Some(parse_duration_ms(flag, r)?),
            max_bytes: bytes,
        }),
        (None, Some(b)) => Some(v1::Retention {
            max_age_ms: None,
            max_bytes: Some(b),
        }),
    })
}

fn create_config(c: &CreateArgs) -> Result<v1::LogConfig, CliError> {
    let retention = retention_arg("retention", c.retention.as_deref(), c.retention_bytes)?;
    let local_retention = retention_arg(
        "local-retention",
        c.local_retention.as_deref(),
        c.local_retention_bytes,
    )?;
    let compaction = match c.compaction.as_deref() {
        None => v1::CompactionMode::Unspecified,
        Some("none") => v1::CompactionMode::None,
        Some("delete_markers") => v1::CompactionMode::DeleteMarkers,
        Some("key_based") => v1::CompactionMode::KeyBased,
        Some("time_series") => v1::CompactionMode::TimeSeries,
        Some(other) => {
            return Err(CliError::usage(format!(
                "--compaction {other:?}: use none, delete_markers, key_based or time_series"
            )))
        }
    };
    let integrity = match c.integrity.as_deref() {
        None => v1::Integrity::Unspecified,
        Some("none") => v1::Integrity::None,
        Some("ledger") => v1::Integrity::Ledger,
        Some(other) => {
            return Err(CliError::usage(format!(
                "--integrity {other:?}: use none or ledger"
            )))
        }
    };
    Ok(v1::LogConfig {
        partition_count: c.partitions,
        replication_factor: c.replication_factor,
        min_in_sync_replicas: c.min_in_sync_replicas,
        retention,
        local_retention,
        compaction: compaction as i32,
        segment_bytes: c.segment_bytes,
        segment_ms: c
            .segment_age
            .as_deref()
            .map(|s| parse_duration_ms("segment-age", s))
            .transpose()?,
        fsync: c.fsync.clone(),
        max_record_bytes: c.max_record_bytes,
        max_batch_bytes: c.max_batch_bytes,
        min_compaction_lag_ms: opt_ms("min-compaction-lag", &c.min_compaction_lag)?,
        compaction_interval_ms: opt_ms("compaction-interval", &c.compaction_interval)?,
        delete_retention_ms: opt_ms("delete-retention", &c.delete_retention)?,
        time_series: time_series_arg(c)?,
        integrity: integrity as i32,
        ..Default::default()
    })
}

fn opt_ms(field: &str, v: &Option<String>) -> Result<Option<u64>, CliError> {
    v.as_deref()
        .map(|s| parse_duration_ms(field, s))
        .transpose()
}

/// `--ts-value-field`, `--ts-tags`, `--ts-tiers 1d=10m,7d=1h` as a time-series spec.
fn time_series_arg(c: &CreateArgs) -> Result<Option<v1::TimeSeriesSpec>, CliError> {
    let Some(field) = &c.ts_value_field else {
        if !c.ts_tiers.is_empty() || !c.ts_tags.is_empty() {
            return Err(CliError::usage(
                "--ts-tiers and --ts-tags need --ts-value-field",
            ));
        }
        return Ok(None);
    };
    let mut tiers = Vec::with_capacity(c.ts_tiers.len());
    for t in &c.ts_tiers {
        let Some((after, bucket)) = t.split_once('=') else {
            return Err(CliError::usage(format!(
                "--ts-tiers {t:?}: write AFTER=BUCKET, e.g. 1d=10m"
            )));
        };
        tiers.push(v1::DownsampleTier {
            after_ms: parse_duration_ms("ts-tiers", after)?,
            bucket_ms: parse_duration_ms("ts-tiers", bucket)?,
        });
    }
    Ok(Some(v1::TimeSeriesSpec {
        value_field: field.clone(),
        tags: c.ts_tags.clone(),
        tiers,
    }))
}

/// `pyralog compaction run|status LOG`.
pub(crate) async fn cluster(server: &Target, args: ClusterArgs) -> CliResult {
    let client = connect(server).await?;
    match args.command {
        ClusterCommand::Describe => {
            let d = client.describe_cluster().await?;
            if !d.clustered {
                println!("standalone node {} (no controller)", d.answered_by);
            }
            let leader = match d.controller_leader {
                0 => "unknown".to_owned(),
                id => id.to_string(),
            };
            println!(
                "controller leader: {leader} (as node {} sees it)",
                d.answered_by
            );
            println!(
                "{:>6}  {:<22} {:<6} {:<8} {:<12}",
                "node", "address", "voter", "state", "rack"
            );
            for n in &d.nodes {
                let state = match (n.fenced, n.draining) {
                    (true, _) => "fenced",
                    (false, true) => "draining",
                    (false, false) => "live",
                };
                println!(
                    "{:>6}  {:<22} {:<6} {:<8} {:<12}",
                    n.node_id,
                    n.address,
                    if n.voter { "yes" } else { "no" },
                    state,
                    n.rack.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        ClusterCommand::Reassign {
            log,
            partition,
            replicas,
        } => {
            client
                .reassign_partitions(vec![(log.clone(), partition, replicas.clone())])
                .await?;
            println!("moving {log}/{partition} to replicas {replicas:?}");
            Ok(())
        }
        ClusterCommand::Decommission { node } => {
            let moving = client.decommission_node(node).await?;
            println!("decommissioning node {node}: {moving} partitions move off it");
            Ok(())
        }
    }
}

pub(crate) async fn compaction(server: &Target, args: CompactionArgs) -> CliResult {
    let client = connect(server).await?;
    match args.command {
        CompactionCommand::Run { name } => {
            let passes = client.run_compaction(&name).await?;
            println!(
                "{:>9} {:>12} {:>12} {:>12} {:>14} {:>14} {:>9}  note",
                "partition", "read", "before", "after", "bytes before", "bytes after", "segments"
            );
            let mut failed = false;
            for p in &passes {
                let note = if !p.error.is_empty() {
                    failed = true;
                    format!("failed: {}", p.error)
                } else if p.stale {
                    "manifest moved; nothing committed".to_owned()
                } else if p.skipped {
                    "nothing new since the last pass".to_owned()
                } else {
                    String::new()
                };
                println!(
                    "{:>9} {:>12} {:>12} {:>12} {:>14} {:>14} {:>9}  {note}",
                    p.partition,
                    p.records_read,
                    p.records_before,
                    p.records_after,
                    p.bytes_before,
                    p.bytes_after,
                    p.segments_rewritten + p.segments_removed,
                );
            }
            if failed {
                return Err(CliError::runtime("compaction failed on some partitions"));
            }
        }
        CompactionCommand::Status { name } => {
            let status = client.compaction_status(&name).await?;
            println!(
                "{:>9} {:>14} {:>6} {:>16} {:>12} {:>16} {:>10}  last error",
                "partition",
                "mode",
                "runs",
                "cleaned through",
                "lag",
                "bytes reclaimed",
                "segments"
            );
            for s in &status {
                let mode = v1::CompactionMode::try_from(s.mode)
                    .map(|m| {
                        m.as_str_name()
                            .trim_start_matches("COMPACTION_MODE_")
                            .to_lowercase()
                    })
                    .unwrap_or_else(|_| s.mode.to_string());
                println!(
                    "{:>9} {:>14} {:>6} {:>16} {:>12} {:>16} {:>10}  {}",
                    s.partition,
                    mode,
                    s.runs,
                    s.cleaned_through.map_or("-".to_owned(), |o| o.to_string()),
                    s.lag_records,
                    s.bytes_reclaimed,
                    s.segments_rewritten,
                    s.last_error
                );
            }
        }
    }
    Ok(())
}

fn print_description(info: &LogInfo) -> CliResult {
    println!("log: {}", info.name);
    let config = toml::to_string(&info.config).map_err(|e| CliError::runtime(e.to_string()))?;
    println!("[config]\n{config}");
    println!(
        "{:>9} {:>20} {:>20} {:>6} {:>14} {:>8} {:>6} {:<10} {:<10}",
        "PARTITION",
        "START",
        "HIGH_WATERMARK",
        "EPOCH",
        "LOCAL_BYTES",
        "SEGMENTS",
        "LEADER",
        "REPLICAS",
        "ISR"
    );
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    for p in &info.partitions {
        println!(
            "{:>9} {:>20} {:>20} {:>6} {:>14} {:>8} {:>6} {:<10} {:<10}",
            p.partition,
            p.start_offset.0,
            p.high_watermark.0,
            p.epoch.0,
            p.local_bytes,
            p.local_segments,
            p.leader
                .as_ref()
                .map_or_else(|| "-".to_owned(), |(id, _)| id.to_string()),
            ids(&p.replicas),
            ids(&p.isr)
        );
    }
    for p in info.partitions.iter().filter(|p| !p.target.is_empty()) {
        println!(
            "MOVING partition {} to replicas {} (switches once all of them are in sync)",
            p.partition,
            ids(&p.target)
        );
    }
    if let Some(p) = info.partitions.first() {
        println!(
            "(offsets and sizes as node {} sees them; it is a {} here)",
            p.answered_by, p.role
        );
    }
    if info.partitions.iter().any(|p| p.archive.is_some()) {
        println!(
            "{:>9} {:>20} {:>20} {:>8} {:>14} {:>9} {:<24} {:<8}",
            "PARTITION",
            "ARCHIVE_START",
            "ARCHIVED_THROUGH",
            "OBJECTS",
            "BYTES",
            "MANIFEST",
            "LAST_ARCHIVED",
            "IN_TABLE"
        );
        for p in &info.partitions {
            let Some(a) = &p.archive else { continue };
            let when = match a.committed_at_us {
                0 => "-".to_owned(),
                us => humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64),
                )
                .to_string(),
            };
            let in_table = match a.in_table {
                Some(true) => "yes",
                Some(false) => "pending",
                None => "-",
            };
            println!(
                "{:>9} {:>20} {:>20} {:>8} {:>14} {:>9} {:<24} {:<8}",
                p.partition,
                a.start_offset.0,
                a.end_offset.0,
                a.objects,
                a.bytes,
                a.manifest_version,
                when,
                in_table
            );
        }
    }
    if let Some(t) = &info.table {
        let snapshot = t
            .snapshot_id
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        println!(
            "iceberg table: {} (snapshot {snapshot})",
            t.metadata_location
        );
    }
    for p in &info.partitions {
        if let Some((offset, detail)) = &p.corrupt {
            println!(
                "CORRUPT partition {}: node {} cannot read from offset {} ({detail});                  repair with `pyralog logs repair {} --partition {}`",
                p.partition, p.answered_by, offset.0, info.name, p.partition
            );
        }
    }
    Ok(())
}

fn parse_headers(raw: &[String]) -> Result<Vec<Header>, CliError> {
    raw.iter()
        .map(|h| {
            let (k, v) = h
                .split_once('=')
                .ok_or_else(|| CliError::usage(format!("--header {h:?}: expected name=value")))?;
            Ok(Header {
                key: k.to_owned(),
                value: Bytes::copy_from_slice(v.as_bytes()),
            })
        })
        .collect()
}

pub(crate) async fn produce(server: &Target, args: ProduceArgs) -> CliResult {
    let headers = parse_headers(&args.headers)?;
    let client = connect(server).await?;
    // Fail early (exit 2) on an unknown or invalid log.
    let info = client.describe_log(&args.log).await?;
    // Batches never exceed what the log accepts.
    let log_limit = info.config.max_batch_bytes as usize;
    let producer = Producer::new(
        client,
        ProducerConfig {
            batch_bytes: args.batch_bytes.min(log_limit),
            linger: Duration::from_millis(args.linger_ms),
            compression: if args.zstd {
                Compression::Zstd(1)
            } else {
                Compression::None
            },
            acks: match args.acks {
                Acks::None => AckPolicy::None,
                Acks::Leader => AckPolicy::Leader,
                Acks::Quorum => AckPolicy::Quorum,
                Acks::All => AckPolicy::All,
            },
            enable_idempotence: args.idempotent || args.producer_name.is_some(),
            producer_name: args.producer_name.clone(),
            ..Default::default()
        },
    );
    let (line_tx, mut line_rx) = mpsc::channel::<String>(10_000);
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line_tx.blocking_send(line?).is_err() {
                break;
            }
        }
        Ok(())
    });
    let fixed_key = args.key.map(|k| Bytes::from(k.into_bytes()));
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut sent = 0u64;
    let mut failed: Option<CliError> = None;
    while let Some(line) = line_rx.recv().await {
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (
                    Some(Bytes::copy_from_slice(k.as_bytes())),
                    Bytes::copy_from_slice(v.as_bytes()),
                ),
                None => (None, Bytes::from(line.into_bytes())),
            },
            None => (fixed_key.clone(), Bytes::from(line.into_bytes())),
        };
        let record = ProduceRecord {
            key,
            value: Some(value),
            headers: headers.clone(),
            timestamp: None,
            partition: args.partition,
            dedup_id: None,
        };
        let record = if args.dedup_by_key {
            let id = record
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            ProduceRecord {
                dedup_id: id,
                ..record
            }
        } else {
            record
        };
        pending.push_back(producer.send(&args.log, record).await?);
        sent += 1;
        while pending.len() > 100_000 {
            if let Some(f) = pending.pop_front() {
                if let Err(e) = f.await {
                    failed = Some(e.into());
                }
            }
        }
        if failed.is_some() {
            break;
        }
    }
    producer.flush().await?;
    for f in pending {
        if let Err(e) = f.await {
            failed.get_or_insert(e.into());
        }
    }
    if let Err(e) = producer.close().await {
        failed.get_or_insert(e.into());
    }
    match reader.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(CliError::runtime(format!("reading stdin: {e}"))),
        Err(_) => return Err(CliError::runtime("stdin reader panicked")),
    }
    if let Some(e) = failed {
        return Err(e);
    }
    eprintln!("produced {sent} records to {}", args.log);
    Ok(())
}

pub(crate) async fn consume(server: &Target, args: ConsumeArgs) -> CliResult {
    if let Some(group) = args.group.clone() {
        return crate::group_cmds::consume_group(server, args, group).await;
    }
    let client = connect(server).await?;
    let info = client.describe_log(&args.log).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p < info.config.partition_count => vec![p],
        Some(p) => {
            return Err(CliError::usage(format!(
                "log {} has {} partitions; partition {p} does not exist",
                args.log, info.config.partition_count
            )))
        }
        None => (0..info.config.partition_count).collect(),
    };
    let timestamp = args.timestamp.as_deref().map(parse_timestamp).transpose()?;
    let (tx, mut rx) = mpsc::channel::<Result<(u32, Vec<Record>), CliError>>(64);
    for p in partitions {
        let desc = info.partitions.iter().find(|d| d.partition == p).cloned();
        let end = desc.as_ref().map_or(LogOffset::ZERO, |d| d.high_watermark);
        let start = if let Some(o) = args.offset {
            LogOffset(o)
        } else if args.from_beginning || timestamp.is_some() {
            desc.as_ref().map_or(LogOffset::ZERO, |d| d.start_offset)
        } else {
            end
        };
        let mut consumer = PartitionConsumer::new(
            client.clone(),
            &args.log,
            p,
            start,
            ConsumerConfig {
                wait: if args.follow {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                },
                ..Default::default()
            },
        );
        let tx = tx.clone();
        let follow = args.follow;
        tokio::spawn(async move {
            if let Some(ts) = timestamp {
                if let Err(e) = consumer.seek_to_timestamp(ts).await {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
            loop {
                if !follow && consumer.position() >= end {
                    break;
                }
                let before = consumer.position();
                match consumer.poll().await {
                    // An empty answer that moved the position is a gap (compaction removed
                    // the records there): go on to the high watermark. One that did not move
                    // it means nothing more is readable now.
                    Ok(records) if records.is_empty() && !follow => {
                        if consumer.position() <= before {
                            break;
                        }
                    }
                    Ok(records) if records.is_empty() => {}
                    Ok(records) => {
                        if tx.send(Ok((p, records))).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        break;
                    }
                }
            }
        });
    }
    drop(tx);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let limit = args.max_records.unwrap_or(u64::MAX);
    'outer: while printed < limit {
        let Some(msg) = rx.recv().await else { break };
        let (p, records) = msg?;
        for r in records {
            print_record(&mut out, p, &r, args.format, args.verbose)?;
            printed += 1;
            // Exit as soon as the N-th record is out, not at the next poll (which may
            // never come under --follow).
            if printed >= limit {
                break 'outer;
            }
        }
        if args.follow {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn print_record(
    out: &mut impl Write,
    partition: u32,
    r: &Record,
    format: OutputFormat,
    verbose: bool,
) -> CliResult {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    match format {
        OutputFormat::Text if verbose => writeln!(
            out,
            "{partition}:{}\t{}\t{}",
            r.offset.0,
            text(&r.key).unwrap_or_default(),
            text(&r.value).unwrap_or_default()
        )?,
        OutputFormat::Text => writeln!(out, "{}", text(&r.value).unwrap_or_default())?,
        OutputFormat::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.key.clone(),
                        serde_json::Value::String(String::from_utf8_lossy(&h.value).into_owned()),
                    )
                })
                .collect();
            let v = serde_json::json!({
                "partition": partition,
                "offset": r.offset.0,
                "epoch": r.epoch.0,
                "timestamp_us": r.timestamp,
                "key": text(&r.key),
                "value": text(&r.value),
                "headers": headers,
            });
            writeln!(out, "{v}")?;
        }
    }
    Ok(())
}

pub(crate) async fn offsets(server: &Target, args: OffsetsArgs) -> CliResult {
    let ts = args.timestamp.as_deref().map(parse_timestamp).transpose()?;
    let client = connect(server).await?;
    let offsets = client.list_offsets(&args.log, ts).await?;
    println!(
        "{:>9} {:>20} {:>20} {:>20}",
        "PARTITION", "EARLIEST", "LATEST", "FOR_TIMESTAMP"
    );
    for o in offsets {
        println!(
            "{:>9} {:>20} {:>20} {:>20}",
            o.partition,
            o.earliest,
            o.latest,
            o.offset_for_timestamp
                .map_or_else(|| "-".to_owned(), |x| x.to_string())
        );
    }
    Ok(())
}
