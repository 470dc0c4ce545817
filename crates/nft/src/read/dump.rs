//! One netlink dump: send a request, parse each reply message as it arrives up to
//! `NLMSG_DONE`, and turn errors and interrupted dumps into [`DumpError`]s. Also the ruleset generation
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

    /// An empty message, to be filled by [`Message::copy_reply`].
    fn empty() -> Message {
        Message {
            words: Vec::new(),
            len: 0,
        }
    }

    /// Makes this message a copy of a received one, header included (the sender port id is
    /// left 0: libnftnl does not read it). Reuses the buffer, so a dump copies its messages
    /// one at a time into one allocation.
    fn copy_reply(&mut self, msg: &NlMessage<'_>) {
        let len = NLMSG_HDRLEN + msg.payload.len();
        let [ty0, ty1] = msg.ty.to_ne_bytes();
        let [flags0, flags1] = msg.flags.to_ne_bytes();
        self.words.clear();
        self.words.reserve(len.div_ceil(4));
        self.words.extend([
            len as u32,
            u32::from_ne_bytes([ty0, ty1, flags0, flags1]),
            msg.seq,
            0,
        ]);
        self.words.extend(msg.payload.chunks(4).map(|chunk| {
            let mut word = [0u8; 4];
            word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
            u32::from_ne_bytes(word)
        }));
        self.len = len;
    }

    /// The message bytes (`nlmsg_len` of them).
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: the words are one initialised allocation of 4 * words.len() bytes, `len` is
        // at most that (checked in `finish`, 0 in `empty`, and `copy_reply` stores the header
        // and the payload rounded up to whole words), u8 has no alignment requirement, and the
        // slice borrows `self`, so the allocation outlives it.
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
    /// The dump completed, but the parser failed on one of its messages: why (for the first
    /// such message).
    Unparsable(String),
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
            DumpError::Malformed(problem) | DumpError::Unparsable(problem) => {
                io::Error::new(io::ErrorKind::InvalidData, problem)
            }
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

/// Sends `request` (a dump request with sequence number `seq`) and hands each object message
/// of the reply to `parse` as it arrives, which may add objects to the list the dump returns.
/// Each message is parsed from one reused buffer and then dropped, so the messages of a whole
/// dump never exist at once.
///
/// The list is returned only when the whole dump was received and succeeded: a dump the kernel
/// flags as interrupted fails with [`DumpError::Interrupted`] however many objects it had
/// already given (they are dropped, with nothing parsed after the flag), and a message `parse`
/// fails on makes the dump fail with [`DumpError::Unparsable`] (the later messages are not
/// parsed), unless the dump fails for a reason of its own, which is reported instead. Reads to
/// `NLMSG_DONE` even when the dump was interrupted or a message could not be parsed, so the
/// socket can be used for the next request.
pub(super) fn dump<T>(
    sock: &NetlinkSocket,
    request: &Message,
    seq: u32,
    parse: impl FnMut(&Message, &mut Vec<T>) -> Result<(), String>,
) -> Result<Vec<T>, DumpError> {
    sock.send_all(&[request.bytes()])?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut replies = Replies::new(seq, parse);
    loop {
        let n = sock.recv(&mut buf, true)?;
        if let Some(objects) = replies.datagram(buf.get(..n).unwrap_or(&[]))? {
            return Ok(objects);
        }
    }
}

/// The receiving side of one dump: takes its datagrams in order, parses each object message
/// as it comes, and ends at `NLMSG_DONE`.
struct Replies<T, F> {
    /// The request's sequence number, which every reply carries.
    seq: u32,
    /// Parses one object message, adding what it keeps to the list.
    parse: F,
    /// The message being parsed, copied into an aligned buffer that is reused.
    scratch: Message,
    /// What `parse` kept so far.
    objects: Vec<T>,
    /// A reply was flagged `NLM_F_DUMP_INTR`.
    interrupted: bool,
    /// Why `parse` failed on a message, for the first such message.
    unparsable: Option<String>,
}

impl<T, F: FnMut(&Message, &mut Vec<T>) -> Result<(), String>> Replies<T, F> {
    fn new(seq: u32, parse: F) -> Self {
        Replies {
            seq,
            parse,
            scratch: Message::empty(),
            objects: Vec::new(),
            interrupted: false,
            unparsable: None,
        }
    }

    /// Takes one received datagram: `Some` with the kept objects when it ended a dump that
    /// succeeded, `None` when more is to come.
    fn datagram(&mut self, datagram: &[u8]) -> Result<Option<Vec<T>>, DumpError> {
        let n = datagram.len();
        if n > 0 && messages(datagram).next().is_none() {
            return Err(DumpError::Malformed(format!(
                "a {n}-byte datagram holds no netlink message"
            )));
        }
        for msg in messages(datagram) {
            if msg.seq != self.seq {
                return Err(DumpError::Malformed(format!(
                    "a reply with sequence number {} to request {}",
                    msg.seq, self.seq
                )));
            }
            if msg.flags & NLM_F_DUMP_INTR != 0 && !self.interrupted {
                // The dump will fail: what it gave is of no use.
                self.interrupted = true;
                self.objects = Vec::new();
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
                    if self.interrupted {
                        return Err(DumpError::Interrupted);
                    }
                    if let Some(problem) = self.unparsable.take() {
                        return Err(DumpError::Unparsable(problem));
                    }
                    let mut objects = std::mem::take(&mut self.objects);
                    // Grown by doubling: up to half of it unused, until the table is made.
                    objects.shrink_to_fit();
                    return Ok(Some(objects));
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
                _ if self.interrupted || self.unparsable.is_some() => {}
                _ => {
                    self.scratch.copy_reply(&msg);
                    if let Err(problem) = (self.parse)(&self.scratch, &mut self.objects) {
                        self.unparsable = Some(problem);
                        self.objects = Vec::new();
                    }
                }
            }
        }
        Ok(None)
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
        let mut copy = Message::empty();
        copy.copy_reply(&msg);
        assert_eq!(copy.bytes().len(), 16 + payload.len());
        assert_eq!(copy.header() as usize % 4, 0);
        let back: Vec<_> = messages(copy.bytes()).collect();
        assert_eq!(back, vec![msg]);

        // The buffer is reused: a shorter message leaves nothing of the longer one.
        let short = NlMessage {
            ty: 0xa06,
            flags: 0,
            seq: 78,
            payload: &[7],
        };
        copy.copy_reply(&short);
        assert_eq!(copy.bytes().len(), 17);
        assert_eq!(copy.words.len(), 5);
        assert_eq!(copy.bytes().get(16), Some(&7));
        let back: Vec<_> = messages(copy.bytes()).collect();
        assert_eq!(back, vec![short]);
    }

    /// `NFT_MSG_NEWRULE` as the kernel sends it.
    const NEWRULE: u16 = NFT_SUBSYS | libc::NFT_MSG_NEWRULE as u16;
    /// `NLM_F_MULTI`.
    const MULTI: u16 = 0x2;
    /// The sequence number of the test dumps.
    const SEQ: u32 = 9;

    /// One netlink message as it sits in a datagram, padded to 4 bytes.
    fn wire(ty: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut out = Vec::new();
        out.extend((len as u32).to_ne_bytes());
        out.extend(ty.to_ne_bytes());
        out.extend(flags.to_ne_bytes());
        out.extend(SEQ.to_ne_bytes());
        out.extend(1234u32.to_ne_bytes());
        out.extend(payload);
        out.resize(len.div_ceil(4) * 4, 0);
        out
    }

    /// An object message whose payload is one byte (and two of padding that libnftnl would
    /// not see, to make it unaligned in length).
    fn object(byte: u8, flags: u16) -> Vec<u8> {
        wire(NEWRULE, MULTI | flags, &[byte, 0xee, 0xee])
    }

    /// `NLMSG_DONE` with `status`.
    fn done(status: i32, flags: u16) -> Vec<u8> {
        wire(
            libc::NLMSG_DONE as u16,
            MULTI | flags,
            &status.to_ne_bytes(),
        )
    }

    /// A test parser: keeps the first payload byte of each message, fails on 0xff; counts its
    /// calls.
    fn parser(
        calls: &std::cell::Cell<usize>,
    ) -> impl FnMut(&Message, &mut Vec<u8>) -> Result<(), String> + '_ {
        move |m, kept| {
            calls.set(calls.get() + 1);
            assert_eq!(m.header() as usize % 4, 0, "an aligned message");
            let msg = messages(m.bytes()).next().ok_or("no message")?;
            assert_eq!(msg.seq, SEQ);
            assert_eq!(msg.ty, NEWRULE);
            match msg.payload.first() {
                Some(0xff) => Err("byte 0xff".into()),
                Some(b) => {
                    kept.push(*b);
                    Ok(())
                }
                None => Err("empty".into()),
            }
        }
    }

    #[test]
    fn objects_are_parsed_as_their_datagram_arrives() {
        let calls = std::cell::Cell::new(0);
        let mut replies = Replies::new(SEQ, parser(&calls));
        let first = [object(1, 0), object(2, 0)].concat();
        assert!(matches!(replies.datagram(&first), Ok(None)));
        assert_eq!(calls.get(), 2);
        assert_eq!(replies.objects, vec![1, 2]);
        let last = [object(3, 0), done(0, 0), object(4, 0)].concat();
        match replies.datagram(&last) {
            Ok(Some(kept)) => assert_eq!(kept, vec![1, 2, 3], "nothing after NLMSG_DONE"),
            other => panic!("{other:?}"),
        }
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn an_interrupted_dump_drops_what_it_parsed() {
        let calls = std::cell::Cell::new(0);
        let mut replies = Replies::new(SEQ, parser(&calls));
        assert!(matches!(replies.datagram(&object(1, 0)), Ok(None)));
        assert_eq!(replies.objects, vec![1]);
        let flagged = [object(2, NLM_F_DUMP_INTR), object(3, 0)].concat();
        assert!(matches!(replies.datagram(&flagged), Ok(None)));
        assert!(replies.objects.is_empty(), "dropped at the flag");
        assert_eq!(calls.get(), 1, "nothing parsed from the flag on");
        assert!(matches!(
            replies.datagram(&done(0, 0)),
            Err(DumpError::Interrupted)
        ));

        // The flag on NLMSG_DONE alone interrupts too.
        let mut replies = Replies::new(SEQ, parser(&calls));
        assert!(matches!(replies.datagram(&object(1, 0)), Ok(None)));
        assert!(matches!(
            replies.datagram(&done(0, NLM_F_DUMP_INTR)),
            Err(DumpError::Interrupted)
        ));
    }

    #[test]
    fn a_parse_failure_is_reported_when_the_dump_ends() {
        let calls = std::cell::Cell::new(0);
        let mut replies = Replies::new(SEQ, parser(&calls));
        let datagram = [object(1, 0), object(0xff, 0), object(2, 0)].concat();
        assert!(matches!(replies.datagram(&datagram), Ok(None)));
        assert_eq!(calls.get(), 2, "nothing parsed after the failure");
        assert!(replies.objects.is_empty());
        match replies.datagram(&done(0, 0)) {
            Err(DumpError::Unparsable(problem)) => assert_eq!(problem, "byte 0xff"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_dump_s_own_failures_come_before_a_parse_failure() {
        let calls = std::cell::Cell::new(0);
        let failed_then = |rest: Vec<u8>| {
            let mut replies = Replies::new(SEQ, parser(&calls));
            assert!(matches!(replies.datagram(&object(0xff, 0)), Ok(None)));
            replies.datagram(&rest)
        };
        assert!(matches!(
            failed_then([object(1, NLM_F_DUMP_INTR), done(0, 0)].concat()),
            Err(DumpError::Interrupted)
        ));
        assert!(matches!(
            failed_then(done(-libc::EPERM, 0)),
            Err(DumpError::Refused {
                errno: libc::EPERM,
                text: None
            })
        ));
        let mut error = Vec::new();
        error.extend((-libc::ENOENT).to_ne_bytes());
        error.extend(wire(NEWRULE, 0, &[]));
        assert!(matches!(
            failed_then(wire(libc::NLMSG_ERROR as u16, 0, &error)),
            Err(DumpError::Refused {
                errno: libc::ENOENT,
                ..
            })
        ));
        assert!(matches!(
            failed_then(wire(libc::NLMSG_OVERRUN as u16, 0, &[])),
            Err(DumpError::Malformed(_))
        ));
    }

    #[test]
    fn replies_must_be_netlink_messages_of_the_request() {
        let calls = std::cell::Cell::new(0);
        let mut replies = Replies::new(SEQ, parser(&calls));
        assert!(matches!(
            replies.datagram(&[1, 2, 3]),
            Err(DumpError::Malformed(_))
        ));
        let mut other = object(1, 0);
        other[8..12].copy_from_slice(&(SEQ + 1).to_ne_bytes());
        let mut replies = Replies::new(SEQ, parser(&calls));
        assert!(matches!(
            replies.datagram(&other),
            Err(DumpError::Malformed(_))
        ));
        assert_eq!(calls.get(), 0);
        // An acknowledgement and a no-op are skipped; an empty datagram waits for more.
        let mut ack = Vec::new();
        ack.extend(0i32.to_ne_bytes());
        ack.extend(wire(NEWRULE, 0, &[]));
        let mut replies = Replies::new(SEQ, parser(&calls));
        let datagram = [
            wire(libc::NLMSG_ERROR as u16, 0, &ack),
            wire(libc::NLMSG_NOOP as u16, 0, &[]),
        ]
        .concat();
        assert!(matches!(replies.datagram(&datagram), Ok(None)));
        assert!(matches!(replies.datagram(&[]), Ok(None)));
        assert!(matches!(replies.datagram(&done(0, 0)), Ok(Some(v)) if v.is_empty()));
        assert_eq!(calls.get(), 0);
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
