//! The real `kubectl` (1.32, default validation) and the official Python client against
//! `skiff master`: discovery, create/apply/get/watch/patch/label/scale/delete, Tables, and
//! authentication and RBAC refusals.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::master::{Master, Run};

/// kubectl against a master, stdout trimmed.
trait Kubectl {
    fn kubectl(&self, args: &[&str]) -> Run;
    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Run;
    /// kubectl that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String;
    fn apply(&self, manifest: &str) -> String;
}

impl Kubectl for Master {
    fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_stdin(args, "")
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let (ok, stdout, stderr) = self.run(self.command("kubectl", args), stdin);
        (ok, stdout.trim_end().to_string(), stderr)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args);
        assert!(
            ok,
            "kubectl {args:?} failed:\n{stdout}\n{stderr}\n--- master log ---\n{}",
            self.log()
        );
        stdout
    }

    fn apply(&self, manifest: &str) -> String {
        let (ok, stdout, stderr) = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(ok, "kubectl apply failed:\n{stdout}\n{stderr}\n{}", self.log());
        stdout
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        env:
        - {name: A, value: '1'}
";

#[test]
fn kubectl_manages_objects_with_default_validation() {
    let master = Master::start("127.0.80.1", &[]);
    // The dispatcher picks kubectl 1.32 from the server's version.
    let version = master.ok(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).expect("version JSON");
    assert_eq!(version["serverVersion"]["minor"], "32");
    assert!(version["clientVersion"]["gitVersion"].as_str().unwrap_or("").starts_with("v1.32"));

    let resources = master.ok(&["api-resources", "--no-headers"]);
    for expected in ["pods", "deployments", "clusterrolebindings", "leases", "namespaces"] {
        assert!(
            resources.lines().any(|l| l.starts_with(expected)),
            "{expected} missing:\n{resources}"
        );
    }
    assert!(resources.lines().any(|l| l.starts_with("deployments") && l.contains("deploy")));

    // Namespaces made at bootstrap, in kubectl's usual table.
    let namespaces = master.ok(&["get", "namespaces"]);
    assert!(namespaces.starts_with("NAME"), "{namespaces}");
    assert!(namespaces.lines().any(|l| l.starts_with("kube-system") && l.contains("Active")));

    // Apply: created, unchanged, configured.
    assert_eq!(master.apply(DEPLOYMENT), "deployment.apps/web created");
    assert_eq!(master.apply(DEPLOYMENT), "deployment.apps/web unchanged");
    let changed =
        DEPLOYMENT.replace("nginx:1.25", "nginx:1.26").replace("value: '1'", "value: '2'");
    assert_eq!(master.apply(&changed), "deployment.apps/web configured");
    let container = "{.spec.template.spec.containers[0]";
    let fields =
        format!("jsonpath={container}.image}} {container}.env[0].value}} {{.metadata.generation}}");
    let image = master.ok(&["get", "deploy", "web", "-o", &fields]);
    assert_eq!(image, "nginx:1.26 2 2");

    // Strict validation: an unknown field is refused by the server.
    let typo = DEPLOYMENT
        .replace("replicas: 2", "replicas: 2\n  replicaz: 3")
        .replace("name: web", "name: typo");
    let (ok, _, stderr) = master.kubectl_stdin(&["apply", "-f", "-"], &typo);
    assert!(!ok);
    assert!(stderr.contains("unknown field \"spec.replicaz\""), "{stderr}");

    // Scale and the three patch types.
    assert_eq!(
        master.ok(&["scale", "deploy", "web", "--replicas=3"]),
        "deployment.apps/web scaled"
    );
    assert_eq!(master.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    master.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    ]);
    master.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    master.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#,
    ]);
    let fields = format!(
        "jsonpath={{.metadata.annotations.a}} {{.spec.replicas}} {container}.image}} \
         {container}.env[0].name}}"
    );
    let patched = master.ok(&["get", "deploy", "web", "-o", &fields]);
    assert_eq!(
        patched, "b 4 nginx:1.27 A",
        "strategic merge keeps the env of the merged container"
    );
    // A patch that changes nothing writes nothing (kubectl sees the same resourceVersion).
    // The Deployment controller may still be writing the object's status and annotations
    // between kubectl's read and its patch, so allow it a few seconds to settle.
    let same = r#"{"spec":{"replicas":4}}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let noop = master.ok(&["patch", "deploy", "web", "--type", "merge", "-p", same]);
        if noop == "deployment.apps/web patched (no change)" {
            break;
        }
        assert_eq!(noop, "deployment.apps/web patched", "{noop}");
        assert!(Instant::now() < deadline, "a no-op patch kept changing the object");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Pods: create, Table columns, label selectors, watch, delete.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, labels: {app: db}}\n\
               spec:\n  containers: [{name: c, image: busybox}]\n";
    let (ok, stdout, stderr) = master.kubectl_stdin(&["create", "-f", "-"], pod);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout, "pod/p1 created");
    let (ok, _, stderr) = master.kubectl_stdin(&["create", "-f", "-"], pod);
    assert!(!ok);
    assert!(
        stderr.contains("AlreadyExists") && stderr.contains("pods \"p1\" already exists"),
        "{stderr}"
    );
    // (The Deployment above has pods too, now that controllers run: select the test's own.)
    let pods = master.ok(&["get", "pods", "-l", "app=db"]);
    let mut lines = pods.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["p1", "0/1", "Pending", "0"]);
    assert_eq!(master.ok(&["label", "pod", "p1", "tier=backend"]), "pod/p1 labeled");
    assert_eq!(master.ok(&["get", "pods", "-l", "tier=backend", "-o", "name"]), "pod/p1");
    assert_eq!(master.ok(&["get", "pods", "-l", "tier=frontend", "-o", "name"]), "");

    let mut watcher = master
        .command("kubectl", &["get", "pods", "-l", "app=db", "-w", "--no-headers"])
        .spawn()
        .expect("watch");
    let stdout = watcher.stdout.take().expect("watch stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines_rx.recv_timeout(Duration::from_secs(20)).expect("watch lists p1 first");
    assert!(first.starts_with("p1 "), "{first}");
    let (ok, _, stderr) = master.kubectl_stdin(&["create", "-f", "-"], &pod.replace("p1", "p2"));
    assert!(ok, "{stderr}");
    // Other pods may show first: the scheduler reports p1 unschedulable (no nodes here) and
    // the Deployment above has pods of its own.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = lines_rx.recv_timeout(left).expect("watch sees p2");
        if seen.starts_with("p2 ") {
            break;
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();

    assert_eq!(master.ok(&["delete", "pod", "p2"]), "pod \"p2\" deleted");
    let (ok, _, stderr) = master.kubectl(&["get", "pod", "p2"]);
    assert!(!ok);
    assert!(stderr.contains("Error from server (NotFound): pods \"p2\" not found"), "{stderr}");
    let described = master.ok(&["describe", "pod", "p1"]);
    assert!(described.contains("Name:") && described.contains("p1"), "{described}");
    assert!(master.ok(&["explain", "pods.spec.containers.image"]).contains("image"));

    // Prometheus can scrape the API server: promtool accepts its exposition.
    let metrics = master.ok(&["get", "--raw", "/metrics"]);
    for series in [
        "apiserver_request_total{code=\"201\",resource=\"pods\",verb=\"create\"}",
        "apiserver_request_duration_seconds_bucket",
        "apiserver_storage_request_duration_seconds_bucket{operation=\"txn\"",
        "apiserver_watch_cache_objects{resource=\"pods\"}",
        "apiserver_registered_watchers{resource=\"pods\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    // `ok` trims the output; the exposition format ends with a newline.
    common::promtool_check(&format!("{metrics}\n"));
}

#[test]
fn unauthenticated_and_unauthorized_requests_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "bob-token,bob,1001,\"developers\"\n").expect("token file");
    let master =
        Master::start("127.0.80.2", &["--token-auth-file", tokens.to_str().expect("utf-8")]);
    // Users of the same cluster without the admin's certificate.
    for (user, token) in [("stranger", "wrong"), ("bob", "bob-token")] {
        master.ok(&["config", "set-credentials", user, &format!("--token={token}")]);
        master.ok(&["config", "set-context", user, "--cluster=skiff", &format!("--user={user}")]);
    }
    let (ok, _, stderr) = master.kubectl(&["--context=stranger", "get", "pods"]);
    assert!(!ok);
    // kubectl's wording for a 401.
    assert!(stderr.contains("You must be logged in to the server"), "{stderr}");
    // No credentials at all (kubectl would prompt for them): a plain HTTPS request.
    let ca = master.kubeconfig.as_path().parent().expect("data dir").join("pki/ca.crt");
    let anonymous = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg("https://127.0.80.2:6443/api/v1/namespaces/default/pods")
        .output()
        .expect("curl");
    let status: serde_json::Value = serde_json::from_slice(&anonymous.stdout).expect("a Status");
    assert_eq!(
        (status["code"].as_i64(), status["reason"].as_str()),
        (Some(401), Some("Unauthorized"))
    );
    // A known user without a binding: 403 naming the user, verb and resource.
    let (ok, _, stderr) = master.kubectl(&["--context=bob", "get", "pods"]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" \
             in the namespace \"default\""
        ),
        "{stderr}"
    );
    // Bound to view in one namespace: reads there, nothing else.
    let binding = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bob-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "bob"}]}"#;
    let (ok, _, stderr) = master.kubectl_stdin(&["apply", "-f", "-"], binding);
    assert!(ok, "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, _, stderr) = master.kubectl(&["--context=bob", "get", "pods"]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "binding never took effect: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, _, stderr) = master.kubectl(&["--context=bob", "-n", "kube-system", "get", "pods"]);
    assert!(!ok && stderr.contains("Forbidden"), "{stderr}");
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}"#;
    let (ok, _, stderr) = master.kubectl_stdin(&["--context=bob", "create", "-f", "-"], pod);
    assert!(!ok && stderr.contains("cannot create resource \"pods\""), "{stderr}");

    // As namespace admin, bob may bind roles he holds, but not escalate to cluster-admin.
    let admin = binding.replace("bob-view", "bob-admin").replace("\"view\"", "\"admin\"");
    master.apply(&admin);
    let escalate = binding.replace("bob-view", "bob-root").replace("\"view\"", "\"cluster-admin\"");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stderr = loop {
        let (ok, _, stderr) =
            master.kubectl_stdin(&["--context=bob", "apply", "-f", "-"], &escalate);
        assert!(!ok, "bob escalated to cluster-admin");
        // Until the admin binding is seen, the refusal is the plain RBAC one.
        if stderr.contains("not currently held") || Instant::now() > deadline {
            break stderr;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(stderr.contains("attempting to grant RBAC permissions not currently held"), "{stderr}");
    let own = binding.replace("bob-view", "bob-view-2");
    let (ok, _, stderr) = master.kubectl_stdin(&["--context=bob", "apply", "-f", "-"], &own);
    assert!(ok, "binding a role bob holds: {stderr}");
}

/// Service-account tokens from the TokenRequest subresource authenticate as the account,
/// RBAC applies to them, and deleting the account revokes them.
#[test]
fn service_account_tokens_authenticate_until_the_account_is_deleted() {
    let master = Master::start("127.0.80.7", &[]);
    master
        .apply(r#"{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}"#);
    let dir = tempfile::tempdir().expect("temp dir");
    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}"#,
    )
    .expect("write");
    let path = "/api/v1/namespaces/default/serviceaccounts/robot/token";
    let issued = master.ok(&["create", "--raw", path, "-f", request.to_str().expect("utf-8")]);
    let issued: serde_json::Value = serde_json::from_str(&issued).expect("TokenRequest JSON");
    assert_eq!(issued["kind"], "TokenRequest");
    let token = issued["status"]["token"].as_str().expect("a token").to_string();
    master.ok(&["config", "set-credentials", "robot", &format!("--token={token}")]);
    master.ok(&["config", "set-context", "robot", "--cluster=skiff", "--user=robot"]);
    let (ok, _, stderr) = master.kubectl(&["--context=robot", "get", "pods"]);
    assert!(!ok);
    assert!(
        stderr.contains("User \"system:serviceaccount:default:robot\" cannot list"),
        "{stderr}"
    );
    let binding = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "robot-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]}"#;
    master.apply(binding);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !master.kubectl(&["--context=robot", "get", "pods"]).0 {
        assert!(Instant::now() < deadline, "the binding never applied to the token");
        std::thread::sleep(Duration::from_millis(200));
    }
    master.ok(&["delete", "serviceaccount", "robot"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, _, stderr) = master.kubectl(&["--context=robot", "get", "pods"]);
        if !ok && stderr.contains("You must be logged in") {
            break;
        }
        assert!(Instant::now() < deadline, "the token outlived its account: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_python_client_lists_watches_and_creates() {
    let master = Master::start("127.0.80.3", &[]);
    let script = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
print("version", client.VersionApi().get_code().minor)
pod = {"metadata": {"name": "py"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
created = v1.create_namespaced_pod("default", pod)
print("created", created.metadata.name, created.status.phase)
print("listed", [p.metadata.name for p in v1.list_namespaced_pod("default").items])
w = watch.Watch()
for event in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=5):
    print("event", event["type"], event["object"].metadata.name)
    w.stop()
try:
    v1.read_namespaced_pod("absent", "default")
except client.exceptions.ApiException as e:
    print("error", e.status)
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(master.kubeconfig.as_path())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        master.log()
    );
    assert_eq!(
        stdout,
        "version 32\ncreated py Pending\nlisted ['py']\nevent ADDED py\nerror 404\n"
    );
}

#[test]
fn admission_enforces_limit_ranges_quotas_and_namespace_lifecycle() {
    let master = Master::start("127.0.80.4", &[]);
    let setup = "apiVersion: v1
kind: Namespace
metadata: {name: q}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: q, namespace: q}
spec:
  hard: {pods: '1', limits.cpu: '2'}
---
apiVersion: v1
kind: LimitRange
metadata: {name: cpu, namespace: q}
spec:
  limits:
  - type: Container
    default: {cpu: 500m}
    max: {cpu: '1'}
";
    master.apply(setup);
    let pod = |name: &str, cpu: Option<&str>| {
        let resources =
            cpu.map_or(String::new(), |c| format!(", resources: {{limits: {{cpu: '{c}'}}}}"));
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: q}}\nspec:\n  \
             containers: [{{name: c, image: busybox{resources}}}]\n"
        )
    };
    // Both admission caches must have seen the quota and the range.
    let deadline = Instant::now() + Duration::from_secs(10);
    let too_big = loop {
        let (ok, _, stderr) = master.kubectl_stdin(&["create", "-f", "-"], &pod("big", Some("2")));
        if !ok {
            break stderr;
        }
        master.ok(&["delete", "pod", "big", "-n", "q"]);
        assert!(Instant::now() < deadline, "the LimitRange never applied");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(too_big.contains("maximum cpu usage per Container is 1, but limit is 2"), "{too_big}");
    let (ok, stdout, stderr) = master.kubectl_stdin(&["create", "-f", "-"], &pod("a", None));
    assert!(ok, "{stdout}{stderr}");
    let resources = "{.spec.containers[0].resources";
    let fields = format!("jsonpath={resources}.limits.cpu}} {resources}.requests.cpu}}");
    let defaulted = master.ok(&["get", "pod", "a", "-n", "q", "-o", &fields]);
    assert_eq!(defaulted, "500m 500m", "LimitRange defaults, request from limit");
    let (ok, _, stderr) = master.kubectl_stdin(&["create", "-f", "-"], &pod("b", None));
    assert!(!ok);
    assert!(
        stderr.contains(
            "pods \"b\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, \
             limited: pods=1"
        ),
        "{stderr}"
    );
    let used =
        master.ok(&["get", "resourcequota", "q", "-n", "q", "-o", "jsonpath={.status.used.pods}"]);
    assert_eq!(used, "1");

    // Deleting a namespace deletes what is in it, then the namespace; kubectl waits for it.
    assert_eq!(
        master.ok(&["delete", "namespace", "q", "--timeout=30s"]),
        "namespace \"q\" deleted"
    );
    let (ok, _, stderr) = master.kubectl(&["get", "namespace", "q"]);
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    let (ok, _, stderr) = master.kubectl_stdin(&["create", "-f", "-"], &pod("late", None));
    assert!(!ok && stderr.contains("namespaces \"q\" not found"), "{stderr}");
}

/// `--store-endpoints` runs the API server on a real etcd 3.4, where the objects are
/// Kubernetes' JSON under `/registry`.
#[test]
fn the_api_server_runs_on_a_real_etcd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ip = "127.0.80.5";
    let client = format!("http://{ip}:2379");
    let mut etcd = Command::new("etcd")
        .args(["--name", "e1"])
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
        .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
        .args(["--initial-cluster", &format!("e1=http://{ip}:2380")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is installed by cargo xtask test");
    // The embedded member's flags are unused with --store-endpoints; its ports stay free.
    let master = Master::start("127.0.80.6", &["--store-endpoints", &client]);
    assert_eq!(master.apply(DEPLOYMENT), "deployment.apps/web created");
    assert_eq!(master.ok(&["get", "deploy", "-o", "name"]), "deployment.apps/web");
    let stored = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &client, "get", "/registry/deployments/default/web"])
        .args(["--print-value-only"])
        .output()
        .expect("etcdctl");
    let object: serde_json::Value = serde_json::from_slice(&stored.stdout).expect("JSON in etcd");
    assert_eq!(object["metadata"]["name"], "web");
    assert_eq!(object["spec"]["replicas"], 2);
    drop(master);
    let _ = etcd.kill();
    let _ = etcd.wait();
}
