//! `skiff up` (a whole cluster in one process) with the README's examples, driven by real
//! kubectl: the web Deployment serves through its Service's ClusterIP and NodePort from both
//! replicas, the DaemonSet runs on the node and logs, the crash-looping pod backs off, and
//! deleting the examples stops their processes. `kubectl exec` (WebSocket v5), the Python
//! client's exec (v4) and a terminal session reach a web pod's container.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IP: &str = "127.0.100.1";

struct Up {
    child: Child,
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Pods' processes outlive `skiff up` by design: end the ones this test started.
        common::agent::kill_shims_under(self.dir.path());
    }
}

impl Up {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.kubeconfig")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.cache.path())
            .args(args)
            .output()
            .expect("kubectl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {out}\n{err}\n--- skiff up log ---\n{}", self.log());
        out
    }

    fn eventually<T>(&self, seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out: {what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// One HTTP GET; the body, if the server answered 200.
fn http_get(address: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.trim().to_string())
}

fn example(name: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root");
    root.join("examples").join(name).display().to_string()
}

#[test]
fn skiff_up_runs_the_examples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = std::fs::File::create(dir.path().join("up.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("up")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--address", IP, "--node-name", "up-node"])
        .args(["--service-cluster-ip-range", "127.100.0.0/24"])
        .args(["--pod-cidr", "127.101.0.0/16"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skiff up");
    let up = Up { child, dir, cache: tempfile::tempdir().expect("cache") };
    up.eventually(60, "node up-node Ready", || {
        let (ok, out, _) = up.kubectl(&[
            "get",
            "node",
            "up-node",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (ok && out == "True").then_some(())
    });

    // The web example: two replicas, each on its own pod IP, behind one Service.
    up.ok(&["apply", "-f", &example("web.yaml")]);
    up.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let ips = up.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"]);
    let ips: std::collections::BTreeSet<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "two distinct pod IPs: {ips:?}");
    let cluster_ip = up.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(cluster_ip.starts_with("127.100.0."), "{cluster_ip}");
    let mut answers = std::collections::BTreeSet::new();
    up.eventually(60, "both replicas answering through the ClusterIP", || {
        for _ in 0..4 {
            if let Some(body) = http_get(&format!("{cluster_ip}:80")) {
                answers.insert(body);
            }
        }
        (answers.len() == 2).then_some(())
    });
    assert!(answers.iter().all(|a| a.starts_with("hello from web-")), "{answers:?}");
    let by_node_port =
        up.eventually(30, "the NodePort answering", || http_get(&format!("{IP}:30080")));
    assert!(by_node_port.starts_with("hello from web-"), "{by_node_port}");

    exec_works(&up);

    // The DaemonSet runs one pod on the node, which logs the node's name.
    up.ok(&["apply", "-f", &example("daemonset.yaml")]);
    up.ok(&["rollout", "status", "daemonset/node-logger", "--timeout=60s"]);
    up.eventually(30, "the node logger's first line", || {
        let (ok, out, _) = up.kubectl(&["logs", "-l", "app=node-logger"]);
        (ok && out.contains("on up-node")).then_some(())
    });

    // The crash-looping pod restarts with back-off, its previous run's log kept.
    up.ok(&["apply", "-f", &example("crashloop.yaml")]);
    up.eventually(60, "CrashLoopBackOff", || {
        let waiting = up.ok(&[
            "get",
            "pod",
            "crashloop",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason} \
             {.status.containerStatuses[0].restartCount}",
        ]);
        let mut parts = waiting.split_whitespace();
        let reason = parts.next().unwrap_or("");
        let restarts: u32 = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
        (reason == "CrashLoopBackOff" && restarts >= 1).then_some(())
    });
    let previous = up.ok(&["logs", "crashloop", "--previous"]);
    assert!(previous.contains("starting") && previous.contains("failing"), "{previous}");

    // Deleting the examples stops their processes.
    for file in ["web.yaml", "daemonset.yaml", "crashloop.yaml"] {
        up.ok(&["delete", "-f", &example(file), "--wait=true", "--timeout=60s"]);
    }
    up.eventually(60, "every example pod gone", || {
        up.ok(&["get", "pods", "-o", "name"]).is_empty().then_some(())
    });
    assert!(http_get(&format!("{cluster_ip}:80")).is_none(), "the Service is gone");
}

/// Runs `program args` with `stdin` fed in; (exit code, stdout, stderr).
fn run_with_input(up: &Up, program: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(program)
        .env("KUBECONFIG", up.kubeconfig())
        .env("KUBECACHEDIR", up.cache.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(program);
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect(program);
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

fn exec_works(up: &Up) {
    let pod = up.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    // Output on both streams, the container's environment, and the exit code.
    let script = "echo out $POD_NAME; echo err >&2; exit 3";
    let (code, out, err) =
        run_with_input(up, "kubectl", &["exec", &pod, "--", "sh", "-c", script], "");
    assert_eq!(code, 3, "kubectl exec exit code\n{out}\n{err}\n{}", up.log());
    assert_eq!(out.trim(), format!("out {pod}"), "{err}");
    assert!(err.contains("err"), "{err}");
    // stdin reaches the command and its end is seen (v5's close signal).
    let (code, out, err) =
        run_with_input(up, "kubectl", &["exec", "-i", &pod, "--", "wc", "-l"], "a\nb\nc\n");
    assert_eq!((code, out.trim()), (0, "3"), "{err}");
    // A container that does not exist is refused by the API server, naming the choices.
    let (ok, _, err) = up.kubectl(&["exec", &pod, "-c", "nope", "--", "true"]);
    assert!(!ok && err.contains("container nope is not valid"), "{err}");
    // A terminal: the command runs on a pty with the size the client sends.
    let python = format!(
        r#"
from kubernetes import client, config
from kubernetes.stream import stream
# On a terminal (the input echoed back), after the first line, the size the client sent.
WAIT_FOR_SIZE = ("test -t 0 && read x && for i in $(seq 50); do s=$(stty size); "
                 "[ \"$s\" = '11 77' ] && break; sleep 0.1; done; echo $s")
config.load_kube_config()
api = client.CoreV1Api()
out = stream(api.connect_get_namespaced_pod_exec, "{pod}", "default",
             command=["sh", "-c", "echo py-$POD_NAME; cat /proc/self/cgroup >/dev/null"],
             stderr=True, stdin=False, stdout=True, tty=False)
print(out.strip())
ws = stream(api.connect_get_namespaced_pod_exec, "{pod}", "default",
            command=["sh", "-c", WAIT_FOR_SIZE], stderr=True, stdin=True,
            stdout=True, tty=True, _preload_content=False)
ws.write_channel(4, '{{"Width": 77, "Height": 11}}')
ws.write_stdin("go\n")
import time
seen = ""
deadline = time.time() + 10
while ws.is_open() and time.time() < deadline:
    ws.update(timeout=1)
    seen += ws.read_stdout() if ws.peek_stdout() else ""
print("tty:", seen.strip().splitlines()[-1], ws.returncode)
"#
    );
    let (code, out, err) = run_with_input(up, "python3", &["-c", &python], "");
    assert_eq!(code, 0, "python exec\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some(format!("py-{pod}").as_str()), "{out}");
    assert_eq!(lines.get(1).copied(), Some("tty: 11 77 0"), "{out}\n{err}");
}
