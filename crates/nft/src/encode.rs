//! Typed rules to kernel expressions, exactly as nft 1.0.6 encodes the same rule text (checked
//! against `nft --debug=netlink`, and in the kernel tests by comparing `nft list ruleset` after
//! both backends applied the same ruleset).

use crate::keys::{encode_addr_port, ip_bytes, port_bytes, prefix_elements, proto_number};
use crate::low::{
    reg, AnonElem, AnonKind, AnonSet, CmpOp, CtKey, Low, LowRule, MetaKey, PayloadBase, SetRef,
};
use ipnet::IpNet;
use ruleset::{Expr, Family, Rule, Verdict};
use std::net::IpAddr;

/// `ct state new`: the NEW bit of the state mask.
pub const CT_STATE_NEW: u32 = 1 << 3;
/// `ct status dnat`: IPS_DST_NAT.
pub const CT_STATUS_DNAT: u32 = 1 << 5;
/// `fib … type local`: RTN_LOCAL.
pub const RTN_LOCAL: u32 = 2;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`.
pub const NAT_PROTO_SPECIFIED: u32 = 0x2;
/// `NF_NAT_RANGE_PROTO_RANDOM_FULLY`.
pub const NAT_RANDOM_FULLY: u32 = 0x10;
/// `NFT_REJECT_ICMP_UNREACH`.
pub const REJECT_ICMP_UNREACH: u32 = 0;
/// ICMP "port unreachable".
pub const ICMP_PORT_UNREACH: u8 = 3;
/// ICMPv6 "port unreachable".
pub const ICMPV6_PORT_UNREACH: u8 = 4;

/// Which address of the IP header.
#[derive(Clone, Copy)]
enum Addr {
    Source,
    Destination,
}

/// Offset and length of an address in the network header of `family`.
fn addr_field(family: Family, which: Addr) -> (u32, u32) {
    match (family, which) {
        (Family::Ip, Addr::Source) => (12, 4),
        (Family::Ip, Addr::Destination) => (16, 4),
        (Family::Ip6, Addr::Source) => (8, 16),
        (Family::Ip6, Addr::Destination) => (24, 16),
    }
}

/// 4-byte words an address of `family` takes in a concatenation.
fn addr_words(family: Family) -> u32 {
    match family {
        Family::Ip => 1,
        Family::Ip6 => 4,
    }
}

fn load_addr(family: Family, which: Addr, dreg: u32) -> Low {
    let (offset, len) = addr_field(family, which);
    Low::Payload {
        base: PayloadBase::Network,
        offset,
        len,
        dreg,
    }
}

fn load_dport(dreg: u32) -> Low {
    Low::Payload {
        base: PayloadBase::Transport,
        offset: 2,
        len: 2,
        dreg,
    }
}

fn load_l4proto(dreg: u32) -> Low {
    Low::Meta {
        key: MetaKey::L4Proto,
        dreg,
    }
}

fn lookup(set: &str, dreg: Option<u32>) -> Low {
    Low::Lookup {
        set: SetRef::Named(set.to_owned()),
        sreg: reg::R1,
        dreg,
        invert: false,
    }
}

fn host_u32(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// `<load> & mask != 0` for a 4-byte host-order field.
fn flag_is_set(load: Low, mask: u32) -> Vec<Low> {
    vec![
        load,
        Low::Bitwise {
            sreg: reg::R1,
            dreg: reg::R1,
            mask: host_u32(mask),
            xor: host_u32(0),
        },
        Low::Cmp {
            sreg: reg::R1,
            op: CmpOp::Neq,
            data: host_u32(0),
        },
    ]
}

/// `meta mark set meta mark & and ^ xor`.
fn set_mark(and: u32, xor: u32) -> Vec<Low> {
    vec![
        Low::Meta {
            key: MetaKey::Mark,
            dreg: reg::R1,
        },
        Low::Bitwise {
            sreg: reg::R1,
            dreg: reg::R1,
            mask: host_u32(and),
            xor: host_u32(xor),
        },
        Low::MetaSetMark { sreg: reg::R1 },
    ]
}

/// The network mask of a prefix as bytes.
fn mask_bytes(net: &IpNet) -> Vec<u8> {
    ip_bytes(&net.netmask())
}

/// `ip saddr [!=] prefix` for one prefix: nft loads only the whole bytes of a byte-aligned
/// prefix and compares them; otherwise it loads the address, masks it, and compares.
fn saddr_prefix(family: Family, negate: bool, net: &IpNet) -> Vec<Low> {
    let (offset, len) = addr_field(family, Addr::Source);
    let op = if negate { CmpOp::Neq } else { CmpOp::Eq };
    let prefix = u32::from(net.prefix_len());
    let network = ip_bytes(&net.network());
    if prefix > 0 && prefix % 8 == 0 {
        let bytes = prefix / 8;
        return vec![
            Low::Payload {
                base: PayloadBase::Network,
                offset,
                len: bytes,
                dreg: reg::R1,
            },
            Low::Cmp {
                sreg: reg::R1,
                op,
                data: network[..bytes as usize].to_vec(),
            },
        ];
    }
    vec![
        Low::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: reg::R1,
        },
        Low::Bitwise {
            sreg: reg::R1,
            dreg: reg::R1,
            mask: mask_bytes(net),
            xor: vec![0; len as usize],
        },
        Low::Cmp {
            sreg: reg::R1,
            op,
            data: network,
        },
    ]
}

/// Builds the kernel form of one rule, collecting its anonymous sets.
struct RuleEncoder {
    family: Family,
    exprs: Vec<Low>,
    anon_sets: Vec<AnonSet>,
}

impl RuleEncoder {
    fn anon(&mut self, set: AnonSet) -> SetRef {
        self.anon_sets.push(set);
        SetRef::Anonymous(self.anon_sets.len() - 1)
    }

    fn push(&mut self, expr: &Expr) {
        let f = self.family;
        match expr {
            Expr::CtStateNew => self.exprs.extend(flag_is_set(
                Low::Ct {
                    key: CtKey::State,
                    dreg: reg::R1,
                },
                CT_STATE_NEW,
            )),
            Expr::CtStatusDnat => self.exprs.extend(flag_is_set(
                Low::Ct {
                    key: CtKey::Status,
                    dreg: reg::R1,
                },
                CT_STATUS_DNAT,
            )),
            Expr::DaddrInSet(set) => {
                self.exprs.push(load_addr(f, Addr::Destination, reg::R1));
                self.exprs.push(lookup(set, None));
            }
            Expr::SaddrInSet(set) => {
                self.exprs.push(load_addr(f, Addr::Source, reg::R1));
                self.exprs.push(lookup(set, None));
            }
            Expr::SaddrInCidrs { negate, cidrs } => {
                let nets = IpNet::aggregate(cidrs);
                if let [one] = nets.as_slice() {
                    self.exprs.extend(saddr_prefix(f, *negate, one));
                } else {
                    let set = self.anon(AnonSet {
                        kind: AnonKind::Prefixes(f),
                        elements: prefix_elements(f, &nets),
                    });
                    self.exprs.push(load_addr(f, Addr::Source, reg::R1));
                    self.exprs.push(Low::Lookup {
                        set,
                        sreg: reg::R1,
                        dreg: None,
                        invert: *negate,
                    });
                }
            }
            Expr::DestinationVmap(map) => {
                let words = addr_words(f);
                self.exprs.push(load_addr(f, Addr::Destination, reg::R1));
                self.exprs.push(load_l4proto(reg::at_word(words)));
                self.exprs.push(load_dport(reg::at_word(words + 1)));
                self.exprs.push(lookup(map, Some(reg::VERDICT)));
            }
            Expr::PortVmap(map) => {
                self.exprs.push(load_l4proto(reg::R1));
                self.exprs.push(load_dport(reg::at_word(1)));
                self.exprs.push(lookup(map, Some(reg::VERDICT)));
            }
            Expr::HairpinLookup(set) => {
                let words = addr_words(f);
                self.exprs.push(load_addr(f, Addr::Source, reg::R1));
                self.exprs
                    .push(load_addr(f, Addr::Destination, reg::at_word(words)));
                self.exprs.push(load_l4proto(reg::at_word(2 * words)));
                self.exprs.push(load_dport(reg::at_word(2 * words + 1)));
                self.exprs.push(lookup(set, None));
            }
            Expr::FibSaddrLocal => {
                self.exprs.push(Low::FibSaddrType { dreg: reg::R1 });
                self.exprs.push(Low::Cmp {
                    sreg: reg::R1,
                    op: CmpOp::Eq,
                    data: host_u32(RTN_LOCAL),
                });
            }
            Expr::L4Proto(p) => {
                self.exprs.push(load_l4proto(reg::R1));
                self.exprs.push(Low::Cmp {
                    sreg: reg::R1,
                    op: CmpOp::Eq,
                    data: vec![proto_number(*p)],
                });
            }
            Expr::MarkIsSet(mark) => self.exprs.extend(flag_is_set(
                Low::Meta {
                    key: MetaKey::Mark,
                    dreg: reg::R1,
                },
                *mark,
            )),
            Expr::SetMark(mark) => self.exprs.extend(set_mark(!*mark, *mark)),
            Expr::ToggleMark(mark) => self.exprs.extend(set_mark(u32::MAX, *mark)),
            Expr::Masquerade => self.exprs.push(Low::Masquerade {
                flags: NAT_RANDOM_FULLY,
            }),
            Expr::UpdateSaddr(set) => {
                self.exprs.push(load_addr(f, Addr::Source, reg::R1));
                self.exprs.push(Low::DynsetUpdate {
                    set: set.clone(),
                    sreg_key: reg::R1,
                });
            }
            Expr::Dnat(endpoints) => self.dnat(endpoints),
            Expr::DnatEndpointMap { tag, modulus, map } => {
                // The key `tag0 . tag1 . i` in three consecutive 4-byte registers, as nft
                // loads a concatenation: reg 1, reg 9, reg 10.
                for (word, offset) in (0u32..).zip(tag) {
                    self.exprs.push(Low::NumgenRandom {
                        dreg: reg::at_word(word),
                        modulus: 1,
                        offset: *offset,
                    });
                }
                self.exprs.push(Low::NumgenRandom {
                    dreg: reg::at_word(2),
                    modulus: *modulus,
                    offset: 0,
                });
                self.exprs.push(Low::Lookup {
                    set: SetRef::Named(map.clone()),
                    sreg: reg::R1,
                    dreg: Some(reg::R1),
                    invert: false,
                });
                self.exprs.push(Low::Dnat {
                    family: f,
                    addr_reg: reg::R1,
                    proto_reg: reg::at_word(addr_words(f)),
                    flags: 0,
                });
            }
            Expr::NumgenGoto(chains) => {
                let elements = chains
                    .iter()
                    .enumerate()
                    .map(|(i, chain)| AnonElem {
                        key: host_u32(index(i)),
                        interval_end: false,
                        data: None,
                        verdict: Some(Verdict::Goto(chain.as_str().into())),
                    })
                    .collect();
                let set = self.anon(AnonSet {
                    kind: AnonKind::GotoMap,
                    elements,
                });
                self.exprs.push(Low::NumgenRandom {
                    dreg: reg::R1,
                    modulus: index(chains.len()),
                    offset: 0,
                });
                self.exprs.push(Low::Lookup {
                    set,
                    sreg: reg::R1,
                    dreg: Some(reg::VERDICT),
                    invert: false,
                });
            }
            Expr::Reject => self.exprs.push(Low::Reject {
                kind: REJECT_ICMP_UNREACH,
                code: match f {
                    Family::Ip => ICMP_PORT_UNREACH,
                    Family::Ip6 => ICMPV6_PORT_UNREACH,
                },
            }),
            Expr::Verdict(v) => self.exprs.push(Low::ImmediateVerdict(v.clone())),
        }
    }

    fn dnat(&mut self, endpoints: &[(IpAddr, u16)]) {
        let family = self.family;
        if let [(ip, port)] = endpoints {
            self.exprs.push(Low::ImmediateData {
                dreg: reg::R1,
                data: ip_bytes(ip),
            });
            self.exprs.push(Low::ImmediateData {
                dreg: reg::R2,
                data: port_bytes(*port),
            });
            self.exprs.push(Low::Dnat {
                family,
                addr_reg: reg::R1,
                proto_reg: reg::R2,
                flags: NAT_PROTO_SPECIFIED,
            });
            return;
        }
        let elements = endpoints
            .iter()
            .enumerate()
            .map(|(i, (ip, port))| AnonElem {
                key: host_u32(index(i)),
                interval_end: false,
                data: Some(encode_addr_port(ip, *port)),
                verdict: None,
            })
            .collect();
        let set = self.anon(AnonSet {
            kind: AnonKind::DnatMap(family),
            elements,
        });
        self.exprs.push(Low::NumgenRandom {
            dreg: reg::R1,
            modulus: index(endpoints.len()),
            offset: 0,
        });
        self.exprs.push(Low::Lookup {
            set,
            sreg: reg::R1,
            dreg: Some(reg::R1),
            invert: false,
        });
        self.exprs.push(Low::Dnat {
            family,
            addr_reg: reg::R1,
            proto_reg: reg::at_word(addr_words(family)),
            flags: 0,
        });
    }
}

/// A position in a numgen map. Maps are bounded by the number of endpoints of a Service, far
/// below `u32::MAX`; saturate rather than wrap should that ever not hold.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The kernel form of `rule` in a table of `family`.
pub fn encode_rule(family: Family, rule: &Rule) -> LowRule {
    let mut enc = RuleEncoder {
        family,
        exprs: Vec::new(),
        anon_sets: Vec::new(),
    };
    for expr in &rule.exprs {
        enc.push(expr);
    }
    LowRule {
        exprs: enc.exprs,
        anon_sets: enc.anon_sets,
        comment: rule.comment.clone(),
    }
}
