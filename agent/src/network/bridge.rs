//! The bridge pod network's pure core: names (network namespace, veth, bridge), the gateway
//! address, the `ip` (iproute2) commands that set a pod's link up or tear it down given what
//! already exists, and the capability check. No I/O here; [`super::iproute`] runs the plans.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::PodCidr;

/// The bridge pods' veths hang from when `--pod-bridge` names none.
pub const BRIDGE_NAME_DEFAULT: &str = "skiff0";
/// The dummy interface holding ClusterIPs in bridge mode (kube-proxy IPVS's `kube-ipvs0`).
pub const SERVICE_INTERFACE: &str = "skiff-svc0";
/// A pod's network namespace is `skiff-<pod uid>`, bound at `/run/netns/<name>` as
/// `ip netns add` binds it.
pub const NETNS_PREFIX: &str = "skiff-";
/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// The interface name of a pod's end of its veth pair.
pub const POD_INTERFACE: &str = "eth0";
/// Linux's longest interface name (`IFNAMSIZ` - 1).
pub const INTERFACE_NAME_BYTES_MAX: usize = 15;
/// The longest pod uid accepted as part of a namespace name (API server uids are 36).
pub const POD_UID_BYTES_MAX: usize = 64;
/// `CAP_NET_ADMIN`: links, addresses, routes.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`: `ip netns add` bind-mounts the namespace.
pub const CAP_SYS_ADMIN: u32 = 21;

/// A pod uid fit to name files and namespaces: ASCII letters, digits and `-`, not empty.
pub fn check_uid(uid: &str) -> Result<(), String> {
    let fits = !uid.is_empty()
        && uid.len() <= POD_UID_BYTES_MAX
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if fits {
        Ok(())
    } else {
        Err(format!("pod uid {uid:?} cannot name a network namespace"))
    }
}

/// The name of pod `uid`'s network namespace.
pub fn netns_name(uid: &str) -> String {
    format!("{NETNS_PREFIX}{uid}")
}

/// Where pod `uid`'s network namespace is bound.
pub fn netns_path(uid: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(netns_name(uid))
}

/// The host end of pod `uid`'s veth pair: `skv` and 12 hex digits of the uid's FNV-1a hash,
/// 15 characters, stable across agent restarts (so an adopted pod's link is found again).
pub fn host_veth_name(uid: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let name = format!("skv{:012x}", hash >> 16);
    debug_assert_eq!(name.len(), INTERFACE_NAME_BYTES_MAX);
    name
}

/// An interface name Linux accepts and `ip` cannot mistake for a keyword or an option.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= INTERFACE_NAME_BYTES_MAX
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "interface name {name:?}: 1 to {INTERFACE_NAME_BYTES_MAX} letters, digits, '-', \
             '_' or '.', not starting with '-'"
        ))
    }
}

/// The pods' default gateway, held by the bridge: the first usable address of the range.
pub fn gateway(cidr: &PodCidr) -> Ipv4Addr {
    cidr.address(0)
}

/// `address/prefix` as `ip` takes it.
pub fn with_prefix(address: Ipv4Addr, cidr: &PodCidr) -> String {
    format!("{address}/{}", cidr.prefix_len())
}

/// One `ip` invocation of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub args: Vec<String>,
    /// Cleaning up what may not exist: a failure is expected and ignored.
    pub may_fail: bool,
}

fn step(args: &[&str]) -> Step {
    Step { args: args.iter().map(|a| a.to_string()).collect(), may_fail: false }
}

fn cleanup(args: &[&str]) -> Step {
    Step { may_fail: true, ..step(args) }
}

/// What exists of the bridge before it is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeFound {
    Missing,
    Bridge,
    /// A link of that name that is not a bridge: refused, it is someone else's.
    Other,
}

/// The plan that creates (or adopts) the bridge and gives it the gateway address.
pub fn bridge_plan(bridge: &str, cidr: &PodCidr, found: BridgeFound) -> Result<Vec<Step>, String> {
    let mut plan = Vec::new();
    match found {
        BridgeFound::Missing => plan.push(step(&["link", "add", bridge, "type", "bridge"])),
        BridgeFound::Bridge => {}
        BridgeFound::Other => {
            return Err(format!("{bridge} exists and is not a bridge; pass another --pod-bridge"))
        }
    }
    let address = with_prefix(gateway(cidr), cidr);
    plan.push(step(&["addr", "replace", &address, "dev", bridge]));
    plan.push(step(&["link", "set", bridge, "up"]));
    Ok(plan)
}

/// A pod's link as it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLink {
    pub uid: String,
    pub address: Ipv4Addr,
    pub cidr: PodCidr,
    pub bridge: String,
}

/// What exists of a pod's network before it is set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodFound {
    /// Something is at the namespace's path.
    pub netns_path: bool,
    /// ... and it is a network namespace (a stale file after a crash is not).
    pub netns: bool,
    /// The namespace holds `eth0` (the veth pair was made).
    pub pod_interface: bool,
}

/// The plan that makes pod `link` reachable: its namespace, a veth pair from the bridge to
/// its `eth0`, its address and default route. Each step is idempotent or skipped when
/// `found` says it is done, so running it for an adopted pod changes nothing.
pub fn pod_plan(link: &PodLink, found: PodFound) -> Vec<Step> {
    let netns = netns_name(&link.uid);
    let veth = host_veth_name(&link.uid);
    let mut plan = Vec::new();
    if found.netns_path && !found.netns {
        plan.push(cleanup(&["netns", "delete", &netns]));
    }
    if !found.netns {
        plan.push(step(&["netns", "add", &netns]));
    }
    if !(found.netns && found.pod_interface) {
        // A host end left by an interrupted setup would block the new pair.
        plan.push(cleanup(&["link", "delete", &veth]));
        plan.push(step(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            POD_INTERFACE,
            "netns",
            &netns,
        ]));
    }
    plan.push(step(&["link", "set", &veth, "master", &link.bridge, "up"]));
    // Hairpin: a pod's connection to its own Service, DNAT'd back to itself while the
    // bridge's frames pass netfilter (`br_netfilter`), leaves by the port it came in on.
    plan.push(step(&["link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]));
    plan.push(step(&["-n", &netns, "link", "set", "lo", "up"]));
    let address = with_prefix(link.address, &link.cidr);
    plan.push(step(&["-n", &netns, "addr", "replace", &address, "dev", POD_INTERFACE]));
    plan.push(step(&["-n", &netns, "link", "set", POD_INTERFACE, "up"]));
    let gateway = gateway(&link.cidr).to_string();
    plan.push(step(&[
        "-n",
        &netns,
        "route",
        "replace",
        "default",
        "via",
        &gateway,
        "dev",
        POD_INTERFACE,
    ]));
    plan
}

/// The plan that removes pod `uid`'s veth pair (deleting one end deletes both) and
/// namespace; both may be gone already.
pub fn pod_teardown_plan(uid: &str) -> Vec<Step> {
    vec![
        cleanup(&["link", "delete", &host_veth_name(uid)]),
        cleanup(&["netns", "delete", &netns_name(uid)]),
    ]
}

/// The effective capability set (`CapEff`) of a `/proc/<pid>/status` text.
pub fn effective_capabilities(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// Whether `capabilities` holds capability number `capability`.
pub fn has_capability(capabilities: u64, capability: u32) -> bool {
    capability < 64 && capabilities & (1u64 << capability) != 0
}

/// The IPv4 addresses in `ip -o -4 addr show` output.
pub fn parse_addresses(output: &str) -> Vec<Ipv4Addr> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// The `ip -batch` script that makes `interface` hold exactly `wanted` (as /32s), given the
/// addresses it holds now; empty when nothing changes.
pub fn address_batch(interface: &str, current: &[Ipv4Addr], wanted: &[Ipv4Addr]) -> String {
    let mut script = String::new();
    for stale in current.iter().filter(|a| !wanted.contains(a)) {
        let _ = writeln!(script, "address del {stale}/32 dev {interface}");
    }
    for new in wanted.iter().filter(|a| !current.contains(a)) {
        let _ = writeln!(script, "address add {new}/32 dev {interface}");
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(plan: &[Step]) -> Vec<String> {
        plan.iter()
            .map(|s| format!("{}{}", if s.may_fail { "?" } else { "" }, s.args.join(" ")))
            .collect()
    }

    fn link() -> PodLink {
        PodLink {
            uid: "0d6c1f1e-5d1a-4a4e-9c1b-1b2f3c4d5e6f".into(),
            address: Ipv4Addr::new(10, 244, 0, 7),
            cidr: PodCidr::parse("10.244.0.0/24").unwrap(),
            bridge: "skiff0".into(),
        }
    }

    #[test]
    fn names_fit_linux_and_are_stable() {
        let uid = "0d6c1f1e-5d1a-4a4e-9c1b-1b2f3c4d5e6f";
        assert_eq!(netns_name(uid), format!("skiff-{uid}"));
        assert_eq!(netns_path(uid), PathBuf::from(format!("/run/netns/skiff-{uid}")));
        let veth = host_veth_name(uid);
        assert_eq!(veth.len(), 15);
        assert!(veth.starts_with("skv"));
        assert!(check_interface_name(&veth).is_ok());
        assert_eq!(veth, host_veth_name(uid), "stable");
        assert_ne!(veth, host_veth_name("0d6c1f1e-5d1a-4a4e-9c1b-1b2f3c4d5e70"));
        assert!(check_uid(uid).is_ok());
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_uid(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "-x", "a b", "sixteen-letters!", "abcdefghijklmnop"] {
            assert!(check_interface_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_interface_name("skiff0").is_ok());
    }

    #[test]
    fn the_bridge_holds_the_first_address_as_gateway() {
        let cidr = PodCidr::parse("10.244.3.0/24").unwrap();
        assert_eq!(gateway(&cidr), Ipv4Addr::new(10, 244, 3, 1));
        let plan = bridge_plan("skiff0", &cidr, BridgeFound::Missing).unwrap();
        assert_eq!(
            args(&plan),
            [
                "link add skiff0 type bridge",
                "addr replace 10.244.3.1/24 dev skiff0",
                "link set skiff0 up"
            ]
        );
        assert_eq!(bridge_plan("skiff0", &cidr, BridgeFound::Bridge).unwrap().len(), 2);
        let refused = bridge_plan("eth0", &cidr, BridgeFound::Other).unwrap_err();
        assert!(refused.contains("not a bridge"), "{refused}");
    }

    #[test]
    fn a_new_pod_gets_namespace_veth_address_and_route() {
        let veth = host_veth_name(&link().uid);
        let ns = netns_name(&link().uid);
        let expected = [
            format!("netns add {ns}"),
            format!("?link delete {veth}"),
            format!("link add {veth} type veth peer name eth0 netns {ns}"),
            format!("link set {veth} master skiff0 up"),
            format!("link set {veth} type bridge_slave hairpin on"),
            format!("-n {ns} link set lo up"),
            format!("-n {ns} addr replace 10.244.0.7/24 dev eth0"),
            format!("-n {ns} link set eth0 up"),
            format!("-n {ns} route replace default via 10.244.0.1 dev eth0"),
        ];
        assert_eq!(args(&pod_plan(&link(), PodFound::default())), expected);
    }

    #[test]
    fn an_adopted_pod_keeps_its_link_and_a_broken_one_is_redone() {
        let adopted = PodFound { netns_path: true, netns: true, pod_interface: true };
        let plan = args(&pod_plan(&link(), adopted));
        assert!(plan.iter().all(|s| !s.contains("netns add") && !s.contains("type veth")));
        assert!(plan.iter().all(|s| !s.starts_with('?')), "nothing deleted: {plan:?}");
        // Namespace made, veth not yet (interrupted setup).
        let half = PodFound { netns_path: true, netns: true, pod_interface: false };
        let plan = args(&pod_plan(&link(), half));
        assert!(!plan.iter().any(|s| s.contains("netns add")));
        assert!(plan.iter().any(|s| s.contains("type veth")));
        // A stale file where the namespace should be (the namespace is gone).
        let stale = PodFound { netns_path: true, netns: false, pod_interface: false };
        let plan = args(&pod_plan(&link(), stale));
        assert!(plan[0].starts_with("?netns delete skiff-"), "{plan:?}");
        assert!(plan[1].starts_with("netns add skiff-"), "{plan:?}");
    }

    #[test]
    fn teardown_deletes_the_veth_then_the_namespace() {
        let uid = "u-1";
        assert_eq!(
            args(&pod_teardown_plan(uid)),
            [format!("?link delete {}", host_veth_name(uid)), "?netns delete skiff-u-1".into()]
        );
    }

    #[test]
    fn capabilities_come_from_cap_eff() {
        let status = "Name:\tskiff\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t0000000000001000\nCapBnd:\t000001ffffffffff\n";
        let effective = effective_capabilities(status).unwrap();
        assert!(has_capability(effective, CAP_NET_ADMIN));
        assert!(!has_capability(effective, CAP_SYS_ADMIN));
        assert!(!has_capability(effective, 64));
        assert_eq!(effective_capabilities("Name:\tx\n"), None);
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
    }

    #[test]
    fn service_addresses_converge_in_one_batch() {
        let output = "7: skiff-svc0    inet 10.96.0.10/32 scope global skiff-svc0\\       \
                      valid_lft forever preferred_lft forever\n\
                      7: skiff-svc0    inet 10.96.0.11/32 scope global skiff-svc0\n";
        let current = parse_addresses(output);
        assert_eq!(current, [Ipv4Addr::new(10, 96, 0, 10), Ipv4Addr::new(10, 96, 0, 11)]);
        let wanted = [Ipv4Addr::new(10, 96, 0, 11), Ipv4Addr::new(10, 96, 0, 12)];
        assert_eq!(
            address_batch("skiff-svc0", &current, &wanted),
            "address del 10.96.0.10/32 dev skiff-svc0\naddress add 10.96.0.12/32 dev skiff-svc0\n"
        );
        assert_eq!(address_batch("skiff-svc0", &wanted, &wanted), "");
    }
}
