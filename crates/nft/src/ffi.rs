//! Owned libnftnl objects (tables, chains, rules, sets, set elements, expressions) behind a
//! small safe API: set attributes, attach children, build a message payload. Every `unsafe`
//! call into libnftnl lives here and in the reader.

use nftnl_sys as sys;
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;

/// Which libnftnl type an [`Object`] points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Table,
    Chain,
    Rule,
    Set,
    SetElem,
    Expr,
}

/// An attribute value.
pub(crate) enum Val<'a> {
    U8(u8),
    U32(u32),
    S32(i32),
    U64(u64),
    Str(&'a CStr),
    Data(&'a [u8]),
}

/// A libnftnl object we own: freed on drop unless handed to a parent.
pub(crate) struct Object {
    kind: Kind,
    ptr: NonNull<c_void>,
}

/// libnftnl could not allocate an object (it returns NULL only when out of memory).
#[derive(Debug)]
pub(crate) struct OutOfMemory;

/// A string for libnftnl: no interior NUL (names and comments with one are refused earlier).
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl Object {
    /// Allocates an empty object; for expressions, `expr_name` is the expression type
    /// (`payload`, `lookup`, …).
    pub(crate) fn new(kind: Kind, expr_name: Option<&CStr>) -> Result<Object, OutOfMemory> {
        // SAFETY: the allocators take no arguments, except nftnl_expr_alloc which reads a
        // NUL-terminated string that outlives the call; they return a new object or NULL.
        let raw = unsafe {
            match kind {
                Kind::Table => sys::nftnl_table_alloc().cast::<c_void>(),
                Kind::Chain => sys::nftnl_chain_alloc().cast(),
                Kind::Rule => sys::nftnl_rule_alloc().cast(),
                Kind::Set => sys::nftnl_set_alloc().cast(),
                Kind::SetElem => sys::nftnl_set_elem_alloc().cast(),
                Kind::Expr => {
                    let name = expr_name.unwrap_or(c"");
                    sys::nftnl_expr_alloc(name.as_ptr()).cast()
                }
            }
        };
        NonNull::new(raw)
            .map(|ptr| Object { kind, ptr })
            .ok_or(OutOfMemory)
    }

    /// An expression of type `name`.
    pub(crate) fn expr(name: &CStr) -> Result<Object, OutOfMemory> {
        Object::new(Kind::Expr, Some(name))
    }

    /// Sets attribute `attr` (an `NFTNL_*` constant of this object's type). libnftnl copies
    /// strings and data, so `val` need not outlive the call.
    pub(crate) fn set(&mut self, attr: u32, val: Val<'_>) -> &mut Self {
        // libnftnl attribute numbers are small enums; they fit u16.
        let a = u16::try_from(attr).unwrap_or(u16::MAX);
        let p = self.ptr.as_ptr();
        // SAFETY: `p` points to a live object of `self.kind` (we own it), so casting it to that
        // type is correct; the setters copy strings (strdup) and data (memcpy of `len` bytes
        // from a slice that is valid for the call) and keep no pointer to them. An attribute
        // that does not exist for the type is ignored by libnftnl.
        unsafe {
            match (self.kind, val) {
                (Kind::Table, Val::U32(v)) => sys::nftnl_table_set_u32(p.cast(), a, v),
                (Kind::Table, Val::Str(s)) => {
                    sys::nftnl_table_set_str(p.cast(), a, s.as_ptr());
                }
                (Kind::Table, Val::Data(d)) => {
                    sys::nftnl_table_set_data(p.cast(), a, d.as_ptr().cast(), len(d));
                }
                (Kind::Chain, Val::U32(v)) => sys::nftnl_chain_set_u32(p.cast(), a, v),
                (Kind::Chain, Val::S32(v)) => sys::nftnl_chain_set_s32(p.cast(), a, v),
                (Kind::Chain, Val::Str(s)) => {
                    sys::nftnl_chain_set_str(p.cast(), a, s.as_ptr());
                }
                (Kind::Rule, Val::U32(v)) => sys::nftnl_rule_set_u32(p.cast(), a, v),
                (Kind::Rule, Val::Str(s)) => {
                    sys::nftnl_rule_set_str(p.cast(), a, s.as_ptr());
                }
                (Kind::Rule, Val::Data(d)) => {
                    sys::nftnl_rule_set_data(p.cast(), a, d.as_ptr().cast(), len(d));
                }
                (Kind::Set, Val::U32(v)) => sys::nftnl_set_set_u32(p.cast(), a, v),
                (Kind::Set, Val::U64(v)) => sys::nftnl_set_set_u64(p.cast(), a, v),
                (Kind::Set, Val::Str(s)) => {
                    sys::nftnl_set_set_str(p.cast(), a, s.as_ptr());
                }
                (Kind::Set, Val::Data(d)) => {
                    sys::nftnl_set_set_data(p.cast(), a, d.as_ptr().cast(), len(d));
                }
                (Kind::SetElem, Val::U32(v)) => sys::nftnl_set_elem_set_u32(p.cast(), a, v),
                (Kind::SetElem, Val::Str(s)) => {
                    sys::nftnl_set_elem_set_str(p.cast(), a, s.as_ptr());
                }
                (Kind::SetElem, Val::Data(d)) => {
                    sys::nftnl_set_elem_set(p.cast(), a, d.as_ptr().cast(), len(d));
                }
                (Kind::Expr, Val::U8(v)) => sys::nftnl_expr_set_u8(p.cast(), a, v),
                (Kind::Expr, Val::U32(v)) => sys::nftnl_expr_set_u32(p.cast(), a, v),
                (Kind::Expr, Val::Str(s)) => {
                    sys::nftnl_expr_set_str(p.cast(), a, s.as_ptr());
                }
                (Kind::Expr, Val::Data(d)) => {
                    sys::nftnl_expr_set(p.cast(), a, d.as_ptr().cast(), len(d));
                }
                // Combinations we never use; a programming error caught by the tests.
                (kind, _) => debug_assert!(false, "unsupported attribute value for {kind:?}"),
            }
        }
        self
    }

    /// Appends an expression to this rule; the rule takes ownership of it.
    pub(crate) fn add_expr(&mut self, expr: Object) {
        debug_assert!(self.kind == Kind::Rule && expr.kind == Kind::Expr);
        let e = expr.into_raw();
        // SAFETY: `self` is a live rule and `e` a live expression we no longer own: the rule
        // frees it with itself.
        unsafe { sys::nftnl_rule_add_expr(self.ptr.as_ptr().cast(), e.cast()) }
    }

    /// Adds an element to this set; the set takes ownership of it.
    pub(crate) fn add_elem(&mut self, elem: Object) {
        debug_assert!(self.kind == Kind::Set && elem.kind == Kind::SetElem);
        let e = elem.into_raw();
        // SAFETY: `self` is a live set and `e` a live element we no longer own: the set frees
        // it with itself.
        unsafe { sys::nftnl_set_elem_add(self.ptr.as_ptr().cast(), e.cast()) }
    }

    /// Writes this object's attributes after the header at `nlh`; for a set, `elements`
    /// writes its element list instead of the set itself.
    ///
    /// # Safety
    /// `nlh` must point to a netlink header written by `nftnl_nlmsg_build_hdr` in a buffer with
    /// room for the whole payload (libnftnl does not check).
    pub(crate) unsafe fn build_payload(&self, nlh: *mut libc::nlmsghdr, elements: bool) {
        let p = self.ptr.as_ptr();
        // SAFETY: `p` is a live object of `self.kind`; the caller vouches for `nlh` and room.
        unsafe {
            match self.kind {
                Kind::Table => sys::nftnl_table_nlmsg_build_payload(nlh, p.cast()),
                Kind::Chain => sys::nftnl_chain_nlmsg_build_payload(nlh, p.cast()),
                Kind::Rule => sys::nftnl_rule_nlmsg_build_payload(nlh, p.cast()),
                Kind::Set if elements => sys::nftnl_set_elems_nlmsg_build_payload(nlh, p.cast()),
                Kind::Set => sys::nftnl_set_nlmsg_build_payload(nlh, p.cast()),
                Kind::SetElem | Kind::Expr => {}
            }
        }
    }

    fn into_raw(self) -> *mut c_void {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let p = self.ptr.as_ptr();
        // SAFETY: we own `p` (children handed to a parent went through `into_raw`, which skips
        // this), it is freed exactly once, with the free function of its type.
        unsafe {
            match self.kind {
                Kind::Table => sys::nftnl_table_free(p.cast()),
                Kind::Chain => sys::nftnl_chain_free(p.cast()),
                Kind::Rule => sys::nftnl_rule_free(p.cast()),
                Kind::Set => sys::nftnl_set_free(p.cast()),
                Kind::SetElem => sys::nftnl_set_elem_free(p.cast()),
                Kind::Expr => sys::nftnl_expr_free(p.cast()),
            }
        }
    }
}

fn len(d: &[u8]) -> u32 {
    u32::try_from(d.len()).unwrap_or(u32::MAX)
}
