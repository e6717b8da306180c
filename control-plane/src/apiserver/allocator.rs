//! Service address allocation: ClusterIPs from `--service-cluster-ip-range` and NodePorts from
//! `--service-node-port-range`, as kube-apiserver allocates them.
//!
//! The allocation state lives in the store, one key per allocated value:
//! `/registry/ranges/serviceips/<ip>` and `/registry/ranges/servicenodeports/<port>`, each
//! holding its owner (`{"namespace", "name", "uid"}`). A Service and its range keys are written
//! in one txn ([`Backend::write_all`]): the Service's create (or compare-and-swap update, or
//! delete) and a create-if-absent of every newly held key (or a delete of every released
//! key), all or nothing. So any number of API servers over one store never hand out one value
//! twice, and a value is never held without its Service, except after a namespace's contents
//! are deleted directly in the store; [`repair_loop`] frees such leaks and records values
//! Services hold without a key (Services from before the allocator existed).
//!
//! Dynamic values are picked at random, from the upper part of the range first: the lower
//! part (Kubernetes' static band, `ServiceIPStaticSubrange`) is left to explicit requests.
//! The pure half (ranges, checks, picking, defaulting) is at the top; the store half below.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::server::ApiServer;
use super::status::ApiError;
use crate::limits::{
    SERVICE_ALLOCATIONS_PER_SERVICE_MAX, SERVICE_ALLOCATION_ATTEMPTS_MAX,
    SERVICE_RANGE_REPAIR_INTERVAL_MS,
};
use crate::storage::{BackendError, MultiSwap, StoredKv, Swap};

/// Where allocated ClusterIPs are recorded.
pub const CLUSTER_IP_PREFIX: &str = "/registry/ranges/serviceips/";
/// Where allocated NodePorts are recorded.
pub const NODE_PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// An IPv4 CIDR Services get their ClusterIPs from (`--service-cluster-ip-range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceIpRange {
    network: u32,
    prefix_len: u8,
}

impl ServiceIpRange {
    /// Parses `a.b.c.d/n`. Like kube-apiserver, refuses ranges larger than /12 (the bitmap
    /// it keeps would be too large; here, the store's key listing) and smaller than /30.
    pub fn parse(text: &str) -> Result<ServiceIpRange, String> {
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/n)"))?;
        let address: Ipv4Addr =
            address.parse().map_err(|_| format!("{text:?}: only IPv4 ranges are supported"))?;
        let prefix_len: u8 = prefix.parse().map_err(|_| format!("{text:?}: bad prefix length"))?;
        if !(12..=30).contains(&prefix_len) {
            return Err(format!(
                "{text:?}: the prefix length must be between 12 and 30 (kube-apiserver refuses \
                 ranges larger than /12)"
            ));
        }
        let mask = u32::MAX << (32 - prefix_len);
        Ok(ServiceIpRange { network: u32::from(address) & mask, prefix_len })
    }

    /// Usable addresses: all but the network and broadcast addresses.
    pub fn size(&self) -> u64 {
        (1u64 << (32 - self.prefix_len)) - 2
    }

    /// The usable address at `offset` (0: the first, the `kubernetes` Service's).
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
}

impl Default for ServiceIpRange {
    /// kube-apiserver's default, 10.96.0.0/12.
    fn default() -> ServiceIpRange {
        ServiceIpRange::parse("10.96.0.0/12").expect("valid default")
    }
}

impl fmt::Display for ServiceIpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }
}

/// The ports NodePorts come from (`--service-node-port-range`), both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePortRange {
    pub first: u16,
    pub last: u16,
}

impl NodePortRange {
    /// Parses `first-last` or `first+count` (kube-apiserver's two forms).
    pub fn parse(text: &str) -> Result<NodePortRange, String> {
        let bad = || format!("{text:?} is not a port range (e.g. 30000-32767)");
        let range = if let Some((first, last)) = text.split_once('-') {
            let first: u16 = first.trim().parse().map_err(|_| bad())?;
            NodePortRange { first, last: last.trim().parse().map_err(|_| bad())? }
        } else if let Some((first, count)) = text.split_once('+') {
            let first: u16 = first.trim().parse().map_err(|_| bad())?;
            let count: u16 = count.trim().parse().map_err(|_| bad())?;
            NodePortRange { first, last: first.checked_add(count).ok_or_else(bad)? }
        } else {
            return Err(bad());
        };
        if range.first == 0 || range.first > range.last {
            return Err(bad());
        }
        Ok(range)
    }

    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }
}

impl Default for NodePortRange {
    fn default() -> NodePortRange {
        NodePortRange { first: 30000, last: 32767 }
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Both ranges, as the API server is configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceRanges {
    pub cluster_ips: ServiceIpRange,
    pub node_ports: NodePortRange,
}

/// One value a Service holds in a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Allocation {
    ClusterIp(Ipv4Addr),
    NodePort(u16),
}

impl Allocation {
    /// The store key recording it.
    pub fn key(&self) -> String {
        match self {
            Allocation::ClusterIp(ip) => format!("{CLUSTER_IP_PREFIX}{ip}"),
            Allocation::NodePort(port) => format!("{NODE_PORT_PREFIX}{port}"),
        }
    }

    fn from_key(key: &[u8]) -> Option<Allocation> {
        let key = std::str::from_utf8(key).ok()?;
        if let Some(ip) = key.strip_prefix(CLUSTER_IP_PREFIX) {
            return ip.parse().ok().map(Allocation::ClusterIp);
        }
        key.strip_prefix(NODE_PORT_PREFIX)?.parse().ok().map(Allocation::NodePort)
    }
}

fn service_type(spec: &Value) -> &str {
    spec["type"].as_str().unwrap_or("ClusterIP")
}

/// The requested clusterIP: `clusterIP`, else the first of `clusterIPs`; "" when none.
fn requested_cluster_ip(spec: &Value) -> &str {
    match spec["clusterIP"].as_str().filter(|ip| !ip.is_empty()) {
        Some(ip) => ip,
        None => spec["clusterIPs"][0].as_str().unwrap_or(""),
    }
}

/// Whether the Service gets a ClusterIP: not ExternalName, not headless (`None`).
fn wants_cluster_ip(spec: &Value) -> bool {
    service_type(spec) != "ExternalName" && requested_cluster_ip(spec) != "None"
}

/// Whether the Service's ports get NodePorts (NodePort, and LoadBalancer unless
/// `allocateLoadBalancerNodePorts` is false).
fn wants_node_ports(spec: &Value) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// What the Service holds in the ranges (values outside them are not managed here).
pub fn held(service: &Value, ranges: &ServiceRanges) -> BTreeSet<Allocation> {
    let spec = &service["spec"];
    let mut held = BTreeSet::new();
    if wants_cluster_ip(spec) {
        if let Ok(ip) = requested_cluster_ip(spec).parse::<Ipv4Addr>() {
            if ranges.cluster_ips.offset(ip).is_some() {
                held.insert(Allocation::ClusterIp(ip));
            }
        }
    }
    if wants_node_ports(spec) {
        for port in spec["ports"].as_array().into_iter().flatten() {
            let node_port = port["nodePort"].as_i64().unwrap_or(0);
            if ranges.node_ports.contains(node_port) {
                held.insert(Allocation::NodePort(node_port as u16));
            }
        }
    }
    held
}

/// Checks what a Service asks of the ranges, with Kubernetes' wording.
pub fn check(spec: &Value, ranges: &ServiceRanges) -> Vec<String> {
    let mut causes = Vec::new();
    let ip = requested_cluster_ip(spec);
    if let (Some(single), Some(first)) =
        (spec["clusterIP"].as_str(), spec["clusterIPs"][0].as_str())
    {
        if !single.is_empty() && single != first {
            causes.push(format!(
                "spec.clusterIPs[0]: Invalid value: \"{first}\": must be same as clusterIP"
            ));
        }
    }
    if service_type(spec) == "ExternalName" {
        if !ip.is_empty() {
            causes.push(format!(
                "spec.clusterIP: Invalid value: \"{ip}\": may not be set for ExternalName \
                 services"
            ));
        }
    } else if !ip.is_empty() && ip != "None" {
        match ip.parse::<Ipv4Addr>() {
            Err(_) => causes.push(format!(
                "spec.clusterIP: Invalid value: \"{ip}\": must be a valid IP address, (e.g. \
                 10.9.8.7 or 2001:db8::ffff)"
            )),
            Ok(parsed) if ranges.cluster_ips.offset(parsed).is_none() => causes.push(format!(
                "spec.clusterIP: Invalid value: \"{ip}\": provided IP is not in the valid \
                 range. The range of valid IPs is {}",
                ranges.cluster_ips
            )),
            Ok(_) => {}
        }
    }
    let mut seen = BTreeMap::new();
    for (index, port) in spec["ports"].as_array().into_iter().flatten().enumerate() {
        let node_port = port["nodePort"].as_i64().unwrap_or(0);
        if node_port == 0 {
            continue;
        }
        let at = format!("spec.ports[{index}].nodePort");
        if !wants_node_ports(spec) {
            if matches!(service_type(spec), "ClusterIP" | "ExternalName") {
                causes.push(format!(
                    "{at}: Forbidden: may not be used when `type` is '{}'",
                    service_type(spec)
                ));
            }
        } else if !ranges.node_ports.contains(node_port) {
            causes.push(format!(
                "{at}: Invalid value: {node_port}: provided port is not in the valid range. The \
                 range of valid ports is {}",
                ranges.node_ports
            ));
        } else {
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_string();
            if seen.insert((node_port, protocol), index).is_some() {
                causes.push(format!("{at}: Duplicate value: \"{node_port}\""));
            }
        }
    }
    causes
}

/// Kubernetes' static band: the lower part of a range that dynamic allocation only uses once
/// the rest is full (`calculateRangeOffset`: size/step, at least 16, at most `max`).
pub fn static_band(size: u64, step: u64, max: u64) -> u64 {
    const MIN: u64 = 16;
    if size < MIN {
        return 0;
    }
    (size / step).clamp(MIN, max)
}

/// A free offset in `[0, size)`: the first free one scanning from `start` (any number) in the
/// band above `band`, else in the band below; `None` when everything is taken.
pub fn pick_free(size: u64, band: u64, taken: &BTreeSet<u64>, start: u64) -> Option<u64> {
    let scan = |low: u64, high: u64| -> Option<u64> {
        if high <= low {
            return None;
        }
        let width = high - low;
        let first = low + start % width;
        // Free values after `first`, then from `low` (taken sets are small, free runs long).
        let mut candidate = first;
        for &used in taken.range(first..high) {
            if used != candidate {
                return Some(candidate);
            }
            candidate += 1;
        }
        if candidate < high {
            return Some(candidate);
        }
        candidate = low;
        for &used in taken.range(low..first) {
            if used != candidate {
                return Some(candidate);
            }
            candidate += 1;
        }
        (candidate < first).then_some(candidate)
    };
    scan(band.min(size), size).or_else(|| scan(0, band.min(size)))
}

/// What is taken in both ranges, as offsets.
#[derive(Clone, Debug, Default)]
pub struct Taken {
    pub cluster_ips: BTreeSet<u64>,
    pub node_ports: BTreeSet<u64>,
}

/// Kubernetes' defaults of the address fields: a single IPv4 family, traffic policies.
fn default_address_fields(spec: &mut Value) {
    let Some(fields) = spec.as_object_mut() else { return };
    if service_type(&Value::Object(fields.clone())) != "ExternalName" {
        fields.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        fields.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
        fields.entry("internalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    }
    if matches!(fields.get("type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer")) {
        fields.entry("externalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    }
}

/// How many values `spec` still needs picked: (a ClusterIP?, NodePorts).
fn missing(spec: &Value) -> (bool, usize) {
    let ip = wants_cluster_ip(spec) && requested_cluster_ip(spec).is_empty();
    let ports = if wants_node_ports(spec) {
        let ports = spec["ports"].as_array().into_iter().flatten();
        ports.filter(|p| p["nodePort"].as_i64().unwrap_or(0) == 0).count()
    } else {
        0
    };
    (ip, ports)
}

/// Fills in the ClusterIP and NodePorts `spec` lacks from what `taken` leaves free, and the
/// address fields; returns the values it picked. `start` seeds where the search begins.
pub fn assign(
    spec: &mut Value,
    ranges: &ServiceRanges,
    taken: &mut Taken,
    start: u64,
) -> Result<Vec<Allocation>, ApiError> {
    let mut picked = Vec::new();
    let (needs_ip, _) = missing(spec);
    if needs_ip {
        let size = ranges.cluster_ips.size();
        let band = static_band(size, 16, 256);
        let offset = pick_free(size, band, &taken.cluster_ips, start)
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?;
        taken.cluster_ips.insert(offset);
        let ip = ranges.cluster_ips.address(offset);
        spec["clusterIP"] = json!(ip.to_string());
        picked.push(Allocation::ClusterIp(ip));
    }
    let ip = requested_cluster_ip(spec).to_string();
    if service_type(spec) != "ExternalName" && !ip.is_empty() {
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    }
    if wants_node_ports(spec) {
        let size = ranges.node_ports.size();
        let band = static_band(size, 32, 128);
        let first = u64::from(ranges.node_ports.first);
        for port in spec["ports"].as_array_mut().into_iter().flatten() {
            if port["nodePort"].as_i64().unwrap_or(0) != 0 {
                continue;
            }
            let offset = pick_free(size, band, &taken.node_ports, start).ok_or_else(|| {
                ApiError::internal("failed to allocate a nodePort: range is full")
            })?;
            taken.node_ports.insert(offset);
            let number = (first + offset) as u16;
            port["nodePort"] = json!(number);
            picked.push(Allocation::NodePort(number));
        }
    }
    default_address_fields(spec);
    Ok(picked)
}

/// On an update, keeps the NodePorts a client left out (matched by port name, or by port
/// number and protocol), and drops the ones a type change no longer needs, as Kubernetes
/// does (`patchAllocatedValues`, `dropTypeDependentFields`).
pub fn carry_over(current: &Value, desired: &mut Value) {
    let old_ports: Vec<Value> = current["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let same = |a: &Value, b: &Value| {
        let named = a["name"].as_str().is_some_and(|n| !n.is_empty());
        if named {
            a["name"] == b["name"]
        } else {
            a["port"] == b["port"]
                && a["protocol"].as_str().unwrap_or("TCP")
                    == b["protocol"].as_str().unwrap_or("TCP")
        }
    };
    let keep = wants_node_ports(&desired["spec"]);
    let dropping = !keep && wants_node_ports(&current["spec"]);
    for port in desired["spec"]["ports"].as_array_mut().into_iter().flatten() {
        let Some(old) = old_ports.iter().find(|old| same(old, port)) else { continue };
        let unset = port["nodePort"].as_i64().unwrap_or(0) == 0;
        if keep && unset && !old["nodePort"].is_null() {
            port["nodePort"] = old["nodePort"].clone();
        } else if dropping && port["nodePort"] == old["nodePort"] {
            if let Some(fields) = port.as_object_mut() {
                fields.remove("nodePort");
            }
        }
    }
    for field in ["ipFamilies", "ipFamilyPolicy"] {
        if desired["spec"][field].is_null() && !current["spec"][field].is_null() {
            desired["spec"][field] = current["spec"][field].clone();
        }
    }
}

/// A range key's value: the Service holding it.
fn owner_value(service: &Value) -> Vec<u8> {
    let metadata = &service["metadata"];
    let owner = json!({"namespace": metadata["namespace"], "name": metadata["name"],
        "uid": metadata["uid"]});
    serde_json::to_vec(&owner).expect("JSON")
}

fn owner_uid(kv: &StoredKv) -> Option<String> {
    let owner: Value = serde_json::from_slice(&kv.value).ok()?;
    owner["uid"].as_str().map(str::to_string)
}

fn service_key(service: &Value) -> String {
    let metadata = &service["metadata"];
    format!(
        "/registry/services/{}/{}",
        metadata["namespace"].as_str().unwrap_or(""),
        metadata["name"].as_str().unwrap_or("")
    )
}

fn name_of(service: &Value) -> &str {
    service["metadata"]["name"].as_str().unwrap_or("")
}

fn already_allocated(service: &Value, allocation: Allocation) -> ApiError {
    let cause = match allocation {
        Allocation::ClusterIp(ip) => {
            format!("spec.clusterIP: Invalid value: \"{ip}\": provided IP is already allocated")
        }
        Allocation::NodePort(port) => {
            let ports = service["spec"]["ports"].as_array().cloned().unwrap_or_default();
            let index = ports.iter().position(|p| p["nodePort"] == json!(port)).unwrap_or(0);
            format!(
                "spec.ports[{index}].nodePort: Invalid value: {port}: provided port is already \
                 allocated"
            )
        }
    };
    ApiError::invalid("Service", name_of(service), &[cause])
}

/// Every key under `prefix` (paged), at one revision.
async fn list_all(
    server: &ApiServer,
    prefix: &str,
    mut revision: i64,
) -> Result<(Vec<StoredKv>, i64), BackendError> {
    let end = crate::storage::backend::prefix_end(prefix.as_bytes());
    let mut start = prefix.as_bytes().to_vec();
    let mut all = Vec::new();
    loop {
        let page =
            server.backend.list(&start, &end, revision, crate::limits::STORE_PAGE_LEN).await?;
        revision = page.revision;
        let more = page.more;
        all.extend(page.kvs);
        match all.last() {
            Some(last) if more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => return Ok((all, revision)),
        }
    }
}

/// What the store says is taken, read only for the ranges `spec` needs a pick from.
async fn read_taken(
    server: &ApiServer,
    spec: &Value,
    ranges: &ServiceRanges,
) -> Result<Taken, ApiError> {
    let (needs_ip, needs_ports) = missing(spec);
    let mut taken = Taken::default();
    if needs_ip {
        for kv in list_all(server, CLUSTER_IP_PREFIX, 0).await?.0 {
            if let Some(Allocation::ClusterIp(ip)) = Allocation::from_key(&kv.key) {
                taken.cluster_ips.extend(ranges.cluster_ips.offset(ip));
            }
        }
    }
    if needs_ports > 0 {
        for kv in list_all(server, NODE_PORT_PREFIX, 0).await?.0 {
            if let Some(Allocation::NodePort(port)) = Allocation::from_key(&kv.key) {
                if ranges.node_ports.contains(i64::from(port)) {
                    taken.node_ports.insert(u64::from(port - ranges.node_ports.first));
                }
            }
        }
    }
    // The Service's own requests are taken for the picks too (two ports, one value).
    for allocation in held(&json!({"spec": spec}), ranges) {
        match allocation {
            Allocation::ClusterIp(ip) => taken.cluster_ips.extend(ranges.cluster_ips.offset(ip)),
            Allocation::NodePort(port) => {
                taken.node_ports.insert(u64::from(port - ranges.node_ports.first));
            }
        }
    }
    Ok(taken)
}

/// Checks a Service's requests (when `checked`), then picks what it lacks (nothing is
/// written).
async fn prepare(
    server: &ApiServer,
    service: &mut Value,
    checked: bool,
) -> Result<Vec<Allocation>, ApiError> {
    let ranges = server.service_ranges;
    let causes = if checked { check(&service["spec"], &ranges) } else { Vec::new() };
    if !causes.is_empty() {
        return Err(ApiError::invalid("Service", name_of(service), &causes));
    }
    let mut taken = read_taken(server, &service["spec"], &ranges).await?;
    let picked = assign(&mut service["spec"], &ranges, &mut taken, rand::random())?;
    let count = held(service, &ranges).len();
    if count > SERVICE_ALLOCATIONS_PER_SERVICE_MAX {
        let cause = format!(
            "spec.ports: Too many: {count}: must have at most \
             {SERVICE_ALLOCATIONS_PER_SERVICE_MAX} node ports"
        );
        return Err(ApiError::invalid("Service", name_of(service), &[cause]));
    }
    Ok(picked)
}

/// How a Service write with its range keys ended.
enum Written {
    Done(i64),
    /// The Service key is not at the expected revision (its current state).
    ServiceChanged(Option<StoredKv>),
    /// A value the Service would newly hold is someone else's.
    Taken(Allocation),
    /// A released key changed under us; read again.
    Raced,
}

/// Writes `desired` (or deletes the Service when `None`) where the Service key is at
/// `expected` (0: absent), creating the range keys it newly holds and deleting the ones it
/// releases that are still its own, in one txn.
async fn write(
    server: &ApiServer,
    expected: i64,
    current: Option<&Value>,
    desired: Option<&Value>,
) -> Result<Written, ApiError> {
    let ranges = server.service_ranges;
    let before = current.map(|c| held(c, &ranges)).unwrap_or_default();
    let after = desired.map(|d| held(d, &ranges)).unwrap_or_default();
    let service = desired.or(current).expect("a Service to write");
    let key = service_key(service).into_bytes();
    let mut expect = vec![(key.clone(), expected)];
    let mut puts = Vec::new();
    let mut deletes = Vec::new();
    let added: Vec<Allocation> = after.difference(&before).copied().collect();
    for allocation in &added {
        expect.push((allocation.key().into_bytes(), 0));
        puts.push((allocation.key().into_bytes(), owner_value(service)));
    }
    // Released keys are deleted only while they still name this Service.
    let uid = service["metadata"]["uid"].as_str().unwrap_or("").to_string();
    for allocation in before.difference(&after) {
        let (kv, _) = server.backend.get(allocation.key().as_bytes()).await?;
        if let Some(kv) = kv.filter(|kv| owner_uid(kv).as_deref() == Some(uid.as_str())) {
            expect.push((kv.key.clone(), kv.mod_revision));
            deletes.push(kv.key);
        }
    }
    match desired {
        Some(desired) => puts.insert(0, (key, serde_json::to_vec(desired).expect("JSON"))),
        None => deletes.insert(0, key),
    }
    match server.backend.write_all(&expect, puts, deletes).await? {
        MultiSwap::Done { revision } => Ok(Written::Done(revision)),
        MultiSwap::Refused { current } => {
            let service_now = current.first().cloned().flatten();
            if service_now.as_ref().map_or(0, |kv| kv.mod_revision) != expected {
                return Ok(Written::ServiceChanged(service_now));
            }
            let taken = added.iter().zip(&current[1..]).find(|(_, kv)| kv.is_some());
            Ok(match taken {
                Some((allocation, _)) => Written::Taken(*allocation),
                None => Written::Raced,
            })
        }
    }
}

/// Creates a Service (already defaulted and validated otherwise) with its ClusterIP and
/// NodePorts; a dynamically picked value taken meanwhile by another API server is picked
/// again. Returns the stored object with its resourceVersion.
pub async fn create(server: &ApiServer, service: Value, dry_run: bool) -> Result<Value, ApiError> {
    let name = name_of(&service).to_string();
    for _ in 0..SERVICE_ALLOCATION_ATTEMPTS_MAX {
        let mut attempt = service.clone();
        let picked = prepare(server, &mut attempt, true).await?;
        if dry_run {
            return Ok(attempt);
        }
        match write(server, 0, None, Some(&attempt)).await? {
            Written::Done(revision) => {
                return Ok(crate::storage::cache::with_resource_version(&attempt, revision))
            }
            Written::ServiceChanged(_) => return Err(ApiError::already_exists("services", &name)),
            Written::Taken(allocation) if !picked.contains(&allocation) => {
                return Err(already_allocated(&attempt, allocation))
            }
            Written::Taken(_) | Written::Raced => {}
        }
    }
    Err(ApiError::conflict_message(
        "services",
        &name,
        "the service ranges kept changing while allocating; try again",
    ))
}

/// An update's side: checks the requests and picks what the new spec lacks (a type change
/// to NodePort, new ports), before the update's own checks and dry run. Returns the picks.
pub async fn prepare_update(
    server: &ApiServer,
    current: &Value,
    desired: &mut Value,
) -> Result<Vec<Allocation>, ApiError> {
    // Values the Service already holds are not checked against the ranges again (the flags
    // may have changed since they were allocated).
    let mut unchanged = desired.clone();
    if requested_cluster_ip(&unchanged["spec"]) == requested_cluster_ip(&current["spec"]) {
        let fields = unchanged["spec"].as_object_mut();
        fields.into_iter().for_each(|f| {
            f.remove("clusterIP");
            f.remove("clusterIPs");
        });
    }
    let old_ports: Vec<Value> = current["spec"]["ports"].as_array().cloned().unwrap_or_default();
    for port in unchanged["spec"]["ports"].as_array_mut().into_iter().flatten() {
        let node_port = &port["nodePort"];
        if !node_port.is_null() && old_ports.iter().any(|old| &old["nodePort"] == node_port) {
            port.as_object_mut().into_iter().for_each(|p| {
                p.remove("nodePort");
            });
        }
    }
    let causes = check(&unchanged["spec"], &server.service_ranges);
    if !causes.is_empty() {
        return Err(ApiError::invalid("Service", name_of(desired), &causes));
    }
    prepare(server, desired, false).await
}

/// Writes an update (`desired`) or a delete (`None`) of a Service at `expected` with its
/// range keys. A `picked` value taken meanwhile, or a released key that changed, comes back
/// as a refusal with the Service's current state, so the caller reads again and retries; a
/// requested value someone else holds is refused as Kubernetes refuses it.
pub async fn update(
    server: &ApiServer,
    expected: i64,
    current: &Value,
    desired: Option<&Value>,
    picked: &[Allocation],
) -> Result<Swap, ApiError> {
    match write(server, expected, Some(current), desired).await? {
        Written::Done(revision) => Ok(Swap::Done { revision, previous: None }),
        Written::ServiceChanged(now) => Ok(Swap::Refused { current: now }),
        Written::Taken(allocation) if !picked.contains(&allocation) => {
            Err(already_allocated(desired.unwrap_or(current), allocation))
        }
        Written::Taken(_) | Written::Raced => {
            let (now, _) = server.backend.get(service_key(current).as_bytes()).await?;
            Ok(Swap::Refused { current: now })
        }
    }
}

/// Frees range keys no Service holds (leaks: a namespace's contents deleted in the store,
/// a Service deleted by hand) and records values Services hold without a key, every
/// `SERVICE_RANGE_REPAIR_INTERVAL_MS`, until the server stops. Every master runs it; all its
/// writes are conditional, so they do not race each other or the allocating writes.
pub async fn repair_loop(server: Arc<ApiServer>) {
    let interval = Duration::from_millis(SERVICE_RANGE_REPAIR_INTERVAL_MS);
    loop {
        match repair(&server).await {
            Ok((0, 0)) => {}
            Ok((freed, recorded)) => tracing::info!(freed, recorded, "service ranges repaired"),
            Err(error) => tracing::warn!(%error, "service range repair failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = super::server::until_stopped(server.stopping.clone()) => return,
        }
    }
}

/// One repair pass over a consistent snapshot; returns (keys freed, keys recorded).
pub async fn repair(server: &ApiServer) -> Result<(usize, usize), BackendError> {
    let ranges = server.service_ranges;
    let (services, revision) = list_all(server, "/registry/services/", 0).await?;
    let (ips, _) = list_all(server, CLUSTER_IP_PREFIX, revision).await?;
    let (ports, _) = list_all(server, NODE_PORT_PREFIX, revision).await?;
    // Who holds what, by uid.
    let mut holders: BTreeMap<Allocation, String> = BTreeMap::new();
    let mut parsed = Vec::new();
    for kv in &services {
        let Ok(service) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        let uid = service["metadata"]["uid"].as_str().unwrap_or("").to_string();
        for allocation in held(&service, &ranges) {
            holders.entry(allocation).or_insert_with(|| uid.clone());
        }
        parsed.push((kv, service));
    }
    let mut freed = 0;
    let mut recorded_keys = BTreeSet::new();
    for kv in ips.iter().chain(&ports) {
        let Some(allocation) = Allocation::from_key(&kv.key) else { continue };
        recorded_keys.insert(allocation);
        if holders.get(&allocation).is_some_and(|uid| owner_uid(kv).as_deref() == Some(uid)) {
            continue;
        }
        let expect = [(kv.key.clone(), kv.mod_revision)];
        if let MultiSwap::Done { .. } =
            server.backend.write_all(&expect, Vec::new(), vec![kv.key.clone()]).await?
        {
            freed += 1;
        }
    }
    let mut recorded = 0;
    for (kv, service) in &parsed {
        for allocation in held(service, &ranges) {
            let holder = holders.get(&allocation).map(String::as_str);
            if recorded_keys.contains(&allocation) || holder != service["metadata"]["uid"].as_str()
            {
                continue;
            }
            let key = allocation.key().into_bytes();
            let expect = [(key.clone(), 0), (kv.key.clone(), kv.mod_revision)];
            let put = vec![(key, owner_value(service))];
            if let MultiSwap::Done { .. } =
                server.backend.write_all(&expect, put, Vec::new()).await?
            {
                recorded += 1;
            }
        }
    }
    Ok((freed, recorded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(cidr: &str) -> ServiceRanges {
        ServiceRanges {
            cluster_ips: ServiceIpRange::parse(cidr).unwrap(),
            node_ports: NodePortRange::default(),
        }
    }

    #[test]
    fn ranges_parse_as_kube_apiserver_flags() {
        let range = ServiceIpRange::parse("10.96.0.0/12").unwrap();
        assert_eq!(range, ServiceIpRange::default());
        assert_eq!(range.size(), (1 << 20) - 2);
        assert_eq!(range.address(0), "10.96.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(range.offset("10.111.255.254".parse().unwrap()), Some(range.size() - 1));
        assert_eq!(range.offset("10.111.255.255".parse().unwrap()), None, "broadcast");
        assert_eq!(range.offset("10.96.0.0".parse().unwrap()), None, "network");
        let odd = ServiceIpRange::parse("127.95.0.77/24").unwrap();
        assert_eq!(odd.to_string(), "127.95.0.0/24");
        assert!(ServiceIpRange::parse("10.0.0.0/8").is_err());
        assert!(ServiceIpRange::parse("fd00::/108").is_err());
        assert!(ServiceIpRange::parse("10.0.0.0").is_err());
        assert_eq!(NodePortRange::parse("30000-32767").unwrap(), NodePortRange::default());
        assert_eq!(NodePortRange::parse("30000+10").unwrap().size(), 11);
        assert!(NodePortRange::parse("32767-30000").is_err());
        assert!(NodePortRange::parse("0-10").is_err());
    }

    #[test]
    fn static_bands_follow_kubernetes() {
        assert_eq!(static_band(254, 16, 256), 16);
        assert_eq!(static_band(8, 16, 256), 0);
        assert_eq!(static_band((1 << 20) - 2, 16, 256), 256);
        assert_eq!(static_band(2768, 32, 128), 86);
    }

    #[test]
    fn picks_prefer_the_upper_band_and_wrap_around() {
        let none = BTreeSet::new();
        assert_eq!(pick_free(100, 16, &none, 0), Some(16));
        assert_eq!(pick_free(100, 16, &none, 83), Some(99));
        assert_eq!(pick_free(100, 16, &none, 84), Some(16));
        let taken: BTreeSet<u64> = (16..100).collect();
        assert_eq!(pick_free(100, 16, &taken, 7), Some(7), "the static band, once full above");
        let taken: BTreeSet<u64> = (0..100).filter(|o| *o != 40).collect();
        for start in 0..200 {
            assert_eq!(pick_free(100, 16, &taken, start), Some(40));
        }
        let full: BTreeSet<u64> = (0..100).collect();
        assert_eq!(pick_free(100, 16, &full, 5), None);
        assert_eq!(pick_free(3, 0, &BTreeSet::from([1]), 1), Some(2));
    }

    #[test]
    fn assign_fills_cluster_ip_node_ports_and_families() {
        let ranges = ranges("127.95.0.0/24");
        let mut spec = json!({"type": "NodePort", "ports": [
            {"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP", "nodePort": 30100}]});
        let mut taken = Taken::default();
        taken.node_ports.insert(100);
        let picked = assign(&mut spec, &ranges, &mut taken, 0).unwrap();
        assert_eq!(spec["clusterIP"], "127.95.0.17");
        assert_eq!(spec["clusterIPs"], json!(["127.95.0.17"]));
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        let first_port = spec["ports"][0]["nodePort"].as_u64().unwrap();
        assert!(first_port >= 30086 && first_port != 30100, "{first_port}");
        assert_eq!(picked.len(), 2);
        let service = json!({"spec": spec});
        assert_eq!(held(&service, &ranges).len(), 3);

        let mut headless = json!({"clusterIP": "None", "ports": [{"port": 80}]});
        assert!(assign(&mut headless, &ranges, &mut taken, 0).unwrap().is_empty());
        assert_eq!(headless["clusterIPs"], json!(["None"]));
        let mut external = json!({"type": "ExternalName", "externalName": "example.com"});
        assert!(assign(&mut external, &ranges, &mut taken, 0).unwrap().is_empty());
        assert!(external["clusterIP"].is_null() && external["ipFamilies"].is_null());

        let tiny = self::ranges("10.0.0.0/30");
        let mut full = Taken::default();
        full.cluster_ips.extend([0, 1]);
        let error = assign(&mut json!({}), &tiny, &mut full, 0).unwrap_err();
        assert_eq!(error.code, 500);
        assert!(error.message.contains("range is full"), "{}", error.message);
    }

    #[test]
    fn requests_are_checked_with_kubernetes_wording() {
        let ranges = ranges("10.96.0.0/12");
        let check = |spec: Value| check(&spec, &ranges);
        assert!(check(json!({"clusterIP": "10.96.0.5"})).is_empty());
        assert!(check(json!({"clusterIP": "None"})).is_empty());
        assert_eq!(
            check(json!({"clusterIP": "10.0.0.5"})),
            vec![
                "spec.clusterIP: Invalid value: \"10.0.0.5\": provided IP is not in the valid \
                  range. The range of valid IPs is 10.96.0.0/12"
            ]
        );
        assert!(check(json!({"clusterIP": "banana"}))[0].contains("must be a valid IP address"));
        assert!(check(json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]}))[0]
            .contains("clusterIPs[0]"));
        assert_eq!(
            check(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]})),
            vec![
                "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid \
                  range. The range of valid ports is 30000-32767"
            ]
        );
        assert!(check(json!({"ports": [{"port": 80, "nodePort": 30000}]}))[0]
            .contains("may not be used when `type` is 'ClusterIP'"));
        let twice = json!({"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30000}, {"port": 81, "nodePort": 30000}]});
        assert_eq!(check(twice), vec!["spec.ports[1].nodePort: Duplicate value: \"30000\""]);
    }

    #[test]
    fn updates_keep_node_ports_and_drop_them_on_a_type_change() {
        let current = json!({"spec": {"type": "NodePort", "ipFamilies": ["IPv4"], "ports": [
            {"name": "http", "port": 80, "nodePort": 30080},
            {"port": 90, "protocol": "TCP", "nodePort": 30090}]}});
        let mut desired = json!({"spec": {"type": "NodePort", "ports": [
            {"name": "http", "port": 8080}, {"port": 90}, {"port": 91}]}});
        carry_over(&current, &mut desired);
        assert_eq!(desired["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(desired["spec"]["ports"][1]["nodePort"], 30090);
        assert!(desired["spec"]["ports"][2]["nodePort"].is_null());
        assert_eq!(desired["spec"]["ipFamilies"], json!(["IPv4"]));
        let mut cluster_ip = json!({"spec": {"type": "ClusterIP", "ports": [
            {"name": "http", "port": 80, "nodePort": 30080}]}});
        carry_over(&current, &mut cluster_ip);
        assert!(cluster_ip["spec"]["ports"][0]["nodePort"].is_null());
    }

    #[test]
    fn keys_name_their_values() {
        let ip = Allocation::ClusterIp("10.96.0.1".parse().unwrap());
        assert_eq!(ip.key(), "/registry/ranges/serviceips/10.96.0.1");
        assert_eq!(Allocation::from_key(ip.key().as_bytes()), Some(ip));
        let port = Allocation::NodePort(30080);
        assert_eq!(Allocation::from_key(port.key().as_bytes()), Some(port));
        assert_eq!(Allocation::from_key(b"/registry/ranges/serviceips/x"), None);
    }
}
