//! Test harness: real `skiff store` processes on loopback addresses with data in temp dirs.
//!
//! Each test uses its own 127.x.y.* addresses, so tests run in parallel without port clashes.
#![allow(dead_code)]

pub mod agent;
pub mod master;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

pub struct Member {
    pub name: String,
    pub ip: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// Added to a running cluster (`--initial-cluster-state existing`).
    joined: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }
    pub fn endpoint(&self) -> String {
        format!("{}:2379", self.ip)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}:2380", self.ip)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Which server a cluster runs: ours, or etcd itself as the reference.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Skiff,
    Etcd,
}

pub struct Cluster {
    pub server: Server,
    pub members: Vec<Member>,
    initial_cluster: String,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

pub fn skiff_binary() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

impl Cluster {
    /// Starts `size` members on `{prefix}.1`, `{prefix}.2`, ... (e.g. prefix "127.0.10").
    pub fn start(prefix: &str, size: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_server(Server::Skiff, prefix, size, extra_args)
    }

    /// A reference cluster of Debian's etcd 3.4 (`etcd-server`, installed by `cargo xtask test`).
    pub fn start_etcd(prefix: &str, size: usize) -> Cluster {
        Cluster::start_etcd_with(prefix, size, &[])
    }

    /// `start_etcd` with extra flags for every member.
    pub fn start_etcd_with(prefix: &str, size: usize, extra_args: &[&str]) -> Cluster {
        let found = Command::new("etcd").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "etcd is not installed: `cargo xtask test` installs Debian's etcd-server"
        );
        Cluster::start_server(Server::Etcd, prefix, size, extra_args)
    }

    fn start_server(server: Server, prefix: &str, size: usize, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::unstarted_server(server, prefix, size, extra_args);
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster
    }

    /// A Skiff cluster whose members are not started yet (to prepare their data directories,
    /// e.g. by restoring a backup); start each with `spawn`.
    pub fn unstarted(prefix: &str, size: usize, extra_args: &[&str]) -> Cluster {
        Cluster::unstarted_server(Server::Skiff, prefix, size, extra_args)
    }

    /// `--initial-cluster` as the members are started with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    fn unstarted_server(server: Server, prefix: &str, size: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (1..=size)
            .map(|i| Member {
                name: format!("m{i}"),
                ip: format!("{prefix}.{i}"),
                data_dir: dir.path().join(format!("m{i}")),
                child: None,
                joined: false,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            server,
            members,
            initial_cluster,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        }
    }

    pub fn spawn(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is already running");
        let m = &self.members[i];
        let log = std::fs::File::create(format!("{}.log", m.data_dir.display())).expect("log file");
        let mut command = match self.server {
            Server::Skiff => {
                let mut command = Command::new(skiff_binary());
                command.arg("store");
                command
            }
            Server::Etcd => Command::new("etcd"),
        };
        let child = command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(if m.joined { &["--initial-cluster-state", "existing"][..] } else { &[] })
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff store");
        self.members[i].child = Some(child);
    }

    /// Describes one more member (next address after the last) that joins the running
    /// cluster; add it with `member add` first, then `spawn` it. Returns its index.
    pub fn plan_member(&mut self) -> usize {
        let last = self.members.last().expect("a cluster has members");
        let (prefix, _) = last.ip.rsplit_once('.').expect("dotted address");
        let i = self.members.len() + 1;
        let member = Member {
            name: format!("m{i}"),
            ip: format!("{prefix}.{i}"),
            data_dir: self._dir.path().join(format!("m{i}")),
            child: None,
            joined: true,
        };
        self.initial_cluster.push_str(&format!(",{}={}", member.name, member.peer_url()));
        self.members.push(member);
        self.members.len() - 1
    }

    /// Waits up to `timeout` for member `i` to exit on its own; returns its exit status.
    pub fn wait_for_exit(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.members[i].child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("poll member") {
                self.members[i].child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().expect("kill member");
            child.wait().expect("reap member");
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(format!("{}.log", self.members[i].data_dir.display()))
            .unwrap_or_default()
    }

    /// Waits until every running member reports the same leader; returns the leader's index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.agreed_leader().await {
                return leader;
            }
            assert!(Instant::now() < deadline, "no agreed leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn agreed_leader(&self) -> Option<usize> {
        let mut leader_id = None;
        let mut ids = Vec::new();
        for m in self.members.iter() {
            if !m.is_running() {
                ids.push(None);
                continue;
            }
            let status = status(&m.client_url()).await.ok()?;
            let id = status.header.as_ref()?.member_id;
            ids.push(Some(id));
            if status.leader == 0 || leader_id.is_some_and(|l| l != status.leader) {
                return None;
            }
            leader_id = Some(status.leader);
        }
        let leader_id = leader_id?;
        let index = ids.iter().position(|id| *id == Some(leader_id))?;
        self.members[index].is_running().then_some(index)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

pub async fn connect(url: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(url.to_string())
        .expect("valid url")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

pub async fn kv(url: &str) -> KvClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(url).await {
            Ok(channel) => return KvClient::new(channel),
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot connect to {url}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

pub async fn status(url: &str) -> Result<pb::StatusResponse, String> {
    let channel = connect(url).await.map_err(|e| e.to_string())?;
    let mut client = MaintenanceClient::new(channel);
    let response = client.status(pb::StatusRequest {}).await.map_err(|e| e.to_string())?;
    Ok(response.into_inner())
}

pub fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

pub fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: key.into(), ..Default::default() }
}

pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

/// A minimal HTTP/1.1 GET (enough for /metrics).
pub async fn http_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// Checks a Prometheus text exposition with `promtool check metrics` (Debian's `prometheus`
/// package, installed by `cargo xtask test`), failing the test with promtool's complaints.
pub fn promtool_check(exposition: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by cargo xtask test (Debian's prometheus)");
    promtool.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
