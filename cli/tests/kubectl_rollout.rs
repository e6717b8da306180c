//! Real kubectl 1.32 driving Deployments on `skiff master` with hollow nodes: the rollout
//! verbs (`status`, `history`, `undo`, `pause`, `resume`), `set image`, `scale`, and what
//! `get` and `describe` show of the controllers' work.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::master::Master;

/// A child process killed when the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(master: &Master, args: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = master.run(master.command("kubectl", args), "");
    (ok, out.trim_end().to_string(), err)
}

fn ok(master: &Master, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(master, args);
    assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}\n--- master log ---\n{}", master.log());
    out
}

fn eventually(master: &Master, seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", master.log());
        std::thread::sleep(Duration::from_millis(300));
    }
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: first release
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
"#;

#[test]
fn rollout_status_history_undo_pause_and_resume() {
    let master = Master::start("127.0.90.1", &[]);
    let _nodes = Reaped(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["hollow-nodes", "--count", "3", "--name-prefix", "node-"])
            .arg("--kubeconfig")
            .arg(&master.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hollow nodes"),
    );
    eventually(&master, 30, "three nodes", || {
        kubectl(&master, &["get", "nodes", "-o", "name"]).1.lines().count() == 3
    });
    let (ok_apply, _, err) =
        master.run(master.command("kubectl", &["apply", "-f", "-"]), DEPLOYMENT);
    assert!(ok_apply, "apply: {err}");
    let status = ok(&master, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.ends_with("deployment \"web\" successfully rolled out"), "{status}");
    let ready = ok(&master, &["get", "deployment", "web", "--no-headers"]);
    assert!(ready.split_whitespace().nth(1) == Some("3/3"), "{ready}");

    // A new image rolls out as revision 2.
    ok(&master, &["set", "image", "deployment/web", "web=web:2"]);
    ok(
        &master,
        &["annotate", "deployment/web", "kubernetes.io/change-cause=second", "--overwrite"],
    );
    let status = ok(&master, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = ok(&master, &["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> =
        history.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(revisions.contains(&"1") && revisions.contains(&"2"), "{history}");
    assert!(history.contains("first release"), "change-cause shown: {history}");
    let sets = ok(&master, &["get", "rs", "-l", "app=web", "--no-headers"]);
    assert_eq!(sets.lines().count(), 2, "{sets}");

    // Undo brings web:1 back as revision 3, reusing the first ReplicaSet.
    let undo = ok(&master, &["rollout", "undo", "deployment/web"]);
    assert!(undo.contains("rolled back"), "{undo}");
    ok(&master, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let image = ok(
        &master,
        &["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"],
    );
    assert_eq!(image, "web:1");
    let detail = ok(&master, &["rollout", "history", "deployment/web", "--revision=3"]);
    assert!(detail.contains("web:1"), "{detail}");
    assert_eq!(ok(&master, &["get", "rs", "-l", "app=web", "--no-headers"]).lines().count(), 2);
    eventually(&master, 30, "every pod on web:1", || {
        let images = kubectl(
            &master,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].spec.containers[0].image}",
            ],
        )
        .1;
        images.split_whitespace().count() == 3 && images.split_whitespace().all(|i| i == "web:1")
    });

    // Scale.
    ok(&master, &["scale", "deployment", "web", "--replicas=5"]);
    ok(&master, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    eventually(&master, 30, "5/5 ready", || {
        kubectl(&master, &["get", "deployment", "web", "--no-headers"]).1.split_whitespace().nth(1)
            == Some("5/5")
    });

    // Paused: a template change does not roll; resumed: it does.
    ok(&master, &["rollout", "pause", "deployment/web"]);
    ok(&master, &["set", "image", "deployment/web", "web=web:3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ok(&master, &["get", "rs", "-l", "app=web", "--no-headers"]).lines().count(), 2);
    let progressing = ok(
        &master,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
    );
    assert_eq!(progressing, "DeploymentPaused");
    ok(&master, &["rollout", "resume", "deployment/web"]);
    let status = ok(&master, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(ok(&master, &["get", "rs", "-l", "app=web", "--no-headers"]).lines().count(), 3);

    // describe shows the new ReplicaSet and the controller's events.
    let described = ok(&master, &["describe", "deployment", "web"]);
    assert!(described.contains("NewReplicaSet:"), "{described}");
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    let pods = ok(&master, &["get", "pods", "-l", "app=web", "-o", "wide", "--no-headers"]);
    assert_eq!(pods.lines().count(), 5, "{pods}");
    assert!(pods.lines().all(|l| l.contains("Running") && l.contains("node-")), "{pods}");
}
