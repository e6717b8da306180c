//! What the node reports about its host: capacity (CPUs, memory, ephemeral storage), the
//! pressure signals behind the MemoryPressure, DiskPressure and PIDPressure conditions, and
//! `nodeInfo`. Parsing is pure; the readers are thin.

use std::path::Path;

use crate::limits::{
    DISK_AVAILABLE_PERCENT_MIN, MEMORY_AVAILABLE_BYTES_MIN, PIDS_AVAILABLE_PERCENT_MIN,
};

/// A value from `/proc/meminfo` (`MemTotal`, `MemAvailable`), in bytes.
pub fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// Live tasks (threads) from `/proc/loadavg`'s fourth field (`running/total`).
pub fn loadavg_tasks(loadavg: &str) -> Option<u64> {
    loadavg.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok()
}

/// Host resources and pressure, read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_bytes: u64,
    pub disk_available_bytes: u64,
    pub pids_max: u64,
    pub pids_used: u64,
}

impl HostFacts {
    pub fn read(root_dir: &Path) -> HostFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (disk_bytes, disk_available_bytes) = match rustix::fs::statvfs(root_dir) {
            Ok(stat) => (stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize),
            Err(_) => (0, 0),
        };
        let read_number =
            |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
        HostFacts {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_bytes: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0),
            memory_available_bytes: meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(u64::MAX),
            disk_bytes,
            disk_available_bytes,
            pids_max: read_number("/proc/sys/kernel/pid_max").unwrap_or(u64::MAX),
            pids_used: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| loadavg_tasks(&text))
                .unwrap_or(0),
        }
    }

    pub fn memory_pressure(&self) -> bool {
        self.memory_available_bytes < MEMORY_AVAILABLE_BYTES_MIN
    }

    pub fn disk_pressure(&self) -> bool {
        self.disk_bytes > 0
            && self.disk_available_bytes * 100 < self.disk_bytes * DISK_AVAILABLE_PERCENT_MIN
    }

    pub fn pid_pressure(&self) -> bool {
        let free = self.pids_max.saturating_sub(self.pids_used);
        free.saturating_mul(100) < self.pids_max.saturating_mul(PIDS_AVAILABLE_PERCENT_MIN)
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().lines().next().unwrap_or("").trim().into()
}

/// `PRETTY_NAME` from `/etc/os-release`.
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Kubernetes' name for this machine's architecture.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// The Node's `status.nodeInfo`.
pub fn node_info(runtime_version: &str) -> k8s_openapi::api::core::v1::NodeSystemInfo {
    let machine_id = first_line("/etc/machine-id");
    k8s_openapi::api::core::v1::NodeSystemInfo {
        architecture: architecture().into(),
        boot_id: first_line("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: runtime_version.into(),
        kernel_version: first_line("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: control_plane::apiserver::discovery::GIT_VERSION.into(),
        machine_id: machine_id.clone(),
        operating_system: "linux".into(),
        os_image: os_image(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
        system_uuid: machine_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let meminfo = "MemTotal:       16318116 kB\nMemFree:  1 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(16_318_116 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(8_000_000 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None);
        assert_eq!(loadavg_tasks("0.52 0.58 0.59 3/612 12345\n"), Some(612));
        assert_eq!(
            os_image("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn pressure_follows_the_kubelets_hard_eviction_thresholds() {
        let facts = HostFacts {
            cpus: 2,
            memory_bytes: 1 << 34,
            memory_available_bytes: 1 << 30,
            disk_bytes: 1000,
            disk_available_bytes: 500,
            pids_max: 1000,
            pids_used: 100,
        };
        assert!(!facts.memory_pressure() && !facts.disk_pressure() && !facts.pid_pressure());
        let low = HostFacts {
            memory_available_bytes: 50 << 20,
            disk_available_bytes: 50,
            pids_used: 950,
            ..facts
        };
        assert!(low.memory_pressure() && low.disk_pressure() && low.pid_pressure());
    }
}
