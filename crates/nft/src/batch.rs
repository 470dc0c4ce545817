//! A [`Transaction`] as one netlink batch: BATCH_BEGIN, one or more messages per operation,
//! BATCH_END, in one contiguous buffer. Every message asks for an ACK and carries a sequence
//! number that maps back to the operation it came from.

use crate::encode::encode_rule;
use crate::error::ApplyError;
use crate::ffi::{cstring, Kind, Object, Val};
use crate::keys::{concat_type_id, encode_key, key_len, type_id, TYPE_INTEGER, TYPE_VERDICT};
use crate::low::{AnonElem, AnonKind, AnonSet, CmpOp, CtKey, Low, MetaKey, PayloadBase, SetRef};
use model::Protocol;
use nftnl_sys as sys;
use ruleset::{BaseChain, ElemKey, ElemValue, Family, Hook, KeyType, Op, SetSpec, TableId};
use ruleset::{Transaction, Verdict};
use std::ffi::CStr;

/// Room reserved for one message. Every message we build is far smaller: rules have a few
/// short expressions, element lists are cut at [`ELEMENTS_BYTES`], names and comments are
/// bounded by [`MAX_NAME`]. [`Batch::message`] checks the bound before libnftnl writes.
const MAX_MESSAGE: usize = 64 * 1024;
/// Upper bound for the attributes of the elements in one message (the element list is a
/// netlink attribute, whose length is 16 bits).
const ELEMENTS_BYTES: usize = 24 * 1024;
/// Longest name or comment we send (the kernel's limits are 256 bytes).
const MAX_NAME: usize = 255;
/// Most elements of one set sent in one message: each takes at most 128 bytes plus its key
/// and data (an IPv6 endpoint: 4 + 20 bytes), so 100 stay well inside [`ELEMENTS_BYTES`].
const RUN_ELEMENTS: usize = 100;

const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
const NLM_F_APPEND: u16 = libc::NLM_F_APPEND as u16;

/// `nft`'s byte order markers in set user data.
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;
/// `NFTNL_UDATA_*` types.
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_COMMENT: u8 = 7;
const UDATA_COMMENT: u8 = 0;

const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_SADDR: u32 = 1;

/// A finished batch.
pub(crate) struct Batch {
    /// All messages, back to back.
    pub(crate) bytes: Vec<u8>,
    /// Messages between BATCH_BEGIN and BATCH_END.
    pub(crate) messages: usize,
    first_seq: u32,
    /// For each message after BATCH_BEGIN, the index of its operation.
    origin: Vec<usize>,
    next_seq: u32,
    next_set_id: u32,
}

fn family_number(f: Family) -> u16 {
    match f {
        Family::Ip => libc::NFPROTO_IPV4 as u16,
        Family::Ip6 => libc::NFPROTO_IPV6 as u16,
    }
}

fn hook_number(h: Hook) -> u32 {
    match h {
        Hook::Prerouting => libc::NF_INET_PRE_ROUTING as u32,
        Hook::Input => libc::NF_INET_LOCAL_IN as u32,
        Hook::Forward => libc::NF_INET_FORWARD as u32,
        Hook::Output => libc::NF_INET_LOCAL_OUT as u32,
        Hook::Postrouting => libc::NF_INET_POST_ROUTING as u32,
    }
}

fn verdict_code(v: &Verdict) -> (u32, Option<&str>) {
    // Verdict codes are negative i32 in the kernel ABI, sent as their u32 bit pattern.
    match v {
        Verdict::Drop => (libc::NF_DROP as u32, None),
        Verdict::Jump(c) => (libc::NFT_JUMP as u32, Some(c)),
        Verdict::Goto(c) => (libc::NFT_GOTO as u32, Some(c)),
    }
}

/// User data TLVs: one byte type, one byte length, the value.
fn udata(items: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, v) in items {
        out.push(*t);
        out.push(u8::try_from(v.len()).unwrap_or(u8::MAX));
        out.extend(v);
    }
    out
}

fn comment_value(c: &str) -> Vec<u8> {
    let mut v = c.as_bytes().to_vec();
    v.push(0);
    v
}

fn key_byteorder(key: &[KeyType]) -> u32 {
    match key {
        [KeyType::Integer] => BYTEORDER_HOST,
        [_] => BYTEORDER_BIG,
        _ => BYTEORDER_INVALID,
    }
}

/// The user data of a named set, as nft writes it: byte orders, `typeof` expressions where
/// nft needs them, the comment.
fn set_udata(spec: &SetSpec) -> Vec<u8> {
    let mut ud = vec![(
        UDATA_SET_KEYBYTEORDER,
        key_byteorder(&spec.key).to_ne_bytes().to_vec(),
    )];
    if spec.verdict_map {
        ud.push((
            UDATA_SET_DATABYTEORDER,
            BYTEORDER_INVALID.to_ne_bytes().to_vec(),
        ));
    } else if !spec.data.is_empty() {
        ud.push((
            UDATA_SET_DATABYTEORDER,
            key_byteorder(&spec.data).to_ne_bytes().to_vec(),
        ));
    }
    if spec.needs_typeof() {
        // nft cannot name an `integer` key: it lists (and parses) such maps only by the
        // expressions of their `typeof`, which it keeps in the set's user data.
        ud.extend(typeof_udata(spec));
    }
    if let Some(c) = &spec.comment {
        ud.push((UDATA_SET_COMMENT, comment_value(c)));
    }
    udata(&ud)
}

/// `NFTNL_UDATA_SET_*` types of a `typeof` declaration, and of the expressions in it (the
/// values are nft's own numbering, which it keeps stable because it reads them back).
mod typeof_ids {
    pub const KEY_TYPEOF: u8 = 3;
    pub const DATA_TYPEOF: u8 = 4;
    pub const DATA_INTERVAL: u8 = 6;
    /// `NFTNL_UDATA_SET_TYPEOF_EXPR` / `_DATA`: an expression's kind and its own attributes.
    pub const EXPR: u8 = 0;
    pub const DATA: u8 = 1;
    /// nft's `enum expr_types`.
    pub const EXPR_PAYLOAD: u32 = 7;
    pub const EXPR_META: u32 = 9;
    pub const EXPR_CONCAT: u32 = 13;
    pub const EXPR_NUMGEN: u32 = 23;
    /// nft's protocol descriptions and header fields (`payload.c`, `proto.h`).
    pub const DESC_TH: u32 = 11;
    pub const DESC_TCP: u32 = 8;
    pub const DESC_UDP: u32 = 6;
    pub const DESC_SCTP: u32 = 10;
    pub const DESC_IP: u32 = 12;
    pub const DESC_IP6: u32 = 13;
    /// `dport` in the templates of th, tcp, udp and sctp alike.
    pub const TH_DPORT: u32 = 2;
    pub const IP_DADDR: u32 = 12;
    pub const IP6_DADDR: u32 = 9;
    pub const META_L4PROTO: u32 = 16;
    pub const NUMGEN_RANDOM: u32 = 1;
}

/// The user data nft writes for `typeof <key> : <data>` (see [`KeyType::typeof_expr`]): each
/// part an expression with its attributes, several parts a concatenation.
fn typeof_udata(spec: &SetSpec) -> Vec<(u8, Vec<u8>)> {
    use typeof_ids::*;
    let u32s = |items: &[u32]| -> Vec<u8> {
        let items: Vec<(u8, Vec<u8>)> = (0u8..)
            .zip(items)
            .map(|(t, v)| (t, v.to_ne_bytes().to_vec()))
            .collect();
        udata(&items)
    };
    let expr = |kind: u32, attrs: Vec<u8>| -> Vec<u8> {
        udata(&[(EXPR, kind.to_ne_bytes().to_vec()), (DATA, attrs)])
    };
    let one = |t: KeyType| -> Vec<u8> {
        match t {
            KeyType::Integer => expr(EXPR_NUMGEN, u32s(&[NUMGEN_RANDOM, 1, 0])),
            KeyType::Ipv4Addr => expr(EXPR_PAYLOAD, u32s(&[DESC_IP, IP_DADDR])),
            KeyType::Ipv6Addr => expr(EXPR_PAYLOAD, u32s(&[DESC_IP6, IP6_DADDR])),
            KeyType::InetService => {
                let desc = match spec.port_protocol {
                    None => DESC_TH,
                    Some(Protocol::Tcp) => DESC_TCP,
                    Some(Protocol::Udp) => DESC_UDP,
                    Some(Protocol::Sctp) => DESC_SCTP,
                };
                expr(EXPR_PAYLOAD, u32s(&[desc, TH_DPORT]))
            }
            KeyType::InetProto => expr(EXPR_META, u32s(&[META_L4PROTO])),
        }
    };
    let of = |types: &[KeyType]| -> Vec<u8> {
        match types {
            [t] => one(*t),
            many => {
                let parts: Vec<(u8, Vec<u8>)> = (0u8..).zip(many.iter().map(|t| one(*t))).collect();
                expr(EXPR_CONCAT, udata(&parts))
            }
        }
    };
    let mut out = vec![(KEY_TYPEOF, of(&spec.key))];
    if !spec.data.is_empty() {
        out.push((DATA_TYPEOF, of(&spec.data)));
        out.push((DATA_INTERVAL, 0u32.to_ne_bytes().to_vec()));
    }
    out
}

fn encode_err(op: &Op, problem: impl Into<String>) -> ApplyError {
    ApplyError::Encode {
        op: op.render(),
        problem: problem.into(),
    }
}

fn oom(op: &Op) -> ApplyError {
    encode_err(op, "libnftnl could not allocate memory")
}

impl Batch {
    /// Builds the batch for `txn`; sequence numbers start at `first_seq`.
    pub(crate) fn build(txn: &Transaction, first_seq: u32) -> Result<Batch, ApplyError> {
        let mut b = Batch {
            bytes: Vec::new(),
            messages: 0,
            first_seq,
            origin: Vec::new(),
            next_seq: first_seq,
            next_set_id: 1,
        };
        b.control(true);
        let mut i = 0;
        while i < txn.ops.len() {
            let run = element_run(&txn.ops[i..]);
            if run > 1 {
                b.element_run(i, &txn.ops[i..i + run])?;
            } else {
                b.op(i, &txn.ops[i])?;
            }
            i += run.max(1);
        }
        b.control(false);
        Ok(b)
    }

    /// One message for `ops`, element additions (or deletions) of one per-service set: an
    /// error in it is reported against the first, which names the same Service.
    fn element_run(&mut self, i: usize, ops: &[Op]) -> Result<(), ApplyError> {
        let (table, set, add) = match &ops[0] {
            Op::AddElement { table, set, .. } => (table, set, true),
            Op::DeleteElement { table, set, .. } => (table, set, false),
            _ => return self.op(i, &ops[0]),
        };
        let elems: Vec<(&ElemKey, Option<&ElemValue>)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::AddElement { key, value, .. } => Some((key, Some(value))),
                Op::DeleteElement { key, .. } => Some((key, None)),
                _ => None,
            })
            .collect();
        self.elements(i, &ops[0], table, set, &elems, add)
    }

    /// The index of the operation whose message had sequence number `seq`.
    pub(crate) fn op_of(&self, seq: u32) -> Option<usize> {
        let n = seq.checked_sub(self.first_seq.checked_add(1)?)?;
        self.origin.get(usize::try_from(n).ok()?).copied()
    }

    /// BATCH_BEGIN (`begin`) or BATCH_END.
    fn control(&mut self, begin: bool) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let start = self.bytes.len();
        self.bytes.resize(start + 64, 0);
        // SAFETY: the two functions write one 20-byte header (nlmsghdr + nfgenmsg) at the
        // pointer, which has 64 zeroed bytes of room.
        let nlh = unsafe {
            let buf = self.bytes.as_mut_ptr().add(start).cast();
            if begin {
                sys::nftnl_batch_begin(buf, seq)
            } else {
                sys::nftnl_batch_end(buf, seq)
            }
        };
        // SAFETY: `nlh` points to the header just written inside `self.bytes`.
        let len = unsafe { (*nlh).nlmsg_len } as usize;
        self.bytes.truncate(start + len.next_multiple_of(4));
    }

    /// Appends one message of type `ty`; `payload` fills it. `bound` is an upper bound of the
    /// payload's size, checked against the room reserved.
    fn message(
        &mut self,
        (op_index, op): (usize, &Op),
        ty: i32,
        family: Family,
        flags: u16,
        bound: usize,
        payload: impl FnOnce(*mut libc::nlmsghdr),
    ) -> Result<(), ApplyError> {
        if bound + 64 > MAX_MESSAGE {
            return Err(encode_err(
                op,
                format!("a message of up to {bound} bytes is too large"),
            ));
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let start = self.bytes.len();
        self.bytes.resize(start + MAX_MESSAGE, 0);
        // SAFETY: the header is written at the start of MAX_MESSAGE zeroed bytes we reserved;
        // message types are small enums that fit u16.
        let nlh = unsafe {
            sys::nftnl_nlmsg_build_hdr(
                self.bytes.as_mut_ptr().add(start).cast(),
                u16::try_from(ty).unwrap_or(u16::MAX),
                family_number(family),
                NLM_F_REQUEST | NLM_F_ACK | flags,
                seq,
            )
        };
        payload(nlh.cast());
        // SAFETY: `nlh` points to the header libnftnl wrote and updated inside `self.bytes`.
        let len = unsafe { (*nlh).nlmsg_len } as usize;
        if len > MAX_MESSAGE {
            // Unreachable when `bound` holds; stop rather than send a corrupt batch.
            return Err(encode_err(
                op,
                format!("message of {len} bytes overran its buffer"),
            ));
        }
        self.bytes.truncate(start + len.next_multiple_of(4));
        self.origin.push(op_index);
        self.messages += 1;
        Ok(())
    }

    fn op(&mut self, i: usize, op: &Op) -> Result<(), ApplyError> {
        for name in op_names(op) {
            if name.len() > MAX_NAME || name.contains('\0') {
                return Err(encode_err(
                    op,
                    format!("`{name}` is longer than {MAX_NAME} bytes or contains NUL"),
                ));
            }
        }
        match op {
            Op::AddTable { table, comment } => {
                let mut t = self.table_obj(op, table)?;
                t.set(sys::NFTNL_TABLE_FLAGS, Val::U32(0));
                if let Some(c) = comment {
                    let ud = udata(&[(UDATA_COMMENT, comment_value(c))]);
                    t.set(sys::NFTNL_TABLE_USERDATA, Val::Data(&ud));
                }
                self.object(i, op, libc::NFT_MSG_NEWTABLE, table, NLM_F_CREATE, &t)
            }
            Op::DeleteTable { table } => {
                let t = self.table_obj(op, table)?;
                self.object(i, op, libc::NFT_MSG_DELTABLE, table, 0, &t)
            }
            Op::AddChain { table, chain, base } => {
                let mut c = chain_obj(op, table, chain)?;
                if let Some(BaseChain {
                    kind,
                    hook,
                    priority,
                }) = base
                {
                    c.set(sys::NFTNL_CHAIN_HOOKNUM, Val::U32(hook_number(*hook)));
                    c.set(sys::NFTNL_CHAIN_PRIO, Val::S32(*priority));
                    c.set(sys::NFTNL_CHAIN_TYPE, Val::Str(&cstring(kind.keyword())));
                    c.set(sys::NFTNL_CHAIN_POLICY, Val::U32(libc::NF_ACCEPT as u32));
                }
                self.object(i, op, libc::NFT_MSG_NEWCHAIN, table, NLM_F_CREATE, &c)
            }
            Op::DeleteChain { table, chain } => {
                let c = chain_obj(op, table, chain)?;
                self.object(i, op, libc::NFT_MSG_DELCHAIN, table, 0, &c)
            }
            Op::FlushChain { table, chain } => {
                // DELRULE with a chain and no handle deletes every rule of the chain.
                let mut r = Object::new(Kind::Rule, None).map_err(|_| oom(op))?;
                r.set(sys::NFTNL_RULE_TABLE, Val::Str(&cstring(&table.name)));
                r.set(sys::NFTNL_RULE_CHAIN, Val::Str(&cstring(chain)));
                self.object(i, op, libc::NFT_MSG_DELRULE, table, 0, &r)
            }
            Op::AddRule { table, chain, rule } => {
                let low = encode_rule(table.family, rule);
                let mut set_ids = Vec::new();
                for anon in &low.anon_sets {
                    set_ids.push(self.anon_set(i, op, table, anon)?);
                }
                let mut r = Object::new(Kind::Rule, None).map_err(|_| oom(op))?;
                r.set(sys::NFTNL_RULE_TABLE, Val::Str(&cstring(&table.name)));
                r.set(sys::NFTNL_RULE_CHAIN, Val::Str(&cstring(chain)));
                let mut bound = 512;
                for expr in &low.exprs {
                    let (obj, size) = expr_obj(op, expr, &set_ids)?;
                    bound += size;
                    r.add_expr(obj);
                }
                if let Some(c) = &low.comment {
                    let ud = udata(&[(UDATA_COMMENT, comment_value(c))]);
                    bound += ud.len() + 8;
                    r.set(sys::NFTNL_RULE_USERDATA, Val::Data(&ud));
                }
                let flags = NLM_F_CREATE | NLM_F_APPEND;
                self.message(
                    (i, op),
                    libc::NFT_MSG_NEWRULE,
                    table.family,
                    flags,
                    bound,
                    |nlh| {
                        // SAFETY: `nlh` heads a message with MAX_MESSAGE bytes of room, more than
                        // `bound`, the rule's size.
                        unsafe { r.build_payload(nlh, false) }
                    },
                )
            }
            Op::AddSet { table, set, spec } => {
                let mut s = set_obj(op, table, set)?;
                self.named_set_attrs(&mut s, spec);
                self.object(i, op, libc::NFT_MSG_NEWSET, table, NLM_F_CREATE, &s)
            }
            Op::DeleteSet { table, set, .. } => {
                let s = set_obj(op, table, set)?;
                self.object(i, op, libc::NFT_MSG_DELSET, table, 0, &s)
            }
            Op::AddElement {
                table,
                set,
                key,
                value,
            } => self.elements(i, op, table, set, &[(key, Some(value))], true),
            Op::DeleteElement {
                table, set, key, ..
            } => self.elements(i, op, table, set, &[(key, None)], false),
        }
    }

    fn table_obj(&self, op: &Op, table: &TableId) -> Result<Object, ApplyError> {
        let mut t = Object::new(Kind::Table, None).map_err(|_| oom(op))?;
        t.set(sys::NFTNL_TABLE_NAME, Val::Str(&cstring(&table.name)));
        Ok(t)
    }

    /// A table, chain or set message (bounded by the names and comment checked in `op`).
    fn object(
        &mut self,
        i: usize,
        op: &Op,
        ty: i32,
        table: &TableId,
        flags: u16,
        obj: &Object,
    ) -> Result<(), ApplyError> {
        self.message((i, op), ty, table.family, flags, 4096, |nlh| {
            // SAFETY: `nlh` heads a message with MAX_MESSAGE bytes of room; a table, chain or
            // set without elements takes a few hundred bytes (names ≤ 255 bytes).
            unsafe { obj.build_payload(nlh, false) }
        })
    }

    fn named_set_attrs(&mut self, s: &mut Object, spec: &SetSpec) {
        let mut flags = 0;
        if spec.is_map() {
            flags |= libc::NFT_SET_MAP as u32;
        }
        if let Some(t) = spec.dynamic_timeout {
            flags |= (libc::NFT_SET_TIMEOUT | libc::NFT_SET_EVAL) as u32;
            s.set(sys::NFTNL_SET_TIMEOUT, Val::U64(u64::from(t) * 1000));
        }
        s.set(sys::NFTNL_SET_FLAGS, Val::U32(flags));
        s.set(sys::NFTNL_SET_KEY_TYPE, Val::U32(concat_type_id(&spec.key)));
        s.set(sys::NFTNL_SET_KEY_LEN, Val::U32(key_len(&spec.key)));
        if spec.verdict_map {
            s.set(sys::NFTNL_SET_DATA_TYPE, Val::U32(TYPE_VERDICT));
            s.set(sys::NFTNL_SET_DATA_LEN, Val::U32(0));
        } else if !spec.data.is_empty() {
            let data_type = concat_type_id(&spec.data);
            s.set(sys::NFTNL_SET_DATA_TYPE, Val::U32(data_type));
            s.set(sys::NFTNL_SET_DATA_LEN, Val::U32(key_len(&spec.data)));
        }
        if let Some(size) = spec.size {
            s.set(sys::NFTNL_SET_DESC_SIZE, Val::U32(size));
        }
        s.set(sys::NFTNL_SET_USERDATA, Val::Data(&set_udata(spec)));
        let id = self.set_id();
        s.set(sys::NFTNL_SET_ID, Val::U32(id));
    }

    fn set_id(&mut self) -> u32 {
        let id = self.next_set_id;
        self.next_set_id += 1;
        id
    }

    /// NEWSET and NEWSETELEM for an anonymous set of a rule; returns its set id.
    fn anon_set(
        &mut self,
        i: usize,
        op: &Op,
        table: &TableId,
        anon: &AnonSet,
    ) -> Result<u32, ApplyError> {
        let id = self.set_id();
        let name = match anon.kind {
            AnonKind::Prefixes(_) => c"__set%d",
            AnonKind::DnatMap(_) | AnonKind::GotoMap => c"__map%d",
        };
        let header = |s: &mut Object| {
            s.set(sys::NFTNL_SET_TABLE, Val::Str(&cstring(&table.name)));
            s.set(sys::NFTNL_SET_NAME, Val::Str(name));
            s.set(sys::NFTNL_SET_ID, Val::U32(id));
        };
        let mut s = Object::new(Kind::Set, None).map_err(|_| oom(op))?;
        header(&mut s);
        let constant = (libc::NFT_SET_ANONYMOUS | libc::NFT_SET_CONSTANT) as u32;
        let count = u32::try_from(anon.elements.len()).unwrap_or(u32::MAX);
        s.set(sys::NFTNL_SET_DESC_SIZE, Val::U32(count));
        match anon.kind {
            AnonKind::Prefixes(f) => {
                let key = [f.addr_type()];
                s.set(
                    sys::NFTNL_SET_FLAGS,
                    Val::U32(constant | libc::NFT_SET_INTERVAL as u32),
                );
                s.set(sys::NFTNL_SET_KEY_TYPE, Val::U32(type_id(key[0])));
                s.set(sys::NFTNL_SET_KEY_LEN, Val::U32(key_len(&key)));
                let ud = udata(&[(UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG.to_ne_bytes().to_vec())]);
                s.set(sys::NFTNL_SET_USERDATA, Val::Data(&ud));
            }
            AnonKind::DnatMap(_) | AnonKind::GotoMap => {
                s.set(
                    sys::NFTNL_SET_FLAGS,
                    Val::U32(constant | libc::NFT_SET_MAP as u32),
                );
                s.set(sys::NFTNL_SET_KEY_TYPE, Val::U32(TYPE_INTEGER));
                s.set(sys::NFTNL_SET_KEY_LEN, Val::U32(4));
                let (data_type, data_len) = match anon.kind {
                    AnonKind::DnatMap(f) => {
                        let data = [f.addr_type(), KeyType::InetService];
                        (concat_type_id(&data), key_len(&data))
                    }
                    _ => (TYPE_VERDICT, 0),
                };
                s.set(sys::NFTNL_SET_DATA_TYPE, Val::U32(data_type));
                s.set(sys::NFTNL_SET_DATA_LEN, Val::U32(data_len));
                let ud = udata(&[
                    (
                        UDATA_SET_KEYBYTEORDER,
                        BYTEORDER_HOST.to_ne_bytes().to_vec(),
                    ),
                    (
                        UDATA_SET_DATABYTEORDER,
                        BYTEORDER_INVALID.to_ne_bytes().to_vec(),
                    ),
                ]);
                s.set(sys::NFTNL_SET_USERDATA, Val::Data(&ud));
            }
        }
        self.object(i, op, libc::NFT_MSG_NEWSET, table, NLM_F_CREATE, &s)?;

        // The elements, in messages of bounded size.
        let mut chunk: Vec<&AnonElem> = Vec::new();
        let mut bytes = 0;
        for (n, e) in anon.elements.iter().enumerate() {
            let size = 128
                + e.key.len()
                + e.data.as_ref().map_or(0, Vec::len)
                + e.verdict
                    .as_ref()
                    .and_then(|v| v.target())
                    .map_or(0, str::len);
            chunk.push(e);
            bytes += size;
            if bytes > ELEMENTS_BYTES || n + 1 == anon.elements.len() {
                let mut s = Object::new(Kind::Set, None).map_err(|_| oom(op))?;
                header(&mut s);
                for e in chunk.drain(..) {
                    let mut el = Object::new(Kind::SetElem, None).map_err(|_| oom(op))?;
                    el.set(sys::NFTNL_SET_ELEM_KEY, Val::Data(&e.key));
                    if e.interval_end {
                        el.set(
                            sys::NFTNL_SET_ELEM_FLAGS,
                            Val::U32(libc::NFT_SET_ELEM_INTERVAL_END as u32),
                        );
                    }
                    if let Some(d) = &e.data {
                        el.set(sys::NFTNL_SET_ELEM_DATA, Val::Data(d));
                    }
                    if let Some(v) = &e.verdict {
                        set_verdict(&mut el, v);
                    }
                    s.add_elem(el);
                }
                self.element_message(i, op, table, &s, bytes, true)?;
                bytes = 0;
            }
        }
        Ok(id)
    }

    /// NEWSETELEM (`add`) or DELSETELEM for elements of a named set.
    fn elements(
        &mut self,
        i: usize,
        op: &Op,
        table: &TableId,
        set: &str,
        elems: &[(&ElemKey, Option<&ElemValue>)],
        add: bool,
    ) -> Result<(), ApplyError> {
        let mut s = set_obj(op, table, set)?;
        let mut bytes = 0;
        for (key, value) in elems {
            let key = encode_key(key);
            bytes += 128 + key.len();
            let mut el = Object::new(Kind::SetElem, None).map_err(|_| oom(op))?;
            el.set(sys::NFTNL_SET_ELEM_KEY, Val::Data(&key));
            if let Some(value) = value {
                if let Some(v) = value.verdict() {
                    bytes += v.target().map_or(0, str::len);
                    set_verdict(&mut el, v);
                }
                if let Some(c) = &value.comment {
                    let ud = udata(&[(UDATA_COMMENT, comment_value(c))]);
                    bytes += ud.len();
                    el.set(sys::NFTNL_SET_ELEM_USERDATA, Val::Data(&ud));
                }
                if let Some(data) = value.data() {
                    let data = encode_key(&ElemKey(data.clone()));
                    bytes += data.len();
                    el.set(sys::NFTNL_SET_ELEM_DATA, Val::Data(&data));
                }
            }
            s.add_elem(el);
        }
        self.element_message(i, op, table, &s, bytes, add)
    }

    fn element_message(
        &mut self,
        i: usize,
        op: &Op,
        table: &TableId,
        set: &Object,
        bound: usize,
        add: bool,
    ) -> Result<(), ApplyError> {
        let (ty, flags): (i32, u16) = if add {
            (libc::NFT_MSG_NEWSETELEM, NLM_F_CREATE)
        } else {
            (libc::NFT_MSG_DELSETELEM, 0)
        };
        self.message((i, op), ty, table.family, flags, bound + 512, |nlh| {
            // SAFETY: `nlh` heads a message with MAX_MESSAGE bytes of room; `bound` (checked
            // by `message`) is an upper bound of the element list's size.
            unsafe { set.build_payload(nlh, true) }
        })
    }
}

/// How many operations at the start of `ops` go in one element message: consecutive
/// additions (or deletions) of elements of one set that belong to one Service (a per-service
/// set, whose name holds a `/`, or elements with the same `namespace/name:port` comment), at
/// most [`RUN_ELEMENTS`]. An error in the message is reported against its first operation,
/// which names the same Service. Each message makes the kernel find its set by name, walking
/// the table's list of sets, so a Service's endpoints go in one message rather than one each.
fn element_run(ops: &[Op]) -> usize {
    fn owner<'a>(set: &'a str, value: &'a ElemValue) -> Option<&'a str> {
        if set.contains('/') {
            return Some(set);
        }
        value.comment.as_deref()
    }
    fn key(op: &Op) -> Option<(&TableId, &str, bool, &str)> {
        match op {
            Op::AddElement {
                table, set, value, ..
            } => Some((table, set, true, owner(set, value)?)),
            Op::DeleteElement {
                table, set, value, ..
            } => Some((table, set, false, owner(set, value)?)),
            _ => None,
        }
    }
    let Some(first) = ops.first().and_then(key) else {
        return 1;
    };
    ops.iter()
        .take(RUN_ELEMENTS)
        .take_while(|op| key(op) == Some(first))
        .count()
}

fn chain_obj(op: &Op, table: &TableId, chain: &str) -> Result<Object, ApplyError> {
    let mut c = Object::new(Kind::Chain, None).map_err(|_| oom(op))?;
    c.set(sys::NFTNL_CHAIN_TABLE, Val::Str(&cstring(&table.name)));
    c.set(sys::NFTNL_CHAIN_NAME, Val::Str(&cstring(chain)));
    Ok(c)
}

fn set_obj(op: &Op, table: &TableId, set: &str) -> Result<Object, ApplyError> {
    let mut s = Object::new(Kind::Set, None).map_err(|_| oom(op))?;
    s.set(sys::NFTNL_SET_TABLE, Val::Str(&cstring(&table.name)));
    s.set(sys::NFTNL_SET_NAME, Val::Str(&cstring(set)));
    Ok(s)
}

fn set_verdict(el: &mut Object, v: &Verdict) {
    let (code, chain) = verdict_code(v);
    el.set(sys::NFTNL_SET_ELEM_VERDICT, Val::U32(code));
    if let Some(c) = chain {
        el.set(sys::NFTNL_SET_ELEM_CHAIN, Val::Str(&cstring(c)));
    }
}

/// Every name and comment an operation sends (checked against the kernel's limits).
fn op_names(op: &Op) -> Vec<&str> {
    let mut out = Vec::new();
    match op {
        Op::AddTable { table, comment } => {
            out.push(table.name.as_str());
            out.extend(comment.as_deref());
        }
        Op::DeleteTable { table } => out.push(&table.name),
        Op::AddChain { table, chain, .. }
        | Op::FlushChain { table, chain }
        | Op::DeleteChain { table, chain } => out.extend([table.name.as_str(), chain]),
        Op::AddRule { table, chain, rule } => {
            out.extend([table.name.as_str(), chain]);
            out.extend(rule.comment.as_deref());
            out.extend(rule.chain_refs());
            out.extend(rule.set_refs());
        }
        Op::AddSet { table, set, spec } => {
            out.extend([table.name.as_str(), set]);
            out.extend(spec.comment.as_deref());
        }
        Op::DeleteSet { table, set, .. } => out.extend([table.name.as_str(), set]),
        Op::AddElement {
            table, set, value, ..
        }
        | Op::DeleteElement {
            table, set, value, ..
        } => {
            out.extend([table.name.as_str(), set]);
            out.extend(value.comment.as_deref());
            out.extend(value.verdict().and_then(|v| v.target()));
        }
    }
    out
}

fn u32_attr(o: &mut Object, attr: u32, v: u32) {
    o.set(attr, Val::U32(v));
}

/// A kernel expression as a libnftnl object, and an upper bound of its encoded size.
fn expr_obj(op: &Op, low: &Low, set_ids: &[u32]) -> Result<(Object, usize), ApplyError> {
    let new = |name: &CStr| Object::expr(name).map_err(|_| oom(op));
    let mut extra = 0;
    let e = match low {
        Low::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            let mut e = new(c"payload")?;
            let base = match base {
                PayloadBase::Network => libc::NFT_PAYLOAD_NETWORK_HEADER,
                PayloadBase::Transport => libc::NFT_PAYLOAD_TRANSPORT_HEADER,
            };
            u32_attr(&mut e, sys::NFTNL_EXPR_PAYLOAD_DREG, *dreg);
            u32_attr(&mut e, sys::NFTNL_EXPR_PAYLOAD_BASE, base as u32);
            u32_attr(&mut e, sys::NFTNL_EXPR_PAYLOAD_OFFSET, *offset);
            u32_attr(&mut e, sys::NFTNL_EXPR_PAYLOAD_LEN, *len);
            e
        }
        Low::Meta { key, dreg } => {
            let mut e = new(c"meta")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_META_KEY, meta_key(*key));
            u32_attr(&mut e, sys::NFTNL_EXPR_META_DREG, *dreg);
            e
        }
        Low::MetaSetMark { sreg } => {
            let mut e = new(c"meta")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_META_KEY, meta_key(MetaKey::Mark));
            u32_attr(&mut e, sys::NFTNL_EXPR_META_SREG, *sreg);
            e
        }
        Low::Ct { key, dreg } => {
            let mut e = new(c"ct")?;
            let key = match key {
                CtKey::State => libc::NFT_CT_STATE,
                CtKey::Status => libc::NFT_CT_STATUS,
            };
            u32_attr(&mut e, sys::NFTNL_EXPR_CT_KEY, key as u32);
            u32_attr(&mut e, sys::NFTNL_EXPR_CT_DREG, *dreg);
            e
        }
        Low::Cmp {
            sreg,
            op: cmp,
            data,
        } => {
            let mut e = new(c"cmp")?;
            let cmp = match cmp {
                CmpOp::Eq => libc::NFT_CMP_EQ,
                CmpOp::Neq => libc::NFT_CMP_NEQ,
            };
            u32_attr(&mut e, sys::NFTNL_EXPR_CMP_SREG, *sreg);
            u32_attr(&mut e, sys::NFTNL_EXPR_CMP_OP, cmp as u32);
            e.set(sys::NFTNL_EXPR_CMP_DATA, Val::Data(data));
            extra += data.len();
            e
        }
        Low::Bitwise {
            sreg,
            dreg,
            mask,
            xor,
        } => {
            let mut e = new(c"bitwise")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_BITWISE_SREG, *sreg);
            u32_attr(&mut e, sys::NFTNL_EXPR_BITWISE_DREG, *dreg);
            let len = u32::try_from(mask.len()).unwrap_or(u32::MAX);
            u32_attr(&mut e, sys::NFTNL_EXPR_BITWISE_LEN, len);
            e.set(sys::NFTNL_EXPR_BITWISE_MASK, Val::Data(mask));
            e.set(sys::NFTNL_EXPR_BITWISE_XOR, Val::Data(xor));
            extra += mask.len() + xor.len();
            e
        }
        Low::Lookup {
            set,
            sreg,
            dreg,
            invert,
        } => {
            let mut e = new(c"lookup")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_LOOKUP_SREG, *sreg);
            match set {
                SetRef::Named(name) => {
                    e.set(sys::NFTNL_EXPR_LOOKUP_SET, Val::Str(&cstring(name)));
                    extra += name.len();
                }
                SetRef::Anonymous(n) => {
                    let id = set_ids
                        .get(*n)
                        .ok_or_else(|| encode_err(op, "lookup of a missing anonymous set"))?;
                    let name = if dreg.is_none() {
                        c"__set%d"
                    } else {
                        c"__map%d"
                    };
                    e.set(sys::NFTNL_EXPR_LOOKUP_SET, Val::Str(name));
                    u32_attr(&mut e, sys::NFTNL_EXPR_LOOKUP_SET_ID, *id);
                }
            }
            if let Some(d) = dreg {
                u32_attr(&mut e, sys::NFTNL_EXPR_LOOKUP_DREG, *d);
            }
            if *invert {
                u32_attr(
                    &mut e,
                    sys::NFTNL_EXPR_LOOKUP_FLAGS,
                    libc::NFT_LOOKUP_F_INV as u32,
                );
            }
            e
        }
        Low::ImmediateData { dreg, data } => {
            let mut e = new(c"immediate")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_IMM_DREG, *dreg);
            e.set(sys::NFTNL_EXPR_IMM_DATA, Val::Data(data));
            extra += data.len();
            e
        }
        Low::ImmediateVerdict(v) => {
            let mut e = new(c"immediate")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_IMM_DREG, crate::low::reg::VERDICT);
            let (code, chain) = verdict_code(v);
            u32_attr(&mut e, sys::NFTNL_EXPR_IMM_VERDICT, code);
            if let Some(c) = chain {
                e.set(sys::NFTNL_EXPR_IMM_CHAIN, Val::Str(&cstring(c)));
                extra += c.len();
            }
            e
        }
        Low::Dnat {
            family,
            addr_reg,
            proto_reg,
            flags,
        } => {
            let mut e = new(c"nat")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_NAT_TYPE, libc::NFT_NAT_DNAT as u32);
            u32_attr(
                &mut e,
                sys::NFTNL_EXPR_NAT_FAMILY,
                u32::from(family_number(*family)),
            );
            u32_attr(&mut e, sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, *addr_reg);
            u32_attr(&mut e, sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, *proto_reg);
            if *flags != 0 {
                u32_attr(&mut e, sys::NFTNL_EXPR_NAT_FLAGS, *flags);
            }
            e
        }
        Low::Masquerade { flags } => {
            let mut e = new(c"masq")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_MASQ_FLAGS, *flags);
            e
        }
        Low::NumgenRandom {
            dreg,
            modulus,
            offset,
        } => {
            let mut e = new(c"numgen")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_NG_DREG, *dreg);
            u32_attr(&mut e, sys::NFTNL_EXPR_NG_MODULUS, *modulus);
            if *offset != 0 {
                u32_attr(&mut e, sys::NFTNL_EXPR_NG_OFFSET, *offset);
            }
            u32_attr(&mut e, sys::NFTNL_EXPR_NG_TYPE, libc::NFT_NG_RANDOM as u32);
            e
        }
        Low::FibSaddrType { dreg } => {
            let mut e = new(c"fib")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_FIB_DREG, *dreg);
            u32_attr(&mut e, sys::NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
            u32_attr(&mut e, sys::NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_SADDR);
            e
        }
        Low::DynsetUpdate { set, sreg_key } => {
            let mut e = new(c"dynset")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_DYNSET_SREG_KEY, *sreg_key);
            u32_attr(
                &mut e,
                sys::NFTNL_EXPR_DYNSET_OP,
                libc::NFT_DYNSET_OP_UPDATE as u32,
            );
            e.set(sys::NFTNL_EXPR_DYNSET_SET_NAME, Val::Str(&cstring(set)));
            extra += set.len();
            e
        }
        Low::Reject { kind, code } => {
            let mut e = new(c"reject")?;
            u32_attr(&mut e, sys::NFTNL_EXPR_REJECT_TYPE, *kind);
            e.set(sys::NFTNL_EXPR_REJECT_CODE, Val::U8(*code));
            e
        }
    };
    Ok((e, 192 + extra))
}

fn meta_key(key: MetaKey) -> u32 {
    (match key {
        MetaKey::L4Proto => libc::NFT_META_L4PROTO,
        MetaKey::Mark => libc::NFT_META_MARK,
    }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruleset::KeyPart;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn endpoint_map(family: Family, port_protocol: Protocol) -> SetSpec {
        SetSpec {
            key: vec![KeyType::Integer; 3],
            data: vec![family.addr_type(), KeyType::InetService],
            port_protocol: Some(port_protocol),
            comment: Some("endpoints of service chains, by tag".into()),
            ..SetSpec::default()
        }
    }

    /// The user data of an endpoint map is byte for byte what nft 1.0.6 writes for `typeof
    /// numgen random mod 1 . numgen random mod 1 . numgen random mod 1 : ip daddr . tcp dport`
    /// with that comment (captured with `nft --debug=mnl add map`), so `nft list` shows the
    /// maps we make as it shows its own; `udp dport`, `sctp dport` and `ip6 daddr` differ from
    /// it where nft's do.
    #[test]
    #[cfg(target_endian = "little")]
    fn endpoint_map_user_data_is_nfts() {
        let tcp = hex(&set_udata(&endpoint_map(Family::Ip, Protocol::Tcp)));
        assert_eq!(
            tcp,
            "000400000000010400000000035c00040d0000000154001a000417000000011200040100\
             0000010401000000020400000000011a0004170000000112000401000000010401000000\
             020400000000021a00041700000001120004010000000104010000000204000000000434\
             00040d000000012c0014000407000000010c00040c00000001040c000000011400040700\
             0000010c0004080000000104020000000604000000000724656e64706f696e7473206f66\
             207365727669636520636861696e732c2062792074616700"
        );
        for (family, protocol, part) in [
            (Family::Ip, Protocol::Udp, "00040600000001040200"),
            (Family::Ip, Protocol::Sctp, "00040a00000001040200"),
            (Family::Ip6, Protocol::Tcp, "00040d000000010409000000"),
        ] {
            let ud = hex(&set_udata(&endpoint_map(family, protocol)));
            assert!(ud.contains(part), "{family:?} {protocol:?}: {ud}");
            assert_eq!(ud.len(), tcp.len());
        }
    }

    fn t() -> TableId {
        TableId {
            family: Family::Ip,
            name: "t".into(),
        }
    }

    fn add(set: &str, i: u32) -> Op {
        Op::AddElement {
            table: t(),
            set: set.into(),
            key: ElemKey::new(vec![KeyPart::Index(i)]),
            value: ElemValue::default(),
        }
    }

    fn del(set: &str, i: u32) -> Op {
        Op::DeleteElement {
            table: t(),
            set: set.into(),
            key: ElemKey::new(vec![KeyPart::Index(i)]),
            value: ElemValue::default(),
        }
    }

    #[test]
    fn elements_of_one_per_service_set_share_a_message() {
        let a = "service-A-ns/a/tcp/http";
        let b = "service-B-ns/b/tcp/http";
        let owned = |mut op: Op, owner: &str| {
            if let Op::AddElement { value, .. } = &mut op {
                value.comment = Some(owner.into());
            }
            op
        };
        let ops = [
            del(a, 1),
            del(a, 2),
            add(a, 1),
            add(a, 2),
            add(b, 0),
            owned(add("shared", 0), "ns/x:http"),
            owned(add("shared", 1), "ns/y:http"),
        ];
        let runs: Vec<usize> = (0..ops.len()).map(|i| element_run(&ops[i..])).collect();
        assert_eq!(runs, [2, 1, 2, 1, 1, 1, 1]);
        // Elements of a shared set with one owner share a message; without an owner, not.
        let x = owned(add("shared", 0), "ns/x:http");
        let x2 = owned(add("shared", 2), "ns/x:http");
        assert_eq!(element_run(&[x.clone(), x2.clone(), x.clone()]), 3);
        assert_eq!(element_run(&[add("shared", 0), add("shared", 1)]), 1);
        let txn = Transaction { ops: ops.to_vec() };
        let batch = Batch::build(&txn, 100).expect("batch");
        // Deletions of a, additions of a, b, and each shared element alone.
        assert_eq!(batch.messages, 5);
        // A message maps back to the first operation of its run.
        assert_eq!(batch.op_of(101), Some(0));
        assert_eq!(batch.op_of(102), Some(2));
        assert_eq!(batch.op_of(103), Some(4));
        assert_eq!(batch.op_of(105), Some(6));

        let many: Vec<Op> = (0..250).map(|i| add(a, i)).collect();
        assert_eq!(element_run(&many), RUN_ELEMENTS);
        let batch = Batch::build(&Transaction { ops: many }, 1).expect("batch");
        assert_eq!(batch.messages, 3);
    }
}
