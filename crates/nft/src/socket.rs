//! A small `NETLINK_NETFILTER` socket: open, size the buffers, send one batch in one
//! `sendmsg`, receive, and parse what comes back (netlink messages, errors and extended ACKs).
//!
//! Used by the read-back dumps and by the transaction transport. The socket belongs to the
//! network namespace of the thread that opens it.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Bytes of a netlink message header (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;
/// Extended ACK attribute: the error text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Extended ACK attribute: the byte offset of the offending attribute in the original message.
const NLMSGERR_ATTR_OFFS: u16 = 2;
/// Flag of an error message: extended ACK attributes follow the original message.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Flag of an error message: only the original message's header is included.
const NLM_F_CAPPED: u16 = 0x100;
/// Attribute type bits (the rest are the nested / byte-order flags).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Rounds `n` up to netlink's 4-byte alignment.
pub(crate) fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A bound `AF_NETLINK` / `NETLINK_NETFILTER` socket, closed on drop.
#[derive(Debug)]
pub(crate) struct NetlinkSocket {
    /// The socket.
    fd: OwnedFd,
    /// The port id the kernel assigned at bind time.
    portid: u32,
}

impl NetlinkSocket {
    /// Opens a netfilter netlink socket (close-on-exec) in the calling thread's network
    /// namespace and binds it, letting the kernel choose the port id.
    pub(crate) fn open() -> io::Result<NetlinkSocket> {
        // SAFETY: socket() takes no pointers; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor socket() just returned to us; nobody else owns it, so
        // the OwnedFd may close it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data, for which all zeroes is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let addr_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl that lives across the call, and `addr_len` is
        // its size; bind only reads it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                addr_len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut bound_len = addr_len;
        // SAFETY: `addr` is writable and `bound_len` says how many bytes getsockname may write
        // into it; both live across the call.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut bound_len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetlinkSocket {
            fd,
            portid: addr.nl_pid,
        })
    }

    /// The port id the kernel gave the socket (the `nlmsg_pid` of its replies).
    #[allow(dead_code)] // part of the socket's API; nothing needs it yet outside the tests
    pub(crate) fn portid(&self) -> u32 {
        self.portid
    }

    fn set_int_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: the option value is a c_int on the stack that lives across the call, and the
        // length passed is its size; setsockopt only reads it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sets the send and receive buffer sizes with `SO_SNDBUFFORCE` / `SO_RCVBUFFORCE`, which
    /// ignore the `net.core.{w,r}mem_max` limits (needs `CAP_NET_ADMIN`). Sizes above
    /// `i32::MAX` are clamped.
    pub(crate) fn set_buffers(&self, send: usize, recv: usize) -> io::Result<()> {
        let clamp = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        self.set_int_option(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, clamp(send))?;
        self.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, clamp(recv))
    }

    /// Asks the kernel for extended ACKs (`NETLINK_EXT_ACK`: an error text and the offset of
    /// the offending attribute) and for errors that carry only the original message's header
    /// (`NETLINK_CAP_ACK`), so each error stays small.
    pub(crate) fn enable_ext_ack(&self) -> io::Result<()> {
        self.set_int_option(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1)?;
        self.set_int_option(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)
    }

    /// Sends `parts` to the kernel as ONE message: one `sendmsg` with one iovec per part, so a
    /// whole batch arrives in one skb and is processed all or nothing. A short send is an
    /// error.
    pub(crate) fn send_all(&self, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut iov: Vec<libc::iovec> = parts
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: sockaddr_nl is plain data, for which all zeroes is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msghdr is plain data; all zeroes is valid (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut kernel as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: `msg` points at `kernel` and at `iov`, whose entries point into `parts`; all
        // of them outlive the call, and sendmsg only reads through these pointers (the iovec
        // bases are never written despite the `*mut` type).
        let sent = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != total {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short netlink send: {sent} of {total} bytes"),
            ));
        }
        Ok(())
    }

    /// Receives one datagram (one or more netlink messages) into `buf` and returns its length.
    /// With `wait == false` it does not block: when nothing is queued it fails with
    /// [`io::ErrorKind::WouldBlock`]. A datagram larger than `buf` is an error
    /// ([`io::ErrorKind::InvalidData`]) rather than silently cut.
    pub(crate) fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<usize> {
        let mut flags = libc::MSG_TRUNC;
        if !wait {
            flags |= libc::MSG_DONTWAIT;
        }
        loop {
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes that outlives the call;
            // recv writes at most that many bytes (MSG_TRUNC only changes the return value).
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a netlink datagram of {n} bytes did not fit the {}-byte buffer",
                        buf.len()
                    ),
                ));
            }
            return Ok(n);
        }
    }
}

/// One netlink message of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NlMessage<'a> {
    /// `nlmsg_type`.
    pub(crate) ty: u16,
    /// `nlmsg_flags`.
    pub(crate) flags: u16,
    /// `nlmsg_seq`.
    pub(crate) seq: u32,
    /// The bytes after the header, up to `nlmsg_len`.
    pub(crate) payload: &'a [u8],
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

/// The netlink messages in a received datagram, in order. Stops at the first header that does
/// not fit (shorter than a header, or longer than what is left), so truncated or garbage input
/// never reads out of bounds.
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = NlMessage<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u32_at(rest, 0)? as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            rest = &[];
            return None;
        }
        let msg = NlMessage {
            ty: u16_at(rest, 4)?,
            flags: u16_at(rest, 6)?,
            seq: u32_at(rest, 8)?,
            payload: rest.get(NLMSG_HDRLEN..len)?,
        };
        rest = rest.get(align4(len).min(rest.len())..).unwrap_or(&[]);
        Some(msg)
    })
}

/// The netlink attributes (type without the flag bits, value) in `buf`, in order; stops at the
/// first one that does not fit.
pub(crate) fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, 0)?);
        let ty = u16_at(rest, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            rest = &[];
            return None;
        }
        let value = rest.get(4..len)?;
        rest = rest.get(align4(len).min(rest.len())..).unwrap_or(&[]);
        Some((ty, value))
    })
}

/// The final status an `NLMSG_DONE` message carries: 0, or a negative errno when the dump
/// failed (a missing status reads as 0).
pub(crate) fn done_status(msg: &NlMessage<'_>) -> i32 {
    u32_at(msg.payload, 0).map_or(0, |v| v as i32)
}

/// An `NLMSG_ERROR` message: an error, or (with `errno == 0`) an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NlError {
    /// The error number, positive (`ENOENT` = 2); 0 for an ACK.
    pub(crate) errno: i32,
    /// The sequence number of the message this answers.
    pub(crate) seq: u32,
    /// The type of the message this answers.
    pub(crate) msg_type: u16,
    /// The kernel's extended ACK text (`NLMSGERR_ATTR_MSG`), when it sent one.
    pub(crate) ext_ack_msg: Option<String>,
    /// The byte offset in the original message of the attribute the kernel refused
    /// (`NLMSGERR_ATTR_OFFS`), when it sent one.
    pub(crate) ext_ack_offset: Option<u32>,
}

impl NlError {
    /// Parses an `NLMSG_ERROR` message: the error number, the original message's sequence
    /// number and type, and the extended ACK attributes. These follow the original header when
    /// the message's flags have `NLM_F_ACK_TLVS` (with `NLM_F_CAPPED` only the header is
    /// included, otherwise the whole original message). `None` for other message types or a
    /// payload too short to hold an error.
    ///
    /// It takes the whole message rather than only the payload because where the extended ACK
    /// attributes start depends on the message's flags.
    pub(crate) fn parse(msg: &NlMessage<'_>) -> Option<NlError> {
        if msg.ty != libc::NLMSG_ERROR as u16 {
            return None;
        }
        let payload = msg.payload;
        let raw = u32_at(payload, 0)? as i32;
        let orig_len = u32_at(payload, 4)? as usize;
        let msg_type = u16_at(payload, 8)?;
        let seq = u32_at(payload, 12)?;
        let mut err = NlError {
            errno: raw.checked_neg().unwrap_or(i32::MAX),
            seq,
            msg_type,
            ext_ack_msg: None,
            ext_ack_offset: None,
        };
        if msg.flags & NLM_F_ACK_TLVS != 0 {
            let copied = if msg.flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                orig_len.max(NLMSG_HDRLEN)
            };
            let tlvs = payload
                .get(4usize.saturating_add(align4(copied))..)
                .unwrap_or(&[]);
            for (ty, value) in attributes(tlvs) {
                match ty {
                    NLMSGERR_ATTR_MSG => {
                        let text = value.split(|b| *b == 0).next().unwrap_or(&[]);
                        err.ext_ack_msg = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    NLMSGERR_ATTR_OFFS => err.ext_ack_offset = u32_at(value, 0),
                    _ => {}
                }
            }
        }
        Some(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((len as u32).to_ne_bytes());
        out.extend(ty.to_ne_bytes());
        out.extend(flags.to_ne_bytes());
        out.extend(seq.to_ne_bytes());
        out.extend(4242u32.to_ne_bytes());
        out
    }

    fn message(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = header(NLMSG_HDRLEN + payload.len(), ty, flags, seq);
        out.extend(payload);
        out.resize(align4(out.len()), 0);
        out
    }

    fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(((4 + value.len()) as u16).to_ne_bytes());
        out.extend(ty.to_ne_bytes());
        out.extend(value);
        out.resize(align4(out.len()), 0);
        out
    }

    #[test]
    fn messages_splits_a_datagram_and_honours_alignment() {
        let mut buf = message(0xa05, 0x2, 7, &[1, 2, 3, 4, 5]); // padded to 24 bytes
        buf.extend(message(
            libc::NLMSG_DONE as u16,
            0x2,
            7,
            &0i32.to_ne_bytes(),
        ));
        let got: Vec<_> = messages(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ty, 0xa05);
        assert_eq!(got[0].flags, 0x2);
        assert_eq!(got[0].seq, 7);
        assert_eq!(got[0].payload, &[1, 2, 3, 4, 5]);
        assert_eq!(got[1].ty, libc::NLMSG_DONE as u16);
        assert_eq!(got[1].payload, &0i32.to_ne_bytes());
    }

    #[test]
    fn messages_stops_at_a_bad_length() {
        let mut buf = message(1, 0, 1, &[9; 4]);
        // Claims 100 bytes but only 20 follow.
        let mut bad = header(100, 2, 0, 2);
        bad.extend([0; 4]);
        buf.extend(bad);
        assert_eq!(messages(&buf).count(), 1);
        // Shorter than a header.
        let mut tiny = header(8, 2, 0, 2);
        tiny.truncate(16);
        assert_eq!(messages(&tiny).count(), 0);
        assert_eq!(messages(&[1, 2, 3]).count(), 0);
        assert_eq!(messages(&[]).count(), 0);
        // The last message may omit its padding.
        let mut unpadded = message(1, 0, 1, &[1, 2, 3, 4]);
        unpadded.extend(header(17, 3, 0, 2));
        unpadded.push(0xff);
        let got: Vec<_> = messages(&unpadded).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload, &[0xff]);
    }

    #[test]
    fn an_ack_and_a_plain_error() {
        let mut payload = 0i32.to_ne_bytes().to_vec();
        payload.extend(header(40, 0xa06, 0x5, 9));
        let buf = message(libc::NLMSG_ERROR as u16, NLM_F_CAPPED, 9, &payload);
        let msg = messages(&buf).next().expect("one message");
        let ack = NlError::parse(&msg).expect("an error message");
        assert_eq!(ack.errno, 0);
        assert_eq!(ack.seq, 9);
        assert_eq!(ack.msg_type, 0xa06);
        assert_eq!(ack.ext_ack_msg, None);

        let mut payload = (-libc::ENOENT).to_ne_bytes().to_vec();
        payload.extend(header(20, 0xa0c, 0x5, 11));
        payload.extend([0xde, 0xad, 0xbe, 0xef]); // the original body (not capped)
        let buf = message(libc::NLMSG_ERROR as u16, 0, 11, &payload);
        let msg = messages(&buf).next().expect("one message");
        let err = NlError::parse(&msg).expect("an error message");
        assert_eq!(
            (err.errno, err.seq, err.msg_type),
            (libc::ENOENT, 11, 0xa0c)
        );
        assert_eq!(err.ext_ack_offset, None);
    }

    #[test]
    fn extended_ack_after_a_capped_header() {
        let mut payload = (-libc::EINVAL).to_ne_bytes().to_vec();
        payload.extend(header(120, 0xa06, 0x5, 12)); // only the header: capped
        payload.extend(attr(NLMSGERR_ATTR_MSG, b"bad chain\0"));
        payload.extend(attr(NLMSGERR_ATTR_OFFS, &44u32.to_ne_bytes()));
        payload.extend(attr(99, &[1, 2, 3, 4]));
        let buf = message(
            libc::NLMSG_ERROR as u16,
            NLM_F_CAPPED | NLM_F_ACK_TLVS,
            12,
            &payload,
        );
        let msg = messages(&buf).next().expect("one message");
        let err = NlError::parse(&msg).expect("an error message");
        assert_eq!(err.errno, libc::EINVAL);
        assert_eq!(err.seq, 12);
        assert_eq!(err.ext_ack_msg.as_deref(), Some("bad chain"));
        assert_eq!(err.ext_ack_offset, Some(44));
    }

    #[test]
    fn extended_ack_after_a_whole_original_message() {
        let mut payload = (-libc::EEXIST).to_ne_bytes().to_vec();
        payload.extend(header(22, 0xa00, 0x5, 3));
        payload.extend([1, 2, 3, 4, 5, 6, 0, 0]); // 6 bytes of body, padded
        payload.extend(attr(NLMSGERR_ATTR_OFFS, &20u32.to_ne_bytes()));
        let buf = message(libc::NLMSG_ERROR as u16, NLM_F_ACK_TLVS, 3, &payload);
        let msg = messages(&buf).next().expect("one message");
        let err = NlError::parse(&msg).expect("an error message");
        assert_eq!(err.errno, libc::EEXIST);
        assert_eq!(err.ext_ack_offset, Some(20));
        assert_eq!(err.ext_ack_msg, None);
    }

    #[test]
    fn not_an_error_or_too_short() {
        let buf = message(0xa05, 0, 1, &[0; 20]);
        let msg = messages(&buf).next().expect("one message");
        assert_eq!(NlError::parse(&msg), None);
        let buf = message(libc::NLMSG_ERROR as u16, 0, 1, &[0; 10]);
        let msg = messages(&buf).next().expect("one message");
        assert_eq!(NlError::parse(&msg), None);
        // Truncated attributes are ignored, not read past the end.
        let mut payload = (-1i32).to_ne_bytes().to_vec();
        payload.extend(header(16, 0xa00, 0, 1));
        payload.extend([200, 0, 1, 0, b'x']);
        let buf = message(
            libc::NLMSG_ERROR as u16,
            NLM_F_CAPPED | NLM_F_ACK_TLVS,
            1,
            &payload,
        );
        let msg = messages(&buf).next().expect("one message");
        let err = NlError::parse(&msg).expect("an error message");
        assert_eq!((err.errno, err.ext_ack_msg), (1, None));
    }

    #[test]
    fn attributes_mask_the_flag_bits() {
        let mut buf = attr(0x8000 | 3, &[1, 0, 0, 0]);
        buf.extend(attr(1, b"ab"));
        let got: Vec<_> = attributes(&buf).collect();
        assert_eq!(got, vec![(3, &[1, 0, 0, 0][..]), (1, &b"ab"[..])]);
    }

    #[test]
    fn a_socket_opens_and_has_a_port_id() {
        // Opening a netlink socket needs no privilege and changes nothing.
        let Ok(sock) = NetlinkSocket::open() else {
            return; // e.g. a sandbox without netlink
        };
        assert_ne!(sock.portid(), 0);
        let mut buf = [0u8; 64];
        let err = sock.recv(&mut buf, false).expect_err("nothing queued");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
