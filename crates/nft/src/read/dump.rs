//! One netlink dump: send a request, collect every reply message up to `NLMSG_DONE`, and turn
//! errors and interrupted dumps into [`DumpError`]s. Also the ruleset generation
//! (`NFT_MSG_GETGEN`), which the reader compares before and after its dumps.

use crate::socket::{attributes, done_status, messages, NetlinkSocket, NlError, NlMessage};
use std::io;

/// Bytes of a netlink message header.
const NLMSG_HDRLEN: usize = 16;
/// Reply message flag: the object list changed while the dump ran (`NLM_F_DUMP_INTR`).
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// nf_tables message types carry the subsystem in the high byte.
const NFT_SUBSYS: u16 = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8;
/// `NFTA_GEN_ID`: the generation counter in an `NFT_MSG_NEWGEN` message.
const NFTA_GEN_ID: u16 = 1;
/// Receive buffer. The kernel fills dump datagrams up to 32 KiB; a larger datagram is reported
/// by [`NetlinkSocket::recv`] rather than cut.
const RECV_BUFFER: usize = 64 * 1024;

/// A netlink message in a 4-byte aligned buffer, so libnftnl may read it as a `nlmsghdr`.
pub(super) struct Message {
    /// The bytes, as 32-bit words (for the alignment).
    words: Vec<u32>,
    /// The message length in bytes (`nlmsg_len`), at most `4 * words.len()`.
    len: usize,
}

impl Message {
    /// A zeroed buffer of `capacity` bytes (rounded up to 4) in which libnftnl builds a
    /// request; call [`Message::finish`] afterwards.
    pub(super) fn buffer(capacity: usize) -> Message {
        Message {
            words: vec![0; capacity.div_ceil(4)],
            len: 0,
        }
    }

    /// The start of the buffer, for libnftnl's builders.
    pub(super) fn as_mut_ptr(&mut self) -> *mut libc::c_char {
        self.words.as_mut_ptr().cast()
    }

    /// The capacity in bytes.
    pub(super) fn capacity(&self) -> usize {
        self.words.len() * 4
    }

    /// Takes the message length from the header that was built in the buffer; `None` when it
    /// is shorter than a header or longer than the buffer.
    pub(super) fn finish(mut self) -> Option<Message> {
        let len = *self.words.first()? as usize;
        if len < NLMSG_HDRLEN || len > self.capacity() {
            return None;
        }
        self.len = len;
        Some(self)
    }

    /// A copy of a received message, header included (the sender port id is left 0: libnftnl
    /// does not read it).
    pub(super) fn from_reply(msg: &NlMessage<'_>) -> Message {
        let len = NLMSG_HDRLEN + msg.payload.len();
        let mut bytes = Vec::with_capacity(len + 3);
        bytes.extend((len as u32).to_ne_bytes());
        bytes.extend(msg.ty.to_ne_bytes());
        bytes.extend(msg.flags.to_ne_bytes());
        bytes.extend(msg.seq.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        bytes.extend(msg.payload);
        bytes.resize(len.div_ceil(4) * 4, 0);
        let words = bytes
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Message { words, len }
    }

    /// The message bytes (`nlmsg_len` of them).
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: the words are one initialised allocation of 4 * words.len() bytes, `len` is
        // at most that (checked in `finish`, exact in `from_reply`), u8 has no alignment
        // requirement, and the slice borrows `self`, so the allocation outlives it.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The message as a netlink header pointer for libnftnl's parsers, valid while `self` is.
    pub(super) fn header(&self) -> *const libc::nlmsghdr {
        self.words.as_ptr().cast()
    }
}

/// Why a dump produced no (usable) answer.
#[derive(Debug)]
pub(super) enum DumpError {
    /// The kernel flagged the dump `NLM_F_DUMP_INTR`: the ruleset changed while it ran.
    Interrupted,
    /// The kernel refused the request.
    Refused {
        /// The positive errno.
        errno: i32,
        /// The kernel's extended ACK text, if any.
        text: Option<String>,
    },
    /// The socket failed.
    Io(io::Error),
    /// The answer was not what netlink promises.
    Malformed(String),
}

impl DumpError {
    /// As an `io::Error` (for [`crate::ReadError::Io`]).
    pub(super) fn into_io(self) -> io::Error {
        match self {
            DumpError::Interrupted => io::Error::new(
                io::ErrorKind::Interrupted,
                "the ruleset changed during the dump",
            ),
            DumpError::Refused { errno, text } => {
                let base = io::Error::from_raw_os_error(errno);
                match text {
                    Some(t) => io::Error::new(base.kind(), format!("{base}: {t}")),
                    None => base,
                }
            }
            DumpError::Io(e) => e,
            DumpError::Malformed(problem) => io::Error::new(io::ErrorKind::InvalidData, problem),
        }
    }
}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> Self {
        DumpError::Io(e)
    }
}

fn refused(err: NlError) -> DumpError {
    DumpError::Refused {
        errno: err.errno,
        text: err.ext_ack_msg,
    }
}

/// Sends `request` (a dump request with sequence number `seq`) and returns every reply
/// message until `NLMSG_DONE`. Reads to the end even when the dump was interrupted, so the
/// socket can be used for the next request.
pub(super) fn dump(
    sock: &NetlinkSocket,
    request: &Message,
    seq: u32,
) -> Result<Vec<Message>, DumpError> {
    sock.send_all(&[request.bytes()])?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::new();
    let mut interrupted = false;
    loop {
        let n = sock.recv(&mut buf, true)?;
        let datagram = buf.get(..n).unwrap_or(&[]);
        if n > 0 && messages(datagram).next().is_none() {
            return Err(DumpError::Malformed(format!(
                "a {n}-byte datagram holds no netlink message"
            )));
        }
        for msg in messages(datagram) {
            if msg.seq != seq {
                return Err(DumpError::Malformed(format!(
                    "a reply with sequence number {} to request {seq}",
                    msg.seq
                )));
            }
            if msg.flags & NLM_F_DUMP_INTR != 0 {
                interrupted = true;
            }
            match i32::from(msg.ty) {
                libc::NLMSG_DONE => {
                    // The payload is the dump's final status: 0 or a negative errno.
                    let status = done_status(&msg);
                    if status < 0 {
                        return Err(DumpError::Refused {
                            errno: -status,
                            text: None,
                        });
                    }
                    return if interrupted {
                        Err(DumpError::Interrupted)
                    } else {
                        Ok(out)
                    };
                }
                libc::NLMSG_ERROR => {
                    let err = NlError::parse(&msg)
                        .ok_or_else(|| DumpError::Malformed("a truncated error message".into()))?;
                    if err.errno != 0 {
                        return Err(refused(err));
                    }
                }
                libc::NLMSG_NOOP => {}
                libc::NLMSG_OVERRUN => {
                    return Err(DumpError::Malformed(
                        "the kernel reported an overrun".into(),
                    ))
                }
                _ => out.push(Message::from_reply(&msg)),
            }
        }
    }
}

/// The ruleset generation (`NFT_MSG_GETGEN`): it changes with every committed transaction, so
/// equal values before and after a series of dumps mean they saw one consistent ruleset.
pub(super) fn generation(sock: &NetlinkSocket, seq: u32) -> Result<u32, DumpError> {
    let mut request = Vec::with_capacity(NLMSG_HDRLEN + 4);
    request.extend(((NLMSG_HDRLEN + 4) as u32).to_ne_bytes());
    request.extend((NFT_SUBSYS | libc::NFT_MSG_GETGEN as u16).to_ne_bytes());
    request.extend(NLM_F_REQUEST.to_ne_bytes());
    request.extend(seq.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    // struct nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
    request.extend([0u8; 4]);
    sock.send_all(&[&request])?;
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let n = sock.recv(&mut buf, true)?;
        for msg in messages(buf.get(..n).unwrap_or(&[])) {
            if msg.seq != seq {
                continue;
            }
            if i32::from(msg.ty) == libc::NLMSG_ERROR {
                match NlError::parse(&msg) {
                    Some(err) if err.errno != 0 => return Err(refused(err)),
                    Some(_) => continue,
                    None => return Err(DumpError::Malformed("a truncated error message".into())),
                }
            }
            if msg.ty != NFT_SUBSYS | libc::NFT_MSG_NEWGEN as u16 {
                return Err(DumpError::Malformed(format!(
                    "message type {:#x} in answer to a generation request",
                    msg.ty
                )));
            }
            let attrs = msg.payload.get(4..).unwrap_or(&[]);
            return attributes(attrs)
                .find(|(ty, _)| *ty == NFTA_GEN_ID)
                .and_then(|(_, v)| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
                .ok_or_else(|| DumpError::Malformed("a generation message without an id".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_copy_is_an_aligned_message() {
        let payload = [2u8, 0, 0, 1, 5, 0, 1, 0, b'x'];
        let msg = NlMessage {
            ty: 0xa00,
            flags: 2,
            seq: 77,
            payload: &payload,
        };
        let copy = Message::from_reply(&msg);
        assert_eq!(copy.bytes().len(), 16 + payload.len());
        assert_eq!(copy.header() as usize % 4, 0);
        let back: Vec<_> = messages(copy.bytes()).collect();
        assert_eq!(back, vec![msg]);
    }

    #[test]
    fn finish_checks_the_built_length() {
        let mut m = Message::buffer(64);
        assert_eq!(m.capacity(), 64);
        assert!(Message::buffer(64).finish().is_none(), "nothing built");
        let b = m.as_mut_ptr();
        assert!(!b.is_null());
        m.words[0] = 20;
        let m = m.finish().expect("a 20-byte message");
        assert_eq!(m.bytes().len(), 20);
        let mut big = Message::buffer(16);
        big.words[0] = 100;
        assert!(big.finish().is_none(), "longer than the buffer");
    }
}
