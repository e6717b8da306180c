//! A real `skiff agent --runtime docker` on a real `skiff master`, driven with kubectl: a
//! pod's two containers share the sandbox's network (a readiness exec probe and a client
//! reach the server on localhost), a crashing container restarts with its exit code kept,
//! `imagePullPolicy: Never` on a missing image waits with `ErrImageNeverPull`, a restarted
//! agent adopts the running containers, and deleting a pod removes its Docker containers.
//!
//! Runs only where `docker info` succeeds and gcc builds the test image's static program
//! (`agent/tests/docker/tool.c`); elsewhere it says why and passes. The host never connects
//! to a container's address. Addresses: 127.0.99.1 (master), 127.0.99.2 (agent).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::master::Master;
use serde_json::Value;

const MASTER_IP: &str = "127.0.99.1";
const AGENT_IP: &str = "127.0.99.2";

fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).stdin(Stdio::null()).output() {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            (output.status.success(), text)
        }
        Err(error) => (false, error.to_string()),
    }
}

fn unavailable() -> Option<String> {
    let (ok, text) = docker(&["info"]);
    if !ok {
        return Some(format!("`docker info` failed: {}", text.lines().last().unwrap_or("")));
    }
    if Command::new("gcc").arg("--version").output().map_or(true, |o| !o.status.success()) {
        return Some("gcc is not installed (it builds the test image's program)".into());
    }
    None
}

/// Removes the containers of the test's node and the images it made, whatever happened.
struct Cleanup {
    node: String,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=io.skiff.node={}", self.node);
        let (_, ids) = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        for image in &self.images {
            docker(&["rmi", image]);
        }
    }
}

fn build_image(dir: &Path, image: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/docker/tool.c");
    let binary = dir.join("tool");
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc -static failed");
    let tar = agent::runtime::docker::tarball("tool", &std::fs::read(&binary).expect("binary"));
    let mut import = Command::new("docker")
        .args(["import", "-c", "ENTRYPOINT [\"/tool\"]", "-", image])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker import");
    use std::io::Write;
    import.stdin.take().expect("stdin").write_all(&tar).expect("write the tarball");
    assert!(import.wait().expect("docker import").success(), "docker import failed");
}

/// A `skiff agent --runtime docker`; dropping it kills it (its containers are the cleanup's).
struct Agent {
    child: Option<Child>,
    node: String,
    kubeconfig: std::path::PathBuf,
    root: std::path::PathBuf,
}

impl Agent {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.with_extension("log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--node-name", &self.node, "--node-ip", AGENT_IP, "--address", AGENT_IP])
            .args(["--runtime", "docker"])
            .arg("--root-dir")
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff agent");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kubectl(master: &Master, args: &[&str]) -> (bool, String, String) {
    master.run(master.command("kubectl", args), "")
}

fn pod(master: &Master, name: &str) -> Option<Value> {
    let (ok, out, _) = kubectl(master, &["get", "pod", name, "-o", "json"]);
    ok.then(|| serde_json::from_str(&out).expect("pod JSON"))
}

fn eventually<T>(what: &str, logs: &dyn Fn() -> String, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", logs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn status_of<'a>(pod: &'a Value, container: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == container))
        .unwrap_or(&Value::Null)
}

fn manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pair}}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: {image}
    command: ["/tool", "serve", "8080", "hello-from-server"]
    readinessProbe:
      exec: {{command: ["/tool", "fetch", "8080"]}}
      periodSeconds: 1
      timeoutSeconds: 5
  - name: client
    image: {image}
    args: ["fetch", "8080"]
---
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    args: ["exit", "3"]
---
apiVersion: v1
kind: Pod
metadata: {{name: never}}
spec:
  containers:
  - name: main
    image: skiff-docker-absent:v1
    imagePullPolicy: Never
---
apiVersion: v1
kind: Pod
metadata: {{name: unpullable}}
spec:
  containers:
  - name: main
    image: 127.0.0.1:9/skiff-docker-absent:v1
"#
    )
}

#[test]
fn docker_agent_runs_restarts_refuses_adopts_and_deletes_pods() {
    if let Some(reason) = unavailable() {
        eprintln!("skipping the docker agent test: {reason}");
        return;
    }
    let pid = std::process::id();
    let node = format!("docker-{pid}");
    let image = format!("skiff-docker-agent-test:{pid}");
    let mut cleanup = Cleanup { node: node.clone(), images: vec![image.clone()] };
    if !docker(&["image", "inspect", agent::runtime::docker::SANDBOX_IMAGE]).0 {
        cleanup.images.push(agent::runtime::docker::SANDBOX_IMAGE.to_string());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    build_image(dir.path(), &image);
    let master = Master::start(MASTER_IP, &[]);
    let kubeconfig = dir.path().join("node.kubeconfig");
    let data = master.kubeconfig.parent().expect("data dir");
    let status = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("kubeconfig")
        .arg("--data-dir")
        .arg(data)
        .args(["--user", &format!("system:node:{node}"), "--group", "system:nodes", "-o"])
        .arg(&kubeconfig)
        .status()
        .expect("skiff kubeconfig");
    assert!(status.success());
    let mut agent =
        Agent { child: None, node: node.clone(), kubeconfig, root: dir.path().join("root") };
    agent.spawn();
    let logs = || format!("agent:\n{}\nmaster:\n{}", agent.log(), master.log());
    let (ok, out, err) =
        master.run(master.command("kubectl", &["apply", "-f", "-"]), &manifest(&image));
    assert!(ok, "apply: {out}\n{err}");

    // The server is ready by an exec probe on localhost, the client read its reply there.
    let pair = eventually("pair's server ready, client done", &logs, || {
        pod(&master, "pair").filter(|p| {
            status_of(p, "server")["ready"] == true
                && status_of(p, "client")["state"]["terminated"]["exitCode"] == 0
        })
    });
    assert!(status_of(&pair, "server")["containerID"].as_str().unwrap().starts_with("docker://"));
    assert!(pair["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty()), "{pair}");
    let (ok, out, err) = kubectl(&master, &["logs", "pair", "-c", "client"]);
    assert!(ok, "logs: {err}");
    assert_eq!(out, "reply: hello-from-server\n");

    // A crashing container restarts; its exit code is kept in lastState.
    let crash = eventually("crash restarted", &logs, || {
        pod(&master, "crash").filter(|p| status_of(p, "main")["restartCount"].as_i64() >= Some(1))
    });
    assert_eq!(status_of(&crash, "main")["lastState"]["terminated"]["exitCode"], 3, "{crash}");

    // A missing image under Never waits with Kubernetes' reason.
    let never = eventually("never waits", &logs, || {
        pod(&master, "never").filter(|p| !status_of(p, "main")["state"]["waiting"].is_null())
    });
    let waiting = &status_of(&never, "main")["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImageNeverPull", "{never}");

    // An image that must be pulled from a registry that does not answer (a closed loopback
    // port): the kubelet's Pulling event, then the failure, then the back-off.
    eventually("unpullable backs off", &logs, || {
        let (ok, out, _) = kubectl(
            &master,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=unpullable",
                "-o",
                "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
            ],
        );
        (ok && out.contains("Pulling: Pulling image \"127.0.0.1:9/skiff-docker-absent:v1\"")
            && out.contains("Failed: Failed to pull image \"127.0.0.1:9/")
            && out.contains("Failed: Error: ErrImagePull"))
        .then_some(())
    });

    // kubectl exec through Docker's exec API: output, and the exit code.
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "pair", "-c", "server", "--"];
        all.extend_from_slice(args);
        let output = master.command("kubectl", &all).output().expect("kubectl exec");
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let (code, out, err) = exec(&["/tool", "fetch", "8080"]);
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", logs());
    assert!(out.contains("hello-from-server"), "{out}");
    let (code, _, err) = exec(&["/tool", "exit", "5"]);
    assert_eq!(code, Some(5), "{err}");

    // A restarted agent adopts the running server: same container, no restart.
    let server_id = status_of(&pair, "server")["containerID"].clone();
    let crash = pod(&master, "crash").expect("crash");
    let restarts = status_of(&crash, "main")["restartCount"].as_i64().unwrap_or(0);
    agent.kill();
    agent.spawn();
    let logs = || format!("agent:\n{}\nmaster:\n{}", agent.log(), master.log());
    // The new agent has synced once the crashing container restarted twice more (one of
    // them may be the old agent's).
    eventually("the restarted agent syncs", &logs, || {
        pod(&master, "crash")
            .filter(|p| status_of(p, "main")["restartCount"].as_i64() > Some(restarts + 1))
    });
    let pair = pod(&master, "pair").expect("pair");
    assert_eq!(status_of(&pair, "server")["containerID"], server_id);
    assert_eq!(status_of(&pair, "server")["restartCount"], 0);
    let uid = pair["metadata"]["uid"].as_str().expect("uid").to_string();
    let filter = format!("label=io.kubernetes.pod.uid={uid}");
    let (_, before) = docker(&["ps", "-aq", "--filter", &filter]);
    assert_eq!(before.split_whitespace().count(), 3, "sandbox, server, client: {before}");

    // Deleting the pod removes its containers and its sandbox.
    let (ok, _, err) = kubectl(&master, &["delete", "pod", "pair", "--wait=true"]);
    assert!(ok, "delete: {err}");
    eventually("pair's containers removed", &logs, || {
        let (ok, left) = docker(&["ps", "-aq", "--filter", &filter]);
        (ok && left.trim().is_empty()).then_some(())
    });
    drop(agent);
    drop(cleanup);
}
