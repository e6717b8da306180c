//! `cargo xtask`: the project's automation (set-up, run, test, tidy), in Rust.
//!
//! `cargo xtask up` installs missing system packages, builds in release and starts a
//! single-member master (a store member and the API server); `cargo xtask test` installs
//! what the tests need and runs every test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod protobuf_schema;

/// Debian packages the build needs: a C++ toolchain for RocksDB, libclang for its bindings.
const BUILD_PACKAGES: &[&str] = &["build-essential", "libclang-dev", "pkg-config"];
/// Debian packages the tests use: etcd's own client and server as references, and Prometheus
/// (its `promtool` checks every component's `/metrics`).
const TEST_PACKAGES: &[&str] = &["etcd-client", "etcd-server", "prometheus"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("up") => up(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("tidy") => tidy(&root),
        Some("install-deps") => install_packages(&[BUILD_PACKAGES, TEST_PACKAGES].concat()),
        Some("gen-protobuf-schema") => protobuf_schema::generate(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 up            install build packages, build in release, start a master: store \
                 on 127.0.0.1:2379, API server on 127.0.0.1:6443 (data in ./skiff-data)\n  \
                 test [args]   install test packages, run every test (args go to cargo test)\n  \
                 tidy          formatting and lint checks\n  \
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

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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
        "xtask: starting a master (store on 127.0.0.1:2379, API server on https://127.0.0.1:6443), \
         data in {data_dir:?}"
    );
    eprintln!(
        "xtask: try `etcdctl --endpoints 127.0.0.1:2379 member list` or \
         `KUBECONFIG={}/admin.kubeconfig kubectl get namespaces` (ctrl-c stops)",
        data_dir.display()
    );
    run(Command::new(skiff)
        .args(["master", "--name", "default", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen-client-urls", "http://127.0.0.1:2379"])
        .args(["--advertise-client-urls", "http://127.0.0.1:2379"])
        .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .args(args))
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
