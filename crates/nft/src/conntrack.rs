//! Stale UDP flows: deleting the conntrack entries that keep UDP traffic on a path the rules no
//! longer describe, over ctnetlink (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_CTNETLINK`),
//! with hand-built netlink attributes.
//!
//! UDP has no connection teardown: as long as a client keeps sending from the same source port,
//! its conntrack entry lives on (30 s, 120 s for streams, refreshed by every datagram), and NAT
//! is only decided for the first packet of an entry. So, as upstream kube-proxy does
//! (`pkg/proxy/conntrack/cleanup.go`), for UDP only:
//! - when an endpoint goes away, entries DNATed to it are deleted
//!   ([`UdpFlowMatch::ToEndpoint`]); otherwise the flow keeps going to the dead endpoint;
//! - when a service-port goes from no endpoints to some, entries to its ClusterIP, external
//!   and LoadBalancer IPs and NodePort are deleted ([`UdpFlowMatch::ToDestination`]): created
//!   while nothing served it, they were never DNATed and keep the flow blackholed.
//!
//! [`stale_udp_flows`] computes the matches from two [`model::NodeServices`];
//! [`delete_udp_flows`] dumps the conntrack table of the calling thread's network namespace
//! (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`), picks the UDP entries that match, and deletes each
//! by its original tuple (`IPCTNL_MSG_CT_DELETE`), many per `sendmsg`. ctnetlink is not
//! transactional: every deletion stands alone, and an entry that expired (or was replaced)
//! since the dump is not an error. The message building, the dump parser and the acknowledgement
//! accounting are pure and tested without a kernel.

mod plan;

pub use plan::{stale_udp_flows, UdpState};

use crate::socket::{align4, attributes, done_status, messages, NetlinkSocket, NlError};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of a netlink message header (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;
/// Bytes of `struct nfgenmsg` (family, version, resource id).
const NFGENMSG_LEN: usize = 4;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`: answer with an `NLMSG_ERROR` whose errno is 0 on success.
const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// Attribute flag: the value is a list of attributes.
const NLA_F_NESTED: u16 = 0x8000;

/// The conntrack subsystem of nfnetlink; message types carry it in the high byte.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`: the type of every entry of a dump.
const IPCTNL_MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET`.
const IPCTNL_MSG_CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// The message type of a dumped entry.
const CT_NEW: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
/// The message type of a dump request.
const CT_GET: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
/// The message type of a deletion.
const CT_DELETE: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;

/// `CTA_TUPLE_ORIG`: the original direction's tuple (nested).
const CTA_TUPLE_ORIG: u16 = 1;
/// `CTA_TUPLE_REPLY`: the reply direction's tuple (nested).
const CTA_TUPLE_REPLY: u16 = 2;
/// `CTA_ID`: the entry's id (big-endian u32); a deletion that carries it only deletes that
/// very entry.
const CTA_ID: u16 = 12;
/// `CTA_ZONE`: the conntrack zone (big-endian u16), present when not the default zone.
const CTA_ZONE: u16 = 18;
/// `CTA_TUPLE_IP`: the addresses of a tuple (nested).
const CTA_TUPLE_IP: u16 = 1;
/// `CTA_TUPLE_PROTO`: the protocol and ports of a tuple (nested).
const CTA_TUPLE_PROTO: u16 = 2;
/// `CTA_TUPLE_ZONE`: a directional zone of a tuple (big-endian u16).
const CTA_TUPLE_ZONE: u16 = 3;
/// `CTA_IP_V4_SRC`.
const CTA_IP_V4_SRC: u16 = 1;
/// `CTA_IP_V4_DST`.
const CTA_IP_V4_DST: u16 = 2;
/// `CTA_IP_V6_SRC`.
const CTA_IP_V6_SRC: u16 = 3;
/// `CTA_IP_V6_DST`.
const CTA_IP_V6_DST: u16 = 4;
/// `CTA_PROTO_NUM`: the IP protocol number (u8).
const CTA_PROTO_NUM: u16 = 1;
/// `CTA_PROTO_SRC_PORT` (big-endian u16).
const CTA_PROTO_SRC_PORT: u16 = 2;
/// `CTA_PROTO_DST_PORT` (big-endian u16).
const CTA_PROTO_DST_PORT: u16 = 3;

/// IANA protocol number of UDP.
const IPPROTO_UDP: u8 = 17;
/// `AF_INET` as the one byte of `nfgenmsg`.
const AF_INET: u8 = libc::AF_INET as u8;
/// `AF_INET6` as the one byte of `nfgenmsg`.
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Receive buffer. The kernel fills dump datagrams up to 32 KiB; a larger datagram is reported
/// by [`NetlinkSocket::recv`] rather than cut.
const RECV_BUFFER: usize = 64 * 1024;
/// Deletions per `sendmsg`. The kernel handles them all within the call and queues one
/// acknowledgement each; the receive buffer below holds a batch's worth with room to spare.
const DELETE_BATCH: usize = 128;
/// Socket buffer sizes (forced: the defaults could not hold a batch of acknowledgements).
const SEND_BUFFER_SIZE: usize = 1 << 20;
/// See [`SEND_BUFFER_SIZE`].
const RECV_BUFFER_SIZE: usize = 4 << 20;

/// Which UDP conntrack entries to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UdpFlowMatch {
    /// Entries DNATed to this endpoint: the reply tuple's source is `ip:port` and differs from
    /// the original destination (entries of traffic sent to the endpoint directly, without a
    /// Service, are left alone).
    ToEndpoint {
        /// The endpoint's address.
        ip: IpAddr,
        /// The endpoint's port.
        port: u16,
    },
    /// Entries whose original destination is `ip:port`: a ClusterIP, external or
    /// LoadBalancer IP and service port, or a node IP and NodePort.
    ToDestination {
        /// The destination address.
        ip: IpAddr,
        /// The destination port.
        port: u16,
    },
}

impl UdpFlowMatch {
    /// Whether `flow` is a UDP entry this selects.
    fn matches(&self, flow: &Flow) -> bool {
        if !flow.is_udp() {
            return false;
        }
        let (orig, reply) = (&flow.original, &flow.reply);
        match *self {
            UdpFlowMatch::ToEndpoint { ip, port } => {
                let dnat = (reply.src, reply.src_port) != (orig.dst, orig.dst_port);
                reply.src == ip && reply.src_port == Some(port) && dnat
            }
            UdpFlowMatch::ToDestination { ip, port } => {
                orig.dst == ip && orig.dst_port == Some(port)
            }
        }
    }

    /// The address the match is about.
    fn ip(&self) -> IpAddr {
        match *self {
            UdpFlowMatch::ToEndpoint { ip, .. } | UdpFlowMatch::ToDestination { ip, .. } => ip,
        }
    }
}

impl fmt::Display for UdpFlowMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UdpFlowMatch::ToEndpoint { ip, port } => {
                write!(f, "UDP flows DNATed to {}", SocketAddr::new(ip, port))
            }
            UdpFlowMatch::ToDestination { ip, port } => {
                write!(f, "UDP flows to {}", SocketAddr::new(ip, port))
            }
        }
    }
}

/// Why stale flows could not be (all) deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The netfilter netlink socket could not be opened or set up.
    #[error("{what}: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The conntrack table of one family could not be dumped (the socket failed, or the kernel
    /// refused: e.g. no `nf_conntrack_netlink`).
    #[error("dumping the {family} conntrack table: {source}")]
    Dump {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The error, with the kernel's extended ACK text when it sent one.
        #[source]
        source: io::Error,
    },
    /// The kernel's answer to a dump was not what ctnetlink promises.
    #[error("dumping the {family} conntrack table: {problem}")]
    Malformed {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// What was wrong.
        problem: String,
    },
    /// Some deletions failed (other than for entries already gone). The others were still
    /// attempted; `deleted` of them succeeded.
    #[error(
        "deleting stale UDP conntrack entries: {failed} of {attempted} failed ({deleted} \
         deleted); first failure: {first}"
    )]
    Delete {
        /// Entries deleted.
        deleted: usize,
        /// Deletions that failed or whose outcome is unknown.
        failed: usize,
        /// Deletions attempted.
        attempted: usize,
        /// The first failure: the entry and the error.
        first: String,
    },
}

impl ConntrackError {
    /// How many entries were deleted before or despite the failure (for the metric).
    pub fn deleted(&self) -> usize {
        match self {
            ConntrackError::Delete { deleted, .. } => *deleted,
            _ => 0,
        }
    }
}

/// Deletes the UDP conntrack entries of the calling thread's network namespace that match any of
/// `filters`, and returns how many were deleted. Entries that disappear between the dump and
/// their deletion (expired, or replaced by a new entry with the same tuple) are not counted and
/// are not an error. With no filters, nothing is asked of the kernel.
///
/// Only the families the filters' addresses belong to are dumped. Run it inside the node's
/// namespace (for instance with [`crate::in_netns`]); it needs `CAP_NET_ADMIN` there.
pub fn delete_udp_flows(filters: &[UdpFlowMatch]) -> Result<usize, ConntrackError> {
    if filters.is_empty() {
        return Ok(0);
    }
    let sock = NetlinkSocket::open().map_err(|source| ConntrackError::Socket {
        what: "opening a netfilter netlink socket",
        source,
    })?;
    sock.set_buffers(SEND_BUFFER_SIZE, RECV_BUFFER_SIZE)
        .map_err(|source| ConntrackError::Socket {
            what: "sizing the netlink socket's buffers",
            source,
        })?;
    sock.enable_ext_ack()
        .map_err(|source| ConntrackError::Socket {
            what: "enabling extended ACKs",
            source,
        })?;
    let mut seq = 1u32;
    let mut stale = Vec::new();
    for family in [AF_INET, AF_INET6] {
        if !filters.iter().any(|f| family_of(&f.ip()) == family) {
            continue;
        }
        let flows = dump_flows(&sock, family, seq)?;
        seq = seq.wrapping_add(1);
        stale.extend(
            flows
                .into_iter()
                .filter(|flow| filters.iter().any(|f| f.matches(flow))),
        );
    }
    // A dump may show an entry twice (the hash table can be resized while it runs).
    stale.sort();
    stale.dedup();
    delete_flows(&sock, &stale, seq)
}

/// `nfgenmsg` family of an address.
fn family_of(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// `IPv4` / `IPv6`, for messages.
fn family_name(family: u8) -> &'static str {
    if family == AF_INET6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The UDP entries of one family's conntrack table.
fn dump_flows(sock: &NetlinkSocket, family: u8, seq: u32) -> Result<Vec<Flow>, ConntrackError> {
    let name = family_name(family);
    let io_err = |source| ConntrackError::Dump {
        family: name,
        source,
    };
    sock.send_all(&[&dump_request(family, seq)])
        .map_err(io_err)?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut flows = Vec::new();
    loop {
        let n = sock.recv(&mut buf, true).map_err(io_err)?;
        let datagram = buf.get(..n).unwrap_or(&[]);
        match dump_datagram(datagram, seq, &mut flows) {
            Ok(DumpProgress::More) => {}
            Ok(DumpProgress::Done) => return Ok(flows),
            Err(DumpFailure::Refused(source)) => return Err(io_err(source)),
            Err(DumpFailure::Malformed(problem)) => {
                return Err(ConntrackError::Malformed {
                    family: name,
                    problem,
                })
            }
        }
    }
}

/// Deletes `flows` in batches of [`DELETE_BATCH`] deletions per `sendmsg`, with sequence
/// numbers from `seq`; counts the acknowledgements.
fn delete_flows(sock: &NetlinkSocket, flows: &[Flow], seq: u32) -> Result<usize, ConntrackError> {
    let mut outcome = Outcome {
        attempted: flows.len(),
        ..Outcome::default()
    };
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut next_seq = seq;
    let mut handled = 0;
    let mut broken = None;
    for chunk in flows.chunks(DELETE_BATCH) {
        let mut batch = DeleteBatch::new(chunk, next_seq);
        next_seq = next_seq.wrapping_add(chunk.len() as u32);
        let requests = batch.requests();
        let parts: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
        if let Err(e) = sock.send_all(&parts) {
            broken = Some(format!("sending a batch of {} deletions: {e}", chunk.len()));
            break;
        }
        // The kernel handles a netfilter netlink message within sendmsg, so every answer is
        // queued by now: reading without blocking cannot hang on a lost acknowledgement.
        while batch.pending() > 0 {
            match sock.recv(&mut buf, false) {
                Ok(n) => batch.answers(buf.get(..n).unwrap_or(&[])),
                Err(e) => {
                    let why = format!("receiving the acknowledgements: {e}");
                    batch.abandon(&why);
                    broken = Some(why);
                }
            }
        }
        handled += chunk.len();
        outcome.add(batch.finish());
        if broken.is_some() {
            break;
        }
    }
    if let Some(why) = broken {
        // The socket is unusable: the deletions not sent are not done.
        let rest = flows.len() - handled;
        if rest > 0 {
            outcome.fail(rest, format!("{rest} deletions not done: {why}"));
        }
    }
    outcome.into_result()
}

/// The totals of all batches.
#[derive(Debug, Default)]
struct Outcome {
    deleted: usize,
    failed: usize,
    attempted: usize,
    /// The first failure's description (empty: none).
    first: String,
}

impl Outcome {
    fn fail(&mut self, n: usize, what: String) {
        self.failed += n;
        if self.first.is_empty() {
            self.first = what;
        }
    }

    fn add(&mut self, batch: BatchResult) {
        self.deleted += batch.deleted;
        if let Some(first) = batch.first_failure {
            self.fail(batch.failed, first);
        }
    }

    fn into_result(self) -> Result<usize, ConntrackError> {
        if self.failed == 0 {
            Ok(self.deleted)
        } else {
            Err(ConntrackError::Delete {
                deleted: self.deleted,
                failed: self.failed,
                attempted: self.attempted,
                first: self.first,
            })
        }
    }
}

/// One direction of a conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Tuple {
    src: IpAddr,
    dst: IpAddr,
    /// The IP protocol number.
    proto: u8,
    /// The source port, for protocols with ports.
    src_port: Option<u16>,
    /// The destination port, for protocols with ports.
    dst_port: Option<u16>,
    /// A directional zone (`CTA_TUPLE_ZONE`), when the entry has one.
    zone: Option<u16>,
}

/// A conntrack entry, as much of it as deleting it takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Flow {
    /// `AF_INET` or `AF_INET6`.
    family: u8,
    original: Tuple,
    reply: Tuple,
    /// `CTA_ZONE`, when not the default zone.
    zone: Option<u16>,
    /// `CTA_ID`, as the kernel sent it.
    id: Option<u32>,
}

impl Flow {
    fn is_udp(&self) -> bool {
        self.original.proto == IPPROTO_UDP
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |ip: IpAddr, port: Option<u16>| match port {
            Some(p) => SocketAddr::new(ip, p).to_string(),
            None => ip.to_string(),
        };
        let (o, r) = (&self.original, &self.reply);
        write!(
            f,
            "protocol {} {} -> {} (reply from {})",
            o.proto,
            at(o.src, o.src_port),
            at(o.dst, o.dst_port),
            at(r.src, r.src_port)
        )?;
        if let Some(zone) = self.zone {
            write!(f, " zone {zone}")?;
        }
        Ok(())
    }
}

/// A netlink message: header, `nfgenmsg` and `attrs` (already encoded).
fn message(ty: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend((len as u32).to_ne_bytes());
    out.extend(ty.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills in ours
    out.extend([family, 0, 0, 0]); // NFNETLINK_V0, resource id 0
    out.extend(attrs);
    out
}

/// Appends an attribute (header, value, padding to 4 bytes).
fn put_attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend((len as u16).to_ne_bytes());
    out.extend(ty.to_ne_bytes());
    out.extend(value);
    out.resize(out.len() + (align4(len) - len), 0);
}

/// Appends a nested attribute whose attributes `fill` writes.
fn put_nested(out: &mut Vec<u8>, ty: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend([0u8; 4]);
    fill(out);
    let len = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    out[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

/// Appends a tuple attribute (`CTA_TUPLE_ORIG` or `CTA_TUPLE_REPLY`).
fn put_tuple(out: &mut Vec<u8>, ty: u16, tuple: &Tuple) {
    put_nested(out, ty, |out| {
        put_nested(out, CTA_TUPLE_IP, |out| match (tuple.src, tuple.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put_attr(out, CTA_IP_V4_SRC, &s.octets());
                put_attr(out, CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                put_attr(out, CTA_IP_V6_SRC, &v6(s).octets());
                put_attr(out, CTA_IP_V6_DST, &v6(d).octets());
            }
        });
        put_nested(out, CTA_TUPLE_PROTO, |out| {
            put_attr(out, CTA_PROTO_NUM, &[tuple.proto]);
            if let Some(port) = tuple.src_port {
                put_attr(out, CTA_PROTO_SRC_PORT, &port.to_be_bytes());
            }
            if let Some(port) = tuple.dst_port {
                put_attr(out, CTA_PROTO_DST_PORT, &port.to_be_bytes());
            }
        });
        if let Some(zone) = tuple.zone {
            put_attr(out, CTA_TUPLE_ZONE, &zone.to_be_bytes());
        }
    });
}

/// An address as IPv6 (IPv4 ones mapped; only reached for a mixed-family tuple, which the
/// kernel never sends).
fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The request to dump one family's conntrack table.
fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    message(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family, &[])
}

/// The request to delete one entry, acknowledged either way. It always carries the original
/// tuple (a deletion without a tuple would flush the whole table), the zone when there is one,
/// and the id, so that an entry created with the same tuple after the dump is not deleted.
fn delete_request(flow: &Flow, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::with_capacity(96);
    put_tuple(&mut attrs, CTA_TUPLE_ORIG, &flow.original);
    if let Some(zone) = flow.zone {
        put_attr(&mut attrs, CTA_ZONE, &zone.to_be_bytes());
    }
    if let Some(id) = flow.id {
        put_attr(&mut attrs, CTA_ID, &id.to_be_bytes());
    }
    message(
        CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        flow.family,
        &attrs,
    )
}

fn be16(value: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(value.get(..2)?.try_into().ok()?))
}

fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// Parses one tuple attribute's value.
fn parse_tuple(value: &[u8]) -> Result<Tuple, String> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut src_port, mut dst_port, mut zone) = (None, None, None);
    let address = |v: &[u8], len: usize| -> Result<IpAddr, String> {
        match (len, v.len()) {
            (4, 4) => Ok(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(v).map_err(|e| e.to_string())?,
            ))),
            (16, 16) => Ok(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(v).map_err(|e| e.to_string())?,
            ))),
            (want, got) => Err(format!("a {got}-byte address where {want} bytes belong")),
        }
    };
    for (ty, v) in attributes(value) {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, v) in attributes(v) {
                    match ty {
                        CTA_IP_V4_SRC => src = Some(address(v, 4)?),
                        CTA_IP_V4_DST => dst = Some(address(v, 4)?),
                        CTA_IP_V6_SRC => src = Some(address(v, 16)?),
                        CTA_IP_V6_DST => dst = Some(address(v, 16)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, v) in attributes(v) {
                    match ty {
                        CTA_PROTO_NUM => proto = v.first().copied(),
                        CTA_PROTO_SRC_PORT => src_port = be16(v),
                        CTA_PROTO_DST_PORT => dst_port = be16(v),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => zone = be16(v),
            _ => {}
        }
    }
    let src = src.ok_or("a tuple without a source address")?;
    let dst = dst.ok_or("a tuple without a destination address")?;
    let proto = proto.ok_or("a tuple without a protocol number")?;
    if proto == IPPROTO_UDP && (src_port.is_none() || dst_port.is_none()) {
        return Err("a UDP tuple without ports".into());
    }
    Ok(Tuple {
        src,
        dst,
        proto,
        src_port,
        dst_port,
        zone,
    })
}

/// Parses the payload (after the netlink header) of one dumped entry.
fn parse_flow(payload: &[u8]) -> Result<Flow, String> {
    let family = *payload
        .first()
        .ok_or("an entry without its nfgenmsg header")?;
    let attrs = payload
        .get(NFGENMSG_LEN..)
        .ok_or("an entry without its nfgenmsg header")?;
    let (mut original, mut reply, mut zone, mut id) = (None, None, None, None);
    for (ty, v) in attributes(attrs) {
        match ty {
            CTA_TUPLE_ORIG => {
                original = Some(parse_tuple(v).map_err(|e| format!("original tuple: {e}"))?)
            }
            CTA_TUPLE_REPLY => {
                reply = Some(parse_tuple(v).map_err(|e| format!("reply tuple: {e}"))?)
            }
            CTA_ZONE => zone = be16(v),
            CTA_ID => id = be32(v),
            _ => {}
        }
    }
    Ok(Flow {
        family,
        original: original.ok_or("an entry without an original tuple")?,
        reply: reply.ok_or("an entry without a reply tuple")?,
        zone,
        id,
    })
}

/// Where a dump stands after a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DumpProgress {
    /// More datagrams follow.
    More,
    /// `NLMSG_DONE` was received.
    Done,
}

/// Why a dump failed.
#[derive(Debug)]
enum DumpFailure {
    /// The kernel refused it (errno and extended ACK text).
    Refused(io::Error),
    /// The answer made no sense.
    Malformed(String),
}

/// An `io::Error` for a kernel error, with its extended ACK text.
fn kernel_error(errno: i32, text: Option<&str>) -> io::Error {
    let base = io::Error::from_raw_os_error(errno);
    match text {
        Some(t) => io::Error::new(base.kind(), format!("{base}: {t}")),
        None => base,
    }
}

/// Handles one datagram of the answer to the dump request `seq`: adds its UDP entries to
/// `flows`.
fn dump_datagram(
    datagram: &[u8],
    seq: u32,
    flows: &mut Vec<Flow>,
) -> Result<DumpProgress, DumpFailure> {
    if !datagram.is_empty() && messages(datagram).next().is_none() {
        return Err(DumpFailure::Malformed(format!(
            "a {}-byte datagram holds no netlink message",
            datagram.len()
        )));
    }
    for msg in messages(datagram) {
        if msg.seq != seq {
            return Err(DumpFailure::Malformed(format!(
                "a reply with sequence number {} to request {seq}",
                msg.seq
            )));
        }
        match i32::from(msg.ty) {
            libc::NLMSG_DONE => {
                // The payload is the dump's final status: 0 or a negative errno.
                let status = done_status(&msg);
                if status < 0 {
                    return Err(DumpFailure::Refused(kernel_error(-status, None)));
                }
                return Ok(DumpProgress::Done);
            }
            libc::NLMSG_ERROR => {
                let err = NlError::parse(&msg)
                    .ok_or_else(|| DumpFailure::Malformed("a truncated error message".into()))?;
                if err.errno != 0 {
                    return Err(DumpFailure::Refused(kernel_error(
                        err.errno,
                        err.ext_ack_msg.as_deref(),
                    )));
                }
            }
            libc::NLMSG_NOOP => {}
            libc::NLMSG_OVERRUN => {
                return Err(DumpFailure::Malformed(
                    "the kernel reported an overrun".into(),
                ))
            }
            _ if msg.ty == CT_NEW => {
                let flow = parse_flow(msg.payload).map_err(DumpFailure::Malformed)?;
                if flow.is_udp() {
                    flows.push(flow);
                }
            }
            _ => {
                return Err(DumpFailure::Malformed(format!(
                    "message type {:#x} in a conntrack dump",
                    msg.ty
                )))
            }
        }
    }
    Ok(DumpProgress::More)
}

/// One batch of deletions and the acknowledgements received for it.
struct DeleteBatch<'a> {
    flows: &'a [Flow],
    /// The sequence number of the first deletion; the others follow.
    first_seq: u32,
    /// Whether each deletion has been answered.
    answered: Vec<bool>,
    result: BatchResult,
}

/// What became of one batch.
#[derive(Debug, Default, PartialEq, Eq)]
struct BatchResult {
    /// Entries deleted.
    deleted: usize,
    /// Entries that were already gone (`ENOENT`).
    gone: usize,
    /// Deletions that failed or were never answered.
    failed: usize,
    /// The first failure, naming the entry.
    first_failure: Option<String>,
}

impl<'a> DeleteBatch<'a> {
    fn new(flows: &'a [Flow], first_seq: u32) -> Self {
        DeleteBatch {
            flows,
            first_seq,
            answered: vec![false; flows.len()],
            result: BatchResult::default(),
        }
    }

    /// The deletion messages, in order.
    fn requests(&self) -> Vec<Vec<u8>> {
        self.flows
            .iter()
            .enumerate()
            .map(|(i, flow)| delete_request(flow, self.first_seq.wrapping_add(i as u32)))
            .collect()
    }

    /// Deletions not answered yet.
    fn pending(&self) -> usize {
        self.answered.iter().filter(|a| !**a).count()
    }

    fn fail(&mut self, what: String) {
        self.result.failed += 1;
        self.result.first_failure.get_or_insert(what);
    }

    /// Records the acknowledgements in one received datagram. Messages that answer nothing
    /// of this batch are ignored.
    fn answers(&mut self, datagram: &[u8]) {
        for msg in messages(datagram) {
            let Some(err) = NlError::parse(&msg) else {
                continue;
            };
            let index = err.seq.wrapping_sub(self.first_seq) as usize;
            if err.msg_type != CT_DELETE || index >= self.flows.len() || self.answered[index] {
                continue;
            }
            self.answered[index] = true;
            match err.errno {
                0 => self.result.deleted += 1,
                libc::ENOENT => self.result.gone += 1,
                errno => {
                    let flow = &self.flows[index];
                    let error = kernel_error(errno, err.ext_ack_msg.as_deref());
                    self.fail(format!("{flow}: {error}"));
                }
            }
        }
    }

    /// Counts every unanswered deletion as failed, because of `why`.
    fn abandon(&mut self, why: &str) {
        for index in 0..self.flows.len() {
            if !self.answered[index] {
                self.answered[index] = true;
                let flow = &self.flows[index];
                self.fail(format!("{flow}: {why}"));
            }
        }
    }

    fn finish(self) -> BatchResult {
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLM_F_MULTI: u16 = 0x2;
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const CTA_STATUS: u16 = 3;
    const CTA_TIMEOUT: u16 = 7;
    const IPPROTO_ICMP: u8 = 1;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            src: ip(src),
            dst: ip(dst),
            proto: IPPROTO_UDP,
            src_port: Some(sport),
            dst_port: Some(dport),
            zone: None,
        }
    }

    /// A UDP entry from a client to a service, DNATed to an endpoint (as the kernel dumps it).
    fn dnat_flow(client: &str, vip: &str, endpoint: &str) -> Flow {
        Flow {
            family: family_of(&ip(client)),
            original: tuple(client, 40000, vip, 53),
            reply: tuple(endpoint, 8080, client, 40000),
            zone: None,
            id: Some(0xdead_beef),
        }
    }

    /// A dumped entry as the kernel sends it: nested flags, status and timeout around the
    /// tuples, and the id.
    fn dump_message(flow: &Flow, seq: u32) -> Vec<u8> {
        let mut attrs = Vec::new();
        put_tuple(&mut attrs, CTA_TUPLE_ORIG, &flow.original);
        put_tuple(&mut attrs, CTA_TUPLE_REPLY, &flow.reply);
        put_attr(&mut attrs, CTA_STATUS, &0x1aau32.to_be_bytes());
        put_attr(&mut attrs, CTA_TIMEOUT, &29u32.to_be_bytes());
        if let Some(zone) = flow.zone {
            put_attr(&mut attrs, CTA_ZONE, &zone.to_be_bytes());
        }
        if let Some(id) = flow.id {
            put_attr(&mut attrs, CTA_ID, &id.to_be_bytes());
        }
        message(CT_NEW, NLM_F_MULTI, seq, flow.family, &attrs)
    }

    fn done(seq: u32, status: i32) -> Vec<u8> {
        let mut out = Vec::new();
        let len = NLMSG_HDRLEN + 4;
        out.extend((len as u32).to_ne_bytes());
        out.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
        out.extend(NLM_F_MULTI.to_ne_bytes());
        out.extend(seq.to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend(status.to_ne_bytes());
        out
    }

    /// An acknowledgement (`errno` 0) or error for the message `ty`/`seq`, capped, with an
    /// optional extended ACK text.
    fn ack(ty: u16, seq: u32, errno: i32, text: Option<&str>) -> Vec<u8> {
        let mut payload = (-errno).to_ne_bytes().to_vec();
        payload.extend(100u32.to_ne_bytes());
        payload.extend(ty.to_ne_bytes());
        payload.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        payload.extend(seq.to_ne_bytes());
        payload.extend(0u32.to_ne_bytes());
        let mut flags = NLM_F_CAPPED;
        if let Some(text) = text {
            flags |= NLM_F_ACK_TLVS;
            put_attr(&mut payload, 1, format!("{text}\0").as_bytes());
        }
        let len = NLMSG_HDRLEN + payload.len();
        let mut out = Vec::new();
        out.extend((len as u32).to_ne_bytes());
        out.extend((libc::NLMSG_ERROR as u16).to_ne_bytes());
        out.extend(flags.to_ne_bytes());
        out.extend(seq.to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend(payload);
        out
    }

    fn payload(msg: &[u8]) -> &[u8] {
        &msg[NLMSG_HDRLEN..]
    }

    #[test]
    fn message_types_and_flags_of_ctnetlink() {
        assert_eq!(CT_NEW, 0x100);
        assert_eq!(CT_GET, 0x101);
        assert_eq!(CT_DELETE, 0x102);
        assert_eq!(NFNL_SUBSYS_CTNETLINK, libc::NFNL_SUBSYS_CTNETLINK as u16);
        assert_eq!(NLM_F_DUMP, (libc::NLM_F_ROOT | libc::NLM_F_MATCH) as u16);
        assert_eq!(NLM_F_ACK, libc::NLM_F_ACK as u16);
    }

    #[test]
    fn a_dump_request_is_a_bare_get_with_the_family() {
        let req = dump_request(AF_INET6, 7);
        assert_eq!(req.len(), 20);
        let msg = messages(&req).next().expect("one message");
        assert_eq!(msg.ty, 0x101);
        assert_eq!(msg.flags, NLM_F_REQUEST | 0x300);
        assert_eq!(msg.seq, 7);
        assert_eq!(msg.payload, &[AF_INET6, 0, 0, 0]);
    }

    #[test]
    fn parses_an_ipv4_dnat_entry() {
        let flow = dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10");
        let bytes = dump_message(&flow, 3);
        // The nested attributes carry NLA_F_NESTED, as the kernel's do.
        assert_eq!(
            u16::from_ne_bytes([bytes[22], bytes[23]]),
            CTA_TUPLE_ORIG | NLA_F_NESTED
        );
        let parsed = parse_flow(payload(&bytes)).expect("an entry");
        assert_eq!(parsed, flow);
        assert_eq!(parsed.original.src, ip("10.244.1.2"));
        assert_eq!(parsed.original.dst_port, Some(53));
        assert_eq!(parsed.reply.src, ip("10.244.1.10"));
        assert_eq!(parsed.reply.src_port, Some(8080));
        assert_eq!(parsed.id, Some(0xdead_beef));
        assert!(parsed.is_udp());
    }

    #[test]
    fn parses_an_ipv6_entry_with_zones() {
        let mut flow = dnat_flow("fd00:10:244:1::2", "fd00:10:96::53", "fd00:10:244:1::10");
        flow.zone = Some(7);
        flow.original.zone = Some(7);
        let parsed = parse_flow(payload(&dump_message(&flow, 1))).expect("an entry");
        assert_eq!(parsed, flow);
        assert_eq!(parsed.family, AF_INET6);
    }

    #[test]
    fn parses_handwritten_kernel_bytes() {
        // 10.0.0.1:1234 -> 10.96.0.1:53 UDP, reply from 10.0.0.9:8080, written out byte by
        // byte (little-endian host) rather than with the encoder under test.
        #[rustfmt::skip]
        let attrs: Vec<u8> = vec![
            // CTA_TUPLE_ORIG, nested, 52 bytes
            52, 0, 1, 0x80,
              // CTA_TUPLE_IP, nested, 20 bytes
              20, 0, 1, 0x80,
                8, 0, 1, 0, 10, 0, 0, 1,
                8, 0, 2, 0, 10, 96, 0, 1,
              // CTA_TUPLE_PROTO, nested, 28 bytes
              28, 0, 2, 0x80,
                5, 0, 1, 0, 17, 0, 0, 0,
                6, 0, 2, 0, 0x04, 0xd2, 0, 0,
                6, 0, 3, 0, 0, 53, 0, 0,
            // CTA_TUPLE_REPLY, nested, 52 bytes
            52, 0, 2, 0x80,
              20, 0, 1, 0x80,
                8, 0, 1, 0, 10, 0, 0, 9,
                8, 0, 2, 0, 10, 0, 0, 1,
              28, 0, 2, 0x80,
                5, 0, 1, 0, 17, 0, 0, 0,
                6, 0, 2, 0, 0x1f, 0x90, 0, 0,
                6, 0, 3, 0, 0x04, 0xd2, 0, 0,
            // CTA_ID
            8, 0, 12, 0, 0x12, 0x34, 0x56, 0x78,
        ];
        let mut payload = vec![AF_INET, 0, 0, 0];
        payload.extend(attrs);
        if cfg!(target_endian = "big") {
            return; // the lengths and types above are little-endian
        }
        let flow = parse_flow(&payload).expect("an entry");
        assert_eq!(flow.original, tuple("10.0.0.1", 1234, "10.96.0.1", 53));
        assert_eq!(flow.reply, tuple("10.0.0.9", 8080, "10.0.0.1", 1234));
        assert_eq!(flow.id, Some(0x1234_5678));
        assert_eq!(flow.zone, None);
    }

    #[test]
    fn broken_entries_are_errors_not_panics() {
        let flow = dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10");
        let bytes = dump_message(&flow, 1);
        let body = payload(&bytes);
        // Cut anywhere: an error or a valid prefix, never a panic.
        for cut in 0..body.len() {
            let _ = parse_flow(&body[..cut]);
        }
        assert!(parse_flow(&[]).is_err());
        assert!(parse_flow(&[AF_INET, 0]).is_err());
        // No reply tuple.
        let mut attrs = Vec::new();
        put_tuple(&mut attrs, CTA_TUPLE_ORIG, &flow.original);
        let mut p = vec![AF_INET, 0, 0, 0];
        p.extend(&attrs);
        let err = parse_flow(&p).expect_err("no reply tuple");
        assert!(err.contains("reply tuple"), "{err}");
        // A UDP tuple without ports.
        let mut no_ports = flow.original.clone();
        no_ports.src_port = None;
        let mut attrs = Vec::new();
        put_tuple(&mut attrs, CTA_TUPLE_ORIG, &no_ports);
        put_tuple(&mut attrs, CTA_TUPLE_REPLY, &flow.reply);
        let mut p = vec![AF_INET, 0, 0, 0];
        p.extend(&attrs);
        let err = parse_flow(&p).expect_err("no ports");
        assert!(
            err.contains("original tuple: a UDP tuple without ports"),
            "{err}"
        );
        // A 5-byte IPv4 address.
        let mut attrs = Vec::new();
        put_nested(&mut attrs, CTA_TUPLE_ORIG, |out| {
            put_nested(out, CTA_TUPLE_IP, |out| {
                put_attr(out, CTA_IP_V4_SRC, &[1, 2, 3, 4, 5]);
            })
        });
        let mut p = vec![AF_INET, 0, 0, 0];
        p.extend(&attrs);
        assert!(parse_flow(&p).expect_err("bad address").contains("5-byte"));
    }

    #[test]
    fn an_icmp_entry_parses_and_matches_nothing() {
        let t = |src: &str, dst: &str| Tuple {
            src: ip(src),
            dst: ip(dst),
            proto: IPPROTO_ICMP,
            src_port: None,
            dst_port: None,
            zone: None,
        };
        let flow = Flow {
            family: AF_INET,
            original: t("10.244.1.2", "10.96.0.53"),
            reply: t("10.244.1.10", "10.244.1.2"),
            zone: None,
            id: None,
        };
        let parsed = parse_flow(payload(&dump_message(&flow, 1))).expect("an entry");
        assert_eq!(parsed, flow);
        assert!(!parsed.is_udp());
        let all = [
            UdpFlowMatch::ToDestination {
                ip: ip("10.96.0.53"),
                port: 0,
            },
            UdpFlowMatch::ToEndpoint {
                ip: ip("10.244.1.10"),
                port: 0,
            },
        ];
        assert!(all.iter().all(|m| !m.matches(&parsed)));
    }

    #[test]
    fn matching() {
        let to_x = dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10");
        let endpoint = |ip_: &str, port| UdpFlowMatch::ToEndpoint { ip: ip(ip_), port };
        let destination = |ip_: &str, port| UdpFlowMatch::ToDestination { ip: ip(ip_), port };
        assert!(endpoint("10.244.1.10", 8080).matches(&to_x));
        assert!(!endpoint("10.244.1.10", 8081).matches(&to_x), "port");
        assert!(!endpoint("10.244.1.11", 8080).matches(&to_x), "address");
        assert!(destination("10.96.0.53", 53).matches(&to_x));
        assert!(!destination("10.96.0.53", 54).matches(&to_x));
        assert!(
            !destination("10.244.1.10", 8080).matches(&to_x),
            "not DNATed to"
        );

        // Sent straight to the pod: not DNATed, left alone by ToEndpoint.
        let direct = Flow {
            family: AF_INET,
            original: tuple("10.244.1.2", 40000, "10.244.1.10", 8080),
            reply: tuple("10.244.1.10", 8080, "10.244.1.2", 40000),
            zone: None,
            id: None,
        };
        assert!(!endpoint("10.244.1.10", 8080).matches(&direct));
        assert!(destination("10.244.1.10", 8080).matches(&direct));

        // Blackholed before the service had endpoints: no NAT at all.
        let blackholed = Flow {
            family: AF_INET,
            original: tuple("10.244.1.2", 40000, "10.96.0.53", 53),
            reply: tuple("10.96.0.53", 53, "10.244.1.2", 40000),
            zone: None,
            id: None,
        };
        assert!(destination("10.96.0.53", 53).matches(&blackholed));
        assert!(!endpoint("10.96.0.53", 53).matches(&blackholed));

        // A DNATed TCP entry is never a UDP flow.
        let mut tcp = to_x.clone();
        tcp.original.proto = 6;
        tcp.reply.proto = 6;
        assert!(!endpoint("10.244.1.10", 8080).matches(&tcp));
        assert!(!destination("10.96.0.53", 53).matches(&tcp));

        // IPv6.
        let v6 = dnat_flow("fd00:10:244:1::2", "fd00:10:96::53", "fd00:10:244:1::10");
        assert!(endpoint("fd00:10:244:1::10", 8080).matches(&v6));
        assert!(destination("fd00:10:96::53", 53).matches(&v6));
        assert!(!endpoint("10.244.1.10", 8080).matches(&v6));
    }

    #[test]
    fn a_deletion_carries_the_original_tuple_zone_and_id() {
        let mut flow = dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10");
        flow.zone = Some(3);
        let req = delete_request(&flow, 41);
        let msgs: Vec<_> = messages(&req).collect();
        assert_eq!(msgs.len(), 1);
        let msg = msgs[0];
        assert_eq!(msg.ty, 0x102);
        assert_eq!(msg.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msg.seq, 41);
        assert_eq!(&msg.payload[..4], &[AF_INET, 0, 0, 0]);
        let attrs: Vec<_> = attributes(&msg.payload[4..]).collect();
        let types: Vec<u16> = attrs.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, vec![CTA_TUPLE_ORIG, CTA_ZONE, CTA_ID]);
        assert_eq!(parse_tuple(attrs[0].1).expect("a tuple"), flow.original);
        assert_eq!(attrs[1].1, &[0, 3]);
        assert_eq!(attrs[2].1, &[0xde, 0xad, 0xbe, 0xef]);
        // Byte for byte: header, nfgenmsg, then the tuple.
        assert_eq!(req.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(req[..4].try_into().expect("4")),
            req.len() as u32
        );

        // Without zone and id: the tuple alone, still never a bare (flushing) deletion.
        let plain = Flow {
            zone: None,
            id: None,
            ..dnat_flow("fd00:10:244:1::2", "fd00:10:96::53", "fd00:10:244:1::10")
        };
        let req = delete_request(&plain, 1);
        let msg = messages(&req).next().expect("a message");
        assert_eq!(msg.payload[0], AF_INET6);
        let attrs: Vec<_> = attributes(&msg.payload[4..]).collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, CTA_TUPLE_ORIG);
        assert_eq!(parse_tuple(attrs[0].1).expect("a tuple"), plain.original);
    }

    #[test]
    fn a_dump_collects_udp_entries_until_done() {
        let a = dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10");
        let b = dnat_flow("10.244.1.3", "10.96.0.53", "10.244.1.11");
        let mut tcp = dnat_flow("10.244.1.4", "10.96.0.80", "10.244.1.11");
        tcp.original.proto = 6;
        tcp.reply.proto = 6;
        let mut first = dump_message(&a, 5);
        first.extend(dump_message(&tcp, 5));
        let mut second = dump_message(&b, 5);
        second.extend(done(5, 0));
        let mut flows = Vec::new();
        assert_eq!(
            dump_datagram(&first, 5, &mut flows).expect("fine"),
            DumpProgress::More
        );
        assert_eq!(
            dump_datagram(&second, 5, &mut flows).expect("fine"),
            DumpProgress::Done
        );
        assert_eq!(flows, vec![a.clone(), b]);

        // Refusals and nonsense.
        let mut flows = Vec::new();
        match dump_datagram(&ack(CT_GET, 5, libc::EPERM, Some("no")), 5, &mut flows) {
            Err(DumpFailure::Refused(e)) => {
                assert_eq!(e.raw_os_error(), None);
                assert!(e.to_string().contains("no"), "{e}");
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dump_datagram(&done(5, -libc::EINTR), 5, &mut flows),
            Err(DumpFailure::Refused(e)) if e.raw_os_error() == Some(libc::EINTR)
        ));
        assert!(matches!(
            dump_datagram(&dump_message(&a, 6), 5, &mut flows),
            Err(DumpFailure::Malformed(m)) if m.contains("sequence number 6")
        ));
        assert!(matches!(
            dump_datagram(&[1, 2, 3], 5, &mut flows),
            Err(DumpFailure::Malformed(_))
        ));
        let mut other = dump_message(&a, 5);
        other[4] = 0x05; // 0x105: not an entry
        assert!(matches!(
            dump_datagram(&other, 5, &mut flows),
            Err(DumpFailure::Malformed(m)) if m.contains("0x105")
        ));
        assert!(flows.is_empty());
    }

    #[test]
    fn acknowledgements_are_counted_per_deletion() {
        let flows = vec![
            dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10"),
            dnat_flow("10.244.1.3", "10.96.0.53", "10.244.1.10"),
            dnat_flow("10.244.1.4", "10.96.0.53", "10.244.1.10"),
            dnat_flow("10.244.1.5", "10.96.0.53", "10.244.1.10"),
        ];
        let mut batch = DeleteBatch::new(&flows, 100);
        let requests = batch.requests();
        assert_eq!(requests.len(), 4);
        let seqs: Vec<u32> = requests
            .iter()
            .map(|r| messages(r).next().expect("a message").seq)
            .collect();
        assert_eq!(seqs, vec![100, 101, 102, 103]);
        assert_eq!(batch.pending(), 4);

        let mut datagram = ack(CT_DELETE, 100, 0, None);
        datagram.extend(ack(CT_DELETE, 102, libc::ENOENT, None));
        // Answers to something else, and a repeated answer, are ignored.
        datagram.extend(ack(CT_GET, 101, 0, None));
        datagram.extend(ack(CT_DELETE, 7, 0, None));
        datagram.extend(ack(CT_DELETE, 100, 0, None));
        batch.answers(&datagram);
        assert_eq!(batch.pending(), 2);
        batch.answers(&ack(CT_DELETE, 103, libc::EPERM, Some("not allowed")));
        assert_eq!(batch.pending(), 1);
        batch.abandon("receiving the acknowledgements: gone");
        assert_eq!(batch.pending(), 0);
        let result = batch.finish();
        assert_eq!(result.deleted, 1);
        assert_eq!(result.gone, 1);
        assert_eq!(result.failed, 2);
        let first = result.first_failure.clone().expect("a failure");
        assert!(
            first.starts_with(
                "protocol 17 10.244.1.5:40000 -> 10.96.0.53:53 (reply from 10.244.1.10:8080): "
            ),
            "{first}"
        );
        assert!(first.contains("not allowed"), "{first}");

        let mut outcome = Outcome::default();
        outcome.add(BatchResult {
            deleted: 3,
            gone: 1,
            ..BatchResult::default()
        });
        outcome.attempted = 4;
        assert_eq!(outcome.into_result().expect("no failure"), 3);
        let mut outcome = Outcome::default();
        outcome.add(result);
        outcome.attempted = 4;
        let err = outcome.into_result().expect_err("failures");
        assert_eq!(err.deleted(), 1);
        let text = err.to_string();
        assert!(text.contains("2 of 4 failed (1 deleted)"), "{text}");
        assert!(text.contains("10.244.1.5:40000"), "{text}");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let flows = vec![
            dnat_flow("10.244.1.2", "10.96.0.53", "10.244.1.10"),
            dnat_flow("10.244.1.3", "10.96.0.53", "10.244.1.10"),
        ];
        let mut batch = DeleteBatch::new(&flows, u32::MAX);
        let seqs: Vec<u32> = batch
            .requests()
            .iter()
            .map(|r| messages(r).next().expect("a message").seq)
            .collect();
        assert_eq!(seqs, vec![u32::MAX, 0]);
        batch.answers(&ack(CT_DELETE, 0, 0, None));
        batch.answers(&ack(CT_DELETE, u32::MAX, 0, None));
        assert_eq!(batch.finish().deleted, 2);
    }

    #[test]
    fn no_filters_ask_nothing_of_the_kernel() {
        // Returns before opening a socket: safe in any namespace.
        assert_eq!(delete_udp_flows(&[]).expect("nothing to do"), 0);
    }

    #[test]
    fn matches_display_their_socket_address() {
        let m = UdpFlowMatch::ToEndpoint {
            ip: ip("fd00::1"),
            port: 53,
        };
        assert_eq!(m.to_string(), "UDP flows DNATed to [fd00::1]:53");
        let m = UdpFlowMatch::ToDestination {
            ip: ip("10.96.0.1"),
            port: 53,
        };
        assert_eq!(m.to_string(), "UDP flows to 10.96.0.1:53");
    }
}
