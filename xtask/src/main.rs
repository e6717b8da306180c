//! `cargo xtask`: the project's automation (set-up, run, test, tidy), in Rust.
//!
//! `cargo xtask up` installs missing system packages, builds in release and runs `skiff up`
//! (a store member, the API server, scheduler, controllers and a node agent in one process);
//! `cargo xtask test` installs what the tests need and runs every test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod bench_store;
mod bench_store_scale;
mod protobuf_schema;

/// Debian packages the build needs: a C++ toolchain for RocksDB, libclang for its bindings.
const BUILD_PACKAGES: &[&str] = &["build-essential", "libclang-dev", "pkg-config"];
/// Debian packages the tests use: etcd's own client and server as references, Prometheus
/// (its `promtool` checks every component's `/metrics`), and what the agent's bridge pod
/// network and rule proxy modes run (`ip` from iproute2, `nft` from nftables).
const TEST_PACKAGES: &[&str] =
    &["etcd-client", "etcd-server", "prometheus", "iproute2", "nftables"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("up") => up(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("tidy") => tidy(&root),
        Some("bench-control-plane") => bench_control_plane(&root, &args[1..]),
        Some("bench-pod-startup") => bench_pod_startup(&root, &args[1..]),
        Some("bench-store") => bench_store::bench_store(&root, &args[1..]),
        Some("bench-store-scale") => bench_store_scale::bench_store_scale(&root, &args[1..]),
        Some("install-deps") => install_packages(&[BUILD_PACKAGES, TEST_PACKAGES].concat()),
        Some("gen-protobuf-schema") => protobuf_schema::generate(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 up            install build packages, build in release, run `skiff up`: store \
                 on 127.0.0.1:2379, API server on 127.0.0.1:6443, a node agent (data in \
                 ./skiff-data)\n  \
                 test [args]   install test packages, run every test (args go to cargo test)\n  \
                 tidy          formatting and lint checks\n  \
                 bench-pod-startup [--rate R --count N]\n                \
                 `skiff up` with a real agent: pod create -> Running latency\n  \
                 bench-control-plane [--nodes N --pods N ...]\n                \
                 a release master with hollow nodes: scheduling throughput, deployment \
                 latency, API latency, memory\n  \
                 bench-store [--quick] [--only <workload>] [--debug]\n                \
                 release Skiff and etcd 3.4 clusters side by side under the same `store-load` \
                 workloads: one table of QPS and latency\n  \
                 bench-store-scale [--keys N --value-size B] [--debug]\n                \
                 a release 3-member Skiff cluster loaded with N keys (default 1M of 1 KiB): \
                 restart, snapshot install, 10k-key range, compaction pause, disk and memory\n  \
                 install-deps  install every system package the project uses\n  \
                 gen-protobuf-schema [--k8s-pb-src DIR]\n                \
                 regenerate the API server's protobuf field tables from k8s-pb"
            );
            bail!("unknown or missing command");
        }
    }
}

fn workspace_root() -> PathBuf {
    // Cargo sets this for `cargo run` too; reading it at run time (not `env!`) keeps the root
    // right when several checkouts share one target directory and its uplifted xtask binary.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().expect("xtask lives in the workspace").to_path_buf()
}

/// A cargo command with the environment a plain `cargo` in a shell would have. `cargo xtask`
/// runs this program through `cargo run`, which adds package variables and prepends its own
/// library directories to `LD_LIBRARY_PATH`. Build scripts that read the environment then see
/// other values than under a plain `cargo build`; alternating the two was seen to rebuild the
/// release tree from its C dependencies up.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let added_by_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if added_by_cargo_run {
            command.env_remove(&*name);
        }
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        let kept = std::env::split_paths(&paths).filter(|path| !added_library_dir(path));
        let kept: Vec<_> = kept.collect();
        if kept.is_empty() {
            command.env_remove("LD_LIBRARY_PATH");
        } else if let Ok(joined) = std::env::join_paths(kept) {
            command.env("LD_LIBRARY_PATH", joined);
        }
    }
    command
}

/// Whether `cargo run` put this directory on `LD_LIBRARY_PATH`: one of the target directory's
/// or the toolchain's library directories.
fn added_library_dir(path: &Path) -> bool {
    let under_target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(workspace_root().join("target")))
        .is_some_and(|target| path.starts_with(&target));
    let toolchain = path.components().any(|c| c.as_os_str() == "toolchains")
        && path.components().any(|c| c.as_os_str() == ".rustup");
    under_target || toolchain || path.ends_with("target/debug/deps")
}

fn run(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs missing Debian packages with apt-get when root; otherwise says what to run.
fn install_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing system packages; run: sudo apt-get update && sudo apt-get install -y {list}"
        );
    }
    eprintln!("xtask: installing {list}");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn up(root: &Path, args: &[String]) -> Result<()> {
    install_packages(BUILD_PACKAGES)?;
    run(cargo().current_dir(root).args(["build", "--release", "-p", "cli", "--bin", "skiff"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let skiff = target.join("release").join("skiff");
    let data_dir = std::env::current_dir()?.join("skiff-data");
    eprintln!(
        "xtask: starting Skiff in one process (store on 127.0.0.1:2379, API server on \
         https://127.0.0.1:6443, a node agent), data in {data_dir:?}; ctrl-c stops it"
    );
    run(Command::new(skiff).arg("up").arg("--data-dir").arg(&data_dir).args(args))
}

/// Python packages the compatibility tests drive (the official Kubernetes client), pinned.
const TEST_PYTHON_PACKAGES: &[(&str, &str)] = &[("kubernetes", "kubernetes==37.0.2")];

/// Installs missing Python packages with pip (into the Python that `python3` runs).
fn install_python_packages() -> Result<()> {
    for (module, requirement) in TEST_PYTHON_PACKAGES {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            eprintln!("xtask: installing {requirement} with pip");
            run(Command::new("python3").args(["-m", "pip", "install", "--quiet", requirement]))?;
        }
    }
    Ok(())
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    install_packages(&[BUILD_PACKAGES, TEST_PACKAGES].concat())?;
    install_python_packages()?;
    run(cargo().current_dir(root).args(["build", "-p", "cli", "--bins"]))?;
    run(cargo().current_dir(root).args(["test", "--workspace"]).args(args))?;
    tidy(root)
}

fn tidy(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// Resident and peak memory of a process, from /proc, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Stops a child with SIGTERM, then SIGKILL after ten seconds.
fn stop_child(child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `cargo xtask bench-control-plane`: a release `skiff master` (store, API server, scheduler,
/// controllers in one process) and `skiff hollow-nodes` on 127.0.92.1, driven by the
/// `control-plane-load` generator; prints its results and both processes' memory, and writes
/// them to `<target>/bench/control-plane.json`.
fn bench_control_plane(root: &Path, args: &[String]) -> Result<()> {
    install_packages(BUILD_PACKAGES)?;
    build_bench_tools(root)?;
    let release = target_dir(root).join("release");
    let nodes = args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "1000".into());
    let dir =
        std::env::temp_dir().join(format!("skiff-bench-control-plane-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ip = "127.0.92.1";
    let log = |name: &str| std::fs::File::create(dir.join(name));
    let mut master = Command::new(release.join("skiff"))
        .args(["master", "--name", "bench", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &format!("http://{ip}:2379")])
        .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
        .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
        .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
        .args(["--bind-address", ip])
        .stderr(log("master.log")?)
        .spawn()
        .context("start skiff master")?;
    let kubeconfig = dir.join("data").join("admin.kubeconfig");
    for _ in 0..300 {
        if kubeconfig.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut hollow = Command::new(release.join("skiff"))
        .args(["hollow-nodes", "--count", &nodes, "--kubeconfig"])
        .arg(&kubeconfig)
        .stderr(log("hollow.log")?)
        .spawn()
        .context("start skiff hollow-nodes")?;
    let output = Command::new(release.join("control-plane-load"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .arg("--json")
        .stderr(std::process::Stdio::inherit())
        .output();
    let (master_rss, master_peak) = memory_mib(master.id());
    let (hollow_rss, hollow_peak) = memory_mib(hollow.id());
    stop_child(&mut hollow);
    stop_child(&mut master);
    let summary = print_load_output(output, &dir)?;
    println!(
        "memory: master (store + API server + scheduler + controllers) RSS {master_rss:.0} MiB, \
         peak {master_peak:.0} MiB; {nodes} hollow nodes RSS {hollow_rss:.0} MiB, peak \
         {hollow_peak:.0} MiB"
    );
    let mut results: serde_json::Value =
        serde_json::from_str(&summary).context("control-plane-load's JSON summary")?;
    results["memory_mib"] = serde_json::json!({
        "master_rss": master_rss, "master_peak": master_peak,
        "hollow_rss": hollow_rss, "hollow_peak": hollow_peak,
    });
    let out = target_dir(root).join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("control-plane.json"), serde_json::to_string_pretty(&results)?)?;
    println!("results written to {}", out.join("control-plane.json").display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `cargo xtask bench-pod-startup`: a release `skiff up` (one node, process runtime) on
/// 127.0.92.2 and `control-plane-load --mode pod-startup`: pods created at a fixed rate, each
/// timed from create to Running. Writes `<target>/bench/pod-startup.json`.
fn bench_pod_startup(root: &Path, args: &[String]) -> Result<()> {
    install_packages(BUILD_PACKAGES)?;
    build_bench_tools(root)?;
    let release = target_dir(root).join("release");
    let dir = std::env::temp_dir().join(format!("skiff-bench-pod-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ip = "127.0.92.2";
    let mut up = Command::new(release.join("skiff"))
        .args(["up", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--address", ip, "--node-name", "bench-node"])
        .args(["--service-cluster-ip-range", "127.92.100.0/24"])
        .stderr(std::fs::File::create(dir.join("up.log"))?)
        .spawn()
        .context("start skiff up")?;
    let kubeconfig = dir.join("data").join("admin.kubeconfig");
    for _ in 0..300 {
        if kubeconfig.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = Command::new(release.join("control-plane-load"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--mode", "pod-startup", "--nodes", "1"])
        .args(args)
        .arg("--json")
        .stderr(std::process::Stdio::inherit())
        .output();
    let (rss, peak) = memory_mib(up.id());
    stop_child(&mut up);
    // Pods' processes outlive `skiff up`; the generator deleted its pods, but end any left.
    let containers = dir.join("data").join("agent").join("containers");
    for entry in std::fs::read_dir(containers).into_iter().flatten().flatten() {
        // The container's process group, then its shim.
        for (record, group) in [("pid.json", true), ("shim-pid.json", false)] {
            kill_recorded(&entry.path().join(record), group);
        }
    }
    let summary = print_load_output(output, &dir)?;
    println!("memory: skiff up RSS {rss:.0} MiB, peak {peak:.0} MiB");
    let mut results: serde_json::Value =
        serde_json::from_str(&summary).context("control-plane-load's JSON summary")?;
    results["memory_mib"] = serde_json::json!({"skiff_up_rss": rss, "skiff_up_peak": peak});
    let out = target_dir(root).join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("pod-startup.json"), serde_json::to_string_pretty(&results)?)?;
    println!("results written to {}", out.join("pod-startup.json").display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Kills the process a shim's pid record names (or its whole group), only if it is still that
/// process: its start time (field 22 of `/proc/<pid>/stat`) must match the record's.
fn kill_recorded(record: &Path, group: bool) {
    let Some(value) = std::fs::read_to_string(record)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return;
    };
    let (Some(pid), Some(ticks)) = (value["pid"].as_i64(), value["start_ticks"].as_u64()) else {
        return;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let started = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|t| t.parse::<u64>().ok());
    if started == Some(ticks) {
        let target = if group { format!("-{pid}") } else { pid.to_string() };
        let _ = Command::new("kill").args(["-KILL", "--", &target]).status();
    }
}

/// Builds the release `skiff` and the `control-plane-load` generator.
fn build_bench_tools(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).args([
        "build",
        "--release",
        "-p",
        "cli",
        "--bin",
        "skiff",
        "-p",
        "benches",
        "--bin",
        "control-plane-load",
    ]))
}

/// Prints the generator's text lines and returns its JSON summary (its last line).
fn print_load_output(output: std::io::Result<std::process::Output>, logs: &Path) -> Result<String> {
    let output = output.context("run control-plane-load")?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        bail!("control-plane-load failed; logs are in {}\n{stdout}", logs.display());
    }
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.pop().unwrap_or("{}").to_string();
    for line in &lines {
        println!("{line}");
    }
    Ok(summary)
}
