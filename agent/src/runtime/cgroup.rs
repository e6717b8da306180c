//! Resource limits through cgroup v2, where the kernel and our permissions allow: a cgroup
//! per container under `/sys/fs/cgroup/skiff/` with `memory.max` and `cpu.max`. Where cgroup
//! v2 is not mounted at `/sys/fs/cgroup` or not writable, limits are skipped (logged once per
//! agent): the container still runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::ResourceLimits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `cpu.max`'s period, in microseconds (the kernel's default).
const CPU_PERIOD_MICROS: u64 = 100_000;

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(why: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(why, "resource limits are not enforced (cgroup v2 needed)");
    }
}

/// `cpu.max` for a limit in millicores.
pub fn cpu_max(cpu_millis: u64) -> String {
    format!("{} {CPU_PERIOD_MICROS}", (cpu_millis * CPU_PERIOD_MICROS / 1000).max(1000))
}

/// Makes the cgroup for one container with its limits; `None` when there is nothing to limit
/// or limits cannot be applied here.
pub fn prepare(container_id: &str, limits: &ResourceLimits) -> Option<PathBuf> {
    if limits.memory_bytes.is_none() && limits.cpu_millis.is_none() {
        return None;
    }
    let root = Path::new(CGROUP_ROOT);
    if !root.join("cgroup.controllers").exists() {
        warn_once("cgroup v2 is not mounted at /sys/fs/cgroup");
        return None;
    }
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
        Ok(leaf) => Some(leaf),
        Err(error) => {
            warn_once(&format!("cannot write {}: {error}", parent.display()));
            None
        }
    }
}

/// Whether the kernel's OOM killer killed a process of this cgroup.
pub fn oom_killed(cgroup: &Path) -> bool {
    let Ok(events) = std::fs::read_to_string(cgroup.join("memory.events")) else { return false };
    events.lines().any(|line| {
        line.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0
    })
}

/// Removes a container's cgroup (once its processes are gone).
pub fn remove(container_id: &str) {
    let _ = std::fs::remove_dir(Path::new(CGROUP_ROOT).join("skiff").join(container_id));
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_limits_become_a_quota_per_period() {
        assert_eq!(super::cpu_max(500), "50000 100000");
        assert_eq!(super::cpu_max(2000), "200000 100000");
        assert_eq!(super::cpu_max(1), "1000 100000", "the kernel's smallest quota");
    }
}
