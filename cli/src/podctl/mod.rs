//! `podctl`: a kubectl-style client built on the `kube` crate. It reads the same kubeconfig
//! as kubectl, resolves resource names through the server's aggregated discovery, asks for
//! server-side printed Tables as kubectl does and lays them out byte for byte as kubectl's
//! printer does, so `podctl get` and `kubectl get` print the same thing.
//!
//! Layout: `args` (flags), `config` (kubeconfig files and `config ...`), `client` (the
//! connection and raw requests), `discovery` (resource names), `targets` (resource
//! arguments), `output` (pure: tab writer, Table printer, JSON/YAML), `get`, `describe`,
//! `manifest` (reading `-f`), `apply` (create and client-side apply) over `merge` (pure:
//! three-way strategic merge patch), `modify` (delete, patch, label, annotate, scale), `edit`
//! and `explain`; `failure` words errors as kubectl does.

mod apply;
mod args;
mod client;
mod config;
mod describe;
mod discovery;
mod edit;
mod explain;
mod failure;
mod get;
mod manifest;
mod merge;
mod modify;
mod output;
mod targets;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use client::Session;
use failure::Failure;

/// Runs `podctl` with the process's arguments, standard input and output.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // kubectl exits 1 on usage errors, 0 for --help.
            return if error.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = &failure.message {
                emit_error(message);
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let paths = config::paths(cli.kubeconfig.as_deref());
    if let Command::Config(command) = &cli.command {
        emit(&config::run(command, &paths, cli.context.as_deref())?);
        return Ok(());
    }
    let mut session =
        Session::connect(&paths, cli.context.as_deref(), cli.namespace.as_deref()).await?;
    match &cli.command {
        Command::Get(args) => get::run(&mut session, args).await,
        Command::Describe(args) => describe::run(&mut session, args).await,
        Command::Create(args) => apply::create(&mut session, &args.filenames).await,
        Command::Apply(args) => apply::apply(&mut session, &args.filenames).await,
        Command::Delete(args) => modify::delete(&mut session, args).await,
        Command::Edit(args) => edit::run(&mut session, args).await,
        Command::Patch(args) => modify::patch(&mut session, args).await,
        Command::Label(args) => {
            modify::metadata(&mut session, args, modify::MetadataField::Labels).await
        }
        Command::Annotate(args) => {
            modify::metadata(&mut session, args, modify::MetadataField::Annotations).await
        }
        Command::Scale(args) => modify::scale(&mut session, args).await,
        Command::ApiResources(args) => {
            let catalog = session.catalog().await?;
            emit(&discovery::api_resources(catalog, args)?);
            Ok(())
        }
        Command::Explain(args) => explain::run(&mut session, args).await,
        Command::Config(_) => unreachable!("handled before connecting"),
    }
}

/// Writes to stdout at once (watches print as events arrive); a closed pipe is ignored.
pub(crate) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Writes one line to stderr.
pub(crate) fn emit_error(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
