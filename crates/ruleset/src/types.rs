//! The ruleset as typed data: tables, chains, sets and maps with their elements.

use crate::parts::Parts;
use crate::rule::Rule;
pub use model::SharedStr;
use model::{IpFamily, Protocol};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// An nftables family. We use one table per IP family, as upstream kube-proxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `ip` (IPv4).
    Ip,
    /// `ip6` (IPv6).
    Ip6,
}

impl Family {
    /// The nft keyword, also the address selector in rules (`ip daddr`, `ip6 daddr`).
    pub fn keyword(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// The set key type of an address of this family.
    pub fn addr_type(self) -> KeyType {
        match self {
            Family::Ip => KeyType::Ipv4Addr,
            Family::Ip6 => KeyType::Ipv6Addr,
        }
    }
}

impl From<IpFamily> for Family {
    fn from(f: IpFamily) -> Self {
        match f {
            IpFamily::V4 => Family::Ip,
            IpFamily::V6 => Family::Ip6,
        }
    }
}

/// A table by family and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// Its family.
    pub family: Family,
    /// Its name.
    pub name: String,
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.keyword(), self.name)
    }
}

/// A whole ruleset: the tables we own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Tables by id.
    pub tables: BTreeMap<TableId, Table>,
}

/// One table: its sets, maps and chains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// The table comment.
    pub comment: Option<String>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
}

/// The netfilter hooks our base chains attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Before routing, for packets arriving on an interface.
    Prerouting,
    /// Packets for this host.
    Input,
    /// Packets routed through this host.
    Forward,
    /// Packets made by this host.
    Output,
    /// Packets leaving on an interface.
    Postrouting,
}

impl Hook {
    /// The nft keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    /// `filter`: accept, drop, reject.
    Filter,
    /// `nat`: DNAT, masquerade (first packet of a connection only).
    Nat,
}

impl ChainType {
    /// The nft keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// What makes a chain a base chain: where it hooks in. Policy is always accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseChain {
    /// Filter or NAT.
    pub kind: ChainType,
    /// The hook.
    pub hook: Hook,
    /// The priority (lower runs first).
    pub priority: i32,
}

/// A chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// Set for base chains.
    pub base: Option<BaseChain>,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// The type of one field of a set key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// An IPv4 address.
    Ipv4Addr,
    /// An IPv6 address.
    Ipv6Addr,
    /// A layer-4 protocol.
    InetProto,
    /// A port.
    InetService,
    /// A 32-bit number in host byte order: what `numgen` yields (nft's `integer`).
    Integer,
}

impl KeyType {
    /// The nft type name.
    pub fn keyword(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetProto => "inet_proto",
            KeyType::InetService => "inet_service",
            KeyType::Integer => "integer",
        }
    }

    /// An expression of this type, for `typeof` declarations (nft cannot declare an
    /// `integer` key by type name).
    pub fn typeof_expr(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ip daddr",
            KeyType::Ipv6Addr => "ip6 daddr",
            KeyType::InetProto => "meta l4proto",
            KeyType::InetService => "th dport",
            KeyType::Integer => "numgen random mod 1",
        }
    }
}

/// The declaration of a set or map (everything but its elements).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetSpec {
    /// The key: one type, or a concatenation.
    pub key: Vec<KeyType>,
    /// True for a verdict map (`: verdict`), false for a plain set.
    pub verdict_map: bool,
    /// The value of a data map (`: ipv4_addr . inet_service`); empty for sets and verdict maps.
    pub data: Vec<KeyType>,
    /// In a `typeof` declaration, the protocol whose `dport` stands for an `inet_service`
    /// field (`tcp dport`); `th dport` when unset. nft 1.0.6 refuses a rule `meta l4proto tcp
    /// dnat … map @m` added to an existing map typed `th dport` ("conflicting protocols").
    pub port_protocol: Option<Protocol>,
    /// Elements are added by the packet path (`update @set`), with a timeout.
    pub dynamic_timeout: Option<u32>,
    /// Maximum number of elements, for dynamic sets.
    pub size: Option<u32>,
    /// The set comment.
    pub comment: Option<String>,
}

impl SetSpec {
    /// True for a map (verdict or data), false for a plain set.
    pub fn is_map(&self) -> bool {
        self.verdict_map || !self.data.is_empty()
    }

    /// True when nft must declare it with `typeof` (its key holds an `integer`).
    pub fn needs_typeof(&self) -> bool {
        self.key.contains(&KeyType::Integer)
    }

    /// The expression a `typeof` declaration uses for a field of type `t`.
    pub fn typeof_expr(&self, t: KeyType) -> String {
        match (t, self.port_protocol) {
            (KeyType::InetService, Some(p)) => format!("{} dport", p.nft_name()),
            _ => t.typeof_expr().to_owned(),
        }
    }
}

/// One field of an element key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    /// An address.
    Ip(IpAddr),
    /// A protocol.
    Proto(Protocol),
    /// A port.
    Port(u16),
    /// A number (`integer`): the position of an endpoint in an endpoint map.
    Index(u32),
}

impl KeyPart {
    /// The key type this part has.
    pub fn key_type(&self) -> KeyType {
        match self {
            KeyPart::Ip(IpAddr::V4(_)) => KeyType::Ipv4Addr,
            KeyPart::Ip(IpAddr::V6(_)) => KeyType::Ipv6Addr,
            KeyPart::Proto(_) => KeyType::InetProto,
            KeyPart::Port(_) => KeyType::InetService,
            KeyPart::Index(_) => KeyType::Integer,
        }
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Ip(ip) => write!(f, "{ip}"),
            KeyPart::Proto(p) => f.write_str(p.nft_name()),
            KeyPart::Port(p) => write!(f, "{p}"),
            KeyPart::Index(i) => write!(f, "{i}"),
        }
    }
}

/// An element key: one part per key field, packed ([`Parts`]).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElemKey(pub Parts);

impl ElemKey {
    /// The key of these parts.
    pub fn new(parts: impl Into<Parts>) -> ElemKey {
        ElemKey(parts.into())
    }

    /// Its parts, in order.
    pub fn parts(&self) -> crate::parts::Iter<'_> {
        self.0.iter()
    }
}

impl fmt::Debug for ElemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ElemKey").field(&self.0).finish()
    }
}

impl fmt::Display for ElemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

/// A verdict, as a rule's last word or a verdict-map value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Stop here: drop the packet.
    Drop,
    /// Continue in another chain, then come back.
    Jump(Box<str>),
    /// Continue in another chain and do not come back.
    Goto(Box<str>),
}

impl Verdict {
    /// The chain it continues in, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Verdict::Drop => None,
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Drop => f.write_str("drop"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// What an element maps its key to: nothing in a set, a verdict in a verdict map, a value in
/// a data map. One of them, not a field for each: at 10 000 Services a node holds 125 000
/// elements, and each unused field cost its bytes in every one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ElemTarget {
    /// A set's element: the key alone.
    #[default]
    None,
    /// A verdict map's value.
    Verdict(Verdict),
    /// A data map's value (`10.0.0.1 . 8080`).
    Data(Parts),
}

/// What an element holds besides its key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElemValue {
    /// What the key maps to.
    pub target: ElemTarget,
    /// Who owns the element (`namespace/name:port`), shown by `nft list`. Shared, not one
    /// string per element: the endpoint-map elements of each of a service-port's chains share
    /// one, its other elements another.
    pub comment: Option<SharedStr>,
}

impl ElemValue {
    /// A verdict map's element value.
    pub fn verdict_of(verdict: Verdict, comment: Option<SharedStr>) -> ElemValue {
        ElemValue {
            target: ElemTarget::Verdict(verdict),
            comment,
        }
    }

    /// A data map's element value (a set's when `data` is empty).
    pub fn data_of(data: Parts, comment: Option<SharedStr>) -> ElemValue {
        let target = if data.is_empty() {
            ElemTarget::None
        } else {
            ElemTarget::Data(data)
        };
        ElemValue { target, comment }
    }

    /// The verdict, in verdict maps.
    pub fn verdict(&self) -> Option<&Verdict> {
        match &self.target {
            ElemTarget::Verdict(v) => Some(v),
            _ => None,
        }
    }

    /// The value, in data maps.
    pub fn data(&self) -> Option<&Parts> {
        match &self.target {
            ElemTarget::Data(d) => Some(d),
            _ => None,
        }
    }

    /// The parts of the value in data maps; none otherwise.
    pub fn data_parts(&self) -> impl Iterator<Item = KeyPart> + '_ {
        self.data().into_iter().flat_map(Parts::iter)
    }
}

/// A set or map and its elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Set {
    /// The declaration.
    pub spec: SetSpec,
    /// The elements. Shared: a ruleset read back from the kernel holds the desired ruleset's
    /// elements of every set the kernel has exactly as desired, instead of a copy (at 10 000
    /// Services, 125 000 elements). Change them with [`Set::elements_mut`].
    pub elements: Arc<BTreeMap<ElemKey, ElemValue>>,
}

impl Set {
    /// The elements, to change them (copied first if another ruleset shares them).
    pub fn elements_mut(&mut self) -> &mut BTreeMap<ElemKey, ElemValue> {
        Arc::make_mut(&mut self.elements)
    }

    /// Rebuilds the element tree with full nodes. A B-tree filled one element at a time in
    /// ascending order leaves its nodes about half empty; one built from a sorted sequence
    /// fills them. Call it once a set is built (later inserts stay correct).
    pub fn pack(&mut self) {
        let elements = std::mem::take(self.elements_mut());
        self.elements = Arc::new(elements.into_iter().collect());
    }

    /// Makes this set share `other`'s elements when they are the same (see [`Set::elements`]).
    pub fn share_elements(&mut self, other: &Set) {
        if self.elements == other.elements {
            self.elements = Arc::clone(&other.elements);
        }
    }
}

impl Ruleset {
    /// [`Set::share_elements`] for every set that `other` has too.
    pub fn share_elements(&mut self, other: &Ruleset) {
        for (id, table) in &mut self.tables {
            if let Some(theirs) = other.tables.get(id) {
                table.share_elements(theirs);
            }
        }
    }
}

impl Table {
    /// [`Set::share_elements`] for every set that `other` has too.
    pub fn share_elements(&mut self, other: &Table) {
        for (name, set) in &mut self.sets {
            if let Some(theirs) = other.sets.get(name) {
                set.share_elements(theirs);
            }
        }
    }

    /// [`Set::pack`] for every set.
    pub fn pack(&mut self) {
        self.sets.values_mut().for_each(Set::pack);
    }
}
