//! Names of per-service chains and sets: stable, readable and collision-free.
//!
//! `<prefix>-<HASH>-<namespace>/<name>/<proto>/<port>`, where `<port>` is the port's name (its
//! number when unnamed) and `HASH` is the first 8 characters of the base32 SHA-256 of the
//! service-port's identity, so names that look alike (or are cut short) never collide. Endpoint
//! names append `__<ip>/<port>` (IPv6 `:` written as `.`). The `/` marks a name as owned by a
//! Service: the fixed chains never contain one.

use data_encoding::BASE32_NOPAD;
use model::{Protocol, ServicePortView};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The longest name we make; the kernel allows 255 bytes.
const MAX_NAME: usize = 240;

/// The kinds of per-service objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `service-…`: spreads over the cluster endpoint set.
    Service,
    /// `local-…`: spreads over the local endpoint set.
    Local,
    /// `external-…`: entry of NodePort, LoadBalancer and external IP traffic.
    External,
    /// `firewall-…`: `loadBalancerSourceRanges`.
    Firewall,
}

impl ChainKind {
    fn prefix(self) -> &'static str {
        match self {
            ChainKind::Service => "service",
            ChainKind::Local => "local",
            ChainKind::External => "external",
            ChainKind::Firewall => "firewall",
        }
    }
}

/// `<ns>/<name>/<proto>/<port>` with the given port text.
fn service_port_path(view: &ServicePortView, port: &str) -> String {
    let n = &view.name;
    let proto = n.protocol.nft_name();
    format!("{}/{}/{proto}/{port}", n.service.namespace, n.service.name)
}

/// What the hash covers: the service-port's identity (its port name, empty when unnamed).
fn identity(view: &ServicePortView) -> String {
    service_port_path(view, &view.name.port_name)
}

/// What the name shows: the port name, or the number when unnamed.
fn readable(view: &ServicePortView) -> String {
    service_port_path(view, &view.port_label())
}

fn hashed(prefix: &str, identity: &str, readable: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    let hash = BASE32_NOPAD.encode(&digest);
    let mut name = format!("{prefix}-{}-{readable}", &hash[..8]);
    if name.len() > MAX_NAME {
        let mut cut = MAX_NAME - 3;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str("...");
    }
    name
}

/// `__<ip>/<port>`; in the readable form IPv6 `:` is written as `.` (nft names cannot hold `:`),
/// while the hashed identity keeps the address as it is, so distinct endpoints never share a name.
fn endpoint_suffix(ip: &IpAddr, port: u16, readable: bool) -> String {
    let ip = ip.to_string();
    let ip = if readable { ip.replace(':', ".") } else { ip };
    format!("__{ip}/{port}")
}

/// The name of a per-service chain.
pub fn chain_name(kind: ChainKind, view: &ServicePortView) -> String {
    hashed(kind.prefix(), &identity(view), &readable(view))
}

/// The name of the per-endpoint chain of a service-port with session affinity.
pub(crate) fn endpoint_chain_name(view: &ServicePortView, ip: &IpAddr, port: u16) -> String {
    hashed(
        "endpoint",
        &(identity(view) + &endpoint_suffix(ip, port, false)),
        &(readable(view) + &endpoint_suffix(ip, port, true)),
    )
}

/// The name of the affinity set of one endpoint of a service-port.
pub(crate) fn affinity_set_name(view: &ServicePortView, ip: &IpAddr, port: u16) -> String {
    hashed(
        "affinity",
        &(identity(view) + &endpoint_suffix(ip, port, false)),
        &(readable(view) + &endpoint_suffix(ip, port, true)),
    )
}

/// How many endpoint maps each table has for a protocol (nft types a map's port by its
/// protocol: `tcp dport`). A Service chain with several endpoints reads them from one of these,
/// chosen by its tag: few maps keep the kernel's lookups of a set by name short (it walks the
/// table's list of sets), many keep each map small, since adding a rule that reads a map makes
/// the kernel walk all of the map's elements. Most Services are TCP.
pub(crate) fn endpoint_maps(protocol: Protocol) -> u32 {
    match protocol {
        Protocol::Tcp => 32,
        Protocol::Udp => 8,
        Protocol::Sctp => 2,
    }
}

/// The name of endpoint map `shard` of `protocol` (`endpoints-tcp-00` …).
pub(crate) fn endpoint_map_name(protocol: Protocol, shard: u32) -> String {
    format!("endpoints-{}-{shard:02}", protocol.nft_name())
}

/// Whether `set` is an endpoint map. Its elements belong to one chain each (the tag says
/// which), so they need no count of contributors.
pub(crate) fn is_endpoint_map(set: &str) -> bool {
    set.starts_with("endpoints-")
}

/// Where the endpoints of one chain live: the map, and the 64-bit tag that prefixes their keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointTag {
    /// The endpoint map.
    pub(crate) map: String,
    /// The two 32-bit words that prefix the keys of this chain's endpoints.
    pub(crate) tag: [u32; 2],
}

/// The endpoint map and tag of the `kind` chain of a service-port, from the SHA-256 of its
/// identity: stable across restarts, and independent of every other Service, so one Service's
/// elements can be computed alone. Two chains share a tag only if 64 bits of SHA-256 collide
/// (for 50 000 Services, a chance of about 10^-10).
pub(crate) fn endpoint_tag(kind: ChainKind, view: &ServicePortView) -> EndpointTag {
    let digest = Sha256::digest(format!("{}:{}", kind.prefix(), identity(view)).as_bytes());
    let word = |at: usize| {
        u32::from_be_bytes([digest[at], digest[at + 1], digest[at + 2], digest[at + 3]])
    };
    let protocol = view.name.protocol;
    EndpointTag {
        map: endpoint_map_name(protocol, u32::from(digest[0]) % endpoint_maps(protocol)),
        tag: [word(1), word(5)],
    }
}
