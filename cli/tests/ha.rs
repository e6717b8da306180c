//! Three `skiff master` processes whose embedded store members form one Raft cluster, driven
//! with real kubectl: every master serves the API with one shared CA (each master's
//! admin.kubeconfig works against every master); one scheduler and one controller manager are
//! active, by Lease; after kill -9 of the master leading them, a survivor takes over and the
//! cluster keeps scheduling and reconciling; the killed master restarts and rejoins.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IPS: [&str; 3] = ["127.0.89.1", "127.0.89.2", "127.0.89.3"];

struct Member {
    name: String,
    ip: &'static str,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self) {
        let cluster: Vec<String> =
            IPS.iter().enumerate().map(|(i, ip)| format!("m{}=http://{ip}:2380", i + 1)).collect();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let ip = self.ip;
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("master")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen-client-urls", &format!("http://{ip}:2379")])
            .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--bind-address", ip, "--secure-port", "6443"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff master");
        self.child = Some(child);
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data.join("admin.kubeconfig")
    }

    fn url(&self) -> String {
        format!("https://{}:6443", self.ip)
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: no shutdown, no lease release.
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    cache: PathBuf,
    members: Vec<Member>,
}

impl Cluster {
    /// kubectl with `kubeconfig`, against `server`.
    fn kubectl(&self, kubeconfig: &Path, server: &str, args: &[&str]) -> (bool, String, String) {
        let output = Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .env("KUBECACHEDIR", &self.cache)
            .args(["--server", server, "--request-timeout", "5s"])
            .args(args)
            .output()
            .expect("kubectl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    /// kubectl through member `i` with its own kubeconfig.
    fn on(&self, i: usize, args: &[&str]) -> (bool, String, String) {
        let member = &self.members[i];
        self.kubectl(&member.kubeconfig(), &member.url(), args)
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_for<T>(&self, seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn wait_ready(&self, i: usize) {
        self.wait_for(60, &format!("{} ready", self.members[i].name), || {
            if !self.members[i].kubeconfig().exists() {
                return None;
            }
            let (ok, out, _) = self.on(i, &["get", "--raw", "/readyz"]);
            (ok && out == "ok").then_some(())
        });
    }

    /// The holder of a kube-system Lease, read through member `via`.
    fn holder(&self, via: usize, lease: &str) -> Option<String> {
        let (ok, out, _) = self.on(
            via,
            &["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"],
        );
        (ok && !out.is_empty()).then_some(out)
    }

    fn running_pods(&self, via: usize, app: &str) -> usize {
        let (ok, out, _) = self.on(
            via,
            &[
                "get",
                "pods",
                "-l",
                &format!("app={app}"),
                "-o",
                "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
            ],
        );
        if !ok {
            return 0;
        }
        out.lines().filter(|l| *l == "Running").count()
    }
}

fn member_of(identity: &str) -> usize {
    let name = identity.split('_').next().unwrap_or("");
    (1..=3).find(|i| name == format!("m{i}")).expect("identity names a master") - 1
}

#[test]
fn three_masters_share_a_ca_elect_one_leader_and_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("kubectl-cache");
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member {
            name: format!("m{}", i + 1),
            ip: IPS[i],
            data: dir.path().join(format!("m{}", i + 1)),
            log: dir.path().join(format!("m{}.log", i + 1)),
            child: None,
        })
        .collect();
    for member in &mut members {
        member.spawn();
    }
    let mut cluster = Cluster { cache, members, _dir: dir };
    for i in 0..3 {
        cluster.wait_ready(i);
    }

    // One CA: every master's admin credentials work against every master, and each serving
    // certificate verifies against every kubeconfig's CA.
    for from in 0..3 {
        for to in 0..3 {
            let (ok, out, err) = cluster.kubectl(
                &cluster.members[from].kubeconfig(),
                &cluster.members[to].url(),
                &["get", "--raw", "/readyz"],
            );
            assert!(ok && out == "ok", "m{}'s kubeconfig against m{}: {err}", from + 1, to + 1);
        }
    }

    // One active scheduler and controller manager, named after a master.
    let manager = cluster.wait_for(40, "a controller-manager leader", || {
        cluster.holder(0, "kube-controller-manager")
    });
    let scheduler =
        cluster.wait_for(40, "a scheduler leader", || cluster.holder(0, "kube-scheduler"));
    let leader = member_of(&manager);
    member_of(&scheduler);
    // Every master sees the same holders.
    for via in 0..3 {
        assert_eq!(cluster.holder(via, "kube-controller-manager").as_deref(), Some(&*manager));
    }

    // Hollow nodes talk to a master that will survive.
    let survivor = (leader + 1) % 3;
    let kubeconfig =
        std::fs::read_to_string(cluster.members[survivor].kubeconfig()).expect("kubeconfig");
    let hollow_config = cluster._dir.path().join("hollow.kubeconfig");
    std::fs::write(&hollow_config, &kubeconfig).expect("write");
    let _hollow = Reaped(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["hollow-nodes", "--count", "3", "--name-prefix", "hollow-"])
            .arg("--kubeconfig")
            .arg(&hollow_config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hollow nodes"),
    );

    let (ok, _, err) =
        cluster.on(survivor, &["create", "deployment", "web", "--image=web:1", "--replicas=3"]);
    assert!(ok, "kubectl create deployment: {err}");
    cluster.wait_for(60, "3 running pods", || {
        (cluster.running_pods(survivor, "web") == 3).then_some(())
    });

    // kill -9 the leading master: a survivor takes both roles over.
    let killed_at = Instant::now();
    cluster.members[leader].kill9();
    let other = (leader + 2) % 3;
    let new_manager = cluster.wait_for(60, "a new controller-manager leader", || {
        cluster.holder(survivor, "kube-controller-manager").filter(|h| member_of(h) != leader)
    });
    let takeover = killed_at.elapsed();
    cluster.wait_for(60, "a new scheduler leader", || {
        cluster.holder(other, "kube-scheduler").filter(|h| member_of(h) != leader)
    });
    eprintln!("controller manager taken over by {new_manager} after {takeover:?}");
    // The API stays available through both survivors, and the cluster still acts.
    let (ok, _, err) = cluster.on(other, &["scale", "deployment", "web", "--replicas=5"]);
    assert!(ok, "scale through a survivor: {err}");
    cluster.wait_for(60, "5 running pods after failover", || {
        (cluster.running_pods(survivor, "web") == 5).then_some(())
    });

    // The killed master restarts, rejoins and serves current state.
    cluster.members[leader].spawn();
    cluster.wait_ready(leader);
    cluster.wait_for(30, "the restarted master to see 5 pods", || {
        (cluster.running_pods(leader, "web") == 5).then_some(())
    });
}

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
