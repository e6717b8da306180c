//! The nftables and iptables modes: DNAT rules, in Skiff's own table or chains only, for the
//! frontends [`restrict`] leaves (ClusterIPs inside the configured service range, NodePorts on
//! the node addresses; IPv4, TCP).
//!
//! nftables: the table `ip skiff-proxy` with `nat` base chains on `prerouting` (traffic from
//! pods and other hosts) and `output` (this host's own traffic), a `services` chain matching
//! frontends, one chain per frontend picking an endpoint chain with `numgen inc mod N` (round
//! robin) and one DNAT chain per endpoint. An endpoint connecting to its own Service (hairpin)
//! is marked and masqueraded on `postrouting`, as kube-proxy does, so its reply comes back
//! through the node; with the bridge pod network, so is all service traffic arriving from the
//! bridge (pod to pod on one bridge: where the bridge's frames skip netfilter, no
//! `br_netfilter`, the reply would go straight back over the bridge, un-NATed). Frontends
//! without endpoints are rejected in `filter` chains on `input`, `forward` and `output` (the
//! client's connect fails at once, as with kube-proxy).
//! Each sync replaces the whole table in one `nft -f` transaction; stop deletes it.
//!
//! iptables: chains `SKIFF-SERVICES`, `SKIFF-SVC-<hash>` (round robin with `statistic --mode
//! nth`) and `SKIFF-SEP-<hash>` in the nat table, jumped to from `PREROUTING` and `OUTPUT`,
//! loaded with `iptables-restore --noflush` (declared chains are flushed, stale ones deleted,
//! nothing else is touched). Stop removes the jumps and every `SKIFF-` chain.
//!
//! In iptables mode, frontends without endpoints get no rule (their packets are not answered,
//! where kube-proxy rejects them), and no masquerading is done (hairpin traffic, and pod to
//! pod service traffic on the bridge pod network, is not supported there).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::model::{Route, Routes};
use super::{ProxyConfig, ProxyMode, PROXY_RULES_COMMAND_TIMEOUT_MS};

/// The nftables table Skiff owns.
pub const NFT_TABLE: &str = "skiff-proxy";
/// The packet mark asking `postrouting` to masquerade (kube-proxy's bit).
pub const MASQUERADE_MARK: u32 = 0x0000_4000;
/// The iptables chain every frontend rule hangs from.
pub const IPTABLES_SERVICES_CHAIN: &str = "SKIFF-SERVICES";

/// The routes a rule mode may program: IPv4 frontends that are node addresses or ClusterIPs
/// inside the configured range, to IPv4 backends.
pub fn restrict(routes: &Routes, config: &ProxyConfig) -> Routes {
    routes
        .iter()
        .filter(|(frontend, _)| match frontend.ip() {
            IpAddr::V4(ip) => {
                config.node_addresses.contains(&frontend.ip())
                    || config.cluster_ip_range.is_some_and(|range| range.offset(ip).is_some())
            }
            IpAddr::V6(_) => false,
        })
        .map(|(frontend, route)| {
            let mut route = route.clone();
            route.backends.retain(SocketAddr::is_ipv4);
            (*frontend, route)
        })
        .collect()
}

/// A stable short name for a frontend or an endpoint (FNV-1a of its text, 16 hex digits).
fn chain_suffix(text: &str) -> String {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    text.hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn programmed(routes: &Routes) -> impl Iterator<Item = (&SocketAddr, &Route)> {
    routes.iter().filter(|(_, route)| !route.backends.is_empty())
}

fn unserved(routes: &Routes) -> impl Iterator<Item = (&SocketAddr, &Route)> {
    routes.iter().filter(|(_, route)| route.backends.is_empty())
}

/// The nftables script that replaces Skiff's table with `routes`; `pod_bridge` is the bridge
/// pod network's bridge, if any.
pub fn nft_script(routes: &Routes, pod_bridge: Option<&str>) -> String {
    let mut out = String::new();
    // Declaring the table first makes the delete succeed when it does not exist yet.
    let _ = writeln!(out, "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}");
    let _ = writeln!(out, "table ip {NFT_TABLE} {{");
    let _ = writeln!(
        out,
        "  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; \
         jump services; }}"
    );
    let _ = writeln!(
        out,
        "  chain output {{ type nat hook output priority -100; policy accept; jump services; }}"
    );
    let _ = writeln!(
        out,
        "  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; \
         jump masquerading; }}"
    );
    let _ = writeln!(out, "  chain masquerading {{");
    let _ = writeln!(out, "    meta mark & {MASQUERADE_MARK:#010x} == 0 return");
    let _ = writeln!(out, "    meta mark set meta mark ^ {MASQUERADE_MARK:#010x}");
    let _ = writeln!(out, "    masquerade\n  }}");
    let _ = writeln!(
        out,
        "  chain mark-for-masquerade {{ meta mark set meta mark | {MASQUERADE_MARK:#010x}; }}"
    );
    for hook in ["input", "forward", "output"] {
        let _ = writeln!(
            out,
            "  chain filter-{hook} {{ type filter hook {hook} priority -110; policy accept; \
             jump no-endpoints; }}"
        );
    }
    let _ = writeln!(out, "  chain no-endpoints {{");
    for (frontend, route) in unserved(routes) {
        let _ = writeln!(
            out,
            "    ip daddr {} tcp dport {} reject comment \"{} has no endpoints\"",
            frontend.ip(),
            frontend.port(),
            route.service
        );
    }
    let _ = writeln!(out, "  }}");
    let mut services = String::new();
    let mut chains = String::new();
    for (frontend, route) in programmed(routes) {
        let service_chain = format!("svc-{}", chain_suffix(&frontend.to_string()));
        let _ = writeln!(
            services,
            "    ip daddr {} tcp dport {} jump {service_chain} comment \"{}\"",
            frontend.ip(),
            frontend.port(),
            route.service
        );
        let mut map = Vec::new();
        for (index, backend) in route.backends.iter().enumerate() {
            let endpoint_chain = format!("sep-{}", chain_suffix(&format!("{frontend}>{backend}")));
            map.push(format!("{index} : jump {endpoint_chain}"));
            let from_bridge = pod_bridge
                .map(|bridge| format!("iifname \"{bridge}\" jump mark-for-masquerade; "))
                .unwrap_or_default();
            let _ = writeln!(
                chains,
                "  chain {endpoint_chain} {{ ip saddr {} jump mark-for-masquerade; \
                 {from_bridge}meta l4proto tcp dnat to {backend}; }}",
                backend.ip()
            );
        }
        let _ = writeln!(
            chains,
            "  chain {service_chain} {{ numgen inc mod {} vmap {{ {} }}; }}",
            route.backends.len(),
            map.join(", ")
        );
    }
    let _ = writeln!(out, "  chain services {{\n{services}  }}");
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

/// The `iptables-restore --noflush` input that programs `routes`, deleting the `SKIFF-`
/// chains of `previous` no longer needed; with the chains it programmed.
pub fn iptables_script(routes: &Routes, previous: &BTreeSet<String>) -> (String, BTreeSet<String>) {
    let mut chains = BTreeSet::from([IPTABLES_SERVICES_CHAIN.to_string()]);
    let mut rules = String::new();
    for (frontend, route) in programmed(routes) {
        let service_chain = format!("SKIFF-SVC-{}", chain_suffix(&frontend.to_string()));
        let _ = writeln!(
            rules,
            "-A {IPTABLES_SERVICES_CHAIN} -d {}/32 -p tcp -m tcp --dport {} -m comment \
             --comment \"{}\" -j {service_chain}",
            frontend.ip(),
            frontend.port(),
            route.service
        );
        let count = route.backends.len();
        for (index, backend) in route.backends.iter().enumerate() {
            let endpoint_chain =
                format!("SKIFF-SEP-{}", chain_suffix(&format!("{frontend}>{backend}")));
            // Rule i takes every (count - i)th connection reaching it: round robin.
            let pick = if index + 1 < count {
                format!("-m statistic --mode nth --every {} --packet 0 ", count - index)
            } else {
                String::new()
            };
            let _ = writeln!(rules, "-A {service_chain} {pick}-j {endpoint_chain}");
            let _ =
                writeln!(rules, "-A {endpoint_chain} -p tcp -j DNAT --to-destination {backend}");
            chains.insert(endpoint_chain);
        }
        chains.insert(service_chain);
    }
    let mut out = String::from("*nat\n");
    for chain in chains.union(previous) {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    out.push_str(&rules);
    for stale in previous.difference(&chains) {
        let _ = writeln!(out, "-X {stale}");
    }
    out.push_str("COMMIT\n");
    (out, chains)
}

/// Whether `name` is an executable on `PATH` (or in the sbin directories).
pub fn binary_exists(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .any(|dir| std::path::Path::new(dir).join(name).is_file());
    found
}

/// Programs routes as nftables or iptables rules.
pub struct RulesProxy {
    mode: ProxyMode,
    prefix: Vec<String>,
    pod_bridge: Option<String>,
    iptables_chains: BTreeSet<String>,
    applied: bool,
}

impl RulesProxy {
    pub fn new(mode: ProxyMode, prefix: Vec<String>, pod_bridge: Option<String>) -> RulesProxy {
        assert!(matches!(mode, ProxyMode::Nftables | ProxyMode::Iptables));
        RulesProxy { mode, prefix, pod_bridge, iptables_chains: BTreeSet::new(), applied: false }
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            ProxyMode::Iptables => "iptables",
            _ => "nftables",
        }
    }

    /// Whether a sync ever succeeded (a failing first sync means the mode is unusable here).
    pub fn ever_applied(&self) -> bool {
        self.applied
    }

    /// Replaces the programmed rules with `routes`; returns how many frontends have rules.
    pub async fn apply(&mut self, routes: &Routes) -> Result<usize, String> {
        match self.mode {
            ProxyMode::Iptables => {
                let (script, chains) = iptables_script(routes, &self.iptables_chains);
                self.run(&["iptables-restore", "--noflush"], Some(&script)).await?;
                self.iptables_chains = chains;
                for hook in ["PREROUTING", "OUTPUT"] {
                    let check =
                        ["iptables", "-t", "nat", "-C", hook, "-j", IPTABLES_SERVICES_CHAIN];
                    if self.run(&check, None).await.is_err() {
                        let insert = [
                            "iptables",
                            "-t",
                            "nat",
                            "-I",
                            hook,
                            "1",
                            "-j",
                            IPTABLES_SERVICES_CHAIN,
                        ];
                        self.run(&insert, None).await?;
                    }
                }
            }
            _ => {
                let script = nft_script(routes, self.pod_bridge.as_deref());
                self.run(&["nft", "-f", "-"], Some(&script)).await?
            }
        }
        self.applied = true;
        Ok(programmed(routes).count())
    }

    /// Removes everything this proxy programmed.
    pub async fn cleanup(&mut self) {
        let result = match self.mode {
            ProxyMode::Iptables => {
                for hook in ["PREROUTING", "OUTPUT"] {
                    let delete =
                        ["iptables", "-t", "nat", "-D", hook, "-j", IPTABLES_SERVICES_CHAIN];
                    while self.run(&delete, None).await.is_ok() {}
                }
                let mut script = String::from("*nat\n");
                for chain in &self.iptables_chains {
                    let _ = writeln!(script, ":{chain} - [0:0]");
                }
                for chain in &self.iptables_chains {
                    let _ = writeln!(script, "-X {chain}");
                }
                script.push_str("COMMIT\n");
                self.run(&["iptables-restore", "--noflush"], Some(&script)).await
            }
            _ => {
                let script = format!("table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n");
                self.run(&["nft", "-f", "-"], Some(&script)).await
            }
        };
        match result {
            Ok(()) => self.iptables_chains.clear(),
            Err(error) => tracing::warn!(%error, "removing the proxy's rules failed"),
        }
    }

    /// Runs a rules command (after the configured prefix), feeding `input` on stdin.
    async fn run(&self, command: &[&str], input: Option<&str>) -> Result<(), String> {
        let words: Vec<&str> =
            self.prefix.iter().map(String::as_str).chain(command.iter().copied()).collect();
        let mut child = tokio::process::Command::new(words[0])
            .args(&words[1..])
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", words[0]))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await.map_err(|e| e.to_string())?;
        }
        let timeout = Duration::from_millis(PROXY_RULES_COMMAND_TIMEOUT_MS);
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| format!("{} did not finish in time", words.join(" ")))?
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}",
                words.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_plane::apiserver::allocator::ServiceIpRange;

    fn routes() -> Routes {
        let route = |backends: &[&str]| Route {
            service: "default/web:http".into(),
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        };
        Routes::from([
            ("10.96.0.10:80".parse().unwrap(), route(&["10.0.0.1:8080", "10.0.0.2:8080"])),
            ("192.168.1.5:30080".parse().unwrap(), route(&["10.0.0.1:8080", "10.0.0.2:8080"])),
            ("10.200.0.1:80".parse().unwrap(), route(&["10.0.0.3:80"])),
            ("10.96.0.11:80".parse().unwrap(), route(&[])),
        ])
    }

    fn config() -> ProxyConfig {
        ProxyConfig {
            node_addresses: vec!["192.168.1.5".parse().unwrap()],
            cluster_ip_range: Some(ServiceIpRange::parse("10.96.0.0/12").unwrap()),
            ..ProxyConfig::default()
        }
    }

    #[test]
    fn only_the_configured_range_and_node_addresses_get_rules() {
        let restricted = restrict(&routes(), &config());
        let frontends: Vec<String> = restricted.keys().map(|f| f.to_string()).collect();
        assert_eq!(frontends, ["10.96.0.10:80", "10.96.0.11:80", "192.168.1.5:30080"]);
        let no_range = ProxyConfig { cluster_ip_range: None, ..config() };
        assert_eq!(restrict(&routes(), &no_range).len(), 1);
    }

    #[test]
    fn nftables_script_replaces_skiffs_table_with_round_robin_dnat() {
        let script = nft_script(&restrict(&routes(), &config()), None);
        assert!(script.starts_with("table ip skiff-proxy\ndelete table ip skiff-proxy\n"));
        assert!(script.contains("ip daddr 10.96.0.10 tcp dport 80 jump svc-"), "{script}");
        assert!(script.contains("ip daddr 192.168.1.5 tcp dport 30080 jump svc-"));
        assert!(!script.contains("10.200.0.1"), "outside the range");
        assert_eq!(script.matches("numgen inc mod 2 vmap { 0 : jump sep-").count(), 2);
        assert_eq!(script.matches("dnat to 10.0.0.1:8080").count(), 2);
        assert_eq!(script.matches('{').count(), script.matches('}').count());
        assert!(!script.contains("iifname"), "no bridge rule without a bridge");
    }

    #[test]
    fn nftables_script_rejects_unserved_frontends_and_masquerades_hairpins() {
        let script = nft_script(&restrict(&routes(), &config()), Some("skiff0"));
        // No endpoints: rejected on every path a connection can take, and never DNAT'd.
        assert!(script.contains(
            "    ip daddr 10.96.0.11 tcp dport 80 reject comment \"default/web:http has no \
             endpoints\"\n"
        ));
        assert!(!script.contains("ip daddr 10.96.0.11 tcp dport 80 jump"), "{script}");
        for hook in ["input", "forward", "output"] {
            assert!(script.contains(&format!("type filter hook {hook} priority -110;")));
        }
        // An endpoint reaching itself through its Service is marked, then masqueraded.
        assert!(script.contains("ip saddr 10.0.0.1 jump mark-for-masquerade; "));
        assert!(script.contains("meta mark set meta mark | 0x00004000;"));
        assert!(script.contains("type nat hook postrouting priority srcnat;"));
        assert!(script.contains("    meta mark & 0x00004000 == 0 return\n"));
        // Service traffic from bridge pods too (their replies must come back through here).
        assert!(script.contains(
            "jump mark-for-masquerade; iifname \"skiff0\" jump mark-for-masquerade; meta l4proto"
        ));
        assert_eq!(script.matches('{').count(), script.matches('}').count());
    }

    #[test]
    fn iptables_script_declares_its_chains_and_deletes_stale_ones() {
        let restricted = restrict(&routes(), &config());
        let stale = BTreeSet::from(["SKIFF-SVC-0000000000000000".to_string()]);
        let (script, chains) = iptables_script(&restricted, &stale);
        assert!(script.starts_with("*nat\n:SKIFF-S"), "{script}");
        assert!(script.ends_with("-X SKIFF-SVC-0000000000000000\nCOMMIT\n"), "{script}");
        assert!(script.contains("-m statistic --mode nth --every 2 --packet 0 -j SKIFF-SEP-"));
        assert!(script.contains("-j DNAT --to-destination 10.0.0.2:8080"));
        assert_eq!(chains.len(), 1 + 2 * 3, "services + 2 frontends x (svc + 2 endpoints)");
        assert!(chains.iter().all(|c| c.starts_with("SKIFF-") && c.len() <= 28));
        let (again, _) = iptables_script(&restricted, &chains);
        assert!(!again.contains("-X"), "nothing stale");
    }
}
