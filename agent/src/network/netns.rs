//! Entering a pod's network namespace: where it is ([`pod_netns`]), whether a path is one
//! ([`is_netns`]), moving the calling thread into one ([`enter`], the shim's way before it
//! starts the container) and spawning a command inside one from async code
//! ([`spawn_in_netns`], for execs and probes), all without `unsafe`: `setns` changes only the
//! calling thread's namespace, and a process inherits the namespace of the thread that forks
//! it.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::bridge;

/// `statfs`'s filesystem type of a namespace file (`NSFS_MAGIC`).
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Pod `uid`'s network namespace, if the bridge pod network made one (else the pod shares
/// the host's).
pub fn pod_netns(uid: &str) -> Option<PathBuf> {
    bridge::check_uid(uid).ok()?;
    let path = bridge::netns_path(uid);
    path.symlink_metadata().is_ok().then_some(path)
}

/// Whether `path` is a bound network namespace (not a stale file left by a crash).
pub fn is_netns(path: &Path) -> bool {
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u64 == NSFS_MAGIC)
}

/// Moves the calling thread into the network namespace bound at `path`.
pub fn enter(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
    Ok(())
}

/// Spawns `command` inside the network namespace bound at `path`: from a short-lived thread
/// that enters it (a runtime worker thread must stay in the agent's namespace), inside the
/// caller's tokio runtime so the child is reaped as any other.
pub fn spawn_in_netns(
    command: &mut tokio::process::Command,
    path: &Path,
) -> io::Result<tokio::process::Child> {
    let file = File::open(path)?;
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        let spawner = scope.spawn(|| {
            let _runtime = runtime.enter();
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
            command.spawn()
        });
        spawner.join().unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespace_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("skiff-x");
        std::fs::write(&stale, "").unwrap();
        assert!(!is_netns(&stale));
        assert!(!is_netns(&dir.path().join("missing")));
        // The agent's own namespace, through procfs, is one.
        assert!(is_netns(Path::new("/proc/self/ns/net")));
        assert_eq!(pod_netns("../etc"), None);
        assert_eq!(pod_netns("no-such-pod-uid-here"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_command_spawned_in_our_own_namespace_runs() {
        // Entering the namespace we are in needs no privilege beyond CAP_SYS_ADMIN; without
        // it the spawn fails cleanly, which is also what this checks.
        let mut command = tokio::process::Command::new("true");
        match spawn_in_netns(&mut command, Path::new("/proc/self/ns/net")) {
            Ok(mut child) => assert!(child.wait().await.unwrap().success()),
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}"),
        }
    }
}
