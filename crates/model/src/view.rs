//! The cluster as seen by the proxy ([`ClusterView`]) and what this node does with it
//! ([`node_view`] → [`NodeServices`]).

use crate::config::{NodeConfig, NodePortAddresses};
use crate::endpoints::{
    collect_endpoints, slice_is_ignored, slice_ref, Endpoint, NodeNames, StoredSlice,
    SERVICE_NAME_LABEL,
};
use crate::error::{ModelError, Problem};
use crate::ip::parse_ip_sloppy;
use crate::objects::{IpFamily, ObjectKind, ObjectRef, ServicePortName, ServiceRef};
use crate::policy::TrafficPolicy;
use crate::select::select_endpoints;
use crate::service::{namespace_of, parse_service, ServiceInfo};
use crate::stored_service::StoredService;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

mod incremental;
pub use incremental::{update_node_view, NeedsFull};

/// The zone label of Nodes.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The objects the proxy reads, indexed for per-Service work. Fed by the reflectors (or a
/// manifest directory); cheap to update one object at a time.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// What the model reads of each Service ([`StoredService`]), boxed, so that a B-tree
    /// node's empty slots cost a pointer each.
    services: BTreeMap<ServiceRef, Box<StoredService>>,
    /// What the model reads of the slices, by owning Service, then by slice name.
    slices: BTreeMap<ServiceRef, ServiceSlices>,
    /// Which Service each slice (namespace, name) is filed under.
    slice_owner: BTreeMap<(String, String), ServiceRef>,
    /// Slices that cannot be joined to a Service, with the reason.
    unjoinable: BTreeMap<(String, String), ModelError>,
    node: Option<Node>,
    /// The node names of the slices' endpoints, each held once.
    node_names: NodeNames,
}

impl ClusterView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// A view of these objects; `node_name` picks this node's Node among `nodes`.
    pub fn from_objects(
        services: impl IntoIterator<Item = Service>,
        slices: impl IntoIterator<Item = EndpointSlice>,
        nodes: impl IntoIterator<Item = Node>,
        node_name: &str,
    ) -> Self {
        let mut view = ClusterView::new();
        for svc in services {
            view.upsert_service(svc);
        }
        for slice in slices {
            view.upsert_slice(slice);
        }
        view.node = nodes
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name));
        view
    }

    /// Adds or replaces a Service; returns which Service it is.
    pub fn upsert_service(&mut self, svc: Service) -> ServiceRef {
        let key = ServiceRef::new(
            namespace_of(&svc.metadata.namespace),
            svc.metadata.name.as_deref().unwrap_or(""),
        );
        self.services
            .insert(key.clone(), Box::new(StoredService::new(svc)));
        key
    }

    /// Removes a Service (its slices stay until they are deleted themselves).
    pub fn remove_service(&mut self, key: &ServiceRef) {
        self.services.remove(key);
    }

    /// Adds or replaces an EndpointSlice; returns the Services whose endpoints changed
    /// (the old owner too, when the slice moved).
    pub fn upsert_slice(&mut self, slice: EndpointSlice) -> Vec<ServiceRef> {
        let namespace = namespace_of(&slice.metadata.namespace).to_owned();
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut touched = self.remove_slice(&namespace, &name);
        if slice_is_ignored(&slice) {
            return touched;
        }
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty());
        let Some(owner) = owner else {
            let error = ModelError {
                object: slice_ref(&slice),
                problem: Problem::MissingServiceName,
            };
            self.unjoinable.insert((namespace, name), error);
            return touched;
        };
        let owner = ServiceRef::new(&namespace, owner);
        self.slice_owner
            .insert((namespace, name.clone()), owner.clone());
        self.slices.entry(owner.clone()).or_default().insert(
            name,
            Box::new(StoredSlice::new(slice, &mut self.node_names)),
        );
        touched.push(owner);
        touched
    }

    /// Removes an EndpointSlice; returns the Service it belonged to, if any.
    pub fn remove_slice(&mut self, namespace: &str, name: &str) -> Vec<ServiceRef> {
        let key = (namespace.to_owned(), name.to_owned());
        self.unjoinable.remove(&key);
        let Some(owner) = self.slice_owner.remove(&key) else {
            return Vec::new();
        };
        if let Some(slices) = self.slices.get_mut(&owner) {
            slices.remove(name);
            if slices.is_empty() {
                self.slices.remove(&owner);
            }
        }
        vec![owner]
    }

    /// Sets (or clears) this node's Node object.
    pub fn set_node(&mut self, node: Option<Node>) {
        self.node = node;
    }

    /// This node's Node object, when known.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Every Service's `namespace/name`.
    pub fn service_keys(&self) -> Vec<ServiceRef> {
        self.services.keys().cloned().collect()
    }

    /// Every EndpointSlice's (namespace, name), joined to a Service or not.
    pub fn slice_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self
            .slice_owner
            .keys()
            .chain(self.unjoinable.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The number of Services in the view.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The number of EndpointSlices in the view, joined to a Service or not (ignored ones, such
    /// as those of headless Services, are not kept and not counted).
    pub fn slice_count(&self) -> usize {
        self.slice_owner.len() + self.unjoinable.len()
    }

    /// How `new` differs from this view, as the proxy sees it: the Services whose stored
    /// Service object or stored EndpointSlices differ (added, removed or changed; both owners
    /// of a slice that moved), whether this node's Node differs, and whether the slices that
    /// join no Service differ.
    ///
    /// One ordered walk over both views (linear in their sizes), comparing the stored objects
    /// in place: nothing is copied but the keys of what differs.
    pub fn diff(&self, new: &ClusterView) -> ViewDiff {
        let mut services = BTreeSet::new();
        differing_keys(&self.services, &new.services, &mut services);
        differing_keys(&self.slices, &new.slices, &mut services);
        ViewDiff {
            services,
            node: self.node != new.node,
            unjoinable: self.unjoinable != new.unjoinable,
        }
    }
}

/// The slices of one Service, sorted by name. Most Services have one or two: a sorted vector
/// costs a few dozen bytes where a B-tree's first leaf costs about 400, for 10 000s of
/// Services. Boxed, so that a vector's slot is a pointer.
#[derive(Debug, Clone, Default, PartialEq)]
struct ServiceSlices(Vec<(String, Box<StoredSlice>)>);

impl ServiceSlices {
    /// Adds or replaces the slice `name`.
    fn insert(&mut self, name: String, slice: Box<StoredSlice>) {
        match self.0.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(at) => self.0[at].1 = slice,
            Err(at) => {
                // One slot more, not double: a vector grown by a push has room for four.
                self.0.reserve_exact(1);
                self.0.insert(at, (name, slice));
            }
        }
    }

    /// Removes the slice `name`, if it is there.
    fn remove(&mut self, name: &str) {
        if let Ok(at) = self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            self.0.remove(at);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The slices with their names, by name.
    fn named(&self) -> impl Iterator<Item = (&str, &StoredSlice)> {
        self.0.iter().map(|(n, s)| (n.as_str(), &**s))
    }
}

/// How one [`ClusterView`] differs from another ([`ClusterView::diff`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewDiff {
    /// The Services whose Service object or EndpointSlices differ: everything a partial
    /// update ([`update_node_view`]) has to recompute, nothing more.
    pub services: BTreeSet<ServiceRef>,
    /// This node's Node object differs (it concerns every Service).
    pub node: bool,
    /// The slices that cannot be joined to a Service differ: no Service changes, but the
    /// problems to report do.
    pub unjoinable: bool,
}

impl ViewDiff {
    /// The views hold the same objects.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && !self.node && !self.unjoinable
    }
}

/// Adds to `out` every key whose value differs between `old` and `new`, or that only one of
/// them has: a merge of the two ordered maps.
fn differing_keys<K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    out: &mut BTreeSet<K>,
) {
    use std::cmp::Ordering;
    let mut old = old.iter().peekable();
    let mut new = new.iter().peekable();
    loop {
        match (old.peek().copied(), new.peek().copied()) {
            (None, None) => return,
            (Some((key, _)), None) => {
                out.insert(key.clone());
                old.next();
            }
            (None, Some((key, _))) => {
                out.insert(key.clone());
                new.next();
            }
            (Some((old_key, old_value)), Some((new_key, new_value))) => {
                match old_key.cmp(new_key) {
                    Ordering::Less => {
                        out.insert(old_key.clone());
                        old.next();
                    }
                    Ordering::Greater => {
                        out.insert(new_key.clone());
                        new.next();
                    }
                    Ordering::Equal => {
                        if old_value != new_value {
                            out.insert(old_key.clone());
                        }
                        old.next();
                        new.next();
                    }
                }
            }
        }
    }
}

/// What this node does for one service-port in one family.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServicePortView {
    /// Which service-port.
    pub name: ServicePortName,
    /// The family this view is for.
    pub family: IpFamily,
    /// The Service's cluster IP of this family.
    pub cluster_ip: IpAddr,
    /// The service port number.
    pub port: u16,
    /// The NodePort, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` of this family.
    pub external_ips: Vec<IpAddr>,
    /// LoadBalancer ingress IPs of this family (`ipMode: Proxy` ones left out).
    pub load_balancer_ips: Vec<IpAddr>,
    /// Allowed sources for traffic to the LoadBalancer IPs, when `loadBalancerSourceRanges`
    /// restrict it (`None`: no restriction). Holds the ranges of this family, plus the LB IPs
    /// themselves when a range contains the node's primary address (traffic from the node to its VIP).
    /// Ranges given only for the other family leave this empty: every source is refused.
    pub firewall: Option<Vec<IpNet>>,
    /// `spec.internalTrafficPolicy`.
    pub internal_policy: TrafficPolicy,
    /// `spec.externalTrafficPolicy` (always Cluster when not externally reachable).
    pub external_policy: TrafficPolicy,
    /// ClientIP session affinity timeout in seconds, when enabled.
    pub affinity_timeout: Option<u32>,
    /// The cluster endpoint set (DESIGN.md §2.2).
    pub cluster_endpoints: Vec<Endpoint>,
    /// The local endpoint set (DESIGN.md §2.2).
    pub local_endpoints: Vec<Endpoint>,
    /// True when topology hints narrowed the cluster set.
    pub topology_filtered: bool,
    /// True when cluster CIDRs are configured, so pod sources can be recognised.
    pub pod_sources_known: bool,
    /// `masquerade_all` from the node configuration.
    pub masquerade_all: bool,
}

impl ServicePortView {
    /// A short owner label for rules and map elements: `namespace/name:port`, where port is the
    /// port's name, or its number when unnamed.
    pub fn label(&self) -> String {
        format!("{}:{}", self.name.service, self.port_label())
    }

    /// The port's name, or its number when unnamed.
    pub fn port_label(&self) -> String {
        if self.name.port_name.is_empty() {
            self.port.to_string()
        } else {
            self.name.port_name.clone()
        }
    }

    /// Every endpoint some traffic of this service-port may reach (cluster ∪ local), sorted.
    pub fn reachable_endpoints(&self) -> Vec<&Endpoint> {
        let mut all: Vec<&Endpoint> = self
            .cluster_endpoints
            .iter()
            .chain(&self.local_endpoints)
            .collect();
        all.sort_by_key(|e| (e.ip, e.port));
        all.dedup_by_key(|e| (e.ip, e.port));
        all
    }
}

/// A per-Service health check node port and what it answers (DESIGN.md §2.5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort`.
    pub node_port: u16,
    /// Distinct ready endpoint IPs on this node (terminating ones do not count). The check
    /// answers 200 only when this is at least 1.
    pub local_endpoints: usize,
}

/// Everything this node does in one IP family.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FamilyServices {
    /// The family.
    pub family: IpFamily,
    /// This node's addresses of the family, primary first.
    pub node_ips: Vec<IpAddr>,
    /// The node addresses that take NodePort traffic and serve health checks.
    pub node_port_ips: Vec<IpAddr>,
    /// The cluster (pod) CIDRs of the family.
    pub cluster_cidrs: Vec<IpNet>,
    /// Masquerade all ClusterIP traffic.
    pub masquerade_all: bool,
    /// Every programmed service-port. Each view is boxed: the map's tree is built in one go
    /// from its entries (full nodes), and with 30-byte-ish slots, not 300, building it beside
    /// the list of its entries costs little.
    #[serde(serialize_with = "serialize_values")]
    pub ports: BTreeMap<ServicePortName, Box<ServicePortView>>,
    /// Health check node ports by Service.
    #[serde(serialize_with = "serialize_display_keys")]
    pub health_checks: BTreeMap<ServiceRef, HealthCheck>,
}

/// Serialises a map as the list of its values (JSON keys must be strings).
fn serialize_values<K, V: serde::Serialize, S: serde::Serializer>(
    map: &BTreeMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(map.values())
}

/// Serialises a map with its keys written out as text.
fn serialize_display_keys<K: std::fmt::Display, V: serde::Serialize, S: serde::Serializer>(
    map: &BTreeMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
}

impl FamilyServices {
    /// The service-ports of one Service (a range of the ordered map: logarithmic, not a scan).
    pub fn service_ports<'a>(
        &'a self,
        service: &'a ServiceRef,
    ) -> impl Iterator<Item = &'a ServicePortView> + 'a {
        let from = ServicePortName {
            service: service.clone(),
            port_name: String::new(),
            protocol: crate::Protocol::Tcp,
        };
        self.ports
            .range(from..)
            .take_while(move |(name, _)| &name.service == service)
            .map(|(_, view)| &**view)
    }

    fn new(family: IpFamily) -> Self {
        FamilyServices {
            family,
            node_ips: Vec::new(),
            node_port_ips: Vec::new(),
            cluster_cidrs: Vec::new(),
            masquerade_all: false,
            ports: BTreeMap::new(),
            health_checks: BTreeMap::new(),
        }
    }
}

/// What this node does, per family, plus the problems found in the input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeServices {
    /// IPv4.
    pub ipv4: FamilyServices,
    /// IPv6.
    pub ipv6: FamilyServices,
    /// Bad objects (or parts of objects) that were skipped.
    #[serde(skip)]
    pub errors: Vec<ModelError>,
}

impl NodeServices {
    /// The services of one family.
    pub fn family(&self, family: IpFamily) -> &FamilyServices {
        match family {
            IpFamily::V4 => &self.ipv4,
            IpFamily::V6 => &self.ipv6,
        }
    }

    fn family_mut(&mut self, family: IpFamily) -> &mut FamilyServices {
        match family {
            IpFamily::V4 => &mut self.ipv4,
            IpFamily::V6 => &mut self.ipv6,
        }
    }
}

/// Computes what this node does for every service-port of the view.
pub fn node_view(view: &ClusterView, config: &NodeConfig) -> NodeServices {
    let mut out = NodeServices {
        ipv4: FamilyServices::new(IpFamily::V4),
        ipv6: FamilyServices::new(IpFamily::V6),
        errors: view.unjoinable.values().cloned().collect(),
    };
    let node_ips = node_addresses(view.node.as_ref(), config, &mut out.errors);
    let pod_cidrs = config.pod_cidrs(view.node.as_ref(), &mut out.errors);
    let zone = view
        .node
        .as_ref()
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(ZONE_LABEL))
        .map(String::as_str);
    for family in IpFamily::ALL {
        let fam = out.family_mut(family);
        fam.node_ips = node_ips
            .iter()
            .filter(|ip| IpFamily::of(ip) == family)
            .copied()
            .collect();
        fam.node_port_ips = node_port_ips(&fam.node_ips, &config.node_port_addresses);
        fam.cluster_cidrs = pod_cidrs
            .iter()
            .filter(|c| {
                matches!(
                    (c, family),
                    (IpNet::V4(_), IpFamily::V4) | (IpNet::V6(_), IpFamily::V6)
                )
            })
            .map(IpNet::trunc)
            .collect();
        fam.masquerade_all = config.masquerade_all;
    }

    // Each Service is read and dropped in turn, its service-ports gathered per family in a
    // vector: a B-tree filled one insert at a time is left half empty, one built in one go
    // from its entries is full (about 3 MB less at 10 000 Services, and no copy of the
    // half-empty one while the full one is built).
    let mut gathered: [Vec<(ServicePortName, Box<ServicePortView>)>; 2] = Default::default();
    let no_slices = ServiceSlices::default();
    for (key, svc) in &view.services {
        let Some(info) = parse_service(key, svc, &mut out.errors) else {
            continue;
        };
        let slices = view.slices.get(&info.service).unwrap_or(&no_slices);
        let endpoints = collect_endpoints(
            &info.service.namespace,
            slices.named(),
            &config.node_name,
            &mut out.errors,
        );
        for (&family, &cluster_ip) in &info.cluster_ips {
            let fam = out.family_mut(family);
            let ports = &mut gathered[family_index(family)];
            let health = service_port_views(
                fam,
                &info,
                cluster_ip,
                &endpoints,
                &config.node_name,
                zone,
                ports,
            );
            if let Some(check) = health {
                fam.health_checks.insert(info.service.clone(), check);
            }
        }
    }
    for (family, mut ports) in IpFamily::ALL.into_iter().zip(gathered) {
        let fam = out.family_mut(family);
        // Grown by doubling: up to half of it is room the tree built from it does not need.
        ports.shrink_to_fit();
        fam.ports = ports.into_iter().collect();
        let mut errors = Vec::new();
        resolve_conflicts(out.family_mut(family), &mut errors);
        for e in errors {
            if !out.errors.contains(&e) {
                out.errors.push(e);
            }
        }
    }
    out
}

/// The index of a family in per-family arrays.
fn family_index(family: IpFamily) -> usize {
    match family {
        IpFamily::V4 => 0,
        IpFamily::V6 => 1,
    }
}

/// Adds the views of every port of one Service in one family, and its health check.
fn add_service_ports(
    fam: &mut FamilyServices,
    info: &ServiceInfo,
    cluster_ip: IpAddr,
    endpoints: &BTreeMap<crate::endpoints::PortKey, Vec<Endpoint>>,
    node_name: &str,
    zone: Option<&str>,
) {
    let mut ports = Vec::new();
    let health = service_port_views(
        fam, info, cluster_ip, endpoints, node_name, zone, &mut ports,
    );
    fam.ports.extend(ports);
    if let Some(check) = health {
        fam.health_checks.insert(info.service.clone(), check);
    }
}

/// The views of every port of one Service in one family (added to `out`), and its health
/// check. `fam` gives the node-level facts of the family.
fn service_port_views(
    fam: &FamilyServices,
    info: &ServiceInfo,
    cluster_ip: IpAddr,
    endpoints: &BTreeMap<crate::endpoints::PortKey, Vec<Endpoint>>,
    node_name: &str,
    zone: Option<&str>,
    out: &mut Vec<(ServicePortName, Box<ServicePortView>)>,
) -> Option<HealthCheck> {
    let family = fam.family;
    let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter()
            .filter(|ip| IpFamily::of(ip) == family)
            .copied()
            .collect()
    };
    let external_ips = of_family(&info.external_ips);
    let load_balancer_ips = of_family(&info.load_balancer_ips);
    let firewall = firewall_sources(info, family, &load_balancer_ips, &fam.node_ips);
    let mut local_ready_ips = BTreeSet::new();
    let none = Vec::new();
    for port in &info.ports {
        let name = ServicePortName {
            service: info.service.clone(),
            port_name: port.name.clone(),
            protocol: port.protocol,
        };
        let all = endpoints
            .get(&(family, port.name.clone(), port.protocol))
            .unwrap_or(&none);
        local_ready_ips.extend(all.iter().filter(|e| e.is_local && e.ready).map(|e| e.ip));
        let selection = select_endpoints(all, node_name, zone);
        let view = ServicePortView {
            name: name.clone(),
            family,
            cluster_ip,
            port: port.port,
            node_port: port.node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            firewall: firewall.clone(),
            internal_policy: info.internal_policy,
            external_policy: info.external_policy,
            affinity_timeout: info.affinity_timeout,
            cluster_endpoints: selection.cluster,
            local_endpoints: selection.local,
            topology_filtered: selection.topology_filtered,
            pod_sources_known: !fam.cluster_cidrs.is_empty(),
            masquerade_all: fam.masquerade_all,
        };
        out.push((name, Box::new(view)));
    }
    info.health_check_node_port.map(|node_port| HealthCheck {
        node_port,
        local_endpoints: local_ready_ips.len(),
    })
}

/// The allowed sources of LoadBalancer traffic for one family (see
/// [`ServicePortView::firewall`]).
fn firewall_sources(
    info: &ServiceInfo,
    family: IpFamily,
    load_balancer_ips: &[IpAddr],
    node_ips: &[IpAddr],
) -> Option<Vec<IpNet>> {
    if info.source_ranges.is_empty() || load_balancer_ips.is_empty() {
        return None;
    }
    let mut allowed: Vec<IpNet> = info
        .source_ranges
        .iter()
        .filter(|net| IpFamily::of(&net.addr()) == family)
        .copied()
        .collect();
    // Traffic from the node to its own VIP may come from the VIP: allow it when the ranges
    // already allow the node's primary address (as upstream does).
    let primary_allowed = node_ips
        .first()
        .is_some_and(|primary| allowed.iter().any(|net| net.contains(primary)));
    if primary_allowed {
        allowed.extend(load_balancer_ips.iter().map(|ip| IpNet::from(*ip)));
    }
    Some(allowed)
}

/// This node's addresses: from the configuration, else from the Node's `status.addresses`.
fn node_addresses(
    node: Option<&Node>,
    config: &NodeConfig,
    errors: &mut Vec<ModelError>,
) -> Vec<IpAddr> {
    if !config.node_ips.is_empty() {
        return config.node_ips.clone();
    }
    let Some(node) = node else {
        return Vec::new();
    };
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    let mut ips = Vec::new();
    for kind in ["InternalIP", "ExternalIP"] {
        for (i, a) in addresses
            .iter()
            .enumerate()
            .filter(|(_, a)| a.type_ == kind)
        {
            match parse_ip_sloppy(&a.address) {
                Some(ip) if !ips.contains(&ip) => ips.push(ip),
                Some(_) => {}
                None => errors.push(ModelError {
                    object: ObjectRef::new(
                        ObjectKind::Node,
                        "",
                        node.metadata.name.as_deref().unwrap_or(""),
                    ),
                    problem: Problem::InvalidIp {
                        field: format!("status.addresses[{i}].address"),
                        value: a.address.clone(),
                    },
                }),
            }
        }
    }
    ips
}

/// The node addresses that take NodePort traffic. Loopback addresses never do.
fn node_port_ips(node_ips: &[IpAddr], addresses: &NodePortAddresses) -> Vec<IpAddr> {
    let usable = node_ips.iter().filter(|ip| !ip.is_loopback()).copied();
    match addresses {
        NodePortAddresses::Primary => usable.take(1).collect(),
        NodePortAddresses::Cidrs(cidrs) => usable
            .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
            .collect(),
    }
}

/// Gives every destination (address, protocol, port) and every NodePort to one service-port:
/// the first in namespace/name order. Later claimants lose that destination and get an error;
/// a service-port whose cluster IP destination is taken is dropped entirely.
///
/// An owner is noted as the position of its service-port in the map, and its label is made
/// only for a conflict's message: one label per destination was about 1 MB at 10 000
/// Services, while the whole node view is being computed.
fn resolve_conflicts(fam: &mut FamilyServices, errors: &mut Vec<ModelError>) {
    let mut owners: BTreeMap<(IpAddr, crate::Protocol, u16), usize> = BTreeMap::new();
    let mut node_ports: BTreeMap<(crate::Protocol, u16), usize> = BTreeMap::new();
    // (who lost, what, to which position), in the order they are found.
    let mut conflicts: Vec<(ServicePortName, String, usize)> = Vec::new();
    let mut dropped = vec![false; fam.ports.len()];
    for (at, (name, view)) in fam.ports.iter().enumerate() {
        let key = (view.cluster_ip, view.name.protocol, view.port);
        match owners.get(&key) {
            Some(&owner) => {
                let dest = format!("{} {} {}", view.cluster_ip, view.name.protocol, view.port);
                conflicts.push((name.clone(), dest, owner));
                dropped[at] = true;
            }
            None => {
                owners.insert(key, at);
            }
        }
    }
    for (at, (name, view)) in fam.ports.iter_mut().enumerate() {
        if dropped[at] {
            continue;
        }
        let (protocol, port) = (view.name.protocol, view.port);
        for ips in [&mut view.external_ips, &mut view.load_balancer_ips] {
            ips.retain(|ip| match owners.get(&(*ip, protocol, port)) {
                Some(&owner) if owner != at => {
                    conflicts.push((name.clone(), format!("{ip} {protocol} {port}"), owner));
                    false
                }
                Some(_) => true,
                None => {
                    owners.insert((*ip, protocol, port), at);
                    true
                }
            });
        }
        if view.load_balancer_ips.is_empty() {
            view.firewall = None;
        }
        if let Some(np) = view.node_port {
            match node_ports.get(&(protocol, np)) {
                Some(&owner) => {
                    conflicts.push((name.clone(), format!("NodePort {protocol} {np}"), owner));
                    view.node_port = None;
                }
                None => {
                    node_ports.insert((protocol, np), at);
                }
            }
        }
    }
    drop((owners, node_ports));
    if conflicts.is_empty() {
        return;
    }
    let labels: Vec<String> = fam.ports.values().map(|v| v.label()).collect();
    for (name, destination, owner) in conflicts {
        errors.push(ModelError {
            object: ObjectRef::new(
                ObjectKind::Service,
                &name.service.namespace,
                &name.service.name,
            ),
            problem: Problem::ConflictingDestination {
                destination,
                owner: labels.get(owner).cloned().unwrap_or_default(),
            },
        });
    }
    let mut at = 0;
    fam.ports.retain(|_, _| {
        at += 1;
        !dropped[at - 1]
    });
}

#[cfg(test)]
mod service_slices_tests {
    use super::*;
    use crate::endpoints::NodeNames;
    use crate::fixtures::slice;

    fn stored(name: &str) -> Box<StoredSlice> {
        let s = slice("ns", name, "web", "IPv4").build();
        Box::new(StoredSlice::new(s, &mut NodeNames::default()))
    }

    #[test]
    fn slices_stay_sorted_by_name_and_a_name_is_replaced_not_repeated() {
        let mut slices = ServiceSlices::default();
        for name in ["web-c", "web-a", "web-b", "web-a"] {
            slices.insert(name.to_owned(), stored(name));
        }
        let names: Vec<&str> = slices.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["web-a", "web-b", "web-c"]);
        slices.remove("web-b");
        slices.remove("not-there");
        let names: Vec<&str> = slices.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["web-a", "web-c"]);
        assert_eq!(slices.named().count(), 2);
        slices.remove("web-a");
        slices.remove("web-c");
        assert!(slices.is_empty());
    }

    #[test]
    fn a_service_with_one_slice_holds_room_for_one() {
        let mut slices = ServiceSlices::default();
        slices.insert("web-a".to_owned(), stored("web-a"));
        assert_eq!(slices.0.capacity(), 1);
        slices.insert("web-b".to_owned(), stored("web-b"));
        assert_eq!(slices.0.capacity(), 2);
    }
}
