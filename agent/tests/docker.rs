//! The `docker` runtime against the machine's Docker daemon, through the `Runtime` trait: a
//! pod's containers share the sandbox's network (one serves on localhost, the other reaches
//! it), command/args/env/workingDir and limits reach Docker, exits and restarts are reported
//! with their codes, start failures and OOM kills are told apart, stop honours the grace
//! period, exec runs in the container, missing images give Kubernetes' waiting reasons, a new
//! runtime adopts what runs without copying output twice, and removal leaves nothing behind.
//!
//! Runs only where `docker info` succeeds and `gcc -static` builds the test image's program
//! (`tests/docker/tool.c`, imported FROM scratch); elsewhere it says why and passes. No
//! traffic leaves the containers' own network namespace: the host never connects to a
//! container address. Everything it makes carries its node's label and is removed at the end,
//! even after a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::runtime::docker::{DockerRuntime, DockerRuntimeConfig, SANDBOX_IMAGE};
use agent::runtime::{
    ContainerConfig, ContainerId, ContainerState, ResourceLimits, Runtime, RuntimeError,
    SandboxConfig,
};

/// How long any one condition may take to come true.
const WAIT_SECONDS: u64 = 60;

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

/// Why this machine cannot run the test, if it cannot.
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

/// Removes everything the test made, whatever happened.
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

/// Builds the tool statically and imports it as `image` (entrypoint `/tool`).
fn build_image(dir: &Path, image: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/tool.c");
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

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECONDS);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

struct Pod {
    uid: String,
    logs: PathBuf,
    image: String,
}

impl Pod {
    fn container(&self, name: &str, attempt: u32) -> ContainerConfig {
        ContainerConfig {
            pod_uid: self.uid.clone(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            name: name.into(),
            attempt,
            image: self.image.clone(),
            image_pull_policy: None,
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            limits: ResourceLimits::default(),
            log_path: self.logs.join(name).join(format!("{attempt}.log")),
            spec_hash: "hash".into(),
        }
    }
}

async fn run(runtime: &dyn Runtime, config: &ContainerConfig) -> ContainerId {
    let id = runtime.create_container(config).await.expect("create");
    runtime.start_container(&id).await.expect("start");
    id
}

async fn exited(runtime: &dyn Runtime, id: &ContainerId) -> (i32, String, Option<String>) {
    eventually(&format!("{id} exits"), || async {
        match runtime.container_status(id).await.expect("status").state {
            ContainerState::Exited { exit_code, reason, message, .. } => {
                Some((exit_code, reason, message))
            }
            _ => None,
        }
    })
    .await
}

async fn log_contains(path: &Path, text: &str) -> String {
    eventually(&format!("{} shows {text:?}", path.display()), || async {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        log.contains(text).then_some(log)
    })
    .await
}

fn refused(result: Result<ContainerId, RuntimeError>) -> (&'static str, String) {
    match result {
        Err(RuntimeError::ImageRefused { reason, message }) => (reason, message),
        other => panic!("expected a refused image, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runtime_runs_pods_as_containers_sharing_a_sandbox() {
    if let Some(reason) = unavailable() {
        eprintln!("skipping the docker runtime test: {reason}");
        return;
    }
    let pid = std::process::id();
    let node = format!("skiff-docker-test-{pid}");
    let image = format!("skiff-docker-test-tool:{pid}");
    let mut cleanup = Cleanup { node: node.clone(), images: vec![image.clone()] };
    if !docker(&["image", "inspect", SANDBOX_IMAGE]).0 {
        cleanup.images.push(SANDBOX_IMAGE.to_string());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    build_image(dir.path(), &image);
    let runtime = DockerRuntime::connect(DockerRuntimeConfig::new(&node)).await.expect("connect");
    assert!(runtime.version().starts_with("docker://"), "{}", runtime.version());
    let pod = Pod { uid: format!("{pid}-0001"), logs: dir.path().join("logs"), image };

    // The sandbox: an address on Docker's network, found again rather than made twice.
    let sandbox_config = SandboxConfig {
        pod_uid: pod.uid.clone(),
        namespace: "default".into(),
        name: "web".into(),
        node_ip: "127.0.0.1".into(),
    };
    let sandbox = runtime.run_sandbox(&sandbox_config).await.expect("sandbox");
    assert!(!sandbox.host_network);
    assert!(sandbox.pod_ip.parse::<std::net::IpAddr>().is_ok(), "{sandbox:?}");
    assert_eq!(runtime.run_sandbox(&sandbox_config).await.expect("again"), sandbox);

    // Two containers in one network namespace: the client reaches the server on localhost.
    let mut server = pod.container("server", 0);
    server.command = strings(&["/tool", "serve", "8080", "hello-from-server"]);
    server.limits = ResourceLimits { memory_bytes: Some(64 << 20), cpu_millis: Some(500) };
    let server_id = run(&runtime, &server).await;
    let mut client = pod.container("client", 0);
    client.args = strings(&["fetch", "8080"]);
    let client_id = run(&runtime, &client).await;
    let log = log_contains(&client.log_path, "hello-from-server").await;
    assert!(log.lines().any(|l| l.ends_with(" stdout F reply: hello-from-server")), "{log}");
    assert_eq!(exited(&runtime, &client_id).await, (0, "Completed".into(), None));
    let (_, host) = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.CpuQuota}} {{.HostConfig.Memory}}",
        &server_id.0,
    ]);
    assert!(host.starts_with("container:") && host.contains(" 50000 67108864"), "{host}");

    // Exec runs inside the container, in the pod's network.
    let probe = strings(&["/tool", "fetch", "8080"]);
    let exec = runtime.exec_sync(&server_id, &probe, Duration::from_secs(20)).await.expect("exec");
    assert_eq!(exec.exit_code, 0, "{}", exec.output);
    assert!(exec.output.contains("hello-from-server"), "{}", exec.output);
    let failing = strings(&["/tool", "exit", "3"]);
    let exec = runtime.exec_sync(&server_id, &failing, Duration::from_secs(20)).await;
    assert_eq!(exec.expect("exec").exit_code, 3);

    // Environment, working directory, and the image's entrypoint under args.
    let mut env = pod.container("env", 0);
    env.args = strings(&["env", "GREETING"]);
    env.env = vec![("GREETING".into(), "hi there".into())];
    env.working_dir = Some("/work".into());
    let env_id = run(&runtime, &env).await;
    exited(&runtime, &env_id).await;
    let log = log_contains(&env.log_path, "GREETING=hi there").await;
    assert!(log.contains("stdout F cwd=/work"), "{log}");

    // Exit codes, a restart as a new attempt, both kept; stderr is told from stdout.
    let mut crasher = pod.container("crasher", 0);
    crasher.command = strings(&["/tool", "exit", "3"]);
    let first = run(&runtime, &crasher).await;
    assert_eq!(exited(&runtime, &first).await, (3, "Error".into(), None));
    let log = log_contains(&crasher.log_path, "to stderr").await;
    assert!(log.contains("stdout F exiting with 3") && log.contains("stderr F to stderr"));
    crasher.attempt = 1;
    crasher.log_path = pod.logs.join("crasher/1.log");
    let second = run(&runtime, &crasher).await;
    exited(&runtime, &second).await;
    let attempts: Vec<u32> = runtime
        .list_containers(Some(&pod.uid))
        .await
        .expect("list")
        .into_iter()
        .filter(|c| c.name == "crasher")
        .map(|c| c.attempt)
        .collect();
    assert_eq!(attempts, vec![0, 1]);

    // A command that cannot start, and a container over its memory limit.
    let mut broken = pod.container("broken", 0);
    broken.command = strings(&["/no-such-program"]);
    let broken_id = runtime.create_container(&broken).await.expect("create");
    assert!(runtime.start_container(&broken_id).await.is_err());
    let (code, reason, message) = exited(&runtime, &broken_id).await;
    assert_eq!(reason, "StartError", "{code} {message:?}");
    assert!(message.unwrap_or_default().contains("no-such-program"));
    let mut hungry = pod.container("hungry", 0);
    hungry.args = strings(&["alloc"]);
    hungry.limits.memory_bytes = Some(16 << 20);
    let hungry_id = run(&runtime, &hungry).await;
    assert_eq!(exited(&runtime, &hungry_id).await, (137, "OOMKilled".into(), None));

    // Stop: SIGTERM ends a container that handles it; one that ignores it is killed after
    // the grace period.
    let mut polite = pod.container("polite", 0);
    polite.args = strings(&["term"]);
    let polite_id = run(&runtime, &polite).await;
    log_contains(&polite.log_path, "ready").await;
    let started = Instant::now();
    runtime.stop_container(&polite_id, Duration::from_secs(30)).await.expect("stop");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(exited(&runtime, &polite_id).await.0, 0);
    let mut stubborn = pod.container("stubborn", 0);
    stubborn.args = strings(&["sleep"]);
    let stubborn_id = run(&runtime, &stubborn).await;
    let started = Instant::now();
    runtime.stop_container(&stubborn_id, Duration::from_secs(1)).await.expect("stop");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(exited(&runtime, &stubborn_id).await.0, 137);

    // Missing images: never pulled under Never; an unreachable registry (a closed loopback
    // port) gives the daemon's message, then a back-off.
    let mut absent = pod.container("absent", 0);
    absent.image = format!("skiff-docker-test-absent:{pid}");
    absent.image_pull_policy = Some("Never".into());
    let (reason, message) = refused(runtime.create_container(&absent).await);
    assert_eq!(reason, "ErrImageNeverPull");
    assert!(message.contains("is not present with pull policy of Never"), "{message}");
    absent.image = format!("127.0.0.1:9/skiff-absent:{pid}");
    absent.image_pull_policy = None;
    let (reason, message) = refused(runtime.create_container(&absent).await);
    assert_eq!(reason, "ErrImagePull", "{message}");
    assert!(message.starts_with("Failed to pull image \"127.0.0.1:9/"), "{message}");
    let (reason, _) = refused(runtime.create_container(&absent).await);
    assert_eq!(reason, "ImagePullBackOff");

    // A new runtime (an agent restart) adopts the running server and copies only new output.
    drop(runtime);
    let runtime = DockerRuntime::connect(DockerRuntimeConfig::new(&node)).await.expect("connect");
    let found = runtime.list_containers(Some(&pod.uid)).await.expect("list");
    let adopted = found.iter().find(|c| c.name == "server").expect("the server is found");
    assert_eq!((&adopted.id, adopted.attempt, adopted.is_running()), (&server_id, 0, true));
    assert_eq!(adopted.spec_hash, "hash");
    assert_eq!(adopted.log_path, server.log_path);
    runtime.exec_sync(&server_id, &probe, Duration::from_secs(20)).await.expect("exec");
    let log = log_contains(&server.log_path, "served 2").await;
    assert_eq!(log.matches("listening on 8080").count(), 1, "{log}");
    assert_eq!(log.matches("served 1\n").count(), 1, "{log}");
    let other_node = DockerRuntime::connect(DockerRuntimeConfig::new(&format!("{node}-other")))
        .await
        .expect("connect");
    assert!(other_node.list_containers(None).await.expect("list").is_empty());

    // Deletion: stop, remove, tear the sandbox down; nothing of the pod is left.
    for container in runtime.list_containers(Some(&pod.uid)).await.expect("list") {
        runtime.stop_container(&container.id, Duration::from_secs(2)).await.expect("stop");
        runtime.remove_container(&container.id).await.expect("remove");
        assert!(!container.log_path.exists(), "{} is deleted", container.log_path.display());
    }
    runtime.remove_sandbox(&pod.uid).await.expect("remove the sandbox");
    let filter = format!("label=io.kubernetes.pod.uid={}", pod.uid);
    let (ok, left) = docker(&["ps", "-aq", "--filter", &filter]);
    assert!(ok && left.trim().is_empty(), "containers left: {left}");
    drop(cleanup);
}
