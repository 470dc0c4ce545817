//! EndpointSlices of one Service read into endpoint lists per service-port and family
//! (DESIGN.md §2.1): conditions, locality, hints, duplicates across slices.

use crate::error::{ModelError, Problem};
use crate::ip::parse_ip_sloppy;
use crate::objects::{IpFamily, ObjectKind, ObjectRef, Protocol};
use crate::service::{namespace_of, valid_port};
use crate::stored_service::known_value;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// The label that joins an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Slices of headless Services carry this label; the proxy ignores them.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// One endpoint (address and port) of one service-port.
///
/// Kept small, as a node view holds one per endpoint and service-port (twice for a local one):
/// the node name is shared with every other endpoint on that node, and the topology hints,
/// rarely set, sit behind one pointer shared by every copy of the endpoint. Cloning allocates
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// The endpoint's port.
    pub port: u16,
    /// The node it runs on, when known (shared by the endpoints of a view on that node).
    pub node_name: Option<NodeName>,
    /// True when it runs on this node.
    pub is_local: bool,
    /// `conditions.ready` (unset means true).
    pub ready: bool,
    /// `conditions.serving` (unset means true).
    pub serving: bool,
    /// `conditions.terminating` (unset means false).
    pub terminating: bool,
    /// The topology hints the slice controller wrote; `None` when it wrote neither zone nor node
    /// hints (see [`Endpoint::zone_hints`] and [`Endpoint::node_hints`]).
    pub hints: Option<Arc<EndpointHints>>,
}

/// A node's name, shared by the endpoints on that node (one pointer: the view holds one per
/// endpoint, and its node view another).
pub type NodeName = crate::SharedStr;

/// The topology hints of an endpoint (`hints` of an EndpointSlice endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointHints {
    /// `hints.forZones[].name`, when the slice controller wrote zone hints.
    pub zones: Option<Vec<String>>,
    /// `hints.forNodes[].name`, when the slice controller wrote node hints.
    pub nodes: Option<Vec<String>>,
}

impl Endpoint {
    /// Serving while terminating: the fallback set when nothing is ready.
    pub fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }

    /// `hints.forZones`, when the slice controller wrote zone hints.
    pub fn zone_hints(&self) -> Option<&[String]> {
        self.hints.as_ref()?.zones.as_deref()
    }

    /// `hints.forNodes`, when the slice controller wrote node hints.
    pub fn node_hints(&self) -> Option<&[String]> {
        self.hints.as_ref()?.nodes.as_deref()
    }
}

/// Written as the flat record it has always been: the hints as `zone_hints` and `node_hints`.
impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut record = serializer.serialize_struct("Endpoint", 9)?;
        record.serialize_field("ip", &self.ip)?;
        record.serialize_field("port", &self.port)?;
        record.serialize_field("node_name", &self.node_name.as_deref())?;
        record.serialize_field("is_local", &self.is_local)?;
        record.serialize_field("ready", &self.ready)?;
        record.serialize_field("serving", &self.serving)?;
        record.serialize_field("terminating", &self.terminating)?;
        record.serialize_field("zone_hints", &self.zone_hints())?;
        record.serialize_field("node_hints", &self.node_hints())?;
        record.end()
    }
}

/// The node names of a view's endpoints, each held once: 100 000 endpoints on 10 nodes share 10
/// strings. Names no endpoint holds any more are dropped from time to time (when the set has
/// doubled since the last sweep), so nodes that come and go do not pile up.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeNames {
    names: BTreeSet<NodeName>,
    /// How many names were left after the last sweep.
    kept: usize,
}

impl NodeNames {
    /// Sweeps no sooner than this many names.
    const MIN_SWEEP: usize = 64;

    /// The shared copy of `name`.
    pub(crate) fn intern(&mut self, name: String) -> NodeName {
        if let Some(shared) = self.names.get(name.as_str()) {
            return shared.clone();
        }
        if self.names.len() >= Self::MIN_SWEEP.max(2 * self.kept) {
            // Held only here: no endpoint of the view (or of a node view made from it) uses it.
            self.names.retain(|name| name.holders() > 1);
            self.kept = self.names.len();
        }
        let shared = NodeName::from(name);
        self.names.insert(shared.clone());
        shared
    }

    /// How many names are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// The key endpoints are grouped by: family, port name and protocol of the slice port.
pub(crate) type PortKey = (IpFamily, String, Protocol);

/// True when the slice is one the proxy ignores on purpose (no error).
pub(crate) fn slice_is_ignored(slice: &EndpointSlice) -> bool {
    slice.metadata.labels.as_ref().is_some_and(|l| {
        l.contains_key(HEADLESS_LABEL) || l.contains_key(crate::service::SERVICE_PROXY_NAME_LABEL)
    })
}

/// Reference to a slice for messages.
pub(crate) fn slice_ref(slice: &EndpointSlice) -> ObjectRef {
    ObjectRef::new(
        ObjectKind::EndpointSlice,
        namespace_of(&slice.metadata.namespace),
        slice.metadata.name.as_deref().unwrap_or(""),
    )
}

/// What the model reads of an EndpointSlice, kept by the view in place of the object: a
/// Kubernetes `Endpoint` is about 350 bytes before its strings (its `targetRef` alone is seven
/// optional strings), this is a third of that, and at 10 000 Services of 10 endpoints the
/// difference is tens of megabytes. Values are kept as written (not parsed), so a bad one is
/// still reported, with its field, when the Service's endpoints are read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSlice {
    /// `addressType`.
    address_type: Cow<'static, str>,
    /// `ports[]`: name, protocol, port.
    ports: Vec<StoredPort>,
    /// `endpoints[]`, in order.
    endpoints: Vec<StoredEndpoint>,
}

/// A slice port as written: `name`, `protocol`, `port`.
type StoredPort = (Option<String>, Option<Cow<'static, str>>, Option<i32>);

/// An endpoint's `addresses[0]`: parsed when it is an address of the slice's `addressType` (the
/// usual case: no string kept, 100 000 of them at 10 000 Services), as written otherwise, so
/// that reading the endpoints reports it exactly as before.
#[derive(Debug, Clone, PartialEq)]
enum StoredAddress {
    /// An address of the slice's family.
    Ip(IpAddr),
    /// Anything else, as written.
    Text(Box<str>),
}

impl StoredAddress {
    /// `text` of a slice whose `addressType` is `address_type`.
    fn new(text: String, address_type: &str) -> StoredAddress {
        let family = match address_type {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        };
        match parse_ip_sloppy(&text) {
            Some(ip) if family == Some(IpFamily::of(&ip)) => StoredAddress::Ip(ip),
            _ => StoredAddress::Text(text.into_boxed_str()),
        }
    }
}

/// What the model reads of one endpoint of a slice: 40 bytes, 100 000 of them at 10 000
/// Services. What few endpoints have (an address kept as written, topology hints) sits behind
/// one pointer.
#[derive(Debug, Clone, PartialEq)]
struct StoredEndpoint {
    /// `addresses[0]`, when it is an address of the slice's family (see [`StoredAddress`]).
    ip: Option<IpAddr>,
    /// `conditions.ready`, `.serving`, `.terminating`.
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
    /// `nodeName`, shared through the view's [`NodeNames`].
    node_name: Option<NodeName>,
    /// An address kept as written, and hints; `None` when the endpoint has neither.
    rare: Option<Box<RareFields>>,
}

/// The fields of a stored endpoint that few endpoints have.
#[derive(Debug, Clone, PartialEq)]
struct RareFields {
    /// `addresses[0]` as written, when it is not an address of the slice's family.
    text: Option<Box<str>>,
    /// `hints.forZones[].name` and `hints.forNodes[].name`; `None` when neither is set.
    hints: Option<Arc<EndpointHints>>,
}

impl StoredEndpoint {
    /// `addresses[0]`: parsed, or as written.
    fn address(&self) -> Option<Result<IpAddr, &str>> {
        match (self.ip, self.rare.as_ref().and_then(|r| r.text.as_deref())) {
            (Some(ip), _) => Some(Ok(ip)),
            (None, Some(text)) => Some(Err(text)),
            (None, None) => None,
        }
    }

    /// The topology hints, if any.
    fn hints(&self) -> Option<&Arc<EndpointHints>> {
        self.rare.as_ref()?.hints.as_ref()
    }
}

impl StoredSlice {
    /// Keeps what the model reads of `slice`; node names are shared through `node_names`.
    pub(crate) fn new(slice: EndpointSlice, node_names: &mut NodeNames) -> StoredSlice {
        let mut ports: Vec<StoredPort> = slice
            .ports
            .into_iter()
            .flatten()
            .map(|p| (p.name, p.protocol.map(known_value), p.port))
            .collect();
        // Collected without a size: room for four, and a slice has one port or two.
        ports.shrink_to_fit();
        let address_type = known_value(slice.address_type);
        let mut endpoints: Vec<StoredEndpoint> = slice
            .endpoints
            .into_iter()
            .map(|ep| {
                let conditions = ep.conditions.unwrap_or_default();
                let hints = ep.hints.unwrap_or_default();
                let hints = EndpointHints {
                    zones: hints
                        .for_zones
                        .map(|z| z.into_iter().map(|z| z.name).collect()),
                    nodes: hints
                        .for_nodes
                        .map(|n| n.into_iter().map(|n| n.name).collect()),
                };
                let address = ep
                    .addresses
                    .into_iter()
                    .next()
                    .map(|a| StoredAddress::new(a, &address_type));
                let (ip, text) = match address {
                    Some(StoredAddress::Ip(ip)) => (Some(ip), None),
                    Some(StoredAddress::Text(text)) => (None, Some(text)),
                    None => (None, None),
                };
                let hints = (hints != EndpointHints::default()).then(|| Arc::new(hints));
                let rare = (text.is_some() || hints.is_some())
                    .then(|| Box::new(RareFields { text, hints }));
                StoredEndpoint {
                    ip,
                    ready: conditions.ready,
                    serving: conditions.serving,
                    terminating: conditions.terminating,
                    node_name: ep.node_name.map(|name| node_names.intern(name)),
                    rare,
                }
            })
            .collect();
        // `collect` reused the buffer of the Kubernetes endpoints, several times larger.
        endpoints.shrink_to_fit();
        StoredSlice {
            address_type,
            ports,
            endpoints,
        }
    }
}

/// Reads the slices of one Service (in `namespace`, by name) into sorted, de-duplicated
/// endpoint lists per port key. `node_name` decides locality. Bad slice ports and endpoints
/// are skipped and reported.
pub(crate) fn collect_endpoints<'a>(
    namespace: &str,
    slices: impl Iterator<Item = (&'a str, &'a StoredSlice)>,
    node_name: &str,
    errors: &mut Vec<ModelError>,
) -> BTreeMap<PortKey, Vec<Endpoint>> {
    let mut by_key: BTreeMap<PortKey, BTreeMap<(IpAddr, u16), Endpoint>> = BTreeMap::new();
    for (name, slice) in slices {
        let object = ObjectRef::new(ObjectKind::EndpointSlice, namespace, name);
        let mut report = |problem| {
            errors.push(ModelError {
                object: object.clone(),
                problem,
            })
        };
        let family = match &*slice.address_type {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            "FQDN" => continue,
            other => {
                report(Problem::InvalidValue {
                    field: "addressType".into(),
                    value: other.into(),
                    detail: "expected IPv4, IPv6 or FQDN".into(),
                });
                continue;
            }
        };
        let mut ports = Vec::new();
        for (i, (port_name, protocol, port)) in slice.ports.iter().enumerate() {
            let Some(protocol) = Protocol::from_k8s(protocol.as_deref()) else {
                report(Problem::UnknownProtocol {
                    field: format!("ports[{i}].protocol"),
                    value: protocol.as_deref().unwrap_or_default().to_owned(),
                });
                continue;
            };
            let Some(number) = port.and_then(valid_port) else {
                report(Problem::InvalidPort {
                    field: format!("ports[{i}].port"),
                    value: port.unwrap_or(0).into(),
                });
                continue;
            };
            ports.push((port_name.clone().unwrap_or_default(), protocol, number));
        }
        for (i, ep) in slice.endpoints.iter().enumerate() {
            let text = match ep.address() {
                // Stored parsed only when it is an address of this slice's family.
                Some(Ok(ip)) => Err(ip),
                Some(Err(text)) => Ok(text),
                None => {
                    report(Problem::Missing {
                        field: format!("endpoints[{i}].addresses"),
                        detail: "an endpoint needs an address".into(),
                    });
                    continue;
                }
            };
            let ip = match text {
                Err(ip) => ip,
                Ok(text) => match parse_ip_sloppy(text) {
                    Some(ip) if IpFamily::of(&ip) == family => ip,
                    Some(_) => {
                        report(Problem::InvalidValue {
                            field: format!("endpoints[{i}].addresses[0]"),
                            value: text.to_string(),
                            detail: format!("not an {family} address as addressType says"),
                        });
                        continue;
                    }
                    None => {
                        report(Problem::InvalidIp {
                            field: format!("endpoints[{i}].addresses[0]"),
                            value: text.to_string(),
                        });
                        continue;
                    }
                },
            };
            for (name, protocol, port) in &ports {
                let endpoint = Endpoint {
                    ip,
                    port: *port,
                    node_name: ep.node_name.clone(),
                    is_local: ep.node_name.as_deref() == Some(node_name),
                    ready: ep.ready.unwrap_or(true),
                    serving: ep.serving.unwrap_or(true),
                    terminating: ep.terminating.unwrap_or(false),
                    hints: ep.hints().cloned(),
                };
                let entries = by_key.entry((family, name.clone(), *protocol)).or_default();
                // The same IP:port in two slices: keep one, preferring a running endpoint
                // (a new pod reusing a terminating pod's IP).
                let replaces = entries
                    .get(&(ip, *port))
                    .is_none_or(|kept| kept.terminating && !endpoint.terminating);
                if replaces {
                    entries.insert((ip, *port), endpoint);
                }
            }
        }
    }
    by_key
        .into_iter()
        .map(|(key, eps)| (key, eps.into_values().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_costs_at_most_40_bytes_and_no_allocation_to_copy() {
        // 96 bytes while the node name was a `String` and the two hint lists sat inline; 48
        // while the node name was an `Arc<str>`. 100 000 of each at 10 000 Services.
        let size = std::mem::size_of::<Endpoint>();
        assert!(size <= 40, "size_of::<Endpoint>() grew to {size} bytes");
        let size = std::mem::size_of::<StoredEndpoint>();
        assert!(
            size <= 40,
            "size_of::<StoredEndpoint>() grew to {size} bytes"
        );
    }

    #[test]
    fn node_names_are_held_once_and_unused_ones_are_swept() {
        let mut names = NodeNames::default();
        let a = names.intern("node-a".to_owned());
        let again = names.intern("node-a".to_owned());
        assert!(NodeName::ptr_eq(&a, &again));
        assert_eq!(&*a, "node-a");
        assert_eq!(names.len(), 1);

        // Names nobody holds any more go once the set has grown enough; held ones stay.
        for i in 0..NodeNames::MIN_SWEEP {
            names.intern(format!("gone-{i}"));
        }
        assert_eq!(names.len(), 2);
        let b = names.intern("node-a".to_owned());
        assert!(NodeName::ptr_eq(&a, &b));
    }
}
