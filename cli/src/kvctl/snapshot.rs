//! `kvctl snapshot save|status|restore`: etcd's backup and disaster-recovery workflow over
//! Skiff's backup format (`store::backup`). `save` works against etcd too (it writes what the
//! server streams, checked for etcd's shape); `status` and `restore` read Skiff backups only,
//! as etcdctl's read bbolt files only. Long operations report progress on stderr.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use store::backup::{self, Backup, BackupStatus};
use store::proto::etcdserverpb::SnapshotRequest;
use store::StoreConfig;

use super::client::{self, Client};
use super::failure::{ExitStatus, Failure};
use super::maintenance::maintenance;
use super::print::{Format, Output, Printer};
use super::{golang, table};

/// Progress is reported each time another tenth of the work is done.
const PROGRESS_STEPS: u64 = 10;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stores a snapshot of a member's state to a given file
    Save(SnapshotFileArgs),
    /// Gets backend snapshot status of a given file
    Status(SnapshotFileArgs),
    /// Restores a snapshot into a new data directory for a new cluster's member
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SnapshotFileArgs {
    /// <filename>
    #[arg(value_name = "FILENAME")]
    pub args: Vec<OsString>,
}

/// etcdctl 3.4's restore flags (`--wal-dir` and `--skip-hash-check` have no equivalent: the
/// Raft log lives in the data directory, and Skiff backups always carry their checksum).
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Path to the data directory (default: `<name>.skiff`)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://127.0.0.1:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// <filename>
    #[arg(value_name = "FILENAME")]
    pub args: Vec<OsString>,
}

pub async fn run(
    client: &Client,
    printer: Printer,
    command: &SnapshotCommand,
) -> Result<Output, Failure> {
    match command {
        SnapshotCommand::Save(args) => save(client, args).await,
        SnapshotCommand::Status(args) => status(printer, args),
        SnapshotCommand::Restore(args) => restore(args),
    }
}

fn one_path(args: &[OsString], message: &str) -> Result<PathBuf, Failure> {
    match args {
        [path] => Ok(PathBuf::from(path)),
        _ => Err(Failure::bad_args(message)),
    }
}

/// Reports progress on stderr as tenths of `total` are reached.
struct Progress {
    what: &'static str,
    step_reported: u64,
}

impl Progress {
    fn new(what: &'static str) -> Progress {
        Progress { what, step_reported: 0 }
    }

    /// `describe(done, total)` words the amounts, e.g. `1.0 MB of 2.0 MB`.
    fn update(&mut self, done: u64, total: u64, describe: impl Fn(u64, u64) -> String) {
        let step = (done * PROGRESS_STEPS).checked_div(total).unwrap_or(PROGRESS_STEPS);
        if step > self.step_reported {
            self.step_reported = step;
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            let line = format!("{} {} ({percent}%)\n", self.what, describe(done, total));
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

fn progress_line(text: String) {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
}

/// etcdctl's `snapshot save`: one endpoint, streamed to `<file>.part`, synced, checked for
/// the sha256 trailer etcd's format ends with, then renamed into place.
async fn save(client: &Client, args: &SnapshotFileArgs) -> Result<Output, Failure> {
    let path = one_path(&args.args, "snapshot save expects one argument")?;
    if client.targets.len() != 1 {
        let names: Vec<&str> = client.targets.iter().map(|t| t.name.as_str()).collect();
        return Err(Failure::bad_args(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            names.join(" ")
        )));
    }
    let interrupted = |message: String| Failure::new(ExitStatus::Interrupted, message);
    let mut partial_name = path.clone().into_os_string();
    partial_name.push(".part");
    let partial = PathBuf::from(partial_name);
    let endpoint = &client.targets[0].name;
    progress_line(format!("fetching snapshot from {endpoint} into {}", partial.display()));
    let started = Instant::now();
    let received = fetch(client, &partial).await;
    let size = match received {
        Ok(size) => size,
        Err(failure) => {
            let _ = std::fs::remove_file(&partial);
            return Err(interrupted(failure.message));
        }
    };
    if !backup::has_checksum_shape(size) {
        let _ = std::fs::remove_file(&partial);
        return Err(interrupted(format!("sha256 checksum not found [bytes: {size}]")));
    }
    std::fs::rename(&partial, &path).map_err(|e| {
        interrupted(format!("could not rename {} to {} ({e})", partial.display(), path.display()))
    })?;
    let took = golang::duration_string(started.elapsed());
    progress_line(format!("fetched snapshot: {} in {took}", golang::humanize_bytes(size)));
    let line = format!("Snapshot saved at {}\n", path.display());
    Ok(Output { stdout: line.into_bytes(), stderr: Vec::new() })
}

/// Streams the snapshot into `partial`; returns its size once synced.
async fn fetch(client: &Client, partial: &Path) -> Result<u64, Failure> {
    let io = |e: std::io::Error| Failure::error(format!("{}: {e}", partial.display()));
    let mut file = std::fs::File::create(partial).map_err(io)?;
    let channel = tokio::time::timeout(
        client.command_timeout,
        client::connect(&client.targets, client.dial_timeout),
    )
    .await
    .map_err(|_| Failure::deadline_exceeded())?;
    let mut stream = maintenance(channel)
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|status| Failure::from_status(&status))?
        .into_inner();
    let mut progress = Progress::new("received");
    let mut size = 0u64;
    while let Some(response) =
        stream.message().await.map_err(|status| Failure::from_status(&status))?
    {
        file.write_all(&response.blob).map_err(io)?;
        size += response.blob.len() as u64;
        progress.update(size, size + response.remaining_bytes, |done, total| {
            format!("{} of {}", golang::humanize_bytes(done), golang::humanize_bytes(total))
        });
    }
    file.sync_all().map_err(io)?;
    Ok(size)
}

fn status(printer: Printer, args: &SnapshotFileArgs) -> Result<Output, Failure> {
    let path = one_path(&args.args, "snapshot status requires exactly one argument")?;
    let backup = Backup::read(&path).map_err(|e| Failure::error(e.to_string()))?;
    let status = backup.status().map_err(|e| Failure::error(e.to_string()))?;
    print_status(printer, &status)
}

/// etcdctl's snapshot status printers.
pub fn print_status(printer: Printer, status: &BackupStatus) -> Result<Output, Failure> {
    let row = vec![
        format!("{:x}", status.hash),
        status.revision.to_string(),
        status.total_keys.to_string(),
        golang::humanize_bytes(status.total_size),
    ];
    let stdout = match printer.format {
        Format::Simple => format!("{}\n", row.join(", ")),
        Format::Table => table::render(&["hash", "revision", "total keys", "total size"], &[row]),
        Format::Json => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            status.hash, status.revision, status.total_keys, status.total_size
        ),
        Format::Fields => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            status.hash, status.revision, status.total_keys, status.total_size
        ),
        Format::Protobuf => {
            return Err(Failure::bad_feature("protobuf not supported as output format"))
        }
    };
    Ok(Output { stdout: stdout.into_bytes(), stderr: Vec::new() })
}

fn restore_config(args: &RestoreArgs) -> StoreConfig {
    let data_dir =
        args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.skiff", args.name)));
    let mut config = StoreConfig::single(&args.name, Some(data_dir));
    // Only the identity matters here: nothing listens during a restore.
    config.listen_client_urls.clear();
    config.listen_peer_urls.clear();
    config.initial_cluster = args.initial_cluster.clone();
    config.initial_cluster_token = args.initial_cluster_token.clone();
    config.initial_advertise_peer_urls = args.initial_advertise_peer_urls.clone();
    config
}

fn restore(args: &RestoreArgs) -> Result<Output, Failure> {
    let path = one_path(&args.args, "snapshot restore requires exactly one argument")?;
    let config = restore_config(args);
    let data_dir = config.data_dir.clone().unwrap_or_default();
    let backup = Backup::read(&path).map_err(|e| Failure::error(e.to_string()))?;
    progress_line(format!(
        "restoring snapshot {} into {} (member {})",
        path.display(),
        data_dir.display(),
        args.name
    ));
    let mut progress = Progress::new("restored");
    let restored = backup::restore(&backup, &config, &mut |done, total| {
        progress.update(done, total, |done, total| format!("{done} of {total} entries"));
    })
    .map_err(|e| Failure::error(e.to_string()))?;
    progress_line(format!(
        "restored snapshot at revision {} into {}",
        restored.revision,
        data_dir.display()
    ));
    Ok(Output::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_prints_as_etcdctl_prints_it() {
        let status =
            BackupStatus { hash: 0x9d31_9e90, revision: 3, total_keys: 6, total_size: 20480 };
        let check = |format: Format, expected: &str| {
            let output = print_status(Printer { format, hex: false }, &status).expect("printable");
            assert_eq!(String::from_utf8(output.stdout).expect("utf-8"), expected);
        };
        check(Format::Simple, "9d319e90, 3, 6, 20 kB\n");
        check(
            Format::Json,
            "{\"hash\":2637274768,\"revision\":3,\"totalKey\":6,\"totalSize\":20480}\n",
        );
        check(
            Format::Table,
            "+----------+----------+------------+------------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
             +----------+----------+------------+------------+\n\
             | 9d319e90 |        3 |          6 |      20 kB |\n\
             +----------+----------+------------+------------+\n",
        );
        check(
            Format::Fields,
            "\"Hash\" : 2637274768\n\"Revision\" : 3\n\"Keys\" : 6\n\"Size\" : 20480\n",
        );
    }

    #[test]
    fn restore_defaults_follow_etcdctl() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: RestoreArgs,
        }
        let parsed = Wrapper::parse_from(["restore", "backup.db", "--name", "m1"]);
        let config = restore_config(&parsed.args);
        assert_eq!(config.data_dir, Some(PathBuf::from("m1.skiff")));
        assert_eq!(config.initial_cluster_token, "etcd-cluster");
    }
}
