//! libnftnl objects to plain Rust structs: dump requests built with
//! `nftnl_*_nlmsg_build_payload`, and each reply parsed with `nftnl_*_nlmsg_parse` into a
//! [`RawTable`], [`RawChain`], [`RawSet`], [`RawElem`]s or a [`RawRule`]. Nothing here
//! interprets the values; that is [`super::assemble`]'s job.

use super::assemble::{typeof_port_protocol, udata_string};
use super::dump::Message;
use super::exprs::{self, Expr};
use crate::low::Low;
use model::Protocol;
use nftnl_sys as sys;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

/// Bytes of a request buffer. A request holds a header (16), nfgenmsg (4) and at most two
/// names of at most 256 bytes each with their attribute headers; [`super::read_tables`]
/// rejects longer table names, and set names come from the kernel (at most 256 bytes).
const REQUEST_BUFFER: usize = 4096;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// `NFTNL_UDATA_TABLE_COMMENT`.
const UDATA_TABLE_COMMENT: u8 = 0;
/// `NFTNL_UDATA_SET_COMMENT`.
const UDATA_SET_COMMENT: u8 = 7;
/// `NFTNL_UDATA_SET_ELEM_COMMENT`.
const UDATA_ELEM_COMMENT: u8 = 0;
/// `NFTNL_UDATA_RULE_COMMENT`.
const UDATA_RULE_COMMENT: u8 = 0;

/// A table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawTable {
    /// Its name.
    pub(super) name: String,
    /// The comment from its user data.
    pub(super) comment: Option<String>,
}

/// What makes a chain a base chain, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawBase {
    /// The netfilter hook number (`NF_INET_*`).
    pub(super) hook: u32,
    /// The priority.
    pub(super) priority: i32,
    /// The chain type (`filter`, `nat`, `route`).
    pub(super) kind: String,
    /// The policy verdict (`NF_ACCEPT` = 1, `NF_DROP` = 0).
    pub(super) policy: u32,
}

/// A chain as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawChain {
    /// Its name.
    pub(super) name: String,
    /// Hook, priority, type and policy of a base chain.
    pub(super) base: Option<RawBase>,
}

/// A verdict as the kernel holds it: the code and, for jump and goto, the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawVerdict {
    /// `NF_DROP` 0, `NF_ACCEPT` 1, `NFT_JUMP` -3, `NFT_GOTO` -4, `NFT_RETURN` -5, …
    pub(super) code: i32,
    /// The target chain of a jump or goto.
    pub(super) chain: Option<String>,
}

/// A set element as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawElem {
    /// The key bytes.
    pub(super) key: Vec<u8>,
    /// `NFT_SET_ELEM_*` flags (1 = interval end).
    pub(super) flags: u32,
    /// Data of a data map.
    pub(super) data: Option<Vec<u8>>,
    /// Verdict of a verdict map.
    pub(super) verdict: Option<RawVerdict>,
    /// The comment from its user data.
    pub(super) comment: Option<String>,
}

/// A set or map as the kernel lists it, with its elements once they are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct RawSet {
    /// Its name (`__set0`, `__map3` for anonymous sets).
    pub(super) name: String,
    /// `NFT_SET_*` flags.
    pub(super) flags: u32,
    /// nft's key type id.
    pub(super) key_type: u32,
    /// Key length in bytes.
    pub(super) key_len: u32,
    /// Data type id of a map (`0xffffff00` for verdicts).
    pub(super) data_type: u32,
    /// Data length of a map.
    pub(super) data_len: u32,
    /// Default element timeout in milliseconds (0 = none).
    pub(super) timeout_ms: u64,
    /// The declared maximum size, when the kernel reports one.
    pub(super) size: Option<u32>,
    /// The comment from its user data.
    pub(super) comment: Option<String>,
    /// The protocol of a `typeof … : … . tcp dport` declaration, from its user data.
    pub(super) port_protocol: Option<Protocol>,
    /// The set carries per-element expressions (counters, quotas …).
    pub(super) has_exprs: bool,
    /// Its elements (left empty for sets whose elements are not read).
    pub(super) elements: Vec<RawElem>,
}

/// A rule as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawRule {
    /// The chain it is in.
    pub(super) chain: String,
    /// The kernel's handle of the rule (unique in its table).
    pub(super) handle: u64,
    /// Its expressions, or why one of them is not one we know.
    pub(super) exprs: Result<Vec<Low>, String>,
    /// The comment from its user data.
    pub(super) comment: Option<String>,
}

/// A parsed object with the family and table the kernel says it belongs to (dumps of tables
/// and chains are not filtered by the kernel).
#[derive(Debug)]
pub(super) struct InTable<T> {
    /// `NFPROTO_*`.
    pub(super) family: u32,
    /// The table's name.
    pub(super) table: String,
    /// The object.
    pub(super) object: T,
}

/// The objects a dump request asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Request<'a> {
    /// `NFT_MSG_GETTABLE`.
    Tables,
    /// `NFT_MSG_GETCHAIN`.
    Chains,
    /// `NFT_MSG_GETSET`.
    Sets,
    /// `NFT_MSG_GETSETELEM` of one set.
    Elements(&'a CStr),
    /// `NFT_MSG_GETRULE`.
    Rules,
}

/// Declares an owner of a libnftnl object: allocated by `$alloc`, freed once on drop.
macro_rules! owner {
    ($name:ident, $ty:ty, $alloc:ident, $free:ident) => {
        struct $name(NonNull<$ty>);

        impl $name {
            fn new() -> Result<$name, String> {
                // SAFETY: the allocator takes no arguments; a null result is handled.
                let ptr = unsafe { sys::$alloc() };
                NonNull::new(ptr)
                    .map($name)
                    .ok_or_else(|| format!("libnftnl could not allocate ({})", stringify!($alloc)))
            }

            fn ptr(&self) -> *mut $ty {
                self.0.as_ptr()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: the pointer came from the matching allocator, is owned by this value
                // alone, and is freed exactly once, here.
                unsafe { sys::$free(self.0.as_ptr()) }
            }
        }
    };
}

owner!(Table, sys::nftnl_table, nftnl_table_alloc, nftnl_table_free);
owner!(Chain, sys::nftnl_chain, nftnl_chain_alloc, nftnl_chain_free);
owner!(Set, sys::nftnl_set, nftnl_set_alloc, nftnl_set_free);
owner!(Rule, sys::nftnl_rule, nftnl_rule_alloc, nftnl_rule_free);

/// Copies a C string libnftnl returned; `None` for a null pointer.
///
/// # Safety
/// `ptr` must be null or point to a NUL-terminated string that stays valid for the call.
unsafe fn string(ptr: *const libc::c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, and the caller guarantees a valid NUL-terminated string.
    Some(
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Copies `len` bytes libnftnl returned; `None` for a null pointer.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes that stay valid for the call.
unsafe fn bytes(ptr: *const libc::c_void, len: u32) -> Option<Vec<u8>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes.
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize) }.to_vec())
}

/// A dump request for `what` in the tables named `table` of `family`, with sequence number
/// `seq`. The table (and set) name is set on the request object so the kernel filters where
/// it can (sets, elements, rules).
pub(super) fn request(
    what: Request<'_>,
    family: u16,
    table: &CStr,
    seq: u32,
) -> Result<Message, String> {
    if table.to_bytes().len() > 256 {
        return Err("the table name is longer than 256 bytes".into());
    }
    if let Request::Elements(set) = what {
        if set.to_bytes().len() > 256 {
            return Err("the set name is longer than 256 bytes".into());
        }
    }
    let ty = match what {
        Request::Tables => libc::NFT_MSG_GETTABLE,
        Request::Chains => libc::NFT_MSG_GETCHAIN,
        Request::Sets => libc::NFT_MSG_GETSET,
        Request::Elements(_) => libc::NFT_MSG_GETSETELEM,
        Request::Rules => libc::NFT_MSG_GETRULE,
    } as u16;
    let mut msg = Message::buffer(REQUEST_BUFFER);
    // SAFETY: the buffer is REQUEST_BUFFER zeroed, 4-byte aligned bytes, more than the header
    // and nfgenmsg this writes; libnftnl adds the nf_tables subsystem to the type.
    let nlh = unsafe { sys::nftnl_nlmsg_build_hdr(msg.as_mut_ptr(), ty, family, NLM_F_DUMP, seq) };
    match what {
        Request::Tables => {
            let t = Table::new()?;
            // SAFETY: `t` is a live table we own; set_str copies the string; the payload
            // (one name attribute of at most 260 bytes) fits the rest of the buffer `nlh`
            // points into.
            unsafe {
                sys::nftnl_table_set_str(t.ptr(), sys::NFTNL_TABLE_NAME as u16, table.as_ptr());
                sys::nftnl_table_nlmsg_build_payload(nlh, t.ptr());
            }
        }
        Request::Chains => {
            let c = Chain::new()?;
            // SAFETY: as for tables: a live chain we own, a copied string, and a payload of
            // one name attribute that fits the buffer.
            unsafe {
                sys::nftnl_chain_set_str(c.ptr(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
                sys::nftnl_chain_nlmsg_build_payload(nlh, c.ptr());
            }
        }
        Request::Sets => {
            let s = Set::new()?;
            // SAFETY: as for tables: a live set we own, a copied string, one name attribute.
            unsafe {
                sys::nftnl_set_set_str(s.ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
                sys::nftnl_set_nlmsg_build_payload(nlh, s.ptr());
            }
        }
        Request::Elements(set) => {
            let s = Set::new()?;
            // SAFETY: a live set we own, copied strings, and a payload of two name attributes
            // (at most 2 × 260 bytes) that fits the buffer; the set has no elements to add.
            unsafe {
                sys::nftnl_set_set_str(s.ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
                sys::nftnl_set_set_str(s.ptr(), sys::NFTNL_SET_NAME as u16, set.as_ptr());
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, s.ptr());
            }
        }
        Request::Rules => {
            let r = Rule::new()?;
            // SAFETY: as for tables: a live rule we own (no expressions), a copied string,
            // one name attribute.
            unsafe {
                sys::nftnl_rule_set_str(r.ptr(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
                sys::nftnl_rule_nlmsg_build_payload(nlh, r.ptr());
            }
        }
    }
    msg.finish()
        .ok_or_else(|| "libnftnl built a request of an impossible length".into())
}

/// A C string for a name, or why it cannot be one.
pub(super) fn c_name(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("the name {name:?} contains a NUL byte"))
}

/// Parses one `NFT_MSG_NEWTABLE` message of a table dump.
pub(super) fn parse_table(msg: &Message) -> Result<InTable<RawTable>, String> {
    let t = Table::new()?;
    // SAFETY: `msg` is a complete, aligned netlink message that outlives the call, and `t` a
    // live table we own; libnftnl copies what it keeps.
    if unsafe { sys::nftnl_table_nlmsg_parse(msg.header(), t.ptr()) } < 0 {
        return Err("libnftnl could not parse a table message".into());
    }
    let mut len = 0u32;
    // SAFETY: `t` is live; the getters return pointers into `t` (or null), which are copied
    // before `t` is freed at the end of this function.
    let (name, family, udata) = unsafe {
        let name = string(sys::nftnl_table_get_str(
            t.ptr(),
            sys::NFTNL_TABLE_NAME as u16,
        ));
        let family = sys::nftnl_table_get_u32(t.ptr(), sys::NFTNL_TABLE_FAMILY as u16);
        let udata = if sys::nftnl_table_is_set(t.ptr(), sys::NFTNL_TABLE_USERDATA as u16) {
            bytes(
                sys::nftnl_table_get_data(t.ptr(), sys::NFTNL_TABLE_USERDATA as u16, &mut len),
                len,
            )
        } else {
            None
        };
        (name, family, udata)
    };
    let name = name.ok_or("a table message without a name")?;
    Ok(InTable {
        family,
        table: name.clone(),
        object: RawTable {
            name,
            comment: udata.and_then(|u| udata_string(&u, UDATA_TABLE_COMMENT)),
        },
    })
}

/// Parses one `NFT_MSG_NEWCHAIN` message of a chain dump.
pub(super) fn parse_chain(msg: &Message) -> Result<InTable<RawChain>, String> {
    let c = Chain::new()?;
    // SAFETY: as in `parse_table`.
    if unsafe { sys::nftnl_chain_nlmsg_parse(msg.header(), c.ptr()) } < 0 {
        return Err("libnftnl could not parse a chain message".into());
    }
    let p = c.ptr();
    // SAFETY: `c` is live; strings are copied before it is freed.
    let (name, table, family, base) = unsafe {
        let name = string(sys::nftnl_chain_get_str(p, sys::NFTNL_CHAIN_NAME as u16));
        let table = string(sys::nftnl_chain_get_str(p, sys::NFTNL_CHAIN_TABLE as u16));
        let family = sys::nftnl_chain_get_u32(p, sys::NFTNL_CHAIN_FAMILY as u16);
        let base = if sys::nftnl_chain_is_set(p, sys::NFTNL_CHAIN_HOOKNUM as u16) {
            Some(RawBase {
                hook: sys::nftnl_chain_get_u32(p, sys::NFTNL_CHAIN_HOOKNUM as u16),
                priority: sys::nftnl_chain_get_s32(p, sys::NFTNL_CHAIN_PRIO as u16),
                kind: string(sys::nftnl_chain_get_str(p, sys::NFTNL_CHAIN_TYPE as u16))
                    .unwrap_or_default(),
                policy: if sys::nftnl_chain_is_set(p, sys::NFTNL_CHAIN_POLICY as u16) {
                    sys::nftnl_chain_get_u32(p, sys::NFTNL_CHAIN_POLICY as u16)
                } else {
                    libc::NF_ACCEPT as u32
                },
            })
        } else {
            None
        };
        (name, table, family, base)
    };
    Ok(InTable {
        family,
        table: table.ok_or("a chain message without a table")?,
        object: RawChain {
            name: name.ok_or("a chain message without a name")?,
            base,
        },
    })
}

/// Parses one `NFT_MSG_NEWSET` message of a set dump (without elements).
pub(super) fn parse_set(msg: &Message) -> Result<InTable<RawSet>, String> {
    let s = Set::new()?;
    // SAFETY: as in `parse_table`.
    if unsafe { sys::nftnl_set_nlmsg_parse(msg.header(), s.ptr()) } < 0 {
        return Err("libnftnl could not parse a set message".into());
    }
    let p = s.ptr();
    let is_set = |attr: u32| {
        // SAFETY: `s` is live for the whole function.
        unsafe { sys::nftnl_set_is_set(p, attr as u16) }
    };
    let u32_of = |attr: u32| {
        // SAFETY: `s` is live; the getter returns 0 for an unset attribute.
        unsafe { sys::nftnl_set_get_u32(p, attr as u16) }
    };
    let mut len = 0u32;
    // SAFETY: `s` is live; strings and bytes are copied before it is freed.
    let (name, table, timeout_ms, udata) = unsafe {
        (
            string(sys::nftnl_set_get_str(p, sys::NFTNL_SET_NAME as u16)),
            string(sys::nftnl_set_get_str(p, sys::NFTNL_SET_TABLE as u16)),
            if is_set(sys::NFTNL_SET_TIMEOUT) {
                sys::nftnl_set_get_u64(p, sys::NFTNL_SET_TIMEOUT as u16)
            } else {
                0
            },
            if is_set(sys::NFTNL_SET_USERDATA) {
                bytes(
                    sys::nftnl_set_get_data(p, sys::NFTNL_SET_USERDATA as u16, &mut len),
                    len,
                )
            } else {
                None
            },
        )
    };
    Ok(InTable {
        family: u32_of(sys::NFTNL_SET_FAMILY),
        table: table.ok_or("a set message without a table")?,
        object: RawSet {
            name: name.ok_or("a set message without a name")?,
            flags: u32_of(sys::NFTNL_SET_FLAGS),
            key_type: u32_of(sys::NFTNL_SET_KEY_TYPE),
            key_len: u32_of(sys::NFTNL_SET_KEY_LEN),
            data_type: u32_of(sys::NFTNL_SET_DATA_TYPE),
            data_len: u32_of(sys::NFTNL_SET_DATA_LEN),
            timeout_ms,
            size: is_set(sys::NFTNL_SET_DESC_SIZE).then(|| u32_of(sys::NFTNL_SET_DESC_SIZE)),
            comment: udata
                .as_ref()
                .and_then(|u| udata_string(u, UDATA_SET_COMMENT)),
            port_protocol: udata.as_ref().and_then(|u| typeof_port_protocol(u)),
            has_exprs: is_set(sys::NFTNL_SET_EXPR) || is_set(sys::NFTNL_SET_EXPRESSIONS),
            elements: Vec::new(),
        },
    })
}

/// Reads one element of a parsed element list.
///
/// # Safety
/// `e` must point to a live element of a set that outlives the call.
unsafe fn element(e: *mut sys::nftnl_set_elem) -> RawElem {
    let attr = |a: u32| a as u16;
    // SAFETY: the caller guarantees `e` is live; every pointer a getter returns points into
    // `e` and is copied at once.
    unsafe {
        let is_set = |a: u32| sys::nftnl_set_elem_is_set(e, attr(a));
        let get = |a: u32| {
            if !is_set(a) {
                return None;
            }
            let mut len = 0u32;
            bytes(sys::nftnl_set_elem_get(e, attr(a), &mut len), len)
        };
        let verdict = is_set(sys::NFTNL_SET_ELEM_VERDICT).then(|| RawVerdict {
            code: sys::nftnl_set_elem_get_u32(e, attr(sys::NFTNL_SET_ELEM_VERDICT)) as i32,
            chain: if is_set(sys::NFTNL_SET_ELEM_CHAIN) {
                string(sys::nftnl_set_elem_get_str(
                    e,
                    attr(sys::NFTNL_SET_ELEM_CHAIN),
                ))
            } else {
                None
            },
        });
        RawElem {
            key: get(sys::NFTNL_SET_ELEM_KEY).unwrap_or_default(),
            flags: if is_set(sys::NFTNL_SET_ELEM_FLAGS) {
                sys::nftnl_set_elem_get_u32(e, attr(sys::NFTNL_SET_ELEM_FLAGS))
            } else {
                0
            },
            data: get(sys::NFTNL_SET_ELEM_DATA),
            verdict,
            comment: get(sys::NFTNL_SET_ELEM_USERDATA)
                .and_then(|u| udata_string(&u, UDATA_ELEM_COMMENT)),
        }
    }
}

/// Parses one `NFT_MSG_NEWSETELEM` message of an element dump: the set's name and the
/// elements the message holds.
pub(super) fn parse_elements(msg: &Message) -> Result<InTable<(String, Vec<RawElem>)>, String> {
    let s = Set::new()?;
    // SAFETY: as in `parse_table`; the elements are added to `s`, which owns them.
    if unsafe { sys::nftnl_set_elems_nlmsg_parse(msg.header(), s.ptr()) } < 0 {
        return Err("libnftnl could not parse an element message".into());
    }
    let p = s.ptr();
    // SAFETY: `s` is live; strings are copied.
    let (name, table, family) = unsafe {
        (
            string(sys::nftnl_set_get_str(p, sys::NFTNL_SET_NAME as u16)),
            string(sys::nftnl_set_get_str(p, sys::NFTNL_SET_TABLE as u16)),
            sys::nftnl_set_get_u32(p, sys::NFTNL_SET_FAMILY as u16),
        )
    };
    let mut elements = Vec::new();
    // SAFETY: `s` is live and not modified while the iterator exists; a null iterator is
    // handled.
    let iter = unsafe { sys::nftnl_set_elems_iter_create(p) };
    if iter.is_null() {
        return Err("libnftnl could not allocate an element iterator".into());
    }
    loop {
        // SAFETY: `iter` is a live iterator over `s`.
        let e = unsafe { sys::nftnl_set_elems_iter_next(iter) };
        if e.is_null() {
            break;
        }
        // SAFETY: `e` is a live element owned by `s`, which outlives this call.
        elements.push(unsafe { element(e) });
    }
    // SAFETY: `iter` came from nftnl_set_elems_iter_create and is destroyed once.
    unsafe { sys::nftnl_set_elems_iter_destroy(iter) };
    Ok(InTable {
        family,
        table: table.ok_or("an element message without a table")?,
        object: (
            name.ok_or("an element message without a set name")?,
            elements,
        ),
    })
}

/// Parses one `NFT_MSG_NEWRULE` message of a rule dump.
pub(super) fn parse_rule(msg: &Message) -> Result<InTable<RawRule>, String> {
    let r = Rule::new()?;
    // SAFETY: as in `parse_table`.
    if unsafe { sys::nftnl_rule_nlmsg_parse(msg.header(), r.ptr()) } < 0 {
        return Err("libnftnl could not parse a rule message".into());
    }
    let p = r.ptr();
    let mut len = 0u32;
    // SAFETY: `r` is live; strings and bytes are copied before it is freed.
    let (table, chain, handle, family, udata) = unsafe {
        (
            string(sys::nftnl_rule_get_str(p, sys::NFTNL_RULE_TABLE as u16)),
            string(sys::nftnl_rule_get_str(p, sys::NFTNL_RULE_CHAIN as u16)),
            sys::nftnl_rule_get_u64(p, sys::NFTNL_RULE_HANDLE as u16),
            sys::nftnl_rule_get_u32(p, sys::NFTNL_RULE_FAMILY as u16),
            if sys::nftnl_rule_is_set(p, sys::NFTNL_RULE_USERDATA as u16) {
                bytes(
                    sys::nftnl_rule_get_data(p, sys::NFTNL_RULE_USERDATA as u16, &mut len),
                    len,
                )
            } else {
                None
            },
        )
    };
    // SAFETY: `r` is live and not modified while the iterator exists; null is handled.
    let iter = unsafe { sys::nftnl_expr_iter_create(p) };
    if iter.is_null() {
        return Err("libnftnl could not allocate an expression iterator".into());
    }
    let mut exprs: Result<Vec<Low>, String> = Ok(Vec::new());
    loop {
        // SAFETY: `iter` is a live iterator over `r`.
        let e = unsafe { sys::nftnl_expr_iter_next(iter) };
        let Some(e) = NonNull::new(e) else { break };
        // SAFETY: `e` is an expression owned by `r`, which is neither modified nor freed
        // while `expr` (used only inside this iteration) exists.
        let expr = unsafe { Expr::new(e) };
        if let Ok(list) = exprs.as_mut() {
            match exprs::to_low(&expr) {
                Ok(low) => list.push(low),
                Err(reason) => exprs = Err(reason),
            }
        }
    }
    // SAFETY: `iter` came from nftnl_expr_iter_create and is destroyed once.
    unsafe { sys::nftnl_expr_iter_destroy(iter) };
    if let Ok(list) = exprs.as_mut() {
        // The pushes leave room to spare (most of our rules have 7 expressions, in room for
        // 8), and raw rules are kept until the whole table is assembled: 10 000s of them.
        list.shrink_to_fit();
    }
    Ok(InTable {
        family,
        table: table.ok_or("a rule message without a table")?,
        object: RawRule {
            chain: chain.ok_or("a rule message without a chain")?,
            handle,
            exprs,
            comment: udata.and_then(|u| udata_string(&u, UDATA_RULE_COMMENT)),
        },
    })
}
