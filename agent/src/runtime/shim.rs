//! The container shim of the `process` runtime (what conmon or containerd-shim are to real
//! runtimes): one small process per container, started by the agent in its own process group
//! so that it outlives an agent restart. It starts the container's command in a process group
//! of its own, copies stdout and stderr into the CRI-format log file line by line with
//! timestamps (rotating it past [`LOG_FILE_BYTES_MAX`]), records the container's pid with its
//! kernel start time (so a restarted agent can tell the same process from a reused pid), waits
//! for the exit and records its code. The agent never reads the container's pipes itself: its
//! death cannot hang or kill a container.
//!
//! Files in the container's directory: `shim.json` (what to run, written by the agent),
//! `pid.json` (written once the container runs), `exit.json` (written once it ended).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::limits::{EXEC_OUTPUT_BYTES_MAX, LOG_FILE_BYTES_MAX, LOG_LINE_BYTES_MAX};

/// What the shim runs (`shim.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShimSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub log_path: PathBuf,
    /// The cgroup to move the container into when limits apply (v2's, or v1's memory one).
    pub cgroup: Option<PathBuf>,
    /// Further cgroups it joins (cgroup v1's cpu hierarchy).
    #[serde(default)]
    pub extra_cgroups: Vec<PathBuf>,
    /// The pod's network namespace (bridge pod network) the container runs in; `None`: the
    /// host's.
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// The running container (`pid.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PidRecord {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: tells this process from a later one with the same pid.
    pub start_ticks: u64,
    pub started_at: Timestamp,
}

/// The container's end (`exit.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

pub const SPEC_FILE: &str = "shim.json";
pub const PID_FILE: &str = "pid.json";
pub const EXIT_FILE: &str = "exit.json";

/// Writes `value` as JSON to `path` atomically (temp file, then rename).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The kernel start time of a live (not zombie) process, from `/proc/<pid>/stat`.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process recorded in `record` still runs.
pub fn is_alive(record: &PidRecord) -> bool {
    process_start_ticks(record.pid) == Some(record.start_ticks)
}

/// The CRI log file, shared by the stdout and stderr copiers.
struct LogWriter {
    path: PathBuf,
    file: std::fs::File,
    bytes: u64,
}

impl LogWriter {
    fn open(path: &Path) -> std::io::Result<LogWriter> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), file, bytes })
    }

    fn write_record(&mut self, stream: &str, partial: bool, text: &[u8]) {
        let mut line =
            format!("{} {stream} {} ", Timestamp::now(), if partial { 'P' } else { 'F' })
                .into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.bytes + line.len() as u64 > LOG_FILE_BYTES_MAX {
            let rotated = self.path.with_extension("log.1");
            if std::fs::rename(&self.path, rotated).is_ok() {
                if let Ok(reopened) = LogWriter::open(&self.path) {
                    *self = reopened;
                }
            }
        }
        if self.file.write_all(&line).is_ok() {
            self.bytes += line.len() as u64;
        }
    }
}

/// Copies one pipe into the log, a record per line (long lines split into partial records).
fn copy_stream(mut pipe: impl Read, stream: &'static str, log: Arc<Mutex<LogWriter>>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let read = match pipe.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        let mut log = log.lock().expect("log lock");
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            for (index, piece) in line[..line.len() - 1].chunks(LOG_LINE_BYTES_MAX).enumerate() {
                let last = (index + 1) * LOG_LINE_BYTES_MAX >= line.len() - 1;
                log.write_record(stream, !last, piece);
            }
            if line.len() == 1 {
                log.write_record(stream, false, b"");
            }
        }
        while pending.len() >= LOG_LINE_BYTES_MAX {
            let piece: Vec<u8> = pending.drain(..LOG_LINE_BYTES_MAX).collect();
            log.write_record(stream, true, &piece);
        }
    }
    if !pending.is_empty() {
        log.lock().expect("log lock").write_record(stream, false, &pending);
    }
}

fn exit_record(code: i32, reason: &str, message: Option<String>) -> ExitRecord {
    ExitRecord {
        exit_code: code,
        signal: None,
        reason: reason.to_string(),
        message,
        started_at: None,
        finished_at: Timestamp::now(),
    }
}

/// The shim's entry point (`skiff container-shim <dir>`); returns when the container ended.
pub fn main(dir: &Path) -> ExitCode {
    let outcome = supervise(dir);
    let failed = outcome.exit_code != 0 && outcome.reason == "StartError";
    if write_json(&dir.join(EXIT_FILE), &outcome).is_err() {
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn supervise(dir: &Path) -> ExitRecord {
    let Some(spec) = read_json::<ShimSpec>(&dir.join(SPEC_FILE)) else {
        return exit_record(128, "StartError", Some(format!("cannot read {SPEC_FILE}")));
    };
    let log = match LogWriter::open(&spec.log_path) {
        Ok(log) => Arc::new(Mutex::new(log)),
        Err(error) => {
            let message = format!("cannot open log {}: {error}", spec.log_path.display());
            return exit_record(128, "StartError", Some(message));
        }
    };
    let Some((program, args)) = spec.argv.split_first() else {
        return exit_record(128, "StartError", Some("no command to run".into()));
    };
    // The shim has no other thread yet: entering here puts the container, which inherits it,
    // in the pod's namespace (the shim's own copying threads run there too, harmlessly).
    if let Some(netns) = &spec.netns {
        if let Err(error) = crate::network::netns::enter(netns) {
            let message =
                format!("cannot enter the pod's network namespace {}: {error}", netns.display());
            return exit_record(128, "StartError", Some(message));
        }
    }
    let mut command = std::process::Command::new(program);
    command.args(args).env_clear().envs(spec.env.iter().cloned());
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    use std::os::unix::process::CommandExt;
    command.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let mut message = format!("exec: \"{program}\": {error}");
            message.truncate(EXEC_OUTPUT_BYTES_MAX);
            return exit_record(128, "StartError", Some(message));
        }
    };
    let started_at = Timestamp::now();
    let pid = child.id() as i32;
    for cgroup in spec.cgroup.iter().chain(&spec.extra_cgroups) {
        // Best effort: a fork in the first instant escapes the limits.
        let _ = std::fs::write(cgroup.join("cgroup.procs"), pid.to_string());
    }
    let record = PidRecord { pid, start_ticks: process_start_ticks(pid).unwrap_or(0), started_at };
    let _ = write_json(&dir.join(PID_FILE), &record);
    let (done_sender, done) = std::sync::mpsc::channel::<()>();
    let mut copiers = 0;
    if let Some(stdout) = child.stdout.take() {
        let (log, done_sender) = (log.clone(), done_sender.clone());
        copiers += 1;
        std::thread::spawn(move || {
            copy_stream(stdout, "stdout", log);
            let _ = done_sender.send(());
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let (log, done_sender) = (log.clone(), done_sender.clone());
        copiers += 1;
        std::thread::spawn(move || {
            copy_stream(stderr, "stderr", log);
            let _ = done_sender.send(());
        });
    }
    let status = child.wait();
    // A container ends with its main process, as in a PID namespace: what it left behind in
    // its process group goes too (and releases the pipes).
    if let Some(group) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    // Output written just before the exit is copied before the exit is recorded.
    for _ in 0..copiers {
        if done.recv_timeout(Duration::from_millis(500)).is_err() {
            break;
        }
    }
    let mut record = match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            let (code, signal) = match (status.code(), status.signal()) {
                (Some(code), _) => (code, None),
                (None, Some(signal)) => (128 + signal, Some(signal)),
                (None, None) => (255, None),
            };
            let reason = if code == 0 { "Completed" } else { "Error" };
            ExitRecord { signal, ..exit_record(code, reason, None) }
        }
        Err(error) => exit_record(255, "Error", Some(format!("wait: {error}"))),
    };
    record.started_at = Some(started_at);
    if let Some(cgroup) = &spec.cgroup {
        if super::cgroup::oom_killed(cgroup) {
            record.reason = "OOMKilled".into();
        }
    }
    record
}
