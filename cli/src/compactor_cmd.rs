//! `pyralog compactor --config FILE`: the standalone, cold-only compactor.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use std::sync::Arc;

use pyralog_cold_tier::WriteOnce;
use pyralog_compactor::{StandaloneCompactor, StandaloneConfig};
use pyralog_object_lock::S3ObjectLock;

use crate::args::{CompactorArgs, LogFormat};
use crate::error::{CliError, CliResult};
use crate::node_cmds::init_tracing;

/// Defaults ← file ← `PYRALOG_COMPACTOR__*` environment.
fn load(args: &CompactorArgs) -> Result<StandaloneConfig, CliError> {
    if !args.config.exists() {
        return Err(CliError::usage(format!(
            "config file {} does not exist",
            args.config.display()
        )));
    }
    Figment::from(Serialized::defaults(StandaloneConfig::default()))
        .merge(Toml::file_exact(&args.config))
        .merge(Env::prefixed("PYRALOG_COMPACTOR__").split("__"))
        .extract()
        .map_err(|e| CliError::usage(format!("compactor config: {e}")))
}

pub(crate) async fn run(args: CompactorArgs, format: LogFormat) -> CliResult {
    init_tracing(format);
    let config = load(&args)?;
    if config.store.url.is_empty() || config.store.url.starts_with("memory:") {
        return Err(CliError::usage(
            "compactor config: [store] url must name the bucket the nodes archive to",
        ));
    }
    let interval = config.interval;
    let write_once: Option<Arc<dyn WriteOnce>> = match config.object_lock {
        Some(settings) => {
            let lock = S3ObjectLock::new(&config.store, settings)
                .map_err(|e| CliError::usage(format!("compactor config: {e}")))?;
            lock.check_bucket()
                .await
                .map_err(|e| CliError::usage(format!("cannot use the object store: {e}")))?;
            Some(Arc::new(lock))
        }
        None => None,
    };
    let compactor = StandaloneCompactor::open_with(config, write_once)
        .await
        .map_err(|e| CliError::usage(format!("cannot use the object store: {e}")))?;
    let clock = pyralog_types::clock::system();
    tracing::info!(url = %compactor.config().store.url, ?interval, "standalone compactor started");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let passes = tokio::select! {
            r = compactor.run_once(clock.now_micros()) => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match passes {
            Ok(passes) => {
                let failed = passes.iter().filter(|p| p.compaction.is_err()).count();
                tracing::info!(partitions = passes.len(), failed, "compactor pass done");
                if args.once {
                    return if failed == 0 {
                        Ok(())
                    } else {
                        Err(CliError::runtime(format!(
                            "compaction failed on {failed} partitions"
                        )))
                    };
                }
            }
            Err(e) if args.once => return Err(CliError::runtime(e.to_string())),
            Err(e) => tracing::warn!(error = %e, "compactor pass failed; retrying"),
        }
    }
}
