//! `kvctl lock <lockname> [exec-command arg1 arg2 ...]`, as etcdctl 3.4 runs it: take the
//! named lock in a session of `--ttl` seconds; with a command, run it holding the lock
//! (`ETCD_LOCK_KEY` and `ETCD_LOCK_REV` in its environment) and release; without one, print the
//! held key (in the `-w` format of `get`) and hold until SIGINT or SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::RangeRequest;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tonic::transport::Channel;

use super::client::Client;
use super::concurrency::{self, Session};
use super::failure::Failure;
use super::print::{Output, Printer};

/// etcdctl's default `--ttl` for `lock`.
const LOCK_TTL_SECONDS_DEFAULT: i64 = 10;

/// `lock [options] <lockname> [exec-command arg1 arg2 ...]`
#[derive(Args, Debug)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = LOCK_TTL_SECONDS_DEFAULT, allow_negative_numbers = true)]
    pub ttl: i64,
    #[arg(value_name = "LOCKNAME [EXEC-COMMAND ARG...]")]
    pub args: Vec<String>,
}

/// SIGINT and SIGTERM, caught from the start so that either releases what is held instead of
/// killing the process.
pub struct Interrupt {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupt {
    pub fn new() -> Result<Interrupt, Failure> {
        let catch =
            |kind| signal(kind).map_err(|e| Failure::error(format!("cannot catch signals: {e}")));
        Ok(Interrupt {
            interrupt: catch(SignalKind::interrupt())?,
            terminate: catch(SignalKind::terminate())?,
        })
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Starts a session within the command timeout.
pub async fn open_session(client: &Client, ttl_seconds: i64) -> Result<Session, Failure> {
    let channel = client.dial().await?;
    tokio::time::timeout(client.command_timeout, Session::new(channel, ttl_seconds))
        .await
        .map_err(|_elapsed| Failure::deadline_exceeded())?
}

/// Ends a session, bounded by the command timeout. The outcome does not change the exit
/// status: etcdctl does not end its sessions at all and lets the lease expire.
pub async fn close_session(session: Session, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, session.close()).await;
}

/// Reads `key` for printing, as etcdctl shows what it holds.
pub async fn read_key(
    channel: &Channel,
    key: &[u8],
) -> Result<store::proto::etcdserverpb::RangeResponse, Failure> {
    let request = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
    KvClient::new(channel.clone())
        .range(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| Failure::from_status(&status))
}

pub async fn run(client: &Client, printer: Printer, args: &LockArgs) -> Result<Output, Failure> {
    let Some((name, command)) = args.args.split_first() else {
        return Err(Failure::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let mut interrupt = Interrupt::new()?;
    let session = open_session(client, args.ttl).await?;
    let held = hold(&session, client, printer, name, command, &mut interrupt).await;
    close_session(session, client.command_timeout).await;
    held.map(|()| Output::default())
}

async fn hold(
    session: &Session,
    client: &Client,
    printer: Printer,
    name: &str,
    command: &[String],
    interrupt: &mut Interrupt,
) -> Result<(), Failure> {
    let channel = &session.channel;
    let timeout = client.command_timeout;
    let mutex = tokio::select! {
        locked = concurrency::lock(session, name) => locked?,
        () = interrupt.recv() => {
            // Leave the queue, as clientv3 does when its wait is cancelled.
            let key = session.key_under(format!("{name}/").as_bytes());
            let _ = tokio::time::timeout(timeout, concurrency::delete(channel, &key)).await;
            return Err(Failure::error("context canceled"));
        }
    };
    let unlock = || async {
        match tokio::time::timeout(timeout, concurrency::delete(channel, &mutex.key)).await {
            Ok(unlocked) => unlocked,
            Err(_elapsed) => Err(Failure::deadline_exceeded()),
        }
    };
    if let Some((program, program_args)) = command.split_first() {
        // Signals while the command runs do not stop it; the lock is released after it.
        let key = String::from_utf8_lossy(&mutex.key).into_owned();
        let ran = run_command(program, program_args, &key, mutex.header.revision).await;
        let unlocked = unlock().await;
        return ran.and(unlocked);
    }
    let held = read_key(channel, &mutex.key).await?;
    if held.kvs.is_empty() {
        return Err(Failure::error("lock lost on init"));
    }
    let printed = printer.get(&held, false);
    match printed {
        Ok(output) => output.write_now(),
        Err(failure) => {
            let _ = unlock().await;
            return Err(failure);
        }
    }
    tokio::select! {
        () = interrupt.recv() => unlock().await,
        () = session.expired() => Err(Failure::error("session expired")),
    }
}

/// Runs the command as Go's `exec.Cmd.Run` would for etcdctl: standard input from
/// /dev/null, output straight to ours, failures in Go's words.
async fn run_command(
    program: &str,
    args: &[String],
    key: &str,
    revision: i64,
) -> Result<(), Failure> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .env("ETCD_LOCK_KEY", key)
        .env("ETCD_LOCK_REV", revision.to_string())
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|error| Failure::error(spawn_error(program, &error)))?;
    match exit_error(status) {
        None => Ok(()),
        Some(message) => Err(Failure::error(message)),
    }
}

/// Go's `exec: "x": executable file not found in $PATH` for a bare name, `fork/exec` otherwise.
fn spawn_error(program: &str, error: &std::io::Error) -> String {
    let reason = match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    };
    if program.contains('/') {
        format!("fork/exec {program}: {reason}")
    } else {
        format!(
            "exec: {}: executable file not found in $PATH",
            super::golang::quote(program.as_bytes())
        )
    }
}

/// Go's `*exec.ExitError` text (`exit status 3`, `signal: killed`), or `None` on success.
fn exit_error(status: std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt as _;
    if status.success() {
        return None;
    }
    if let Some(code) = status.code() {
        return Some(format!("exit status {code}"));
    }
    let signal = status.signal().unwrap_or(0);
    let name = match signal {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        6 => "aborted",
        9 => "killed",
        13 => "broken pipe",
        15 => "terminated",
        _ => return Some(format!("signal {signal}")),
    };
    Some(format!("signal: {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn command_failures_read_as_go_reports_them() {
        let exited = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        assert_eq!(exit_error(exited(0)), None);
        assert_eq!(exit_error(exited(3)).as_deref(), Some("exit status 3"));
        let killed = std::process::ExitStatus::from_raw(9);
        assert_eq!(exit_error(killed).as_deref(), Some("signal: killed"));
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            spawn_error("nonexistentcmd", &missing),
            "exec: \"nonexistentcmd\": executable file not found in $PATH"
        );
        assert_eq!(
            spawn_error("/no/such", &missing),
            "fork/exec /no/such: no such file or directory"
        );
    }
}
