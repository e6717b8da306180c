//! `kvctl`: an etcdctl (3.4)-compatible client for Skiff's store, and for etcd itself, over
//! etcd's v3 gRPC API. Commands, flags, output (simple, json, table, fields, protobuf), error
//! lines and exit codes follow etcdctl, so scripts written for one work with the other.
//!
//! Layout: `args` (flags), `request` and `txn` (pure request building and txn input parsing),
//! `client` (connecting, deadlines), `command` (drivers), `print` with `json`, `table` and
//! `golang` (pure output formatting in etcdctl's exact bytes), `failure` (errors, exit codes),
//! `maintenance` (endpoint hashkv, defrag, move-leader) and `snapshot` (save, status, restore),
//! `watch` and `watch_interactive`, `alarm`, and `lock` and `elect` over `concurrency` (etcd's
//! client-side session, mutex and election recipes).

mod alarm;
mod args;
mod client;
mod command;
mod concurrency;
mod elect;
mod failure;
mod golang;
mod json;
mod lease;
mod lock;
mod maintenance;
mod member;
mod print;
mod request;
mod snapshot;
mod table;
mod txn;
mod watch;
mod watch_interactive;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use command::Report;

/// Runs `kvctl` with the process's arguments, standard input and output.
pub fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout and succeed; usage errors fail with etcdctl's
            // status for a bad flag (1), not clap's 2.
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let report = runtime.block_on(command::run(cli));
    finish(report)
}

/// Writes a report out and turns it into the exit status.
fn finish(report: Report) -> ExitCode {
    // A closed pipe (`kvctl get ... | head`) is not worth a second error.
    let _ = std::io::stderr().write_all(&report.output.stderr);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&report.output.stdout).and_then(|()| stdout.flush());
    match report.failure {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            if !failure.message.is_empty() {
                eprintln!("{failure}");
            }
            ExitCode::from(failure.status as u8)
        }
    }
}
