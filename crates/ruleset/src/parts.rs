//! [`Parts`]: the fields of a set element's key or value, packed into a few bytes.
//!
//! A node with 10 000 Services holds over 100 000 set elements, in the desired ruleset and again
//! in the one read back from the kernel. As a `Vec<KeyPart>` each key cost a 24-byte header and
//! a heap block of 20 bytes per part. Packed, a part is a tag byte and its value's bytes in
//! network order (1 to 17 bytes), and a key of up to 16 bytes (an endpoint map's `tag . tag .
//! index`, a ClusterIP's `addr . proto . port`) lives inline, with no allocation.
//!
//! The packing keeps the order: the tags follow [`KeyPart`]'s variants (an IPv4 address before
//! an IPv6 one), each tag's value has a fixed width, and values are big-endian, so comparing
//! two packed sequences byte by byte orders them exactly as comparing their `Vec<KeyPart>`
//! would. Sets keep their elements in that order, and the rendering follows it.

use crate::types::KeyPart;
use model::Protocol;
use smallvec::SmallVec;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A sequence of [`KeyPart`]s, packed (see the module documentation); ordered, compared and
/// hashed as the sequence of parts it holds.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Parts(SmallVec<[u8; 16]>);

const TAG_V4: u8 = 0;
const TAG_V6: u8 = 1;
const TAG_PROTO: u8 = 2;
const TAG_PORT: u8 = 3;
const TAG_INDEX: u8 = 4;

fn protocol_byte(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    }
}

fn protocol_of(b: u8) -> Protocol {
    match b {
        0 => Protocol::Tcp,
        1 => Protocol::Udp,
        _ => Protocol::Sctp,
    }
}

impl Parts {
    /// No parts.
    pub fn new() -> Parts {
        Parts::default()
    }

    /// Appends one part.
    pub fn push(&mut self, part: KeyPart) {
        match part {
            KeyPart::Ip(IpAddr::V4(a)) => {
                self.0.push(TAG_V4);
                self.0.extend_from_slice(&a.octets());
            }
            KeyPart::Ip(IpAddr::V6(a)) => {
                self.0.push(TAG_V6);
                self.0.extend_from_slice(&a.octets());
            }
            KeyPart::Proto(p) => self.0.extend_from_slice(&[TAG_PROTO, protocol_byte(p)]),
            KeyPart::Port(p) => {
                self.0.push(TAG_PORT);
                self.0.extend_from_slice(&p.to_be_bytes());
            }
            KeyPart::Index(i) => {
                self.0.push(TAG_INDEX);
                self.0.extend_from_slice(&i.to_be_bytes());
            }
        }
    }

    /// The parts, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.0 }
    }

    /// How many parts there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `i`-th part.
    pub fn get(&self, i: usize) -> Option<KeyPart> {
        self.iter().nth(i)
    }

    /// The parts as a vector.
    pub fn to_vec(&self) -> Vec<KeyPart> {
        self.iter().collect()
    }

    /// True when the first parts are `prefix`.
    pub fn starts_with(&self, prefix: &Parts) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

/// The parts of a [`Parts`], in order.
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl Iterator for Iter<'_> {
    type Item = KeyPart;

    fn next(&mut self) -> Option<KeyPart> {
        let (&tag, body) = self.rest.split_first()?;
        let width = match tag {
            TAG_V4 => 4,
            TAG_V6 => 16,
            TAG_PROTO => 1,
            TAG_PORT => 2,
            _ => 4,
        };
        // Only `push` writes the bytes, a whole part at a time: the body is always there.
        let (value, rest) = body.split_at(width.min(body.len()));
        self.rest = rest;
        let mut bytes = [0u8; 16];
        bytes[..value.len()].copy_from_slice(value);
        let [a, b, c, d, ..] = bytes;
        Some(match tag {
            TAG_V4 => KeyPart::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
            TAG_V6 => KeyPart::Ip(IpAddr::V6(Ipv6Addr::from(bytes))),
            TAG_PROTO => KeyPart::Proto(protocol_of(a)),
            TAG_PORT => KeyPart::Port(u16::from_be_bytes([a, b])),
            _ => KeyPart::Index(u32::from_be_bytes([a, b, c, d])),
        })
    }
}

impl<'a> IntoIterator for &'a Parts {
    type Item = KeyPart;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<KeyPart> for Parts {
    fn from_iter<I: IntoIterator<Item = KeyPart>>(iter: I) -> Parts {
        let mut parts = Parts::new();
        for part in iter {
            parts.push(part);
        }
        parts
    }
}

impl From<Vec<KeyPart>> for Parts {
    fn from(parts: Vec<KeyPart>) -> Parts {
        parts.into_iter().collect()
    }
}

impl From<&[KeyPart]> for Parts {
    fn from(parts: &[KeyPart]) -> Parts {
        parts.iter().copied().collect()
    }
}

impl<const N: usize> From<[KeyPart; N]> for Parts {
    fn from(parts: [KeyPart; N]) -> Parts {
        parts.into_iter().collect()
    }
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part() -> impl Strategy<Value = KeyPart> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| KeyPart::Ip(IpAddr::V4(Ipv4Addr::from(o)))),
            any::<[u8; 16]>().prop_map(|o| KeyPart::Ip(IpAddr::V6(Ipv6Addr::from(o)))),
            prop_oneof![
                Just(Protocol::Tcp),
                Just(Protocol::Udp),
                Just(Protocol::Sctp)
            ]
            .prop_map(KeyPart::Proto),
            any::<u16>().prop_map(KeyPart::Port),
            any::<u32>().prop_map(KeyPart::Index),
        ]
    }

    proptest! {
        #[test]
        fn packing_keeps_the_parts_and_their_order(
            a in proptest::collection::vec(part(), 0..5),
            b in proptest::collection::vec(part(), 0..5),
        ) {
            let (pa, pb) = (Parts::from(a.clone()), Parts::from(b.clone()));
            prop_assert_eq!(pa.to_vec(), a.clone());
            prop_assert_eq!(pa.len(), a.len());
            prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            prop_assert_eq!(pa == pb, a == b);
        }
    }

    #[test]
    fn common_keys_need_no_allocation() {
        let endpoint_map_key =
            Parts::from([KeyPart::Index(7), KeyPart::Index(9), KeyPart::Index(2)]);
        let cluster_ip = Parts::from([
            KeyPart::Ip("10.96.0.10".parse().expect("an address")),
            KeyPart::Proto(Protocol::Tcp),
            KeyPart::Port(443),
        ]);
        for p in [endpoint_map_key, cluster_ip] {
            assert!(!p.0.spilled(), "{p:?} went to the heap");
        }
        assert_eq!(std::mem::size_of::<Parts>(), 24);
    }
}
