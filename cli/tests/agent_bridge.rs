//! The bridge pod network end to end: `skiff up --pod-network bridge` inside a network
//! namespace this test creates (nothing touches the host's network): two replicas of a web
//! server bound to 0.0.0.0:8080 each get a namespace of their own with an IP from
//! 10.244.0.0/24, are probed there (an exec probe that only passes inside the pod's
//! namespace, an HTTP probe from the agent over the bridge), answer on their pod IPs and their
//! Service's ClusterIP (10.96.0.0/24, held by `skiff-svc0`); a pod reaches that ClusterIP and
//! its own Service's (hairpin); deleting the pods removes their namespaces and veths. Run
//! with the userspace proxy, then with nftables when `nft` works in the namespace. Skipped,
//! with the reason printed, without root or iproute2.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const POD_CIDR: &str = "10.244.0.0/24";
const SERVICE_RANGE: &str = "10.96.0.0/24";
const ADDRESS: &str = "127.0.0.1";

/// A network namespace made for this test, deleted on drop.
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn create(suffix: &str) -> Result<TestNetns, String> {
        let name = format!("skiff-t-{}-{suffix}", std::process::id());
        let add = Command::new("ip").args(["netns", "add", &name]).output();
        match add {
            Ok(output) if output.status.success() => {}
            Ok(output) => return Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
            Err(error) => return Err(error.to_string()),
        }
        let netns = TestNetns { name };
        let up = Command::new("ip").args(["-n", &netns.name, "link", "set", "lo", "up"]).status();
        if !up.is_ok_and(|s| s.success()) {
            return Err("cannot set lo up in the test namespace".into());
        }
        Ok(netns)
    }

    /// A command run inside the namespace.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).stdin(Stdio::null()).output().expect("ip netns exec")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// Why this test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_NET_ADMIN (12) for links, CAP_SYS_ADMIN (21) for `ip netns`.
    if effective & (1 << 12) == 0 || effective & (1 << 21) == 0 {
        return Some("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)".into());
    }
    let programs: [(&str, &[&str]); 3] =
        [("ip", &["-V"]), ("python3", &["--version"]), ("kubectl", &["version", "--client"])];
    for (program, args) in programs {
        let found = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("{program} is not installed"));
        }
    }
    None
}

/// `skiff up` running inside a test namespace; dropping it stops it and removes everything
/// it left: pods' processes, their namespaces.
struct Up {
    child: Child,
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
    netns: TestNetns,
    proxy_mode: String,
}

impl Up {
    fn start(netns: TestNetns, proxy_mode: &str) -> Up {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = spawn_up(&netns, dir.path(), proxy_mode);
        let cache = tempfile::tempdir().expect("cache");
        Up { child, dir, cache, netns, proxy_mode: proxy_mode.to_string() }
    }

    /// Stops `skiff up` (pods keep running) and starts it again on the same data: in a new
    /// mount namespace (`ip netns exec` makes one), as after a restart elsewhere.
    fn restart(&mut self) {
        self.stop();
        self.child = spawn_up(&self.netns, self.dir.path(), &self.proxy_mode);
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str], input: Option<&str>) -> (bool, String, String) {
        let mut command = self.netns.command("kubectl");
        command
            .env("KUBECONFIG", self.dir.path().join("data").join("admin.kubeconfig"))
            .env("KUBECACHEDIR", self.cache.path())
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("kubectl");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(input.as_bytes()).expect("kubectl stdin");
        }
        let output = child.wait_with_output().expect("kubectl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args, None);
        assert!(ok, "kubectl {args:?}: {out}\n{err}\n--- skiff up log ---\n{}", self.log());
        out
    }

    fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.kubectl(&["apply", "-f", "-"], Some(manifest));
        assert!(ok, "apply: {out}\n{err}\n--- skiff up log ---\n{}", self.log());
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let (ok, out, _) = self.kubectl(&[args, &["-o", "json"]].concat(), None);
        ok.then(|| serde_json::from_str(&out).ok()).flatten()
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

    /// The body of `GET url` fetched from inside the test namespace (the node's side).
    fn fetch(&self, url: &str) -> Option<String> {
        let script = "import sys, urllib.request\n\
                      print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())";
        let output = self.netns.run("python3", &["-c", script, url]);
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Pod uids the agent knows of: its IP records and containers.
    fn agent_pod_uids(&self) -> BTreeSet<String> {
        let root = self.dir.path().join("data").join("agent");
        let mut uids = BTreeSet::new();
        for entry in std::fs::read_dir(root.join("network").join("ips")).into_iter().flatten() {
            if let Ok(uid) = std::fs::read_to_string(entry.expect("entry").path()) {
                uids.insert(uid.trim().to_string());
            }
        }
        for entry in std::fs::read_dir(root.join("containers")).into_iter().flatten() {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            if let Some((uid, _)) = name.split_once('_') {
                uids.insert(uid.to_string());
            }
        }
        uids
    }
}

fn spawn_up(netns: &TestNetns, dir: &Path, proxy_mode: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("up.log"))
        .expect("log");
    netns
        .command(env!("CARGO_BIN_EXE_skiff"))
        .arg("up")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--address", ADDRESS, "--node-name", "bridge-node"])
        .args(["--pod-network", "bridge", "--pod-cidr", POD_CIDR])
        .args(["--service-cluster-ip-range", SERVICE_RANGE, "--proxy-mode", proxy_mode])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skiff up")
}

impl Drop for Up {
    fn drop(&mut self) {
        let uids = self.agent_pod_uids();
        self.stop();
        // Pods' processes outlive `skiff up` by design: end the ones this test started.
        common::agent::kill_shims_under(self.dir.path());
        for uid in uids {
            let name = format!("skiff-{uid}");
            let _ =
                Command::new("ip").args(["netns", "delete", &name]).stderr(Stdio::null()).status();
            let _ = std::fs::remove_file(Path::new("/run/netns").join(name));
        }
    }
}

/// Two replicas serving `hello from <name> at <pod IP>` on 0.0.0.0:8080 (the same port:
/// each has its own namespace). The exec readiness probe dials 127.0.0.1:8080, which only
/// the pod's own namespace serves; the liveness probe is the agent's HTTP GET to the pod IP.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: host
        command: ["/bin/sh", "-c"]
        args:
        - >-
          d=$(mktemp -d) && echo "hello from $POD_NAME at $POD_IP" > $d/index.html &&
          exec python3 -m http.server --bind 0.0.0.0 --directory $d 8080
        env:
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        readinessProbe:
          exec:
            command: ["python3", "-c",
              "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=1)"]
          periodSeconds: 1
          timeoutSeconds: 3
        livenessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 2
          failureThreshold: 3
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hairpin}
spec:
  selector: {app: hairpin}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

/// A pod that serves on 8080 and fetches its own Service (hairpin: the only endpoint is
/// itself) and the web Service from inside its namespace, then exits 0 if both answered.
fn client_pod(web_ip: &str, hairpin_ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{app: hairpin}}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: host
    command: ["python3", "-c"]
    args:
    - |
      import http.server, threading, time, urllib.request
      class Hello(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              self.send_response(200); self.end_headers(); self.wfile.write(b"hairpin")
          def log_message(self, *args): pass
      server = http.server.HTTPServer(("0.0.0.0", 8080), Hello)
      threading.Thread(target=server.serve_forever, daemon=True).start()
      def fetch(url):
          for _ in range(240):
              try: return urllib.request.urlopen(url, timeout=2).read().decode().strip()
              except Exception as error: last = error; time.sleep(0.5)
          raise SystemExit(f"{{url}}: {{last}}")
      print("web:", fetch("http://{web_ip}/"), flush=True)
      print("self:", fetch("http://{hairpin_ip}/"), flush=True)
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
"#
    )
}

fn in_range(ip: &str) -> bool {
    let cidr = agent::network::PodCidr::parse(POD_CIDR).unwrap();
    ip.parse().is_ok_and(|ip| cidr.offset(ip).is_some_and(|offset| offset > 0))
}

/// The web pods as (name, uid, IP) once both are Ready.
fn ready_web_pods(up: &Up) -> Option<Vec<(String, String, String)>> {
    let list = up.json(&["get", "pods", "-l", "app=web"])?;
    let pods: Vec<&Value> = list["items"].as_array()?.iter().collect();
    let ready = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    if pods.len() != 2 || !pods.iter().all(|p| ready(p)) {
        return None;
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    Some(
        pods.iter()
            .map(|p| {
                (
                    text(&p["metadata"]["name"]),
                    text(&p["metadata"]["uid"]),
                    text(&p["status"]["podIP"]),
                )
            })
            .collect(),
    )
}

fn veths(up: &Up) -> String {
    let output = up.netns.run("ip", &["-o", "link", "show", "type", "veth"]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn service_addresses(up: &Up) -> String {
    let output = up.netns.run("ip", &["-o", "-4", "addr", "show", "dev", "skiff-svc0"]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether a connection to `ip:port` from the node's side is refused at once.
fn refused(up: &Up, ip: &str, port: &str) -> bool {
    let script = "import socket, sys\n\
                  try: socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n\
                  except ConnectionRefusedError: sys.exit(0)\n\
                  except Exception: sys.exit(2)\n\
                  sys.exit(1)";
    up.netns.run("python3", &["-c", script, ip, port]).status.code() == Some(0)
}

fn node_ready(up: &Up) {
    up.eventually(90, "node bridge-node Ready", || {
        let node = up.json(&["get", "node", "bridge-node"])?;
        let conditions = node["status"]["conditions"].as_array()?.clone();
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True").then_some(())
    });
}

fn scenario(up: &mut Up, proxy_mode: &str) {
    node_ready(up);
    let log = up.log();
    assert!(log.contains("bridge pod network: each pod gets a network namespace"), "{log}");
    up.apply(WEB);
    let pods = up.eventually(90, "both web replicas Ready", || ready_web_pods(up));
    let ips: BTreeSet<&str> = pods.iter().map(|(_, _, ip)| ip.as_str()).collect();
    assert_eq!(ips.len(), 2, "distinct pod IPs: {pods:?}");
    for (name, uid, ip) in &pods {
        assert!(in_range(ip), "{ip} in {POD_CIDR}, not the gateway");
        assert!(Path::new("/run/netns").join(format!("skiff-{uid}")).exists(), "{name}'s netns");
        // Each pod answers on its own IP over the bridge, and knows that IP (downward API).
        let body =
            up.eventually(30, "the pod IP answering", || up.fetch(&format!("http://{ip}:8080/")));
        assert_eq!(body, format!("hello from {name} at {ip}"));
    }
    assert_eq!(veths(up).lines().count(), 2, "one veth per pod: {}", veths(up));
    // `kubectl exec` runs in the pod's namespace too: eth0 holds the pod's address.
    let (name, _, ip) = &pods[0];
    let shown = up.ok(&["exec", name, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(shown.contains(&format!("inet {ip}/24")), "{shown}");

    // The ClusterIP answers from the node's side, from both replicas.
    let cluster_ip = up.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let hairpin_ip = up.ok(&["get", "service", "hairpin", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(cluster_ip.starts_with("10.96.0."), "{cluster_ip}");
    up.eventually(30, "ClusterIPs on skiff-svc0", || {
        let shown = service_addresses(up);
        (shown.contains(&format!("inet {cluster_ip}/32"))
            && shown.contains(&format!("inet {hairpin_ip}/32")))
        .then_some(())
    });
    let mut answers = BTreeSet::new();
    up.eventually(60, "both replicas through the ClusterIP", || {
        for _ in 0..4 {
            answers.extend(up.fetch(&format!("http://{cluster_ip}/")));
        }
        (answers.len() == 2).then_some(())
    });
    if proxy_mode == "nftables" {
        // No endpoints yet: rejected at once, not left to time out.
        let rule = format!("ip daddr {hairpin_ip} tcp dport 80 reject");
        up.eventually(30, "the REJECT rule", || {
            let chain =
                up.netns.run("nft", &["list", "chain", "ip", "skiff-proxy", "no-endpoints"]);
            String::from_utf8_lossy(&chain.stdout).contains(&rule).then_some(())
        });
        assert!(refused(up, &hairpin_ip, "80"), "a Service without endpoints is rejected");
    }

    // From inside a pod: the web Service, and the pod's own Service (hairpin).
    up.apply(&client_pod(&cluster_ip, &hairpin_ip));
    let client = up.eventually(120, "the client pod done", || {
        let pod = up.json(&["get", "pod", "client"])?;
        let phase = pod["status"]["phase"].as_str()?.to_string();
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some((phase, pod))
    });
    let logs = up.ok(&["logs", "client"]);
    assert_eq!(client.0, "Succeeded", "client: {logs}\n{}", up.log());
    assert!(logs.contains("web: hello from web-"), "{logs}");
    assert!(logs.contains("self: hairpin"), "{logs}");
    assert!(in_range(client.1["status"]["podIP"].as_str().unwrap_or("")), "{:?}", client.1);

    // A restarted agent (in another mount namespace) adopts the pods with their namespaces.
    up.restart();
    node_ready(up);
    up.eventually(60, "the pods adopted", || {
        let log = up.log();
        let adopted = log.matches("found the pod's network namespace again").count() >= 2;
        let again: BTreeSet<String> =
            ready_web_pods(up)?.into_iter().map(|(_, _, ip)| ip).collect();
        (adopted && again.iter().map(String::as_str).eq(ips.iter().copied())).then_some(())
    });
    for (name, _, ip) in &pods {
        let body = up.eventually(30, "the pod IP answering after the restart", || {
            up.fetch(&format!("http://{ip}:8080/"))
        });
        assert_eq!(body, format!("hello from {name} at {ip}"));
    }
    for (_, uid, _) in &pods {
        let veth = agent::network::bridge::host_veth_name(uid);
        assert!(veths(up).contains(&format!(" {veth}@")), "{veth} kept: {}", veths(up));
    }

    // No restarts: the agent's HTTP liveness probe reached the pods all along.
    let restarts = up.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(restarts, "0 0", "{}", up.log());

    // Deleting the pods removes their namespaces and veths, then the Services their addresses.
    let client_uid = client.1["metadata"]["uid"].as_str().unwrap_or("").to_string();
    up.ok(&["delete", "deployment", "web", "--wait=true", "--timeout=60s"]);
    up.ok(&["delete", "pod", "client", "--wait=true", "--timeout=60s"]);
    up.eventually(60, "every pod gone", || {
        up.ok(&["get", "pods", "-o", "name"]).is_empty().then_some(())
    });
    let uids = pods.iter().map(|(_, uid, _)| uid.clone()).chain([client_uid]);
    for uid in uids {
        let path = Path::new("/run/netns").join(format!("skiff-{uid}"));
        up.eventually(30, "the pod's netns removed", || (!path.exists()).then_some(()));
    }
    up.eventually(30, "the veths removed", || veths(up).trim().is_empty().then_some(()));
    up.ok(&["delete", "service", "web", "hairpin"]);
    up.eventually(30, "the ClusterIPs removed", || {
        let shown = service_addresses(up);
        let gone = [&cluster_ip, &hairpin_ip].iter().all(|ip| !shown.contains(&format!("{ip}/")));
        // The master Service's stays.
        (gone && shown.contains("inet 10.96.0.1/32")).then_some(())
    });
}

fn nft_works(netns: &TestNetns) -> Result<(), String> {
    let output = netns.command("nft").args(["list", "tables"]).output();
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        Err(error) => Err(format!("nft: {error}")),
    }
}

#[test]
fn bridge_pods_get_namespaces_on_the_node_bridge_and_reach_services() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping the bridge pod network test: {reason}");
        return;
    }
    let started = Instant::now();
    let netns = match TestNetns::create("u") {
        Ok(netns) => netns,
        Err(reason) => {
            eprintln!("skipping the bridge pod network test: cannot create a netns: {reason}");
            return;
        }
    };
    let mut up = Up::start(netns, "userspace");
    scenario(&mut up, "userspace");
    drop(up);
    eprintln!("bridge pod network, userspace proxy: passed in {:?}", started.elapsed());

    let started = Instant::now();
    let netns = TestNetns::create("n").expect("a second test netns");
    if let Err(reason) = nft_works(&netns) {
        eprintln!("skipping the nftables half: nft does not work in the namespace: {reason}");
        return;
    }
    let mut up = Up::start(netns, "nftables");
    scenario(&mut up, "nftables");
    let tables = up.netns.run("nft", &["list", "tables"]);
    assert!(String::from_utf8_lossy(&tables.stdout).contains("skiff-proxy"));
    drop(up);
    eprintln!("bridge pod network, nftables proxy: passed in {:?}", started.elapsed());
}
