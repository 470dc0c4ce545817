//! Set keys and data as bytes: nft's type ids, concatenation layout (each field padded to 4
//! bytes), and the interval elements of an anonymous prefix set. Pure; both directions.

use crate::low::AnonElem;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use model::Protocol;
use ruleset::{ElemKey, Family, KeyPart, KeyType, Parts};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// nft's data type id of `integer` (the key of a numgen map).
pub const TYPE_INTEGER: u32 = 4;
/// The kernel's data type of verdict map data (`NFT_DATA_VERDICT`).
pub const TYPE_VERDICT: u32 = 0xffff_ff00;
/// Bits per field in a concatenated type id.
const CONCAT_SHIFT: u32 = 6;

/// nft's data type id of one key field.
pub fn type_id(t: KeyType) -> u32 {
    match t {
        KeyType::Ipv4Addr => 7,
        KeyType::Ipv6Addr => 8,
        KeyType::InetProto => 12,
        KeyType::InetService => 13,
        KeyType::Integer => TYPE_INTEGER,
    }
}

fn type_from_id(id: u32) -> Option<KeyType> {
    Some(match id {
        7 => KeyType::Ipv4Addr,
        8 => KeyType::Ipv6Addr,
        12 => KeyType::InetProto,
        13 => KeyType::InetService,
        TYPE_INTEGER => KeyType::Integer,
        _ => return None,
    })
}

/// Bytes a field takes in a register (before padding).
pub fn field_len(t: KeyType) -> u32 {
    match t {
        KeyType::Ipv4Addr => 4,
        KeyType::Ipv6Addr => 16,
        KeyType::InetProto => 1,
        KeyType::InetService => 2,
        KeyType::Integer => 4,
    }
}

/// Bytes a field takes in a concatenation: its length rounded up to 4.
pub fn padded_len(t: KeyType) -> u32 {
    field_len(t).div_ceil(4) * 4
}

/// The type id of a (possibly concatenated) key: `t1 << 6(n-1) | … | tn`.
pub fn concat_type_id(types: &[KeyType]) -> u32 {
    types
        .iter()
        .fold(0, |acc, t| (acc << CONCAT_SHIFT) | type_id(*t))
}

/// The length of a key of these types: a single field unpadded, a concatenation padded.
pub fn key_len(types: &[KeyType]) -> u32 {
    match types {
        [one] => field_len(*one),
        many => many.iter().map(|t| padded_len(*t)).sum(),
    }
}

/// The key types of a type id and length, when they are types we use.
pub fn types_from_id(id: u32, len: u32) -> Option<Vec<KeyType>> {
    let mut rest = id;
    let mut types = Vec::new();
    while rest != 0 {
        types.push(type_from_id(rest & ((1 << CONCAT_SHIFT) - 1))?);
        rest >>= CONCAT_SHIFT;
    }
    types.reverse();
    (!types.is_empty() && key_len(&types) == len).then_some(types)
}

/// An address as the bytes of a register (network byte order).
pub fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A port as the bytes of a register (network byte order, 2 bytes).
pub fn port_bytes(port: u16) -> Vec<u8> {
    port.to_be_bytes().to_vec()
}

/// The IANA number of a protocol, as `meta l4proto` loads it.
pub fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// The protocol with this IANA number, when it is one Services use.
pub fn proto_from_number(n: u8) -> Option<Protocol> {
    match n {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        132 => Some(Protocol::Sctp),
        _ => None,
    }
}

fn part_bytes(part: &KeyPart) -> Vec<u8> {
    match part {
        KeyPart::Ip(ip) => ip_bytes(ip),
        KeyPart::Proto(p) => vec![proto_number(*p)],
        KeyPart::Port(port) => port_bytes(*port),
        // `numgen` writes its result in host byte order.
        KeyPart::Index(i) => i.to_ne_bytes().to_vec(),
    }
}

/// The bytes of an element key: a single field as is, a concatenation with each field padded
/// to 4 bytes.
pub fn encode_key(key: &ElemKey) -> Vec<u8> {
    let mut parts = key.parts();
    if let (Some(one), None) = (parts.next(), parts.next()) {
        return part_bytes(&one);
    }
    let mut out = Vec::new();
    for part in key.parts() {
        let mut bytes = part_bytes(&part);
        bytes.resize(padded_len(part.key_type()) as usize, 0);
        out.extend(bytes);
    }
    out
}

/// Concatenated data (`addr . port`) of a DNAT map element: each field padded to 4 bytes.
pub fn encode_addr_port(ip: &IpAddr, port: u16) -> Vec<u8> {
    let key = ElemKey::new(vec![KeyPart::Ip(*ip), KeyPart::Port(port)]);
    encode_key(&key)
}

fn parse_field(t: KeyType, bytes: &[u8]) -> Option<KeyPart> {
    Some(match t {
        KeyType::Ipv4Addr => {
            let octets: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            KeyPart::Ip(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        KeyType::Ipv6Addr => {
            let octets: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
            KeyPart::Ip(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        KeyType::InetProto => KeyPart::Proto(proto_from_number(*bytes.first()?)?),
        KeyType::InetService => {
            let b: [u8; 2] = bytes.get(..2)?.try_into().ok()?;
            KeyPart::Port(u16::from_be_bytes(b))
        }
        KeyType::Integer => {
            let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            KeyPart::Index(u32::from_ne_bytes(b))
        }
    })
}

/// Parses key bytes laid out as [`encode_key`] lays them out; `None` when they do not fit the
/// types.
pub fn decode_key(types: &[KeyType], bytes: &[u8]) -> Option<ElemKey> {
    if bytes.len() != key_len(types) as usize {
        return None;
    }
    if let [one] = types {
        return Some(ElemKey::new(vec![parse_field(*one, bytes)?]));
    }
    let mut parts = Parts::new();
    let mut at = 0usize;
    for t in types {
        let len = padded_len(*t) as usize;
        parts.push(parse_field(*t, bytes.get(at..at + len)?)?);
        at += len;
    }
    Some(ElemKey::new(parts))
}

/// Parses `addr . port` data of a DNAT map element of `family`.
pub fn decode_addr_port(family: Family, bytes: &[u8]) -> Option<(IpAddr, u16)> {
    match decode_key(&[family.addr_type(), KeyType::InetService], bytes)?
        .0
        .to_vec()
        .as_slice()
    {
        [KeyPart::Ip(ip), KeyPart::Port(port)] => Some((*ip, *port)),
        _ => None,
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_u128(family: Family, n: u128) -> Option<IpAddr> {
    match family {
        Family::Ip => Some(IpAddr::V4(Ipv4Addr::from(u32::try_from(n).ok()?))),
        Family::Ip6 => Some(IpAddr::V6(Ipv6Addr::from(n))),
    }
}

fn max_value(family: Family) -> u128 {
    match family {
        Family::Ip => u128::from(u32::MAX),
        Family::Ip6 => u128::MAX,
    }
}

/// The elements of an anonymous interval set holding these prefixes, as nft sends them: sorted,
/// each interval a start element and an end element at the first address after it (omitted at
/// the top of the address space), and a leading end element at 0 unless the first interval
/// starts there. Overlapping and adjacent prefixes must already be merged (nft merges them, and
/// `ruleset` keeps prefix lists aggregated).
pub fn prefix_elements(family: Family, cidrs: &[IpNet]) -> Vec<AnonElem> {
    let mut ranges: Vec<(u128, u128)> = cidrs
        .iter()
        .map(|net| (to_u128(&net.network()), to_u128(&net.broadcast())))
        .collect();
    ranges.sort();
    // nft merges adjacent intervals (and lists them as `a-b` ranges); so do we.
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(start) || start <= last.1 => {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    let ranges = merged;
    let zero = from_u128(family, 0)
        .map(|ip| ip_bytes(&ip))
        .unwrap_or_default();
    let mut out = Vec::new();
    if ranges.first().is_some_and(|(start, _)| *start != 0) {
        out.push(AnonElem {
            key: zero,
            interval_end: true,
            data: None,
            verdict: None,
        });
    }
    for (start, end) in ranges {
        let elem = |n: u128, interval_end| {
            from_u128(family, n).map(|ip| AnonElem {
                key: ip_bytes(&ip),
                interval_end,
                data: None,
                verdict: None,
            })
        };
        out.extend(elem(start, false));
        if end < max_value(family) {
            out.extend(elem(end + 1, true));
        }
    }
    out
}

/// The prefixes an anonymous interval set of `family` holds (each interval split into the fewest
/// prefixes that cover it, which is what [`IpNet::aggregate`] gives for the prefixes it was made
/// from); `None` when the elements are not well formed.
pub fn prefixes_from_elements(family: Family, elements: &[AnonElem]) -> Option<Vec<IpNet>> {
    let mut points: Vec<(u128, bool)> = Vec::new();
    for e in elements {
        let ip = match decode_key(&[family.addr_type()], &e.key)?.0.get(0) {
            Some(KeyPart::Ip(ip)) => ip,
            _ => return None,
        };
        points.push((to_u128(&ip), e.interval_end));
    }
    points.sort();
    let mut nets = Vec::new();
    let mut open: Option<u128> = None;
    for (value, is_end) in points {
        match (open, is_end) {
            (None, false) => open = Some(value),
            (None, true) => {} // the leading end marker at 0
            (Some(start), true) => {
                nets.extend(range_to_prefixes(family, start, value.checked_sub(1)?)?);
                open = None;
            }
            (Some(_), false) => return None,
        }
    }
    if let Some(start) = open {
        nets.extend(range_to_prefixes(family, start, max_value(family))?);
    }
    Some(nets)
}

/// The fewest prefixes that cover `start..=end` exactly, in address order.
fn range_to_prefixes(family: Family, start: u128, end: u128) -> Option<Vec<IpNet>> {
    if end < start {
        return None;
    }
    let bits: u32 = match family {
        Family::Ip => 32,
        Family::Ip6 => 128,
    };
    let mut out = Vec::new();
    let mut at = start;
    loop {
        // The largest aligned block starting at `at` that does not pass `end`.
        let mut host_bits = if at == 0 {
            bits
        } else {
            at.trailing_zeros().min(bits)
        };
        while host_bits > 0 {
            let last = if host_bits >= 128 {
                Some(u128::MAX)
            } else {
                at.checked_add((1u128 << host_bits) - 1)
            };
            if last.is_some_and(|l| l <= end) {
                break;
            }
            host_bits -= 1;
        }
        let prefix_len = u8::try_from(bits - host_bits).ok()?;
        out.push(match from_u128(family, at)? {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, prefix_len).ok()?),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new(v6, prefix_len).ok()?),
        });
        let last = if host_bits >= 128 {
            u128::MAX
        } else {
            at + ((1u128 << host_bits) - 1)
        };
        if last >= end {
            return Some(out);
        }
        at = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    #[test]
    fn concatenated_type_ids_match_nft() {
        let t = [KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService];
        assert_eq!(concat_type_id(&t), 0x730d);
        assert_eq!(key_len(&t), 12);
        assert_eq!(types_from_id(0x730d, 12), Some(t.to_vec()));
        assert_eq!(types_from_id(7, 4), Some(vec![KeyType::Ipv4Addr]));
        assert_eq!(types_from_id(7, 16), None);
    }

    #[test]
    fn concatenated_keys_are_padded_per_field() {
        let key = ElemKey::new(vec![
            KeyPart::Ip("10.96.0.10".parse().expect("ip")),
            KeyPart::Proto(Protocol::Tcp),
            KeyPart::Port(80),
        ]);
        let bytes = encode_key(&key);
        assert_eq!(bytes, vec![10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]);
        let types = [KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService];
        assert_eq!(decode_key(&types, &bytes), Some(key));
    }

    #[test]
    fn prefix_intervals_match_what_nft_sends() {
        // nft --debug=netlink for `ip saddr != { 10.0.0.0/8, 192.168.0.0/16 }`:
        // 0.0.0.0 end, 10.0.0.0, 11.0.0.0 end, 192.168.0.0, 192.169.0.0 end.
        let elems = prefix_elements(Family::Ip, &nets(&["10.0.0.0/8", "192.168.0.0/16"]));
        let got: Vec<(Vec<u8>, bool)> = elems
            .iter()
            .map(|e| (e.key.clone(), e.interval_end))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 0, 0, 0], true),
                (vec![10, 0, 0, 0], false),
                (vec![11, 0, 0, 0], true),
                (vec![192, 168, 0, 0], false),
                (vec![192, 169, 0, 0], true),
            ]
        );
        assert_eq!(
            prefixes_from_elements(Family::Ip, &elems),
            Some(nets(&["10.0.0.0/8", "192.168.0.0/16"]))
        );
    }

    #[test]
    fn prefix_intervals_at_the_edges_of_the_address_space() {
        for list in [
            &["0.0.0.0/1", "255.0.0.0/8"][..],
            &["0.0.0.0/0"][..],
            &["1.2.3.4/32", "255.255.255.255/32"][..],
        ] {
            let elems = prefix_elements(Family::Ip, &nets(list));
            assert_eq!(
                prefixes_from_elements(Family::Ip, &elems),
                Some(nets(list)),
                "{list:?}"
            );
        }
        for list in [&["::/0"][..], &["2001:db8::/32", "fd00::/8"][..]] {
            let elems = prefix_elements(Family::Ip6, &nets(list));
            assert_eq!(
                prefixes_from_elements(Family::Ip6, &elems),
                Some(nets(list)),
                "{list:?}"
            );
        }
    }

    #[test]
    fn adjacent_prefixes_merge_into_one_interval_like_nft() {
        // nft sends `{ 128.0.0.0/2, 192.0.0.0/3 }` as 0 end, 128.0.0.0, 224.0.0.0 end.
        let list = nets(&["128.0.0.0/2", "192.0.0.0/3"]);
        let elems = prefix_elements(Family::Ip, &list);
        let keys: Vec<Vec<u8>> = elems.iter().map(|e| e.key.clone()).collect();
        assert_eq!(
            keys,
            vec![vec![0, 0, 0, 0], vec![128, 0, 0, 0], vec![224, 0, 0, 0]]
        );
        assert_eq!(prefixes_from_elements(Family::Ip, &elems), Some(list));
    }

    #[test]
    fn a_range_that_is_not_a_prefix_decodes_to_the_prefixes_covering_it() {
        let elems = vec![
            AnonElem {
                key: vec![10, 0, 0, 0],
                interval_end: false,
                data: None,
                verdict: None,
            },
            AnonElem {
                key: vec![10, 0, 0, 3],
                interval_end: true,
                data: None,
                verdict: None,
            },
        ];
        assert_eq!(
            prefixes_from_elements(Family::Ip, &elems),
            Some(nets(&["10.0.0.0/31", "10.0.0.2/32"]))
        );
    }
}
