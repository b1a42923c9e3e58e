//! `pyralog`: the one binary. `serve` and `dev` run a node; the other commands are clients.
//!
//! Exit codes: 0 success, 1 runtime failure (server unreachable, I/O), 2 bad input (usage,
//! invalid names or configs, unknown logs, out-of-range offsets).

mod args;
mod bench_cmd;
mod client_cmds;
mod compactor_cmd;
mod error;
mod group_cmds;
mod ledger_cmds;
mod node_cmds;
mod security_cmds;

use clap::Parser;

use crate::args::{Cli, Command};

/// For client commands, a closed stdout (`pyralog consume ... | head`) ends the process
/// quietly, as it does for every Unix tool: Rust's runtime ignores SIGPIPE, so `println!` to a
/// closed pipe panicked. Servers keep ignoring it (a write to a closed pipe is an error there).
#[cfg(unix)]
#[allow(unsafe_code)]
fn die_on_closed_stdout() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called in `main` before the runtime starts, while no other thread exists;
    // the default disposition of SIGPIPE runs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    #[cfg(unix)]
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Dev(_) | Command::Compactor(_)
    ) {
        die_on_closed_stdout();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let target = client_cmds::Target {
        server: cli.server.clone(),
        options: pyralog_client::ClientOptions {
            tls_ca: cli.tls_ca.clone(),
            tls_cert: cli.tls_cert.clone(),
            tls_key: cli.tls_key.clone(),
            token: cli.token.clone(),
        },
    };
    let server = &target;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => node_cmds::serve(a, cli.log_format).await,
            Command::Dev(a) => node_cmds::dev(a, cli.log_format).await,
            Command::Logs(a) => client_cmds::logs(server, a).await,
            Command::Produce(a) => client_cmds::produce(server, a).await,
            Command::Consume(a) => client_cmds::consume(server, a).await,
            Command::Offsets(a) => client_cmds::offsets(server, a).await,
            Command::Compaction(a) => client_cmds::compaction(server, a).await,
            Command::Cluster(a) => client_cmds::cluster(server, a).await,
            Command::Groups(a) => group_cmds::groups(server, a).await,
            Command::Compactor(a) => compactor_cmd::run(a, cli.log_format).await,
            Command::Bench(a) => bench_cmd::bench(server, a).await,
            Command::Acls(a) => security_cmds::acls(server, a).await,
            Command::Auth(a) => security_cmds::auth(server, a).await,
            Command::Certs(a) => security_cmds::certs(a),
            Command::Ledger(a) => ledger_cmds::run(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
