//! `skiff agent` processes for the tests that run pods: each with its own root dir in a temp
//! dir and a node kubeconfig from `skiff kubeconfig`; dropping one kills the agent and every
//! container it started (also when a test panics). Plus the kubectl helpers those tests share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::master::Master;

/// A `skiff agent` process; dropping it kills the agent and every container it started.
pub struct Agent {
    child: Option<Child>,
    pub name: String,
    pub ip: String,
    pub root: PathBuf,
    pub kubeconfig: PathBuf,
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts agent `name` on `ip` (its server on `ip:10250`), with `extra` flags.
    pub fn start(master: &Master, name: &str, ip: &str, extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("node.kubeconfig");
        let data = master.kubeconfig.parent().expect("data dir");
        let status = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("kubeconfig")
            .arg("--data-dir")
            .arg(data)
            .args(["--user", &format!("system:node:{name}"), "--group", "system:nodes", "-o"])
            .arg(&kubeconfig)
            .status()
            .expect("skiff kubeconfig");
        assert!(status.success());
        let mut agent = Agent {
            child: None,
            name: name.into(),
            ip: ip.into(),
            root: dir.path().join("root"),
            kubeconfig,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        agent.spawn();
        agent
    }

    /// Starts the agent process (again, after `kill`).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--node-name", &self.name, "--node-ip", &self.ip, "--address", &self.ip])
            .args(["--node-lease-duration-seconds", "8"])
            .arg("--root-dir")
            .arg(&self.root)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff agent");
        self.child = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.with_extension("log")
    }

    /// SIGKILL: the containers keep running, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The recorded pid of a running container, by pod uid and container name.
    pub fn container_pid(&self, uid: &str, container: &str) -> Option<i32> {
        let dir = self.root.join("containers");
        let mut found: Vec<(u32, i32)> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let attempt = name.strip_prefix(&format!("{uid}_{container}_"))?.parse().ok()?;
                let record: agent::runtime::shim::PidRecord =
                    agent::runtime::shim::read_json(&entry.path().join("pid.json"))?;
                Some((attempt, record.pid))
            })
            .collect();
        found.sort();
        found.last().map(|(_, pid)| *pid)
    }
}

fn kill_group(record: &Path, group: bool) {
    let Some(record) = agent::runtime::shim::read_json::<agent::runtime::shim::PidRecord>(record)
    else {
        return;
    };
    if agent::runtime::shim::is_alive(&record) {
        let target = if group { format!("-{}", record.pid) } else { record.pid.to_string() };
        let _ = Command::new("kill").args(["-KILL", "--", &target]).status();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.root.join("containers")).into_iter().flatten().flatten()
        {
            kill_group(&entry.path().join("pid.json"), true);
            kill_group(&entry.path().join("shim-pid.json"), false);
        }
    }
}

pub fn kubectl(master: &Master, args: &[&str]) -> (bool, String, String) {
    master.run(master.command("kubectl", args), "")
}

pub fn apply(master: &Master, manifest: &str) {
    let (ok, out, err) = master.run(master.command("kubectl", &["apply", "-f", "-"]), manifest);
    assert!(ok, "apply failed: {out}\n{err}");
}

/// An object as JSON, if it exists.
pub fn get_json(master: &Master, kind: &str, name: &str) -> Option<Value> {
    let (ok, out, _) = kubectl(master, &["get", kind, name, "-o", "json"]);
    ok.then(|| serde_json::from_str(&out).expect("object JSON"))
}

pub fn pod(master: &Master, name: &str) -> Option<Value> {
    get_json(master, "pod", name)
}

/// Polls `check` every 250 ms until it returns `Some`, failing with `logs()` after `seconds`.
pub fn eventually<T>(
    what: &str,
    seconds: u64,
    logs: &dyn Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", logs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A pod condition's status (`True`, `False`, or empty when absent).
pub fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Whether node `name` is Ready.
pub fn node_ready(master: &Master, name: &str) -> bool {
    get_json(master, "node", name).is_some_and(|node| {
        node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Kills every container shim whose command line names a path under `dir`, with its
/// children's process groups (each container runs in a group of its own).
pub fn kill_shims_under(dir: &Path) {
    let dir = dir.display().to_string();
    let processes: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect();
    for (shim, _, cmdline) in &processes {
        if !(cmdline.contains("container-shim") && cmdline.contains(&dir)) {
            continue;
        }
        for (child, _, _) in processes.iter().filter(|(_, parent, _)| parent == shim) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{child}")]).status();
        }
        let _ = Command::new("kill").args(["-KILL", &shim.to_string()]).status();
    }
}
