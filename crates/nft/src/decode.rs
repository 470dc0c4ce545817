//! Kernel expressions back to typed rules: the inverse of [`crate::encode`]. A rule we did not
//! write (or cannot recognise) decodes to an error; the reader keeps it as an
//! [`undecodable_rule`] so the planner replaces the chain's contents.
//!
//! Each typed expression is a fixed sequence of kernel expressions; decoding walks the rule and
//! matches one sequence at a time. Flags the kernel adds on its own (the NAT
//! proto-specified flag) are not compared.

use crate::encode::{
    CT_STATE_NEW, CT_STATUS_DNAT, ICMPV6_PORT_UNREACH, ICMP_PORT_UNREACH, NAT_RANDOM_FULLY,
    REJECT_ICMP_UNREACH, RTN_LOCAL,
};
use crate::keys::{decode_addr_port, prefixes_from_elements, proto_from_number};
use crate::low::{
    reg, AnonElem, AnonKind, AnonSet, CmpOp, CtKey, Low, LowRule, MetaKey, PayloadBase, SetRef,
};
use ipnet::IpNet;
use ruleset::{Expr, Family, Rule, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a kernel rule is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised rule: {0}")]
pub struct DecodeError(pub String);

/// A placeholder for a rule in the kernel that is not one of ours: no expressions, and a
/// comment saying what it was. Never equal to a rule we generate, so the planner flushes the
/// chain and writes it again.
pub fn undecodable_rule(what: &str) -> Rule {
    Rule {
        exprs: Vec::new(),
        comment: Some(format!("kube-nftproxy cannot read this rule: {what}")),
    }
}

/// The typed rule a kernel rule of a `family` table encodes.
pub fn decode_rule(family: Family, low: &LowRule) -> Result<Rule, DecodeError> {
    let decoder = Decoder {
        family,
        anon: &low.anon_sets,
    };
    let mut exprs = Vec::new();
    let mut rest = low.exprs.as_slice();
    while !rest.is_empty() {
        let (expr, used) = decoder.one(rest).ok_or_else(|| {
            DecodeError(format!(
                "expression {} of {}: {:?}",
                low.exprs.len() - rest.len() + 1,
                low.exprs.len(),
                rest.first()
            ))
        })?;
        exprs.push(expr);
        rest = &rest[used..];
    }
    if exprs.is_empty() {
        return Err(DecodeError("a rule without expressions".into()));
    }
    Ok(Rule {
        exprs,
        comment: low.comment.clone(),
    })
}

struct Decoder<'a> {
    family: Family,
    anon: &'a [AnonSet],
}

fn host_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

impl Decoder<'_> {
    fn addr_len(&self) -> u32 {
        match self.family {
            Family::Ip => 4,
            Family::Ip6 => 16,
        }
    }

    fn words(&self) -> u32 {
        self.addr_len() / 4
    }

    fn saddr_offset(&self) -> u32 {
        match self.family {
            Family::Ip => 12,
            Family::Ip6 => 8,
        }
    }

    fn daddr_offset(&self) -> u32 {
        match self.family {
            Family::Ip => 16,
            Family::Ip6 => 24,
        }
    }

    /// `low` loads the whole source (`daddr == false`) or destination address into `dreg`.
    fn is_addr(&self, low: &Low, daddr: bool, dreg: u32) -> bool {
        let want = if daddr {
            self.daddr_offset()
        } else {
            self.saddr_offset()
        };
        matches!(low, Low::Payload { base: PayloadBase::Network, offset, len, dreg: d }
            if *offset == want && *len == self.addr_len() && *d == dreg)
    }

    fn anon_set(&self, set: &SetRef, kind: AnonKind) -> Option<&AnonSet> {
        match set {
            SetRef::Anonymous(i) => self.anon.get(*i).filter(|s| s.kind == kind),
            SetRef::Named(_) => None,
        }
    }

    fn ip(&self, bytes: &[u8]) -> Option<IpAddr> {
        match self.family {
            Family::Ip => {
                let b: [u8; 4] = bytes.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            }
            Family::Ip6 => {
                let b: [u8; 16] = bytes.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
        }
    }

    /// One typed expression at the start of `lows`, and how many kernel expressions it used.
    fn one(&self, lows: &[Low]) -> Option<(Expr, usize)> {
        use Low::*;
        let r1 = reg::R1;
        let w = self.words();
        match lows {
            [Ct { key, dreg }, Bitwise {
                sreg,
                dreg: d2,
                mask,
                xor,
            }, Cmp {
                sreg: s2,
                op: CmpOp::Neq,
                data,
            }, ..]
                if [*dreg, *sreg, *d2, *s2] == [r1; 4] && is_zero(xor) && is_zero(data) =>
            {
                let expr = match (key, host_u32(mask)?) {
                    (CtKey::State, CT_STATE_NEW) => Expr::CtStateNew,
                    (CtKey::Status, CT_STATUS_DNAT) => Expr::CtStatusDnat,
                    _ => return None,
                };
                Some((expr, 3))
            }
            [Meta {
                key: MetaKey::Mark,
                dreg,
            }, Bitwise {
                sreg,
                dreg: d2,
                mask,
                xor,
            }, Cmp {
                sreg: s2,
                op: CmpOp::Neq,
                data,
            }, ..]
                if [*dreg, *sreg, *d2, *s2] == [r1; 4] && is_zero(xor) && is_zero(data) =>
            {
                Some((Expr::MarkIsSet(host_u32(mask)?), 3))
            }
            [Meta {
                key: MetaKey::Mark,
                dreg,
            }, Bitwise {
                sreg,
                dreg: d2,
                mask,
                xor,
            }, MetaSetMark { sreg: s2 }, ..]
                if [*dreg, *sreg, *d2, *s2] == [r1; 4] =>
            {
                let (mask, xor) = (host_u32(mask)?, host_u32(xor)?);
                let expr = if mask == u32::MAX {
                    Expr::ToggleMark(xor)
                } else if mask == !xor {
                    Expr::SetMark(xor)
                } else {
                    return None;
                };
                Some((expr, 3))
            }
            [load, Lookup {
                set: SetRef::Named(set),
                sreg,
                dreg: None,
                invert: false,
            }, ..]
                if *sreg == r1 =>
            {
                if self.is_addr(load, true, r1) {
                    Some((Expr::DaddrInSet(set.clone()), 2))
                } else if self.is_addr(load, false, r1) {
                    Some((Expr::SaddrInSet(set.clone()), 2))
                } else {
                    None
                }
            }
            [load, Lookup {
                set,
                sreg,
                dreg: None,
                invert,
            }, ..]
                if *sreg == r1 && self.is_addr(load, false, r1) =>
            {
                let prefixes = self.anon_set(set, AnonKind::Prefixes(self.family))?;
                let cidrs = prefixes_from_elements(self.family, &prefixes.elements)?;
                Some((
                    Expr::SaddrInCidrs {
                        negate: *invert,
                        cidrs,
                    },
                    2,
                ))
            }
            [load, DynsetUpdate { set, sreg_key }, ..]
                if *sreg_key == r1 && self.is_addr(load, false, r1) =>
            {
                Some((Expr::UpdateSaddr(set.clone()), 2))
            }
            [Payload {
                base: PayloadBase::Network,
                offset,
                len,
                dreg,
            }, Bitwise {
                sreg,
                dreg: d2,
                mask,
                xor,
            }, Cmp { sreg: s2, op, data }, ..]
                if *offset == self.saddr_offset()
                    && *len == self.addr_len()
                    && [*dreg, *sreg, *d2, *s2] == [r1; 4]
                    && is_zero(xor) =>
            {
                let prefix_len = prefix_of_mask(mask)?;
                let net = IpNet::new(self.ip(data)?, prefix_len).ok()?;
                (net.network() == net.addr()).then_some(())?;
                Some((saddr_cidr(*op, net), 3))
            }
            [Payload {
                base: PayloadBase::Network,
                offset,
                len,
                dreg,
            }, Cmp { sreg, op, data }, ..]
                if *offset == self.saddr_offset()
                    && *len > 0
                    && *len <= self.addr_len()
                    && *dreg == r1
                    && *sreg == r1
                    && data.len() == *len as usize =>
            {
                let mut full = data.clone();
                full.resize(self.addr_len() as usize, 0);
                let prefix_len = u8::try_from(len * 8).ok()?;
                let net = IpNet::new(self.ip(&full)?, prefix_len).ok()?;
                Some((saddr_cidr(*op, net), 2))
            }
            [daddr, Meta {
                key: MetaKey::L4Proto,
                dreg: proto_reg,
            }, Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: port_reg,
            }, Lookup {
                set: SetRef::Named(map),
                sreg,
                dreg: Some(reg::VERDICT),
                invert: false,
            }, ..]
                if self.is_addr(daddr, true, r1)
                    && *proto_reg == reg::at_word(w)
                    && *port_reg == reg::at_word(w + 1)
                    && *sreg == r1 =>
            {
                Some((Expr::DestinationVmap(map.clone()), 4))
            }
            [Meta {
                key: MetaKey::L4Proto,
                dreg,
            }, Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: port_reg,
            }, Lookup {
                set: SetRef::Named(map),
                sreg,
                dreg: Some(reg::VERDICT),
                invert: false,
            }, ..]
                if *dreg == r1 && *port_reg == reg::at_word(1) && *sreg == r1 =>
            {
                Some((Expr::PortVmap(map.clone()), 3))
            }
            [saddr, daddr, Meta {
                key: MetaKey::L4Proto,
                dreg: proto_reg,
            }, Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: port_reg,
            }, Lookup {
                set: SetRef::Named(set),
                sreg,
                dreg: None,
                invert: false,
            }, ..]
                if self.is_addr(saddr, false, r1)
                    && self.is_addr(daddr, true, reg::at_word(w))
                    && *proto_reg == reg::at_word(2 * w)
                    && *port_reg == reg::at_word(2 * w + 1)
                    && *sreg == r1 =>
            {
                Some((Expr::HairpinLookup(set.clone()), 5))
            }
            [FibSaddrType { dreg }, Cmp {
                sreg,
                op: CmpOp::Eq,
                data,
            }, ..]
                if *dreg == r1 && *sreg == r1 && host_u32(data) == Some(RTN_LOCAL) =>
            {
                Some((Expr::FibSaddrLocal, 2))
            }
            [Meta {
                key: MetaKey::L4Proto,
                dreg,
            }, Cmp {
                sreg,
                op: CmpOp::Eq,
                data,
            }, ..]
                if *dreg == r1 && *sreg == r1 =>
            {
                let [number] = data.as_slice() else {
                    return None;
                };
                Some((Expr::L4Proto(proto_from_number(*number)?), 2))
            }
            [Masquerade { flags }, ..] if *flags == NAT_RANDOM_FULLY => Some((Expr::Masquerade, 1)),
            [ImmediateData { dreg, data: addr }, ImmediateData {
                dreg: d2,
                data: port,
            }, Dnat {
                family,
                addr_reg,
                proto_reg,
                ..
            }, ..]
                if *dreg == r1
                    && *d2 == reg::R2
                    && *family == self.family
                    && *addr_reg == r1
                    && *proto_reg == reg::R2 =>
            {
                let port: [u8; 2] = port.as_slice().try_into().ok()?;
                let endpoint = (self.ip(addr)?, u16::from_be_bytes(port));
                Some((Expr::Dnat(vec![endpoint]), 3))
            }
            [NumgenRandom {
                dreg: d0,
                modulus: 1,
                offset: tag0,
            }, NumgenRandom {
                dreg: d1,
                modulus: 1,
                offset: tag1,
            }, NumgenRandom {
                dreg: d2,
                modulus,
                offset: 0,
            }, Lookup {
                set: SetRef::Named(map),
                sreg,
                dreg: Some(out),
                invert: false,
            }, Dnat {
                family,
                addr_reg,
                proto_reg,
                ..
            }, ..]
                if *d0 == r1
                    && *d1 == reg::at_word(1)
                    && *d2 == reg::at_word(2)
                    && *sreg == r1
                    && *out == r1
                    && *family == self.family
                    && *addr_reg == r1
                    && *proto_reg == reg::at_word(w) =>
            {
                let expr = Expr::DnatEndpointMap {
                    tag: [*tag0, *tag1],
                    modulus: *modulus,
                    map: map.clone(),
                };
                Some((expr, 5))
            }
            [NumgenRandom {
                dreg,
                modulus,
                offset: 0,
            }, Lookup {
                set,
                sreg,
                dreg: Some(out),
                invert: false,
            }, rest @ ..]
                if *dreg == r1 && *sreg == r1 =>
            {
                if *out == reg::VERDICT {
                    let map = self.anon_set(set, AnonKind::GotoMap)?;
                    let chains = numbered(map, *modulus, |e| match &e.verdict {
                        Some(Verdict::Goto(chain)) => Some(chain.to_string()),
                        _ => None,
                    })?;
                    return Some((Expr::NumgenGoto(chains), 2));
                }
                let Some(Dnat {
                    family,
                    addr_reg,
                    proto_reg,
                    ..
                }) = rest.first()
                else {
                    return None;
                };
                if *out != r1
                    || *family != self.family
                    || *addr_reg != r1
                    || *proto_reg != reg::at_word(w)
                {
                    return None;
                }
                let map = self.anon_set(set, AnonKind::DnatMap(self.family))?;
                let endpoints = numbered(map, *modulus, |e| {
                    decode_addr_port(self.family, e.data.as_deref()?)
                })?;
                Some((Expr::Dnat(endpoints), 3))
            }
            [Reject { kind, code }, ..] if *kind == REJECT_ICMP_UNREACH => {
                let want = match self.family {
                    Family::Ip => ICMP_PORT_UNREACH,
                    Family::Ip6 => ICMPV6_PORT_UNREACH,
                };
                (*code == want).then_some((Expr::Reject, 1))
            }
            [ImmediateVerdict(v), ..] => Some((Expr::Verdict(v.clone()), 1)),
            _ => None,
        }
    }
}

fn saddr_cidr(op: CmpOp, net: IpNet) -> Expr {
    Expr::SaddrInCidrs {
        negate: op == CmpOp::Neq,
        cidrs: vec![net],
    }
}

/// The prefix length of a contiguous network mask.
fn prefix_of_mask(mask: &[u8]) -> Option<u8> {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let full = ones / 8;
    let ok = mask.iter().enumerate().all(|(i, b)| {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        if i < full {
            *b == 0xff
        } else if i == full {
            b.leading_ones() == b.count_ones()
        } else {
            *b == 0
        }
    });
    ok.then(|| u8::try_from(ones).ok()).flatten()
}

/// The values of a numgen map whose keys are exactly 0..modulus, in key order.
fn numbered<T>(
    map: &AnonSet,
    modulus: u32,
    value: impl Fn(&AnonElem) -> Option<T>,
) -> Option<Vec<T>> {
    let mut keyed: Vec<(u32, T)> = map
        .elements
        .iter()
        .map(|e| Some((host_u32(&e.key)?, value(e)?)))
        .collect::<Option<_>>()?;
    keyed.sort_by_key(|(k, _)| *k);
    let in_order = keyed
        .iter()
        .enumerate()
        .all(|(i, (k, _))| usize::try_from(*k).ok() == Some(i));
    (in_order && usize::try_from(modulus).ok() == Some(keyed.len()))
        .then(|| keyed.into_iter().map(|(_, v)| v).collect())
}
