//! Real node agents (`skiff agent`, process runtime) on a real `skiff master`, driven with
//! kubectl: pods run and report Kubernetes' status, logs stream through the API server,
//! crashing containers back off, probes restart and ready containers, deletion is graceful,
//! a restarted agent adopts its containers, a changed image replaces its container, and a
//! dead node's pods move to another node.
//! Addresses: 127.0.94.1 (master), .2 and .3 (agents); 127.0.94.4 and .5 for the limits test,
//! .6 and .7 for the node authorizer's.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::agent::{apply, condition, eventually, kubectl, pod, Agent};
use common::master::Master;
use serde_json::Value;

const MASTER_IP: &str = "127.0.94.1";

fn pods_manifest(ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hello}}
spec:
  containers:
  - name: main
    image: host
    command: ["/bin/sh", "-c", "echo hi; sleep 1000"]
---
apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: host
    command: ["/bin/sh", "-c"]
    args:
    - >-
      trap 'echo got TERM in $(POD_NAME); exit 0' TERM; echo started;
      while true; do sleep 0.2; done
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  restartPolicy: Always
  containers:
  - name: main
    image: /bin/sh
    args: ["-c", "echo crashing; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {{name: liveness}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: host
    command: ["/bin/sh", "-c", "sleep 1000"]
    livenessProbe:
      exec: {{command: ["/bin/sh", "-c", "exit 1"]}}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: web
    image: host
    command: ["python3", "-m", "http.server", "18080", "--bind", "{ip}"]
    ports: [{{name: http, containerPort: 18080}}]
    readinessProbe:
      httpGet: {{path: /, port: http}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: refused}}
spec:
  containers:
  - name: main
    image: nginx:1.27
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: host
        command: ["/bin/sh", "-c", "echo replica; sleep 1000"]
"#
    )
}

fn container_status(pod: &Value) -> Value {
    pod["status"]["containerStatuses"][0].clone()
}

#[test]
fn agents_run_probe_log_terminate_adopt_and_evict_pods() {
    let started = Instant::now();
    let master = Master::start(
        MASTER_IP,
        &["--node-monitor-grace-period", "6s", "--default-not-ready-toleration-seconds", "2"],
    );
    let mut first = Agent::start(&master, "n1", "127.0.94.2", &[]);
    let first_log = first.log_path();
    let logs = || {
        let agent = std::fs::read_to_string(&first_log).unwrap_or_default();
        format!("--- agent n1 ---\n{agent}\n--- master ---\n{}", master.log())
    };
    eventually("node n1 Ready", 30, &logs, || {
        let (ok, out, _) = kubectl(&master, &["get", "node", "n1", "-o", "json"]);
        let node: Value = if ok { serde_json::from_str(&out).ok()? } else { return None };
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250)
            .then_some(())
    });
    apply(&master, &pods_manifest("127.0.94.2"));

    // A running pod reports what a kubelet reports.
    let hello = eventually("hello Running and Ready", 30, &logs, || {
        pod(&master, "hello").filter(|p| condition(p, "Ready") == "True")
    });
    assert_eq!(hello["status"]["phase"], "Running");
    assert_eq!(hello["status"]["podIP"], "127.0.94.2");
    assert_eq!(hello["status"]["hostIP"], "127.0.94.2");
    assert!(hello["status"]["startTime"].is_string());
    let main = container_status(&hello);
    assert_eq!((main["ready"].as_bool(), main["started"].as_bool()), (Some(true), Some(true)));
    assert_eq!(main["restartCount"], 0);
    assert!(main["state"]["running"]["startedAt"].is_string(), "{main}");
    assert!(main["containerID"].as_str().unwrap().starts_with("process://"));
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "PodReadyToStartContainers"] {
        assert_eq!(condition(&hello, kind), "True", "{kind}");
    }

    // Logs through the API server: plain, and followed.
    let (ok, out, err) = kubectl(&master, &["logs", "hello"]);
    assert!(ok, "kubectl logs: {err}\n{}", logs());
    assert_eq!(out, "hi\n");
    let mut follow =
        master.command("kubectl", &["logs", "-f", "graceful"]).spawn().expect("kubectl logs -f");
    let mut followed = BufReader::new(follow.stdout.take().expect("stdout"));
    let mut line = String::new();
    followed.read_line(&mut line).expect("first line");
    assert_eq!(line, "started\n");

    // Graceful deletion: SIGTERM reaches the container (its trap runs, seen in the followed
    // log), the agent deletes the pod once the container is gone, well within the grace.
    let deleting = Instant::now();
    let (ok, _, err) = kubectl(&master, &["delete", "pod", "graceful", "--wait=true"]);
    assert!(ok, "delete: {err}");
    assert!(deleting.elapsed() < Duration::from_secs(15), "{:?}", deleting.elapsed());
    line.clear();
    followed.read_line(&mut line).expect("TERM line");
    assert_eq!(line, "got TERM in graceful\n");
    let _ = follow.wait();

    // A crashing container restarts under the back-off: CrashLoopBackOff, growing restarts.
    let crash = eventually("crash loops", 40, &logs, || {
        pod(&master, "crash").filter(|p| {
            let status = container_status(p);
            status["restartCount"].as_i64() >= Some(2)
                && status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
    });
    let status = container_status(&crash);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    assert!(status["state"]["waiting"]["message"].as_str().unwrap().starts_with("back-off "));
    assert_eq!(crash["status"]["phase"], "Running");
    let (ok, out, err) = kubectl(&master, &["logs", "crash", "--previous"]);
    assert!(ok, "logs --previous: {err}");
    assert_eq!(out, "crashing\n");

    // A failing liveness probe restarts its container.
    eventually("liveness restarts", 30, &logs, || {
        pod(&master, "liveness").filter(|p| {
            let status = container_status(p);
            status["restartCount"].as_i64() >= Some(1)
                && status["lastState"]["terminated"]["exitCode"].as_i64().is_some()
        })
    });

    // An httpGet readiness probe on a named port makes the pod Ready.
    eventually("web Ready", 30, &logs, || {
        pod(&master, "web").filter(|p| condition(p, "Ready") == "True")
    });

    // An image the process runtime cannot run is refused with a reason.
    let refused = pod(&master, "refused").expect("refused pod");
    let waiting = &container_status(&refused)["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImageNeverPull", "{refused}");
    assert!(waiting["message"].as_str().unwrap().contains("--runtime docker"));

    // A Deployment's pods run.
    eventually("app's replicas ready", 30, &logs, || {
        let (ok, out, _) = kubectl(&master, &["get", "deployment", "app", "-o", "json"]);
        let deployment: Value = if ok { serde_json::from_str(&out).ok()? } else { return None };
        (deployment["status"]["readyReplicas"] == 2).then_some(())
    });

    // A restarted agent adopts its containers: same processes, same restart counts.
    let uid = hello["metadata"]["uid"].as_str().unwrap().to_string();
    let pid = first.container_pid(&uid, "main").expect("hello's pid");
    first.kill();
    first.spawn();
    std::thread::sleep(Duration::from_secs(3));
    let again = eventually("hello still Ready", 20, &logs, || {
        pod(&master, "hello").filter(|p| condition(p, "Ready") == "True")
    });
    assert_eq!(first.container_pid(&uid, "main"), Some(pid), "the same container");
    let main_again = container_status(&again);
    assert_eq!(main_again["restartCount"], 0);
    assert_eq!(main_again["containerID"], main["containerID"]);
    assert_eq!(main_again["state"]["running"]["startedAt"], main["state"]["running"]["startedAt"]);

    // A container whose spec changes in place (a new image) is replaced at once.
    let (ok, _, err) = kubectl(&master, &["set", "image", "pod/hello", "main=/bin/sh"]);
    assert!(ok, "set image: {err}");
    let replaced = eventually("hello's container replaced", 30, &logs, || {
        pod(&master, "hello").filter(|p| {
            let status = container_status(p);
            status["restartCount"] == 1 && status["state"]["running"].is_object()
        })
    });
    let replaced = container_status(&replaced);
    assert_ne!(replaced["containerID"], main["containerID"]);
    assert_eq!(replaced["image"], "/bin/sh");
    let (_, events, _) = kubectl(
        &master,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hello",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(events.contains("Container main definition changed, will be restarted"), "{events}");

    // A dead node's pods are evicted and the Deployment's replicas run on another node.
    let second = Agent::start(&master, "n2", "127.0.94.3", &[]);
    first.kill();
    eventually("app's replicas moved to n2", 60, &logs, || {
        let (ok, out, _) = kubectl(&master, &["get", "pods", "-l", "app=app", "-o", "json"]);
        let list: Value = if ok { serde_json::from_str(&out).ok()? } else { return None };
        let moved = list["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"] == "n2"
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && condition(p, "Ready") == "True"
            })
            .count();
        (moved == 2).then_some(())
    });
    let (_, out, _) = kubectl(&master, &["get", "node", "n1", "-o", "jsonpath={.spec.taints}"]);
    assert!(out.contains("node.kubernetes.io/unreachable"), "{out}");
    drop(second);
    eprintln!("agent test took {:?}", started.elapsed());
}

/// A memory limit is enforced through the host's cgroups (v2, or v1's memory hierarchy): a
/// container that allocates past it is killed and reported `OOMKilled`, as Kubernetes reports.
#[test]
fn memory_limits_are_enforced_and_oom_kills_reported() {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let writable = |dir: &std::path::Path| {
        let probe = dir.join("skiff-limits-probe");
        let made = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        made
    };
    if !(writable(root) || writable(&root.join("memory"))) {
        eprintln!("skipped: no writable cgroup hierarchy here (limits are skipped by the agent)");
        return;
    }
    let master = Master::start("127.0.94.4", &[]);
    let agent = Agent::start(&master, "limited", "127.0.94.5", &[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: host
    command: ["python3", "-c", "import time; data = bytearray(512 * 1024 * 1024); time.sleep(60)"]
    resources:
      limits: {memory: 64Mi}
"#;
    apply(&master, manifest);
    let logs = || {
        format!(
            "{}\n{}",
            master.log(),
            std::fs::read_to_string(agent.log_path()).unwrap_or_default()
        )
    };
    let terminated = eventually("the hungry container killed", 60, &logs, || {
        let pod = pod(&master, "hungry")?;
        let state = container_status(&pod)["state"]["terminated"].clone();
        (!state.is_null()).then_some(state)
    });
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    // Deleting the pod removes the container and its cgroups.
    let uid = pod(&master, "hungry").expect("pod")["metadata"]["uid"].as_str().map(String::from);
    let (ok, _, err) = kubectl(&master, &["delete", "pod", "hungry"]);
    assert!(ok, "{err}");
    let leaf = format!("{}_main_0", uid.expect("uid"));
    eventually("the cgroups removed", 30, &logs, || {
        let left = [root.join("skiff"), root.join("memory/skiff"), root.join("cpu/skiff")]
            .iter()
            .any(|parent| parent.join(&leaf).exists());
        (!left).then_some(())
    });
}

/// A node reads exactly the ConfigMaps and Secrets its own pods reference (Kubernetes' node
/// authorizer): a pod's env gets their values, and the node's credentials are refused others.
#[test]
fn nodes_read_only_the_config_their_pods_use() {
    let master = Master::start("127.0.94.6", &[]);
    let agent = Agent::start(&master, "reader", "127.0.94.7", &[]);
    let manifest = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: password}
stringData: {value: s3cret}
---
apiVersion: v1
kind: Secret
metadata: {name: unrelated}
stringData: {value: private}
---
apiVersion: v1
kind: Pod
metadata: {name: configured}
spec:
  containers:
  - name: main
    image: host
    command: ["/bin/sh", "-c", "echo \"$GREETING $PASSWORD\"; sleep 1000"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: password, key: value}}
"#;
    apply(&master, manifest);
    let logs = || {
        let agent_log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
        format!("{}\n{agent_log}", master.log())
    };
    eventually("the pod's output", 60, &logs, || {
        let (ok, out, _) = kubectl(&master, &["logs", "configured"]);
        (ok && out.contains("hello s3cret")).then_some(())
    });
    let as_node = |name: &str| {
        let mut command = master.command("kubectl", &["get", "secret", name, "-o", "name"]);
        command.env("KUBECONFIG", &agent.kubeconfig);
        master.run(command, "")
    };
    let (ok, out, err) = as_node("password");
    assert!(ok && out.trim() == "secret/password", "{out}{err}");
    let (ok, _, err) = as_node("unrelated");
    assert!(!ok && err.contains("Forbidden"), "{err}");
}
