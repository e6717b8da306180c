//! `skiff master` processes for the tests that drive Kubernetes clients: each on its own
//! loopback address, with its data in a temp dir, and a fresh kubectl cache (kubectl on PATH
//! dispatches on the server's `/version` and caches the answer).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What one CLI run did: (success, stdout, stderr).
pub type Run = (bool, String, String);

pub struct Master {
    child: Child,
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Master {
    /// Starts `skiff master` with an embedded store on `ip`, the API server on `ip:6443`, and
    /// waits until it reports ready.
    pub fn start(ip: &str, extra: &[&str]) -> Master {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("master.log")).expect("log");
        let data = dir.path().join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("master")
            .args(["--name", "m1"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &format!("http://{ip}:2379")])
            .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
            .args(["--bind-address", ip, "--secure-port", "6443"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff master");
        let kubeconfig = data.join("admin.kubeconfig");
        let cache = tempfile::tempdir().expect("cache dir");
        let master = Master { child, dir, kubeconfig, cache };
        master.wait_ready();
        master
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.kubeconfig.exists() {
                let (ok, stdout, _) =
                    self.run(self.command("kubectl", &["get", "--raw", "/readyz"]), "");
                if ok && stdout.trim_end() == "ok" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "master not ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `program` (kubectl or podctl) with this master's kubeconfig and kubectl cache.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.cache.path())
            .env_remove("KUBE_EDITOR")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs a command to the end with `stdin` as its input.
    pub fn run(&self, mut command: Command, stdin: &str) -> Run {
        let mut child = command.spawn().expect("spawn");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        let output = child.wait_with_output().expect("output");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
