//! The pod network: which address a pod gets, and where it lives.
//!
//! - [`PodNetwork::Host`]: every pod shares the node's address (pod IP = node IP), as a
//!   `hostNetwork` pod does in Kubernetes. Two pods listening on one port collide.
//! - [`PodNetwork::Loopback`]: every pod that is not `hostNetwork` and whose runtime sandbox
//!   shares the host's network (the process runtime's) gets its own address from a loopback
//!   CIDR (127.244.0.0/16 by default; a runtime with networking of its own keeps its address).
//!   Linux routes all of 127.0.0.0/8 to `lo`, so any such address can be bound and dialled
//!   without root, and traffic never leaves the machine. Containers still share the host's
//!   network namespace: a program is isolated only when it binds its pod IP (`$(POD_IP)` from
//!   the downward API); one that binds `0.0.0.0` shares the host's port space as on host
//!   networking. Agents sharing a machine need disjoint ranges.
//! - [`PodNetwork::Bridge`] (kubenet's design): each such pod gets a network namespace of its
//!   own, `skiff-<pod uid>` (bound at `/run/netns/`, as `ip netns add` does), joined to a node
//!   bridge (`skiff0`) by a veth pair: the host end on the bridge, the other end `eth0` in the
//!   namespace with the pod's address from the node's range (the Node's `spec.podCIDR` when
//!   it is not a loopback range, else `--pod-cidr`), and a default route via the bridge,
//!   which holds the range's first address. The process runtime starts containers (and
//!   execs, exec probes) inside that namespace ([`netns`]), so pods bind any address and port
//!   without colliding. It needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` (mounting the namespace)
//!   and iproute2's `ip`; without them the agent warns and falls back to host networking.
//!   `net.ipv4.ip_forward` is turned on only with a rules proxy mode: traffic from a pod to a
//!   Service is DNAT'd to another pod on the bridge and so routed (forwarded) by the node; the
//!   userspace proxy ends connections in the agent and needs no forwarding. Pods reach the
//!   node and each other, not other hosts (no masquerading to the outside).
//!
//! Addresses are allocated by [`PodIpam`] and recorded one file per address under
//! `<root-dir>/network/ips/<ip>` (holding the pod's uid), as CNI's host-local plugin records
//! them, so a restarted agent gives adopted pods the addresses they had (and, on the bridge,
//! finds their namespaces and veths again). An address is released, and a bridge pod's
//! namespace and veth removed, when its pod's worker cleans up; those of pods gone while the
//! agent was down go after the first pod list.
//!
//! **Architecture invariant:** [`pick`] and [`bridge`] are pure; [`PodIpam`] alone touches
//! the address files, [`iproute`] alone runs `ip`.

pub mod bridge;
pub mod iproute;
pub mod netns;

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::limits::POD_IPS_MAX;
use crate::runtime::Sandbox;

pub use iproute::BridgeNetwork;
pub use netns::pod_netns;

/// The loopback pod range used when neither the flag nor the Node names one.
pub const POD_CIDR_LOOPBACK_DEFAULT: &str = "127.244.0.0/16";
/// The bridge pod range used when neither the flag nor the Node names one (flannel's first
/// node range).
pub const POD_CIDR_BRIDGE_DEFAULT: &str = "10.244.0.0/24";

/// An IPv4 CIDR pods get their addresses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodCidr {
    network: u32,
    prefix_len: u8,
}

impl PodCidr {
    /// Parses `a.b.c.d/n` with `n` from 8 to 30 (at least two usable addresses).
    pub fn parse(text: &str) -> Result<PodCidr, String> {
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/n)"))?;
        let address: Ipv4Addr =
            address.parse().map_err(|_| format!("{text:?}: only IPv4 pod ranges are supported"))?;
        let prefix_len: u8 = prefix.parse().map_err(|_| format!("{text:?}: bad prefix length"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(format!("{text:?}: the prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix_len);
        Ok(PodCidr { network: u32::from(address) & mask, prefix_len })
    }

    /// Usable addresses: all but the network and broadcast addresses.
    pub fn size(&self) -> u64 {
        (1u64 << (32 - self.prefix_len)) - 2
    }

    /// The usable address at `offset`.
    pub fn address(&self, offset: u64) -> Ipv4Addr {
        assert!(offset < self.size(), "offset {offset} outside {self}");
        Ipv4Addr::from(self.network + 1 + offset as u32)
    }

    /// The offset of a usable address of the range.
    pub fn offset(&self, ip: Ipv4Addr) -> Option<u64> {
        let ip = u64::from(u32::from(ip));
        let first = u64::from(self.network) + 1;
        (ip >= first && ip < first + self.size()).then(|| ip - first)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether the whole range lies in 127.0.0.0/8.
    pub fn is_loopback(&self) -> bool {
        self.prefix_len >= 8 && Ipv4Addr::from(self.network).is_loopback()
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }
}

/// How pods are addressed (`--pod-network`, `--pod-cidr`, `--pod-bridge`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PodNetwork {
    /// Pods use the node's address.
    #[default]
    Host,
    /// Pods get their own loopback address from `cidr`; a Node's `spec.podCIDR`, when it is
    /// a loopback range, takes precedence.
    Loopback { cidr: PodCidr },
    /// Pods get a network namespace of their own on node bridge `bridge`, with an address
    /// from `cidr` (a Node's `spec.podCIDR`, when it is not a loopback range, takes
    /// precedence).
    Bridge { cidr: PodCidr, bridge: String },
}

/// Why a pod got no address.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("no free pod IP in {0}")]
    Exhausted(PodCidr),
    #[error("more than {0} pod IPs allocated on this node")]
    TooMany(usize),
    #[error("pod IP records in {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("bridge pod network: {0}")]
    Setup(String),
}

/// The first free address of `cidr` at or after offset `start` (wrapping around), skipping
/// `taken` and `reserved`. Pure: [`PodIpam`]'s choice, tested on its own.
pub fn pick(
    cidr: &PodCidr,
    taken: &BTreeMap<Ipv4Addr, String>,
    reserved: &[Ipv4Addr],
    start: u64,
) -> Option<Ipv4Addr> {
    let size = cidr.size();
    // Each address tried is either free or one of taken ∪ reserved, so this bounds the scan.
    let tries = size.min((taken.len() + reserved.len()) as u64 + 1);
    (0..tries)
        .map(|step| cidr.address((start % size + step) % size))
        .find(|ip| !taken.contains_key(ip) && !reserved.contains(ip))
}

/// Allocations as recorded in memory: address → pod uid, and where the next search starts
/// (after the last address handed out, so a released address is not reused at once while
/// Endpoints may still name it).
struct Allocations {
    by_ip: BTreeMap<Ipv4Addr, String>,
    next_offset: u64,
}

/// Pod address allocation for [`PodNetwork::Loopback`] and [`PodNetwork::Bridge`], persisted
/// under the agent's root dir.
pub struct PodIpam {
    cidr: PodCidr,
    dir: PathBuf,
    /// Addresses never handed out (the node's own).
    reserved: Vec<Ipv4Addr>,
    state: Mutex<Allocations>,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> NetworkError + '_ {
    move |error| NetworkError::Io { path: path.to_path_buf(), reason: error.to_string() }
}

impl PodIpam {
    /// Opens (creating) `<root_dir>/network/ips` and reads the recorded allocations, keeping
    /// those outside `cidr` too (an adopted pod keeps its address when the range changed).
    pub fn open(
        root_dir: &Path,
        cidr: PodCidr,
        reserved: Vec<Ipv4Addr>,
    ) -> Result<Self, NetworkError> {
        let dir = root_dir.join("network").join("ips");
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut by_ip = BTreeMap::new();
        let mut uids = HashSet::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))?.flatten() {
            let path = entry.path();
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                // A temporary file of an interrupted write.
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let uid = std::fs::read_to_string(&path).map_err(io_error(&path))?.trim().to_string();
            if uid.is_empty() || !uids.insert(uid.clone()) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            by_ip.insert(ip, uid);
        }
        let next_offset =
            by_ip.keys().filter_map(|ip| cidr.offset(*ip)).max().map_or(0, |last| last + 1);
        let state = Mutex::new(Allocations { by_ip, next_offset });
        Ok(PodIpam { cidr, dir, reserved, state })
    }

    pub fn cidr(&self) -> PodCidr {
        self.cidr
    }

    /// The pod's address: the one recorded for `uid`, else a new one (recorded before it is
    /// returned, so a crash cannot hand it out twice).
    pub fn allocate(&self, uid: &str) -> Result<Ipv4Addr, NetworkError> {
        assert!(!uid.is_empty(), "a pod without a uid gets no address");
        let mut state = self.state.lock().expect("pod IPs");
        if let Some((ip, _)) = state.by_ip.iter().find(|(_, owner)| *owner == uid) {
            return Ok(*ip);
        }
        if state.by_ip.len() >= POD_IPS_MAX {
            return Err(NetworkError::TooMany(POD_IPS_MAX));
        }
        let ip = pick(&self.cidr, &state.by_ip, &self.reserved, state.next_offset)
            .ok_or(NetworkError::Exhausted(self.cidr))?;
        let path = self.dir.join(ip.to_string());
        let temporary = self.dir.join(format!(".{ip}.tmp"));
        std::fs::write(&temporary, uid).map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
        state.next_offset = self.cidr.offset(ip).map_or(0, |offset| offset + 1);
        state.by_ip.insert(ip, uid.to_string());
        Ok(ip)
    }

    /// Releases the address of `uid`, if it has one.
    pub fn release(&self, uid: &str) {
        let mut state = self.state.lock().expect("pod IPs");
        let owned: Vec<Ipv4Addr> =
            state.by_ip.iter().filter(|(_, owner)| *owner == uid).map(|(ip, _)| *ip).collect();
        for ip in owned {
            self.forget(&mut state, ip);
        }
    }

    /// Releases every address whose pod is not in `keep`; returns how many.
    pub fn retain(&self, keep: &HashSet<String>) -> usize {
        let mut state = self.state.lock().expect("pod IPs");
        let gone: Vec<Ipv4Addr> =
            state.by_ip.iter().filter(|(_, uid)| !keep.contains(*uid)).map(|(ip, _)| *ip).collect();
        for ip in &gone {
            self.forget(&mut state, *ip);
        }
        gone.len()
    }

    fn forget(&self, state: &mut Allocations, ip: Ipv4Addr) {
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            // Kept in memory too, so the address is not handed out while its record remains.
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot release pod IP");
                return;
            }
        }
        state.by_ip.remove(&ip);
    }

    /// Recorded allocations (address, pod uid), by address.
    pub fn allocations(&self) -> Vec<(Ipv4Addr, String)> {
        let state = self.state.lock().expect("pod IPs");
        state.by_ip.iter().map(|(ip, uid)| (*ip, uid.clone())).collect()
    }
}

/// The agent's pod network as it runs: what `status.podIP` and the downward API say, and
/// (bridge) the pods' namespaces.
pub enum PodAddressing {
    Host,
    Loopback(PodIpam),
    Bridge(BridgeNetwork),
}

/// Runs `work`, which blocks for a few milliseconds (`ip` commands), without stalling the
/// other tasks of a multi-threaded runtime (the agent's); elsewhere (tests) it just runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

impl PodAddressing {
    /// The address of pod `uid`: one of its own when the runtime's sandbox shares the host's
    /// network and the pod is not `hostNetwork` (loopback, or on the bridge in a namespace
    /// set up here), else the sandbox's (the node's, or one a runtime with its own
    /// networking gave it).
    pub fn pod_ip(
        &self,
        uid: &str,
        sandbox: &Sandbox,
        host_network_pod: bool,
    ) -> Result<String, NetworkError> {
        match self {
            PodAddressing::Loopback(ipam) if sandbox.host_network && !host_network_pod => {
                ipam.allocate(uid).map(|ip| ip.to_string())
            }
            PodAddressing::Bridge(bridge) if sandbox.host_network && !host_network_pod => {
                blocking(|| bridge.attach(uid)).map(|ip| ip.to_string())
            }
            _ => Ok(sandbox.pod_ip.clone()),
        }
    }

    /// Releases the address (and bridge namespace) of a pod that is gone.
    pub fn release(&self, uid: &str) {
        match self {
            PodAddressing::Host => {}
            PodAddressing::Loopback(ipam) => ipam.release(uid),
            PodAddressing::Bridge(bridge) => blocking(|| bridge.detach(uid)),
        }
    }

    /// Releases the addresses (and bridge namespaces) of pods not in `keep` (after the first
    /// pod list).
    pub fn retain(&self, keep: &HashSet<String>) {
        let released = match self {
            PodAddressing::Host => 0,
            PodAddressing::Loopback(ipam) => ipam.retain(keep),
            PodAddressing::Bridge(bridge) => blocking(|| bridge.retain(keep)),
        };
        if released > 0 {
            tracing::info!(released, "released the IPs of pods that are gone");
        }
    }

    /// The bridge pods hang from, in bridge mode.
    pub fn bridge(&self) -> Option<&str> {
        match self {
            PodAddressing::Bridge(bridge) => Some(bridge.bridge()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> PodCidr {
        PodCidr::parse(text).expect("CIDR")
    }

    #[test]
    fn cidrs_parse_and_bound_their_addresses() {
        let range = cidr("127.244.7.9/16");
        assert_eq!(range.to_string(), "127.244.0.0/16");
        assert_eq!(range.size(), 65_534);
        assert_eq!(range.address(0), Ipv4Addr::new(127, 244, 0, 1));
        assert_eq!(range.offset(Ipv4Addr::new(127, 244, 1, 0)), Some(255));
        assert_eq!(range.offset(Ipv4Addr::new(127, 244, 255, 255)), None, "broadcast");
        assert_eq!(range.offset(Ipv4Addr::new(127, 244, 0, 0)), None, "network");
        assert!(range.is_loopback());
        assert!(!cidr("10.244.0.0/16").is_loopback());
        for bad in ["127.244.0.0", "127.244.0.0/31", "127.0.0.0/7", "::1/64", "x/16"] {
            assert!(PodCidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pick_skips_taken_and_reserved_addresses_and_wraps() {
        let range = cidr("127.98.0.0/29"); // .1 to .6
        let ip = |last| Ipv4Addr::new(127, 98, 0, last);
        let mut taken = BTreeMap::new();
        assert_eq!(pick(&range, &taken, &[], 0), Some(ip(1)));
        taken.insert(ip(1), "a".to_string());
        assert_eq!(pick(&range, &taken, &[ip(2)], 0), Some(ip(3)));
        assert_eq!(pick(&range, &taken, &[], 5), Some(ip(6)));
        assert_eq!(pick(&range, &taken, &[], 6), Some(ip(2)), "wraps past the end");
        for last in 2..=6 {
            taken.insert(ip(last), last.to_string());
        }
        assert_eq!(pick(&range, &taken, &[], 3), None, "full");
    }

    #[test]
    fn allocations_persist_and_release() {
        let root = tempfile::tempdir().unwrap();
        let range = cidr("127.98.0.0/16");
        let node = Ipv4Addr::new(127, 98, 0, 1);
        let ipam = PodIpam::open(root.path(), range, vec![node]).unwrap();
        let a = ipam.allocate("uid-a").unwrap();
        let b = ipam.allocate("uid-b").unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 98, 0, 2), "the node's address is skipped");
        assert_eq!(b, Ipv4Addr::new(127, 98, 0, 3));
        assert_eq!(ipam.allocate("uid-a").unwrap(), a, "stable for a pod");
        drop(ipam);

        // A restarted agent finds the same addresses, and continues after the last one.
        let ipam = PodIpam::open(root.path(), range, vec![node]).unwrap();
        assert_eq!(ipam.allocate("uid-b").unwrap(), b);
        ipam.release("uid-a");
        assert_eq!(ipam.allocate("uid-c").unwrap(), Ipv4Addr::new(127, 98, 0, 4));
        let keep: HashSet<String> = ["uid-c".to_string()].into();
        assert_eq!(ipam.retain(&keep), 1);
        let left = PodIpam::open(root.path(), range, vec![node]).unwrap().allocations();
        assert_eq!(left, vec![(Ipv4Addr::new(127, 98, 0, 4), "uid-c".to_string())]);
    }

    #[test]
    fn host_network_pods_keep_the_node_address() {
        let root = tempfile::tempdir().unwrap();
        let ipam = PodIpam::open(root.path(), cidr("127.98.0.0/16"), Vec::new()).unwrap();
        let addressing = PodAddressing::Loopback(ipam);
        let host = Sandbox { pod_ip: "127.0.97.2".into(), host_network: true };
        let own = Sandbox { pod_ip: "172.17.0.5".into(), host_network: false };
        assert_eq!(addressing.pod_ip("u", &host, true).unwrap(), "127.0.97.2");
        assert_eq!(addressing.pod_ip("u", &host, false).unwrap(), "127.98.0.1");
        assert_eq!(addressing.pod_ip("v", &own, false).unwrap(), "172.17.0.5");
        assert_eq!(PodAddressing::Host.pod_ip("u", &host, false).unwrap(), "127.0.97.2");
    }
}
