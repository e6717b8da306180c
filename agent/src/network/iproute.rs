//! The bridge pod network's driver: runs iproute2's `ip` for the plans of [`super::bridge`]
//! (the node bridge, each pod's namespace and veth pair, the ClusterIPs of the service
//! interface) and flips `net.ipv4.ip_forward`. Every call blocks for a few milliseconds per
//! command; async callers go through [`super::blocking`] or `spawn_blocking`.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::bridge::{self, BridgeFound, PodFound, PodLink, Step};
use super::{netns, NetworkError, PodCidr, PodIpam};

/// Longest one `ip` command may run before it is killed.
pub const IP_COMMAND_TIMEOUT_MS: u64 = 10_000;
/// Output of one `ip` command kept (addresses of the service interface: ~60 bytes each).
pub const IP_COMMAND_OUTPUT_BYTES_MAX: usize = 1024 * 1024;

/// Runs `ip` with `args`, feeding `input` on stdin; its stdout, or why it failed.
pub fn ip(args: &[String], input: Option<&str>) -> Result<String, String> {
    let describe = || format!("ip {}", args.join(" "));
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", describe()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(|e| format!("{}: {e}", describe()))?;
    }
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(Duration::from_millis(IP_COMMAND_TIMEOUT_MS)) {
        Ok(output) => output.map_err(|e| format!("{}: {e}", describe()))?,
        Err(_) => {
            // Our own child, by its pid; the waiting thread reaps it.
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return Err(format!("{} did not finish in {IP_COMMAND_TIMEOUT_MS} ms", describe()));
        }
    };
    let text = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        crate::runtime::process::truncate(&mut text, IP_COMMAND_OUTPUT_BYTES_MAX);
        text
    };
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(format!("{} failed: {}", describe(), text(&output.stderr).trim()))
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Runs a plan; a failing step that may fail is logged at debug level only.
fn run_plan(plan: &[Step]) -> Result<(), NetworkError> {
    for step in plan {
        match ip(&step.args, None) {
            Ok(_) => {}
            Err(reason) if step.may_fail => tracing::debug!(%reason, "cleanup step failed"),
            Err(reason) => return Err(NetworkError::Setup(reason)),
        }
    }
    Ok(())
}

fn link_exists(name: &str, netns: Option<&str>) -> bool {
    let mut args = Vec::new();
    if let Some(netns) = netns {
        args.extend(strings(&["-n", netns]));
    }
    args.extend(strings(&["link", "show", "dev", name]));
    ip(&args, None).is_ok()
}

/// Whether the `ip` command can be run at all.
pub fn ip_available() -> bool {
    ip(&strings(&["-V"]), None).is_ok()
}

/// The bridge pod network as it runs: the address records, the bridge, and the pods'
/// namespaces and veth pairs.
pub struct BridgeNetwork {
    ipam: PodIpam,
    bridge: String,
}

impl BridgeNetwork {
    /// Creates (or adopts) `bridge` with the gateway address of the ipam's range, and turns
    /// on IPv4 forwarding when `forwarding` (see the module docs of [`super`] for when).
    pub fn start(
        ipam: PodIpam,
        bridge: &str,
        forwarding: bool,
    ) -> Result<BridgeNetwork, NetworkError> {
        let found = match ip(&strings(&["-d", "-o", "link", "show", "dev", bridge]), None) {
            Err(_) => BridgeFound::Missing,
            Ok(details) if details.contains(" bridge ") => BridgeFound::Bridge,
            Ok(_) => BridgeFound::Other,
        };
        let plan = bridge::bridge_plan(bridge, &ipam.cidr(), found).map_err(NetworkError::Setup)?;
        run_plan(&plan)?;
        if forwarding {
            enable_forwarding()?;
        }
        Ok(BridgeNetwork { ipam, bridge: bridge.to_string() })
    }

    pub fn cidr(&self) -> PodCidr {
        self.ipam.cidr()
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Gives pod `uid` its address and its network namespace on the bridge, or finds them
    /// again (an adopted pod); returns the address.
    pub fn attach(&self, uid: &str) -> Result<Ipv4Addr, NetworkError> {
        bridge::check_uid(uid).map_err(NetworkError::Setup)?;
        let cidr = self.ipam.cidr();
        let mut address = self.ipam.allocate(uid)?;
        if cidr.offset(address).is_none() {
            // Recorded by an agent with another range or pod network: the pod moves.
            tracing::warn!(%address, %cidr, uid, "pod IP outside the bridge's range; replaced");
            self.ipam.release(uid);
            address = self.ipam.allocate(uid)?;
        }
        let link = PodLink { uid: uid.to_string(), address, cidr, bridge: self.bridge.clone() };
        let path = bridge::netns_path(uid);
        let is_netns = netns::is_netns(&path);
        let found = PodFound {
            netns_path: path.symlink_metadata().is_ok(),
            netns: is_netns,
            pod_interface: is_netns
                && link_exists(bridge::POD_INTERFACE, Some(&bridge::netns_name(uid))),
        };
        run_plan(&bridge::pod_plan(&link, found))?;
        Ok(address)
    }

    /// Removes pod `uid`'s veth pair and namespace, then releases its address (kept when the
    /// veth could not be removed, so no other pod gets an address still on the bridge).
    pub fn detach(&self, uid: &str) {
        let recorded = self.ipam.allocations().iter().any(|(_, owner)| owner == uid);
        if !recorded && netns::pod_netns(uid).is_none() {
            return; // A `hostNetwork` pod, or one already detached.
        }
        if bridge::check_uid(uid).is_ok() {
            let _ = run_plan(&bridge::pod_teardown_plan(uid));
            if link_exists(&bridge::host_veth_name(uid), None) {
                tracing::warn!(uid, "the pod's veth survived its removal; its IP stays taken");
                return;
            }
        }
        self.ipam.release(uid);
    }

    /// Detaches every pod with a recorded address that is not in `keep`; returns how many.
    pub fn retain(&self, keep: &std::collections::HashSet<String>) -> usize {
        let gone: Vec<String> = self
            .ipam
            .allocations()
            .into_iter()
            .map(|(_, uid)| uid)
            .filter(|uid| !keep.contains(uid))
            .collect();
        for uid in &gone {
            self.detach(uid);
        }
        gone.len()
    }
}

/// Binds pod `uid`'s namespace again from process `pid`, which runs in it, when its path
/// holds no namespace: an agent restarted in another mount namespace than the one that bound
/// it (under `ip netns exec`, say) sees only the empty file the bind was made on.
pub fn reattach_netns(uid: &str, pid: i32) -> Result<(), NetworkError> {
    bridge::check_uid(uid).map_err(NetworkError::Setup)?;
    let name = bridge::netns_name(uid);
    let _ = ip(&strings(&["netns", "delete", &name]), None);
    ip(&strings(&["netns", "attach", &name, &pid.to_string()]), None)
        .map_err(NetworkError::Setup)?;
    tracing::info!(uid, pid, "found the pod's network namespace again through a container");
    Ok(())
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns on IPv4 forwarding in the agent's network namespace, if it is off.
fn enable_forwarding() -> Result<(), NetworkError> {
    let setup = |e: std::io::Error| NetworkError::Setup(format!("{IP_FORWARD}: {e}"));
    if std::fs::read_to_string(IP_FORWARD).map_err(setup)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(IP_FORWARD, "1").map_err(setup)?;
    tracing::info!("turned on net.ipv4.ip_forward: DNAT'd service traffic between pods is routed");
    Ok(())
}

/// The dummy interface holding ClusterIPs, so the userspace proxy can listen on them and
/// the node reaches them without a route to the service range (kube-proxy IPVS's
/// `kube-ipvs0`); a bridge without ports where the kernel has no dummy driver.
pub struct ServiceAddresses {
    interface: String,
}

impl ServiceAddresses {
    pub fn new(interface: &str) -> ServiceAddresses {
        ServiceAddresses { interface: interface.to_string() }
    }

    /// Makes the interface exist, be up, and hold exactly `wanted` (as /32s).
    pub fn sync(&self, wanted: &[Ipv4Addr]) -> Result<(), String> {
        let name = self.interface.as_str();
        if !link_exists(name, None) {
            if let Err(reason) = ip(&strings(&["link", "add", name, "type", "dummy"]), None) {
                // A kernel without the dummy driver: a bridge without ports holds local
                // addresses as well.
                tracing::info!(%reason, "no dummy interface; the service interface is a bridge");
                ip(&strings(&["link", "add", name, "type", "bridge"]), None)?;
            }
        }
        ip(&strings(&["link", "set", name, "up"]), None)?;
        let shown = ip(&strings(&["-o", "-4", "addr", "show", "dev", name]), None)?;
        let script = bridge::address_batch(name, &bridge::parse_addresses(&shown), wanted);
        if !script.is_empty() {
            // `-force`: one failing line does not keep the others from converging.
            ip(&strings(&["-force", "-batch", "-"]), Some(&script))?;
        }
        Ok(())
    }

    /// Deletes the interface with its addresses.
    pub fn remove(&self) {
        if link_exists(&self.interface, None) {
            if let Err(reason) = ip(&strings(&["link", "delete", &self.interface]), None) {
                tracing::warn!(%reason, "cannot remove the service interface");
            }
        }
    }
}
