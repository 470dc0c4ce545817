//! Kernel-level nftables expressions: one variant per kernel expression our rules use, with the
//! register numbers and byte layouts that nft 1.0.6 itself sends (`nft --debug=netlink`).
//!
//! This is the bridge between the typed [`ruleset::Expr`] and netlink: [`crate::encode`] turns
//! expressions into these (plus the anonymous sets a rule carries), [`crate::decode`] turns them
//! back, and the FFI layer converts each variant to and from a libnftnl `nftnl_expr`. Pure data:
//! both directions are tested without a kernel.

use ruleset::{Family, Verdict};

/// Register numbers as libnftnl and the kernel number them: 0 is the verdict register, 1–4 the
/// 16-byte registers, 8–23 the 4-byte registers (`NFT_REG32_00` = 8).
pub mod reg {
    /// The verdict register.
    pub const VERDICT: u32 = 0;
    /// `NFT_REG_1`: the first 16-byte register (also the first 4-byte one, `NFT_REG32_00`).
    pub const R1: u32 = 1;
    /// `NFT_REG_2`.
    pub const R2: u32 = 2;

    /// The register nft names for the field that starts `word` 4-byte words into a
    /// concatenation loaded at `NFT_REG_1`: a 16-byte register number when the field is
    /// 16-byte aligned, otherwise a 4-byte one (nft's `netlink_put_register`).
    pub fn at_word(word: u32) -> u32 {
        if word.is_multiple_of(4) {
            R1 + word / 4
        } else {
            8 + word
        }
    }
}

/// Where a payload load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The network header (`NFT_PAYLOAD_NETWORK_HEADER`).
    Network,
    /// The transport header (`NFT_PAYLOAD_TRANSPORT_HEADER`).
    Transport,
}

/// The `meta` keys we load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `meta l4proto` (1 byte).
    L4Proto,
    /// `meta mark` (4 bytes, host byte order).
    Mark,
}

/// The conntrack keys we load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state` (4-byte bit mask, host byte order).
    State,
    /// `ct status` (4-byte bit mask, host byte order).
    Status,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
}

/// A set a lookup names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRef {
    /// A named set or map of the table.
    Named(String),
    /// The rule's own anonymous set number `n` (an index into the rule's [`AnonSet`]s).
    Anonymous(usize),
}

/// One kernel expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Low {
    /// `payload load <len>b @ <base> header + <offset> => reg <dreg>`.
    Payload {
        /// The header.
        base: PayloadBase,
        /// Byte offset in the header.
        offset: u32,
        /// Bytes loaded.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `meta load <key> => reg <dreg>`.
    Meta {
        /// What is loaded.
        key: MetaKey,
        /// Destination register.
        dreg: u32,
    },
    /// `meta set mark with reg <sreg>`.
    MetaSetMark {
        /// Source register.
        sreg: u32,
    },
    /// `ct load <key> => reg <dreg>`.
    Ct {
        /// What is loaded.
        key: CtKey,
        /// Destination register.
        dreg: u32,
    },
    /// `cmp <op> reg <sreg> <data>`.
    Cmp {
        /// Source register.
        sreg: u32,
        /// The operator.
        op: CmpOp,
        /// The bytes compared with, as they sit in the register.
        data: Vec<u8>,
    },
    /// `bitwise reg <dreg> = ( reg <sreg> & <mask> ) ^ <xor>`; the length is the mask's.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// The AND mask.
        mask: Vec<u8>,
        /// The XOR value (same length as the mask).
        xor: Vec<u8>,
    },
    /// `lookup reg <sreg> set <set> [dreg <dreg>] [0x1 = inverted]`.
    Lookup {
        /// The set or map.
        set: SetRef,
        /// Source register of the key.
        sreg: u32,
        /// Destination register for maps (0 = verdict).
        dreg: Option<u32>,
        /// Matches when the key is *not* in the set.
        invert: bool,
    },
    /// `immediate reg <dreg> <data>`.
    ImmediateData {
        /// Destination register.
        dreg: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// `immediate reg 0 <verdict>`.
    ImmediateVerdict(Verdict),
    /// `nat dnat <family> addr_min reg <addr_reg> proto_min reg <proto_reg> [flags <flags>]`.
    Dnat {
        /// The address family of the translation.
        family: Family,
        /// Register holding the address.
        addr_reg: u32,
        /// Register holding the port.
        proto_reg: u32,
        /// `NF_NAT_RANGE_*` flags as sent (nft sends 0x2, proto-specified, only for a literal
        /// address and port; the kernel sets it itself whenever a port register is given).
        flags: u32,
    },
    /// `masq flags <flags>` (0x10 = fully-random).
    Masquerade {
        /// `NF_NAT_RANGE_*` flags.
        flags: u32,
    },
    /// `numgen reg <dreg> = random mod <modulus> [offset <offset>]`.
    NumgenRandom {
        /// Destination register.
        dreg: u32,
        /// Results are offset..offset+modulus.
        modulus: u32,
        /// Added to the result (with `mod 1`: a constant).
        offset: u32,
    },
    /// `fib saddr type => reg <dreg>` (result: the address type, 4 bytes host order).
    FibSaddrType {
        /// Destination register.
        dreg: u32,
    },
    /// `dynset update reg_key <sreg_key> set <set>`.
    DynsetUpdate {
        /// The dynamic set.
        set: String,
        /// Register holding the key.
        sreg_key: u32,
    },
    /// `reject type <kind> code <code>`.
    Reject {
        /// `NFT_REJECT_*` (0 = ICMP unreachable).
        kind: u32,
        /// The ICMP (or ICMPv6) code.
        code: u8,
    },
}

/// What an anonymous set of a rule is for; determines its key and data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonKind {
    /// `{ prefix, … }`: an interval set of addresses of the family.
    Prefixes(Family),
    /// `numgen … map { 0 : addr . port, … }`: integer keys to `addr . port` data of the family.
    DnatMap(Family),
    /// `numgen … vmap { 0 : goto chain, … }`: integer keys to verdicts.
    GotoMap,
}

/// One element of an anonymous set, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonElem {
    /// The key bytes.
    pub key: Vec<u8>,
    /// For interval sets: this element ends an interval (`NFT_SET_ELEM_INTERVAL_END`).
    pub interval_end: bool,
    /// Data of a data map.
    pub data: Option<Vec<u8>>,
    /// Verdict of a verdict map.
    pub verdict: Option<Verdict>,
}

/// An anonymous, constant set that belongs to one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonSet {
    /// What it is for.
    pub kind: AnonKind,
    /// Its elements, in the order they are sent.
    pub elements: Vec<AnonElem>,
}

/// A rule as the kernel holds it: kernel expressions, the anonymous sets they look up, and the
/// comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowRule {
    /// The expressions in order.
    pub exprs: Vec<Low>,
    /// The anonymous sets, numbered as [`SetRef::Anonymous`] refers to them.
    pub anon_sets: Vec<AnonSet>,
    /// The comment (rule user data).
    pub comment: Option<String>,
}
