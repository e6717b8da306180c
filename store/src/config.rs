//! A store member's configuration, with etcd's flag meanings, and its validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::raft::{MemberNode, NodeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub name: String,
    /// `None`: keep everything in memory (embedded tests); otherwise RocksDB under this path.
    pub data_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `name=peer-url` pairs, comma separated, as etcd's `--initial-cluster`.
    pub initial_cluster: String,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub listen_metrics_urls: Vec<String>,
    /// Applied entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// Backend bytes past which NOSPACE is raised (etcd's `--quota-backend-bytes`; 0 means
    /// the default, `limits::BACKEND_BYTES_QUOTA`).
    pub quota_backend_bytes: u64,
}

impl StoreConfig {
    /// A single member with etcd's defaults: client 127.0.0.1:2379, peer 127.0.0.1:2380.
    pub fn single(name: &str, data_dir: Option<PathBuf>) -> StoreConfig {
        StoreConfig {
            name: name.to_string(),
            data_dir,
            listen_client_urls: vec!["http://127.0.0.1:2379".into()],
            advertise_client_urls: vec!["http://127.0.0.1:2379".into()],
            listen_peer_urls: vec!["http://127.0.0.1:2380".into()],
            initial_advertise_peer_urls: vec!["http://127.0.0.1:2380".into()],
            initial_cluster: format!("{name}=http://127.0.0.1:2380"),
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".into(),
            listen_metrics_urls: Vec::new(),
            snapshot_count: crate::limits::SNAPSHOT_LOGS_SINCE_LAST,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            quota_backend_bytes: 0,
        }
    }
}

/// A configuration problem, named so the operator can fix the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--name must not be empty")]
    EmptyName,
    #[error("invalid URL {url:?} in {flag}: {reason}")]
    BadUrl { flag: &'static str, url: String, reason: String },
    #[error("--initial-cluster entry {0:?} is not name=peer-url")]
    BadClusterEntry(String),
    #[error("--initial-cluster has member {0:?} twice")]
    DuplicateMember(String),
    #[error("--initial-cluster does not list this member's name {0:?}")]
    MemberNotInCluster(String),
    #[error(
        "--initial-advertise-peer-urls {advertised:?} do not match --initial-cluster's {listed:?} \
         for {name:?}"
    )]
    PeerUrlMismatch { name: String, advertised: Vec<String>, listed: Vec<String> },
    #[error("--snapshot-count must be at least 1")]
    BadSnapshotCount,
    #[error(
        "--election-timeout ({election}) must be at least 5 x --heartbeat-interval ({heartbeat})"
    )]
    BadTimeouts { heartbeat: u64, election: u64 },
}

/// Parses `http://host:port` into a socket address to listen on.
pub fn listen_address(flag: &'static str, url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |reason: String| ConfigError::BadUrl { flag, url: url.to_string(), reason };
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(bad("only http:// is supported (TLS is not implemented yet)".into()));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host".into()))?;
    let port = parsed.port().ok_or_else(|| bad("no port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse().map_err(|_| bad("host must be an IP address".into()))?;
    Ok(SocketAddr::new(ip, port))
}

fn check_url(flag: &'static str, url: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadUrl { flag, url: url.to_string(), reason };
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(bad("only http:// is supported (TLS is not implemented yet)".into()));
    }
    if parsed.host_str().is_none() || parsed.port().is_none() {
        return Err(bad("needs a host and a port".into()));
    }
    Ok(())
}

/// FNV-1a: a stable, dependency-free hash for deriving member and cluster ids.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash.max(1)
}

/// A member's id, as etcd derives it: from its peer URLs and the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> NodeId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv1a(&[joined.as_bytes(), token.as_bytes()])
}

/// The validated view of the flags: who is in the cluster and who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPlan {
    pub member_id: NodeId,
    pub cluster_id: u64,
    pub members: BTreeMap<NodeId, MemberNode>,
}

impl StoreConfig {
    pub fn plan(&self) -> Result<ClusterPlan, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        for (flag, urls) in [
            ("--listen-client-urls", &self.listen_client_urls),
            ("--listen-peer-urls", &self.listen_peer_urls),
            ("--listen-metrics-urls", &self.listen_metrics_urls),
        ] {
            for url in urls {
                listen_address(flag, url)?;
            }
        }
        for url in &self.advertise_client_urls {
            check_url("--advertise-client-urls", url)?;
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError::BadSnapshotCount);
        }
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms {
            return Err(ConfigError::BadTimeouts {
                heartbeat: self.heartbeat_interval_ms,
                election: self.election_timeout_ms,
            });
        }
        let listed = self.parse_initial_cluster()?;
        let ours = listed
            .get(&self.name)
            .ok_or_else(|| ConfigError::MemberNotInCluster(self.name.clone()))?;
        let mut advertised = self.initial_advertise_peer_urls.clone();
        advertised.sort();
        if &advertised != ours {
            return Err(ConfigError::PeerUrlMismatch {
                name: self.name.clone(),
                advertised,
                listed: ours.clone(),
            });
        }
        let token = &self.initial_cluster_token;
        let members: BTreeMap<NodeId, MemberNode> = listed
            .iter()
            .map(|(name, urls)| {
                (member_id(urls, token), MemberNode { name: name.clone(), peer_urls: urls.clone() })
            })
            .collect();
        // From the token alone, so a member joining later derives the same id as the founders.
        Ok(ClusterPlan {
            member_id: member_id(ours, token),
            cluster_id: fnv1a(&[b"cluster", token.as_bytes()]),
            members,
        })
    }

    /// `name=url,name=url2,...`; a name may repeat to give several URLs.
    fn parse_initial_cluster(&self) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
        let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut seen_pairs = std::collections::BTreeSet::new();
        for entry in self.initial_cluster.split(',').filter(|e| !e.trim().is_empty()) {
            let (name, url) = entry
                .trim()
                .split_once('=')
                .ok_or_else(|| ConfigError::BadClusterEntry(entry.to_string()))?;
            if name.is_empty() {
                return Err(ConfigError::BadClusterEntry(entry.to_string()));
            }
            check_url("--initial-cluster", url)?;
            if !seen_pairs.insert((name.to_string(), url.to_string())) {
                return Err(ConfigError::DuplicateMember(name.to_string()));
            }
            listed.entry(name.to_string()).or_default().push(url.to_string());
        }
        for urls in listed.values_mut() {
            urls.sort();
        }
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> StoreConfig {
        let mut config = StoreConfig::single("a", None);
        config.initial_cluster =
            "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,c=http://127.0.0.1:2382".into();
        config
    }

    #[test]
    fn plan_derives_stable_distinct_ids() {
        let plan = three().plan().expect("valid");
        assert_eq!(plan.members.len(), 3);
        assert!(plan.members.contains_key(&plan.member_id));
        assert_eq!(plan, three().plan().expect("valid"), "ids are deterministic");
        let mut other_token = three();
        other_token.initial_cluster_token = "other".into();
        assert_ne!(plan.cluster_id, other_token.plan().expect("valid").cluster_id);
    }

    #[test]
    fn plan_rejects_bad_flags() {
        let check = |change: &dyn Fn(&mut StoreConfig), expected: &str| {
            let mut config = three();
            change(&mut config);
            let error = config.plan().expect_err("must be rejected").to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        };
        check(&|c| c.name = "z".into(), "does not list this member");
        check(&|c| c.name.clear(), "--name");
        check(&|c| c.initial_cluster = "a".into(), "is not name=peer-url");
        check(&|c| c.initial_cluster = "a=ftp://x".into(), "only http://");
        check(&|c| c.listen_client_urls = vec!["http://localhost:1".into()], "IP address");
        check(&|c| c.listen_peer_urls = vec!["http://127.0.0.1".into()], "no port");
        check(&|c| c.initial_advertise_peer_urls = vec!["http://127.0.0.1:9".into()], "match");
        check(&|c| c.snapshot_count = 0, "--snapshot-count");
        check(&|c| c.election_timeout_ms = 100, "--election-timeout");
    }
}
