//! One libnftnl expression to one [`Low`], by the expression's name and attributes. Register
//! numbers are kept as the kernel reports them (it names a register the way nft does: a
//! 16-byte register number when the field starts one, else a 4-byte one). Anything that is
//! not exactly one of the forms our rules use is an error naming what it was, so the rule is
//! kept as undecodable.

use super::assemble::verdict;
use crate::low::{CmpOp, CtKey, Low, MetaKey, PayloadBase, SetRef};
use nftnl_sys as sys;
use ruleset::Family;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// `NFT_PAYLOAD_NETWORK_HEADER`.
const PAYLOAD_NETWORK: u64 = 1;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
const PAYLOAD_TRANSPORT: u64 = 2;
/// `NFT_META_MARK`.
const META_MARK: u64 = 3;
/// `NFT_META_L4PROTO`.
const META_L4PROTO: u64 = 16;
/// `NFT_CT_STATE`.
const CT_STATE: u64 = 0;
/// `NFT_CT_STATUS`.
const CT_STATUS: u64 = 2;
/// `NFT_CMP_EQ`.
const CMP_EQ: u64 = 0;
/// `NFT_CMP_NEQ`.
const CMP_NEQ: u64 = 1;
/// `NFT_BITWISE_BOOL` (mask and xor).
const BITWISE_BOOL: u64 = 0;
/// `NFT_LOOKUP_F_INV`.
const LOOKUP_INVERT: u64 = 1;
/// `NFT_NAT_DNAT`.
const NAT_DNAT: u64 = 1;
/// `NFT_NG_RANDOM`.
const NUMGEN_RANDOM: u64 = 1;
/// `NFT_FIB_RESULT_ADDRTYPE`.
const FIB_ADDRTYPE: u64 = 3;
/// `NFTA_FIB_F_SADDR`.
const FIB_SADDR: u64 = 1;
/// `NFT_DYNSET_OP_UPDATE`.
const DYNSET_UPDATE: u64 = 1;
/// `NFT_REG_VERDICT`.
const REG_VERDICT: u64 = 0;

/// A borrowed libnftnl expression, valid for `'a` (while its rule is alive and unchanged).
pub(super) struct Expr<'a> {
    /// The expression.
    ptr: NonNull<sys::nftnl_expr>,
    /// Ties the borrow to the rule that owns the expression.
    _rule: PhantomData<&'a sys::nftnl_expr>,
}

impl<'a> Expr<'a> {
    /// Borrows the expression at `ptr`.
    ///
    /// # Safety
    /// `ptr` must point to a libnftnl expression that stays alive and unmodified for `'a`.
    pub(super) unsafe fn new(ptr: NonNull<sys::nftnl_expr>) -> Expr<'a> {
        Expr {
            ptr,
            _rule: PhantomData,
        }
    }

    /// The expression's name (`payload`, `lookup`, …).
    fn name(&self) -> String {
        // SAFETY: the expression is alive (see `new`); the name is a static string of the
        // expression's ops (or null), copied at once.
        let ptr =
            unsafe { sys::nftnl_expr_get_str(self.ptr.as_ptr(), sys::NFTNL_EXPR_NAME as u16) };
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: non-null, NUL-terminated, alive for the call.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }

    /// Whether attribute `attr` is present.
    fn has(&self, attr: u32) -> bool {
        // SAFETY: the expression is alive (see `new`).
        unsafe { sys::nftnl_expr_is_set(self.ptr.as_ptr(), attr as u16) }
    }

    /// The raw bytes of attribute `attr`.
    fn bytes(&self, attr: u32) -> Option<&'a [u8]> {
        if !self.has(attr) {
            return None;
        }
        let mut len = 0u32;
        // SAFETY: the expression is alive (see `new`); `len` is written by the call.
        let ptr = unsafe { sys::nftnl_expr_get(self.ptr.as_ptr(), attr as u16, &mut len) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: libnftnl returned `len` readable bytes inside the expression, which stays
        // alive and unmodified for 'a (see `new`).
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize) })
    }

    /// An integer attribute of 1, 2, 4 or 8 bytes (host byte order, as libnftnl keeps them).
    fn uint(&self, attr: u32) -> Option<u64> {
        let b = self.bytes(attr)?;
        Some(match b.len() {
            1 => u64::from(b[0]),
            2 => u64::from(u16::from_ne_bytes([b[0], b[1]])),
            4 => u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            8 => u64::from_ne_bytes(b.try_into().ok()?),
            _ => return None,
        })
    }

    /// A string attribute (its bytes up to the NUL).
    fn string(&self, attr: u32) -> Option<String> {
        let b = self.bytes(attr)?;
        let text = b.split(|c| *c == 0).next().unwrap_or(&[]);
        Some(String::from_utf8_lossy(text).into_owned())
    }
}

/// Reads required integer attributes of one expression, with errors that name them.
struct Attrs<'e, 'a> {
    expr: &'e Expr<'a>,
    name: &'e str,
}

impl Attrs<'_, '_> {
    fn need(&self, attr: u32, what: &str) -> Result<u64, String> {
        self.expr
            .uint(attr)
            .ok_or_else(|| format!("`{}` without {what}", self.name))
    }

    fn reg(&self, attr: u32, what: &str) -> Result<u32, String> {
        let v = self.need(attr, what)?;
        u32::try_from(v).map_err(|_| format!("`{}` with {what} {v}", self.name))
    }

    fn zero_or_absent(&self, attr: u32, what: &str) -> Result<(), String> {
        match self.expr.uint(attr) {
            None | Some(0) => Ok(()),
            Some(v) => Err(format!("`{}` with {what} {v}", self.name)),
        }
    }

    fn absent(&self, attr: u32, what: &str) -> Result<(), String> {
        if self.expr.has(attr) {
            Err(format!("`{}` with {what}", self.name))
        } else {
            Ok(())
        }
    }
}

/// The [`Low`] form of one kernel expression, or what it is when it is not one we use.
pub(super) fn to_low(expr: &Expr<'_>) -> Result<Low, String> {
    let name = expr.name();
    let a = Attrs { expr, name: &name };
    match name.as_str() {
        "payload" => {
            a.absent(
                sys::NFTNL_EXPR_PAYLOAD_SREG,
                "a source register (a payload write)",
            )?;
            let base = match a.need(sys::NFTNL_EXPR_PAYLOAD_BASE, "a base")? {
                PAYLOAD_NETWORK => PayloadBase::Network,
                PAYLOAD_TRANSPORT => PayloadBase::Transport,
                other => return Err(format!("`payload` from header base {other}")),
            };
            Ok(Low::Payload {
                base,
                offset: a.reg(sys::NFTNL_EXPR_PAYLOAD_OFFSET, "an offset")?,
                len: a.reg(sys::NFTNL_EXPR_PAYLOAD_LEN, "a length")?,
                dreg: a.reg(sys::NFTNL_EXPR_PAYLOAD_DREG, "a destination register")?,
            })
        }
        "meta" => {
            let key = a.need(sys::NFTNL_EXPR_META_KEY, "a key")?;
            if expr.has(sys::NFTNL_EXPR_META_SREG) {
                return match key {
                    META_MARK => Ok(Low::MetaSetMark {
                        sreg: a.reg(sys::NFTNL_EXPR_META_SREG, "a source register")?,
                    }),
                    other => Err(format!("`meta set` of key {other}")),
                };
            }
            let key = match key {
                META_L4PROTO => MetaKey::L4Proto,
                META_MARK => MetaKey::Mark,
                other => return Err(format!("`meta load` of key {other}")),
            };
            Ok(Low::Meta {
                key,
                dreg: a.reg(sys::NFTNL_EXPR_META_DREG, "a destination register")?,
            })
        }
        "ct" => {
            a.absent(sys::NFTNL_EXPR_CT_SREG, "a source register (a ct write)")?;
            a.absent(sys::NFTNL_EXPR_CT_DIR, "a direction")?;
            let key = match a.need(sys::NFTNL_EXPR_CT_KEY, "a key")? {
                CT_STATE => CtKey::State,
                CT_STATUS => CtKey::Status,
                other => return Err(format!("`ct` of key {other}")),
            };
            Ok(Low::Ct {
                key,
                dreg: a.reg(sys::NFTNL_EXPR_CT_DREG, "a destination register")?,
            })
        }
        "cmp" => {
            let op = match a.need(sys::NFTNL_EXPR_CMP_OP, "an operator")? {
                CMP_EQ => CmpOp::Eq,
                CMP_NEQ => CmpOp::Neq,
                other => return Err(format!("`cmp` with operator {other}")),
            };
            Ok(Low::Cmp {
                sreg: a.reg(sys::NFTNL_EXPR_CMP_SREG, "a source register")?,
                op,
                data: expr
                    .bytes(sys::NFTNL_EXPR_CMP_DATA)
                    .ok_or("`cmp` without data")?
                    .to_vec(),
            })
        }
        "bitwise" => {
            match expr.uint(sys::NFTNL_EXPR_BITWISE_OP) {
                None | Some(BITWISE_BOOL) => {}
                Some(op) => return Err(format!("`bitwise` operation {op} (a shift)")),
            }
            let len = a.need(sys::NFTNL_EXPR_BITWISE_LEN, "a length")?;
            let mask = expr
                .bytes(sys::NFTNL_EXPR_BITWISE_MASK)
                .ok_or("`bitwise` without a mask")?;
            let xor = expr
                .bytes(sys::NFTNL_EXPR_BITWISE_XOR)
                .ok_or("`bitwise` without xor")?;
            if mask.len() as u64 != len || xor.len() as u64 != len {
                return Err(format!(
                    "`bitwise` of length {len} with a {}-byte mask and a {}-byte xor",
                    mask.len(),
                    xor.len()
                ));
            }
            Ok(Low::Bitwise {
                sreg: a.reg(sys::NFTNL_EXPR_BITWISE_SREG, "a source register")?,
                dreg: a.reg(sys::NFTNL_EXPR_BITWISE_DREG, "a destination register")?,
                mask: mask.to_vec(),
                xor: xor.to_vec(),
            })
        }
        "lookup" => {
            let set = expr
                .string(sys::NFTNL_EXPR_LOOKUP_SET)
                .ok_or("`lookup` without a set name")?;
            let flags = expr.uint(sys::NFTNL_EXPR_LOOKUP_FLAGS).unwrap_or(0);
            if flags & !LOOKUP_INVERT != 0 {
                return Err(format!("`lookup` with flags {flags:#x}"));
            }
            let dreg = if expr.has(sys::NFTNL_EXPR_LOOKUP_DREG) {
                Some(a.reg(sys::NFTNL_EXPR_LOOKUP_DREG, "a destination register")?)
            } else {
                None
            };
            Ok(Low::Lookup {
                set: SetRef::Named(set),
                sreg: a.reg(sys::NFTNL_EXPR_LOOKUP_SREG, "a source register")?,
                dreg,
                invert: flags & LOOKUP_INVERT != 0,
            })
        }
        "immediate" => {
            let dreg = a.need(sys::NFTNL_EXPR_IMM_DREG, "a destination register")?;
            if dreg == REG_VERDICT {
                let code = a.need(sys::NFTNL_EXPR_IMM_VERDICT, "a verdict")? as u32 as i32;
                let chain = expr.string(sys::NFTNL_EXPR_IMM_CHAIN);
                return verdict(code, chain.as_deref())
                    .map(Low::ImmediateVerdict)
                    .map_err(|v| format!("the verdict {v}"));
            }
            Ok(Low::ImmediateData {
                dreg: a.reg(sys::NFTNL_EXPR_IMM_DREG, "a destination register")?,
                data: expr
                    .bytes(sys::NFTNL_EXPR_IMM_DATA)
                    .ok_or("`immediate` without data")?
                    .to_vec(),
            })
        }
        "nat" => {
            match a.need(sys::NFTNL_EXPR_NAT_TYPE, "a type")? {
                NAT_DNAT => {}
                other => return Err(format!("`nat` of type {other} (not dnat)")),
            }
            let family = match a.need(sys::NFTNL_EXPR_NAT_FAMILY, "a family")? {
                f if f == libc::NFPROTO_IPV4 as u64 => Family::Ip,
                f if f == libc::NFPROTO_IPV6 as u64 => Family::Ip6,
                other => return Err(format!("`nat` of family {other}")),
            };
            let addr_reg = a.reg(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, "an address register")?;
            let proto_reg = a.reg(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, "a port register")?;
            // The kernel reports the maximum registers equal to the minimum ones when only
            // the minimum was given.
            for (attr, min, what) in [
                (
                    sys::NFTNL_EXPR_NAT_REG_ADDR_MAX,
                    addr_reg,
                    "an address range",
                ),
                (sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_reg, "a port range"),
            ] {
                if expr.uint(attr).is_some_and(|max| max != u64::from(min)) {
                    return Err(format!("`nat` with {what}"));
                }
            }
            let flags = expr.uint(sys::NFTNL_EXPR_NAT_FLAGS).unwrap_or(0);
            Ok(Low::Dnat {
                family,
                addr_reg,
                proto_reg,
                flags: u32::try_from(flags).map_err(|_| format!("`nat` flags {flags}"))?,
            })
        }
        "masq" => {
            a.absent(sys::NFTNL_EXPR_MASQ_REG_PROTO_MIN, "a port range")?;
            a.absent(sys::NFTNL_EXPR_MASQ_REG_PROTO_MAX, "a port range")?;
            let flags = expr.uint(sys::NFTNL_EXPR_MASQ_FLAGS).unwrap_or(0);
            Ok(Low::Masquerade {
                flags: u32::try_from(flags).map_err(|_| format!("`masq` flags {flags}"))?,
            })
        }
        "numgen" => {
            match a.need(sys::NFTNL_EXPR_NG_TYPE, "a type")? {
                NUMGEN_RANDOM => {}
                other => return Err(format!("`numgen` of type {other} (not random)")),
            }
            let offset = expr.uint(sys::NFTNL_EXPR_NG_OFFSET).unwrap_or(0);
            Ok(Low::NumgenRandom {
                dreg: a.reg(sys::NFTNL_EXPR_NG_DREG, "a destination register")?,
                modulus: a.reg(sys::NFTNL_EXPR_NG_MODULUS, "a modulus")?,
                offset: u32::try_from(offset).map_err(|_| format!("`numgen` offset {offset}"))?,
            })
        }
        "fib" => {
            let result = a.need(sys::NFTNL_EXPR_FIB_RESULT, "a result")?;
            let flags = a.need(sys::NFTNL_EXPR_FIB_FLAGS, "flags")?;
            if result != FIB_ADDRTYPE || flags != FIB_SADDR {
                return Err(format!(
                    "`fib` result {result} flags {flags:#x} (not `fib saddr type`)"
                ));
            }
            Ok(Low::FibSaddrType {
                dreg: a.reg(sys::NFTNL_EXPR_FIB_DREG, "a destination register")?,
            })
        }
        "dynset" => {
            match a.need(sys::NFTNL_EXPR_DYNSET_OP, "an operation")? {
                DYNSET_UPDATE => {}
                other => return Err(format!("`dynset` operation {other} (not update)")),
            }
            a.absent(sys::NFTNL_EXPR_DYNSET_SREG_DATA, "data")?;
            a.absent(sys::NFTNL_EXPR_DYNSET_EXPR, "an expression")?;
            a.absent(sys::NFTNL_EXPR_DYNSET_EXPRESSIONS, "expressions")?;
            a.zero_or_absent(sys::NFTNL_EXPR_DYNSET_TIMEOUT, "a timeout")?;
            a.zero_or_absent(sys::NFTNL_EXPR_DYNSET_FLAGS, "flags")?;
            Ok(Low::DynsetUpdate {
                set: expr
                    .string(sys::NFTNL_EXPR_DYNSET_SET_NAME)
                    .ok_or("`dynset` without a set name")?,
                sreg_key: a.reg(sys::NFTNL_EXPR_DYNSET_SREG_KEY, "a key register")?,
            })
        }
        "reject" => {
            let code = a.need(sys::NFTNL_EXPR_REJECT_CODE, "a code")?;
            Ok(Low::Reject {
                kind: a.reg(sys::NFTNL_EXPR_REJECT_TYPE, "a type")?,
                code: u8::try_from(code).map_err(|_| format!("`reject` code {code}"))?,
            })
        }
        "" => Err("an expression without a name".into()),
        other => Err(format!("the expression `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruleset::Verdict;
    use std::ffi::CString;

    /// An expression built in memory with libnftnl (no kernel involved).
    struct Built(NonNull<sys::nftnl_expr>);

    impl Built {
        fn new(name: &str) -> Built {
            let name = CString::new(name).expect("name");
            // SAFETY: `name` is a valid C string for the call; libnftnl copies what it needs.
            let ptr = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
            Built(NonNull::new(ptr).expect("a known expression name"))
        }

        fn u32(self, attr: u32, v: u32) -> Built {
            // SAFETY: the expression is alive and owned by `self`.
            unsafe { sys::nftnl_expr_set_u32(self.0.as_ptr(), attr as u16, v) };
            self
        }

        fn u8(self, attr: u32, v: u8) -> Built {
            // SAFETY: the expression is alive and owned by `self`.
            unsafe { sys::nftnl_expr_set_u8(self.0.as_ptr(), attr as u16, v) };
            self
        }

        fn str(self, attr: u32, v: &str) -> Built {
            let v = CString::new(v).expect("string");
            // SAFETY: the expression is alive; `v` is valid for the call and copied.
            unsafe { sys::nftnl_expr_set_str(self.0.as_ptr(), attr as u16, v.as_ptr()) };
            self
        }

        fn data(self, attr: u32, v: &[u8]) -> Built {
            // SAFETY: the expression is alive; `v` is `v.len()` readable bytes, copied.
            unsafe {
                sys::nftnl_expr_set(
                    self.0.as_ptr(),
                    attr as u16,
                    v.as_ptr().cast(),
                    v.len() as u32,
                )
            };
            self
        }

        fn low(&self) -> Result<Low, String> {
            // SAFETY: `self` owns the expression and outlives the borrow.
            to_low(&unsafe { Expr::new(self.0) })
        }
    }

    impl Drop for Built {
        fn drop(&mut self) {
            // SAFETY: allocated by nftnl_expr_alloc, owned by `self`, freed once.
            unsafe { sys::nftnl_expr_free(self.0.as_ptr()) }
        }
    }

    #[test]
    fn a_vmap_lookup_and_a_set_lookup() {
        let e = Built::new("lookup")
            .u32(sys::NFTNL_EXPR_LOOKUP_SREG, 1)
            .u32(sys::NFTNL_EXPR_LOOKUP_DREG, 0)
            .str(sys::NFTNL_EXPR_LOOKUP_SET, "service-ips")
            .u32(sys::NFTNL_EXPR_LOOKUP_FLAGS, 0);
        assert_eq!(
            e.low(),
            Ok(Low::Lookup {
                set: SetRef::Named("service-ips".into()),
                sreg: 1,
                dreg: Some(0),
                invert: false
            })
        );
        let e = Built::new("lookup")
            .u32(sys::NFTNL_EXPR_LOOKUP_SREG, 1)
            .str(sys::NFTNL_EXPR_LOOKUP_SET, "__set0")
            .u32(sys::NFTNL_EXPR_LOOKUP_FLAGS, 1);
        assert_eq!(
            e.low(),
            Ok(Low::Lookup {
                set: SetRef::Named("__set0".into()),
                sreg: 1,
                dreg: None,
                invert: true
            })
        );
    }

    #[test]
    fn verdicts_and_data() {
        let e = Built::new("immediate")
            .u32(sys::NFTNL_EXPR_IMM_DREG, 0)
            .u32(sys::NFTNL_EXPR_IMM_VERDICT, libc::NFT_GOTO as u32)
            .str(sys::NFTNL_EXPR_IMM_CHAIN, "services");
        assert_eq!(
            e.low(),
            Ok(Low::ImmediateVerdict(Verdict::Goto("services".into())))
        );
        let e = Built::new("immediate")
            .u32(sys::NFTNL_EXPR_IMM_DREG, 0)
            .u32(sys::NFTNL_EXPR_IMM_VERDICT, libc::NF_ACCEPT as u32);
        assert!(e.low().is_err(), "accept is not a verdict we use");
        let e = Built::new("immediate")
            .u32(sys::NFTNL_EXPR_IMM_DREG, 2)
            .data(sys::NFTNL_EXPR_IMM_DATA, &[0x1f, 0x90]);
        assert_eq!(
            e.low(),
            Ok(Low::ImmediateData {
                dreg: 2,
                data: vec![0x1f, 0x90]
            })
        );
    }

    #[test]
    fn dnat_with_the_kernel_reported_maximum_registers() {
        let e = Built::new("nat")
            .u32(sys::NFTNL_EXPR_NAT_TYPE, 1)
            .u32(sys::NFTNL_EXPR_NAT_FAMILY, 2)
            .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, 1)
            .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, 1)
            .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, 9)
            .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, 9)
            .u32(sys::NFTNL_EXPR_NAT_FLAGS, 3);
        assert_eq!(
            e.low(),
            Ok(Low::Dnat {
                family: Family::Ip,
                addr_reg: 1,
                proto_reg: 9,
                flags: 3
            })
        );
        let e = Built::new("nat")
            .u32(sys::NFTNL_EXPR_NAT_TYPE, 0)
            .u32(sys::NFTNL_EXPR_NAT_FAMILY, 2)
            .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, 1)
            .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, 2);
        assert!(e.low().is_err(), "snat");
    }

    #[test]
    fn reject_fib_numgen_dynset() {
        let e = Built::new("reject")
            .u32(sys::NFTNL_EXPR_REJECT_TYPE, 0)
            .u8(sys::NFTNL_EXPR_REJECT_CODE, 3);
        assert_eq!(e.low(), Ok(Low::Reject { kind: 0, code: 3 }));
        let e = Built::new("fib")
            .u32(sys::NFTNL_EXPR_FIB_DREG, 1)
            .u32(sys::NFTNL_EXPR_FIB_RESULT, 3)
            .u32(sys::NFTNL_EXPR_FIB_FLAGS, 1);
        assert_eq!(e.low(), Ok(Low::FibSaddrType { dreg: 1 }));
        let e = Built::new("fib")
            .u32(sys::NFTNL_EXPR_FIB_DREG, 1)
            .u32(sys::NFTNL_EXPR_FIB_RESULT, 3)
            .u32(sys::NFTNL_EXPR_FIB_FLAGS, 2);
        assert!(e.low().is_err(), "fib daddr type");
        let e = Built::new("numgen")
            .u32(sys::NFTNL_EXPR_NG_DREG, 1)
            .u32(sys::NFTNL_EXPR_NG_MODULUS, 2)
            .u32(sys::NFTNL_EXPR_NG_TYPE, 1)
            .u32(sys::NFTNL_EXPR_NG_OFFSET, 0);
        assert_eq!(
            e.low(),
            Ok(Low::NumgenRandom {
                dreg: 1,
                modulus: 2,
                offset: 0
            })
        );
        let e = Built::new("numgen")
            .u32(sys::NFTNL_EXPR_NG_DREG, 9)
            .u32(sys::NFTNL_EXPR_NG_MODULUS, 1)
            .u32(sys::NFTNL_EXPR_NG_TYPE, 1)
            .u32(sys::NFTNL_EXPR_NG_OFFSET, 3_735_928_559);
        assert_eq!(
            e.low(),
            Ok(Low::NumgenRandom {
                dreg: 9,
                modulus: 1,
                offset: 3_735_928_559
            })
        );
        let e = Built::new("dynset")
            .u32(sys::NFTNL_EXPR_DYNSET_OP, 1)
            .u32(sys::NFTNL_EXPR_DYNSET_SREG_KEY, 1)
            .str(sys::NFTNL_EXPR_DYNSET_SET_NAME, "affinity-x");
        assert_eq!(
            e.low(),
            Ok(Low::DynsetUpdate {
                set: "affinity-x".into(),
                sreg_key: 1
            })
        );
    }

    #[test]
    fn unknown_expressions_are_named() {
        assert_eq!(
            Built::new("counter").low(),
            Err("the expression `counter`".into())
        );
        let e = Built::new("payload")
            .u32(sys::NFTNL_EXPR_PAYLOAD_BASE, 0)
            .u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, 0)
            .u32(sys::NFTNL_EXPR_PAYLOAD_LEN, 6)
            .u32(sys::NFTNL_EXPR_PAYLOAD_DREG, 1);
        assert!(e.low().is_err(), "link layer header");
    }
}
