//! `pyralog groups ...` and `pyralog consume --group`.

use std::io::Write;
use std::time::Duration;

use pyralog_client::{AssignmentStrategy, GroupConfig, GroupConsumer, OffsetReset};
use pyralog_proto::v1;

use crate::args::{ConsumeArgs, GroupsArgs, GroupsCommand, ResetOffsetsArgs, StrategyArg};
use crate::client_cmds::{connect, parse_timestamp, print_record, Target};
use crate::error::{CliError, CliResult};

fn strategy_name(s: i32) -> &'static str {
    match v1::AssignmentStrategy::try_from(s) {
        Ok(v1::AssignmentStrategy::Range) => "range",
        Ok(v1::AssignmentStrategy::RoundRobin) => "round-robin",
        _ => "sticky",
    }
}

fn partitions_text(lps: &[v1::LogPartitions]) -> String {
    let parts: Vec<String> = lps
        .iter()
        .map(|lp| {
            let ps: Vec<String> = lp.partitions.iter().map(ToString::to_string).collect();
            format!("{}[{}]", lp.log, ps.join(","))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

pub(crate) async fn groups(server: &Target, args: GroupsArgs) -> CliResult {
    let client = connect(server).await?;
    let mut out = std::io::stdout().lock();
    match args.command {
        GroupsCommand::List => {
            writeln!(out, "GROUP\tMEMBERS\tGENERATION\tSTRATEGY")?;
            for g in client.list_groups().await? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    g.group,
                    g.members,
                    g.generation,
                    strategy_name(g.strategy)
                )?;
            }
        }
        GroupsCommand::Describe { group } => {
            let d = client.describe_group(&group).await?;
            writeln!(
                out,
                "group {} generation {} strategy {} members {}",
                d.group,
                d.generation,
                strategy_name(d.strategy),
                d.members.len()
            )?;
            if !d.members.is_empty() {
                writeln!(out, "\nMEMBER\tCLIENT\tGENERATION\tASSIGNED\tREVOKING")?;
                for m in &d.members {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        m.member_id,
                        m.client_id,
                        m.generation,
                        partitions_text(&m.assignment),
                        partitions_text(&m.revoking)
                    )?;
                }
            }
            writeln!(out, "\nLOG\tPARTITION\tCOMMITTED\tHW\tLAG\tVLSN\tOWNER")?;
            for p in &d.partitions {
                let or_dash = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p.log,
                    p.partition,
                    or_dash(p.committed),
                    p.high_watermark,
                    p.lag,
                    or_dash(p.vlsn),
                    if p.owner.is_empty() { "-" } else { &p.owner }
                )?;
            }
        }
        GroupsCommand::ResetOffsets(a) => reset_offsets(&client, a, &mut out).await?,
        GroupsCommand::Delete { group } => {
            client.delete_group(&group).await?;
            writeln!(out, "deleted group {group}")?;
        }
    }
    Ok(())
}

async fn reset_offsets(
    client: &pyralog_client::Client,
    a: ResetOffsetsArgs,
    out: &mut impl Write,
) -> CliResult {
    use v1::reset_offsets_request::To;
    let to = if a.to_earliest {
        To::Earliest(true)
    } else if a.to_latest {
        To::Latest(true)
    } else if let Some(o) = a.to_offset {
        To::Offset(o)
    } else if let Some(ts) = &a.to_timestamp {
        To::TimestampUs(parse_timestamp(ts)?)
    } else {
        return Err(CliError::usage(
            "say where to: --to-earliest, --to-latest, --to-offset or --to-timestamp",
        ));
    };
    let offsets = client
        .reset_offsets(v1::ResetOffsetsRequest {
            group: a.group.clone(),
            log: a.log,
            partitions: a.partition,
            to: Some(to),
            dry_run: a.dry_run,
        })
        .await?;
    writeln!(out, "LOG\tPARTITION\tNEW OFFSET")?;
    for o in offsets {
        writeln!(out, "{}\t{}\t{}", o.log, o.partition, o.offset)?;
    }
    if a.dry_run {
        writeln!(out, "(dry run: nothing committed)")?;
    }
    Ok(())
}

/// `consume --group`: a group member printing what it is given; positions are committed
/// only after the records were printed and flushed (inside the next poll), so a consumer
/// killed at any point makes the next owner print some records again, never skip one.
pub(crate) async fn consume_group(server: &Target, args: ConsumeArgs, group: String) -> CliResult {
    let client = connect(server).await?;
    // Fail early (exit 2) on an unknown log.
    client.describe_log(&args.log).await?;
    let mut config = GroupConfig::new(group, vec![args.log.clone()]);
    config.client_id = "pyralog-cli".into();
    config.strategy = match args.strategy {
        StrategyArg::Range => AssignmentStrategy::Range,
        StrategyArg::RoundRobin => AssignmentStrategy::RoundRobin,
        StrategyArg::Sticky => AssignmentStrategy::Sticky,
    };
    config.session_timeout = Duration::from_millis(args.session_timeout_ms);
    config.heartbeat_interval = (config.session_timeout / 4).max(Duration::from_millis(50));
    config.auto_commit = Some(Duration::from_millis(args.commit_interval_ms));
    config.reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut consumer = GroupConsumer::subscribe(client, config).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let limit = args.max_records.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    while printed < limit {
        let polled = tokio::select! {
            r = consumer.poll(Duration::from_secs(1)) => r,
            _ = &mut stop => break,
        };
        let records = match polled {
            Ok(r) => r,
            // A node or the controller leader going away: try again.
            Err(e) if e.is_retriable() => {
                eprintln!("warning: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if records.is_empty() && !args.follow {
            break;
        }
        for r in records {
            if printed >= limit {
                // Not printed: read it again next time (the position goes back to it).
                consumer.seek(&r.log, r.partition, r.record.offset.0);
                continue;
            }
            print_record(&mut out, r.partition, &r.record, args.format, args.verbose)?;
            printed += 1;
        }
        // Flushed before the next poll commits these positions.
        out.flush()?;
    }
    out.flush()?;
    consumer.close().await?;
    Ok(())
}
