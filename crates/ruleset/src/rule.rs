//! Rules as typed expressions. The set of expressions is closed: exactly what our ruleset uses,
//! each with one nft spelling (the one `nft list` prints) and, in the kernel backend, one netlink
//! encoding.

use crate::format::{cidr_set, hex_mark};
use crate::types::{Family, Verdict};
use ipnet::IpNet;
use model::Protocol;
use std::fmt::Write as _;
use std::net::IpAddr;

/// One match or statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `ct state new`: the first packet of a connection.
    CtStateNew,
    /// `ct status dnat`: the connection was DNATed.
    CtStatusDnat,
    /// `ip daddr @set`.
    DaddrInSet(String),
    /// `ip saddr @set`.
    SaddrInSet(String),
    /// `ip saddr [!=] <cidrs>`; an empty list is not allowed.
    SaddrInCidrs {
        /// `!=` when true.
        negate: bool,
        /// The prefixes.
        cidrs: Vec<IpNet>,
    },
    /// `ip daddr . meta l4proto . th dport vmap @map`.
    DestinationVmap(String),
    /// `meta l4proto . th dport vmap @map`.
    PortVmap(String),
    /// `ip saddr . ip daddr . meta l4proto . th dport @set` (hairpin connections).
    HairpinLookup(String),
    /// `fib saddr type local`: the source is an address of this host.
    FibSaddrLocal,
    /// `meta l4proto <proto>`.
    L4Proto(Protocol),
    /// `meta mark & <mark> != 0`.
    MarkIsSet(u32),
    /// `meta mark set meta mark | <mark>`.
    SetMark(u32),
    /// `meta mark set meta mark ^ <mark>` (clears a mark known to be set).
    ToggleMark(u32),
    /// `masquerade fully-random`.
    Masquerade,
    /// `update @set { ip saddr }`: remember the client for session affinity.
    UpdateSaddr(String),
    /// DNAT to one endpoint, or to one of several chosen at random through an anonymous map
    /// (the layout before endpoint maps, still read from the kernel so that an upgrade
    /// replaces it; [`Expr::DnatEndpointMap`] is what we make).
    Dnat(Vec<(IpAddr, u16)>),
    /// `dnat ip to numgen random mod 1 offset <tag0> . numgen random mod 1 offset <tag1> .
    /// numgen random mod <modulus> map @<map>`: DNAT to one of the endpoints a shared endpoint
    /// map holds under this tag (keys `tag0 . tag1 . 0` … `tag0 . tag1 . modulus-1`), chosen at
    /// random. (`numgen random mod 1 offset K` is how nft writes the constant K.)
    DnatEndpointMap {
        /// The chain's tag in the map.
        tag: [u32; 2],
        /// The number of endpoints.
        modulus: u32,
        /// The map (`integer . integer . integer : addr . inet_service`).
        map: String,
    },
    /// `numgen random mod N vmap { 0 : goto a, … }`: choose a chain at random.
    NumgenGoto(Vec<String>),
    /// `reject` (ICMP port unreachable).
    Reject,
    /// A verdict: drop, jump, goto.
    Verdict(Verdict),
}

/// A rule: expressions in order, and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The expressions.
    pub exprs: Vec<Expr>,
    /// The comment shown by `nft list`.
    pub comment: Option<String>,
}

impl Expr {
    /// `ip saddr [!=] <cidrs>` with the prefixes merged and sorted, as nft holds them (so a
    /// rule read back from the kernel equals the one we made).
    pub fn saddr_in_cidrs(negate: bool, cidrs: &[IpNet]) -> Expr {
        Expr::SaddrInCidrs {
            negate,
            cidrs: crate::format::canonical_cidrs(cidrs),
        }
    }
}

impl Rule {
    /// A rule without a comment.
    pub fn new(exprs: Vec<Expr>) -> Self {
        Rule {
            exprs,
            comment: None,
        }
    }

    /// The same rule with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The chains this rule may continue in.
    pub fn chain_refs(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().flat_map(|e| -> Vec<&str> {
            match e {
                Expr::Verdict(v) => v.target().into_iter().collect(),
                Expr::NumgenGoto(chains) => chains.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            }
        })
    }

    /// The sets and maps this rule uses.
    pub fn set_refs(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().filter_map(|e| match e {
            Expr::DaddrInSet(s)
            | Expr::SaddrInSet(s)
            | Expr::DestinationVmap(s)
            | Expr::PortVmap(s)
            | Expr::HairpinLookup(s)
            | Expr::UpdateSaddr(s) => Some(s.as_str()),
            Expr::DnatEndpointMap { map, .. } => Some(map.as_str()),
            _ => None,
        })
    }

    /// The rule as `nft list` prints it in a table of `family`.
    pub fn render(&self, family: Family) -> String {
        let mut out = String::new();
        for expr in &self.exprs {
            if !out.is_empty() {
                out.push(' ');
            }
            render_expr(&mut out, expr, family);
        }
        if let Some(c) = &self.comment {
            let _ = write!(out, " comment \"{c}\"");
        }
        out
    }
}

fn render_expr(out: &mut String, expr: &Expr, family: Family) {
    let f = family.keyword();
    let _ = match expr {
        Expr::CtStateNew => write!(out, "ct state new"),
        Expr::CtStatusDnat => write!(out, "ct status dnat"),
        Expr::DaddrInSet(s) => write!(out, "{f} daddr @{s}"),
        Expr::SaddrInSet(s) => write!(out, "{f} saddr @{s}"),
        Expr::SaddrInCidrs { negate, cidrs } => {
            let op = if *negate { "!= " } else { "" };
            write!(out, "{f} saddr {op}{}", cidr_set(cidrs))
        }
        Expr::DestinationVmap(m) => write!(out, "{f} daddr . meta l4proto . th dport vmap @{m}"),
        Expr::PortVmap(m) => write!(out, "meta l4proto . th dport vmap @{m}"),
        Expr::HairpinLookup(s) => {
            write!(out, "{f} saddr . {f} daddr . meta l4proto . th dport @{s}")
        }
        Expr::FibSaddrLocal => write!(out, "fib saddr type local"),
        Expr::L4Proto(p) => write!(out, "meta l4proto {}", p.nft_name()),
        Expr::MarkIsSet(m) => write!(out, "meta mark & {} != 0x00000000", hex_mark(*m)),
        Expr::SetMark(m) => write!(out, "meta mark set meta mark | {}", hex_mark(*m)),
        Expr::ToggleMark(m) => write!(out, "meta mark set meta mark ^ {}", hex_mark(*m)),
        Expr::Masquerade => write!(out, "masquerade fully-random"),
        Expr::UpdateSaddr(s) => write!(out, "update @{s} {{ {f} saddr }}"),
        Expr::Dnat(endpoints) => match endpoints.as_slice() {
            [(ip, port)] => match ip {
                IpAddr::V4(ip) => write!(out, "dnat to {ip}:{port}"),
                IpAddr::V6(ip) => write!(out, "dnat to [{ip}]:{port}"),
            },
            many => {
                let _ = write!(out, "dnat {f} to numgen random mod {} map {{ ", many.len());
                for (i, (ip, port)) in many.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(out, "{sep}{i} : {ip} . {port}");
                }
                write!(out, " }}")
            }
        },
        Expr::DnatEndpointMap { tag, modulus, map } => {
            let _ = write!(out, "dnat {f} to ");
            for t in tag {
                // nft leaves out a zero offset.
                match t {
                    0 => out.push_str("numgen random mod 1 . "),
                    t => {
                        let _ = write!(out, "numgen random mod 1 offset {t} . ");
                    }
                }
            }
            write!(out, "numgen random mod {modulus} map @{map}")
        }
        Expr::NumgenGoto(chains) => {
            let _ = write!(out, "numgen random mod {} vmap {{ ", chains.len());
            for (i, c) in chains.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(out, "{sep}{i} : goto {c}");
            }
            write!(out, " }}")
        }
        Expr::Reject => write!(out, "reject"),
        Expr::Verdict(v) => write!(out, "{v}"),
    };
}
