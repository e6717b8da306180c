//! The loopback pod network and the agent's service proxy, end to end: one `skiff agent
//! --pod-network loopback` runs a Deployment of two `python3 -m http.server --bind $(POD_IP)`
//! replicas on distinct loopback pod IPs, probed on those IPs; its NodePort Service answers on
//! the ClusterIP and the node's NodePort from both replicas (userspace proxy); containers get
//! the service environment variables; an unready replica stops receiving traffic; a restarted
//! agent keeps the pods' IPs. Addresses: 127.0.97.1 (master), 127.0.97.2 (agent), services
//! 127.97.0.0/24, pods 127.98.0.0/16.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::agent::{apply, condition, eventually, get_json, kubectl, node_ready, pod, Agent};
use common::master::Master;
use serde_json::Value;

const MASTER_IP: &str = "127.0.97.1";
const NODE_IP: &str = "127.0.97.2";
const SERVICE_RANGE: &str = "127.97.0.0/24";
const POD_CIDR: &str = "127.98.0.0/16";

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

/// Each replica serves its own directory under `base`: `name` (the pod's name), `env` (its
/// environment) and `ready` (its readiness probe's target; removing it makes the pod unready).
fn workloads(base: &Path) -> String {
    let base = base.display();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: host
        command: ["/bin/sh", "-c"]
        args:
        - >-
          d={base}/$POD_NAME; mkdir -p $d; echo $POD_NAME > $d/name; touch $d/ready;
          env > $d/env; exec python3 -m http.server --bind $(POD_IP) --directory $d 8080
        env:
        - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready, port: 8080}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: plain}}
spec:
  hostNetwork: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: host
    command: ["/bin/sh", "-c", "env > {base}/plain.env; exec sleep 1000"]
"#
    )
}

/// The body of `GET /<path>` at `address`, if it answers 200 within 2 s.
fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    let limit = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, limit).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.trim().to_string())
}

/// Which replicas answer `count` requests in a row at `address` (`None` if one fails).
fn answers(address: SocketAddr, count: usize) -> Option<Vec<String>> {
    (0..count).map(|_| http_get(address, "name")).collect()
}

/// Environment variables as `env` printed them.
fn read_env(path: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let parsed = text.lines().filter_map(|line| line.split_once('='));
    Some(parsed.map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The Deployment's pods, by name, once there are two and both are Ready.
fn ready_replicas(master: &Master) -> Option<BTreeMap<String, Value>> {
    let (ok, out, _) = kubectl(master, &["get", "pods", "-l", "app=web", "-o", "json"]);
    let list: Value = if ok { serde_json::from_str(&out).ok()? } else { return None };
    let pods: BTreeMap<String, Value> = list["items"]
        .as_array()?
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| (p["metadata"]["name"].as_str().unwrap_or("").to_string(), p.clone()))
        .collect();
    (pods.len() == 2 && pods.values().all(|p| condition(p, "Ready") == "True")).then_some(pods)
}

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().unwrap_or("").to_string()
}

#[test]
fn loopback_pods_get_own_ips_and_serve_through_the_agents_proxy() {
    let started = Instant::now();
    let base = tempfile::tempdir().expect("temp dir");
    let master = Master::start(MASTER_IP, &["--service-cluster-ip-range", SERVICE_RANGE]);
    apply(&master, SERVICES);
    let flags = ["--pod-network", "loopback", "--pod-cidr", POD_CIDR, "--proxy-mode", "userspace"];
    let flags = [&flags[..], &["--service-cluster-ip-range", SERVICE_RANGE]].concat();
    let mut agent = Agent::start(&master, "n1", NODE_IP, &flags);
    let agent_log = agent.log_path();
    let logs = || {
        let agent = std::fs::read_to_string(&agent_log).unwrap_or_default();
        format!("--- agent n1 ---\n{agent}\n--- master ---\n{}", master.log())
    };
    eventually("node n1 Ready", 30, &logs, || node_ready(&master, "n1").then_some(()));
    apply(&master, &workloads(base.path()));

    // Two replicas on distinct loopback pod IPs from the pod range, both Ready (probed there).
    let pods = eventually("both replicas Ready", 30, &logs, || ready_replicas(&master));
    let cidr = agent::network::PodCidr::parse(POD_CIDR).unwrap();
    let ips: BTreeSet<String> = pods.values().map(pod_ip).collect();
    assert_eq!(ips.len(), 2, "distinct pod IPs: {ips:?}");
    for pod in pods.values() {
        let ip: Ipv4Addr = pod_ip(pod).parse().expect("a pod IP");
        assert!(cidr.offset(ip).is_some(), "{ip} is in {POD_CIDR}");
        assert_eq!(pod["status"]["podIPs"][0]["ip"], pod_ip(pod).as_str());
        assert_eq!(pod["status"]["hostIP"], NODE_IP);
    }

    // The downward API gives each its own IP; the Service made before them is in their env.
    let service = get_json(&master, "service", "web").expect("the Service");
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    for (name, pod) in &pods {
        let env = read_env(&base.path().join(name).join("env")).expect("env file");
        assert_eq!(env.get("POD_IP"), Some(&pod_ip(pod)));
        assert_eq!(env.get("WEB_SERVICE_HOST"), Some(&cluster_ip), "{env:?}");
        assert_eq!(env.get("WEB_SERVICE_PORT").map(String::as_str), Some("80"));
        assert_eq!(env.get("WEB_SERVICE_PORT_HTTP").map(String::as_str), Some("80"));
        assert_eq!(env.get("WEB_PORT"), Some(&format!("tcp://{cluster_ip}:80")));
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST").map(String::as_str), Some("127.97.0.1"));
    }
    // enableServiceLinks: false keeps only the master service; hostNetwork keeps the node IP.
    let plain = eventually("plain Running", 30, &logs, || {
        pod(&master, "plain").filter(|p| p["status"]["phase"] == "Running")
    });
    assert_eq!(plain["status"]["podIP"], NODE_IP);
    let plain_env = eventually("plain's env", 10, &logs, || {
        read_env(&base.path().join("plain.env")).filter(|e| e.contains_key("PATH"))
    });
    assert!(plain_env.contains_key("KUBERNETES_SERVICE_HOST"), "{plain_env:?}");
    assert!(!plain_env.contains_key("WEB_SERVICE_HOST"), "{plain_env:?}");

    // The ClusterIP and the node's NodePort reach both replicas, round robin.
    let frontends: [SocketAddr; 2] = [
        format!("{cluster_ip}:80").parse().unwrap(),
        format!("{NODE_IP}:{node_port}").parse().unwrap(),
    ];
    let names: BTreeSet<String> = pods.keys().cloned().collect();
    for frontend in frontends {
        eventually(&format!("{frontend} reaches both replicas"), 30, &logs, || {
            let seen: BTreeSet<String> = answers(frontend, 4)?.into_iter().collect();
            (seen == names).then_some(())
        });
    }

    // An unready replica leaves the Endpoints and stops receiving traffic.
    let (unready, serving) = (names.first().unwrap().clone(), names.last().unwrap().clone());
    std::fs::remove_file(base.path().join(&unready).join("ready")).expect("remove ready");
    eventually("the replica unready and out of the Endpoints", 30, &logs, || {
        let endpoints = get_json(&master, "endpoints", "web")?;
        let subset = &endpoints["subsets"][0];
        let not_ready = subset["notReadyAddresses"].as_array()?;
        let ready = subset["addresses"].as_array()?;
        let unready_ip = pod_ip(&pods[&unready]);
        (not_ready.iter().any(|a| a["ip"] == unready_ip.as_str()) && ready.len() == 1).then_some(())
    });
    for frontend in frontends {
        eventually(&format!("{frontend} reaches only {serving}"), 30, &logs, || {
            answers(frontend, 6)?.iter().all(|name| *name == serving).then_some(())
        });
    }
    std::fs::write(base.path().join(&unready).join("ready"), "").expect("restore ready");
    eventually("both replicas Ready again", 30, &logs, || ready_replicas(&master));

    // A restarted agent keeps the pods' IPs: its status writes (readiness restarts from
    // failure, so it reports) name the same addresses, and the proxy serves both again.
    let versions: BTreeMap<String, String> = pods
        .keys()
        .map(|name| {
            let current = pod(&master, name).expect("pod");
            (name.clone(), current["metadata"]["resourceVersion"].as_str().unwrap().to_string())
        })
        .collect();
    agent.kill();
    agent.spawn();
    let after = eventually("replicas reported by the restarted agent", 40, &logs, || {
        let pods = ready_replicas(&master)?;
        let rewritten =
            pods.iter().all(|(name, p)| p["metadata"]["resourceVersion"] != versions[name]);
        rewritten.then_some(pods)
    });
    for (name, pod) in &after {
        assert_eq!(pod_ip(pod), pod_ip(&pods[name]), "{name} kept its IP");
    }
    let recorded = std::fs::read_dir(agent.root.join("network").join("ips"))
        .expect("IP records")
        .filter(|entry| {
            entry.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
        })
        .count();
    assert_eq!(recorded, 2, "one record per loopback pod");
    eventually("the ClusterIP reaches both replicas after the restart", 30, &logs, || {
        let seen: BTreeSet<String> = answers(frontends[0], 4)?.into_iter().collect();
        (seen == names).then_some(())
    });

    // Deleted pods' IPs are released.
    let (ok, _, err) = kubectl(&master, &["scale", "deployment", "web", "--replicas=0"]);
    assert!(ok, "scale: {err}");
    let ips_dir = agent.root.join("network").join("ips");
    let release_logs = || {
        let (_, pods, _) = kubectl(&master, &["get", "pods,rs", "-o", "wide"]);
        let records: Vec<_> = std::fs::read_dir(&ips_dir).into_iter().flatten().collect();
        format!("{pods}\n{records:?}\n{}", logs())
    };
    eventually("the replicas' IPs released", 30, &release_logs, || {
        let left = std::fs::read_dir(agent.root.join("network").join("ips")).ok()?.count();
        (left == 0).then_some(())
    });
    drop(agent);
    eprintln!("agent network test took {:?}", started.elapsed());
}
