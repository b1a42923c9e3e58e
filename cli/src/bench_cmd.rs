//! `pyralog bench`.

use pyralog_bench::{baseline, report};

use crate::args::{BenchArgs, BenchWorkload};
use crate::error::{CliError, CliResult};

pub(crate) async fn bench(server: &str, args: BenchArgs) -> CliResult {
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
        BenchWorkload::Suite(a) => {
            if a.partitions.is_empty() || a.partitions.contains(&0) {
                return Err(CliError::usage("--partitions needs positive counts"));
            }
            let client = pyralog_client::Client::connect(server)
                .await
                .map_err(|e| CliError::runtime(e.to_string()))?;
            let opts = report::SuiteOptions {
                data_dir: a.data_dir,
                server_pid: a.server_pid,
                records: a.records,
                record_bytes: a.record_bytes,
                partitions: a.partitions,
                latency_seconds: a.latency_seconds,
                progress: !a.quiet,
            };
            let rep = report::run_suite(&client, &opts)
                .await
                .map_err(|e| CliError::runtime(e.to_string()))?;
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
