//! Resource limits through cgroups, where the kernel and our permissions allow: a cgroup per
//! container under `skiff/` with, on cgroup v2, `memory.max` and `cpu.max`, and on cgroup v1,
//! `memory.limit_in_bytes` (memory hierarchy) and `cpu.cfs_quota_us` over `cpu.cfs_period_us`
//! (cpu hierarchy). Where neither is mounted at `/sys/fs/cgroup` or writable, limits are
//! skipped (logged once per agent): the container still runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::ResourceLimits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `cpu.max`'s period, in microseconds (the kernel's default).
const CPU_PERIOD_MICROS: u64 = 100_000;

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(why: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(why, "resource limits are not enforced (no writable cgroup hierarchy)");
    }
}

/// `cpu.max` for a limit in millicores.
pub fn cpu_max(cpu_millis: u64) -> String {
    format!("{} {CPU_PERIOD_MICROS}", (cpu_millis * CPU_PERIOD_MICROS / 1000).max(1000))
}

/// The cgroups a container's process joins: `primary` (its memory accounting, where OOM kills
/// are counted) and, on cgroup v1, the other hierarchies' directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroups {
    pub primary: PathBuf,
    pub extra: Vec<PathBuf>,
}

/// Makes the cgroups for one container with its limits; `None` when there is nothing to
/// limit or limits cannot be applied here.
pub fn prepare(container_id: &str, limits: &ResourceLimits) -> Option<Cgroups> {
    if limits.memory_bytes.is_none() && limits.cpu_millis.is_none() {
        return None;
    }
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        return prepare_v2(root, container_id, limits);
    }
    if root.join("memory").join("memory.limit_in_bytes").exists() {
        return prepare_v1(root, container_id, limits);
    }
    warn_once("no cgroup v2 or v1 memory hierarchy is mounted at /sys/fs/cgroup");
    None
}

fn prepare_v2(root: &Path, container_id: &str, limits: &ResourceLimits) -> Option<Cgroups> {
    let parent = root.join("skiff");
    let attempt = || -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&parent)?;
        // Controllers must be enabled on the way down for the leaf to have the files.
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu");
        std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu")?;
        let leaf = parent.join(container_id);
        std::fs::create_dir_all(&leaf)?;
        if let Some(bytes) = limits.memory_bytes {
            std::fs::write(leaf.join("memory.max"), bytes.to_string())?;
        }
        if let Some(millis) = limits.cpu_millis {
            std::fs::write(leaf.join("cpu.max"), cpu_max(millis))?;
        }
        Ok(leaf)
    };
    match attempt() {
        Ok(leaf) => Some(Cgroups { primary: leaf, extra: Vec::new() }),
        Err(error) => {
            warn_once(&format!("cannot write {}: {error}", parent.display()));
            None
        }
    }
}

/// `cpu.cfs_quota_us` for a limit in millicores, over [`CPU_PERIOD_MICROS`].
pub fn cfs_quota(cpu_millis: u64) -> u64 {
    (cpu_millis * CPU_PERIOD_MICROS / 1000).max(1000)
}

fn prepare_v1(root: &Path, container_id: &str, limits: &ResourceLimits) -> Option<Cgroups> {
    let memory = root.join("memory").join("skiff").join(container_id);
    let cpu = root.join("cpu").join("skiff").join(container_id);
    let attempt = || -> std::io::Result<Cgroups> {
        // The memory cgroup always exists, so OOM kills are counted where they can be seen.
        std::fs::create_dir_all(&memory)?;
        if let Some(bytes) = limits.memory_bytes {
            std::fs::write(memory.join("memory.limit_in_bytes"), bytes.to_string())?;
        }
        let mut extra = Vec::new();
        if let Some(millis) = limits.cpu_millis {
            std::fs::create_dir_all(&cpu)?;
            std::fs::write(cpu.join("cpu.cfs_period_us"), CPU_PERIOD_MICROS.to_string())?;
            std::fs::write(cpu.join("cpu.cfs_quota_us"), cfs_quota(millis).to_string())?;
            extra.push(cpu.clone());
        }
        Ok(Cgroups { primary: memory.clone(), extra })
    };
    match attempt() {
        Ok(cgroups) => Some(cgroups),
        Err(error) => {
            warn_once(&format!("cannot write cgroup v1 limits for {container_id}: {error}"));
            None
        }
    }
}

/// Whether the kernel's OOM killer killed a process of this cgroup (v2's `memory.events`, or
/// v1's `memory.oom_control`).
pub fn oom_killed(cgroup: &Path) -> bool {
    let events = std::fs::read_to_string(cgroup.join("memory.events"))
        .or_else(|_| std::fs::read_to_string(cgroup.join("memory.oom_control")));
    let Ok(events) = events else { return false };
    events.lines().any(|line| {
        line.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0
    })
}

/// Removes a container's cgroups (once its processes are gone), in either layout.
pub fn remove(container_id: &str) {
    let root = Path::new(CGROUP_ROOT);
    for parent in [root.to_path_buf(), root.join("memory"), root.join("cpu")] {
        let _ = std::fs::remove_dir(parent.join("skiff").join(container_id));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_limits_become_a_quota_per_period() {
        assert_eq!(super::cpu_max(500), "50000 100000");
        assert_eq!(super::cpu_max(2000), "200000 100000");
        assert_eq!(super::cpu_max(1), "1000 100000", "the kernel's smallest quota");
        assert_eq!(super::cfs_quota(250), 25_000);
        assert_eq!(super::cfs_quota(1), 1_000);
    }
}
