//! The raw objects of one table ([`RawTable`], [`RawChain`]s, [`RawSet`]s, [`RawRule`]s) to a
//! typed [`Table`]. Pure: no kernel, no FFI.
//!
//! Whatever we would not have written ourselves is kept in a form that differs from anything
//! [`ruleset::desired`] produces, so the planner replaces it: a set of an unknown type or with
//! unknown flags gets an empty key; a base chain with a policy other than accept keeps only an
//! undecodable rule; a rule we cannot decode becomes [`decode::undecodable_rule`].

use super::objects::{RawChain, RawElem, RawRule, RawSet, RawTable};
use crate::decode;
use crate::error::ReadError;
use crate::keys;
use crate::low::{AnonElem, AnonKind, AnonSet, Low, LowRule, SetRef};
use model::Protocol;
use ruleset::{
    BaseChain, Chain, ChainType, ElemKey, ElemValue, Family, Hook, KeyType, Parts, Rule, Set,
    SetSpec, SharedStr, Table, Verdict,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `NFT_SET_ANONYMOUS`.
pub(super) const SET_ANONYMOUS: u32 = 0x1;
/// `NFT_SET_CONSTANT`.
const SET_CONSTANT: u32 = 0x2;
/// `NFT_SET_INTERVAL`.
const SET_INTERVAL: u32 = 0x4;
/// `NFT_SET_MAP`.
const SET_MAP: u32 = 0x8;
/// `NFT_SET_TIMEOUT`.
const SET_TIMEOUT: u32 = 0x10;
/// `NFT_SET_EVAL`: elements are added by the packet path.
pub(super) const SET_EVAL: u32 = 0x20;
/// `NFT_SET_CONCAT`: a concatenated interval set.
const SET_CONCAT: u32 = 0x80;
/// `NFT_SET_ELEM_INTERVAL_END`.
const ELEM_INTERVAL_END: u32 = 0x1;
/// `NF_ACCEPT`.
const NF_ACCEPT: u32 = 1;

/// The string of the first user-data entry of type `ty`: user data is a list of entries of one
/// type byte, one length byte and the value. Strings end with a NUL, which is removed. `None`
/// when there is no such entry or the list is malformed.
pub(crate) fn udata_string(udata: &[u8], ty: u8) -> Option<String> {
    let mut rest = udata;
    while let [t, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let value = tail.get(..len)?;
        if *t == ty {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = &tail[len..];
    }
    None
}

/// The user-data entries of a list (type, value), or `None` when it is malformed.
fn udata_entries(udata: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = udata;
    while let [t, len, tail @ ..] = rest {
        let len = usize::from(*len);
        out.push((*t, tail.get(..len)?));
        rest = &tail[len..];
    }
    rest.is_empty().then_some(out)
}

/// The protocol of the port in a set's `typeof … : … . <proto> dport` declaration (nft's
/// `NFTNL_UDATA_SET_DATA_TYPEOF`: the last expression of the data, a payload of the tcp, udp or
/// sctp header); `None` for anything else, `th dport` included.
pub(crate) fn typeof_port_protocol(udata: &[u8]) -> Option<Protocol> {
    const DATA_TYPEOF: u8 = 4;
    const EXPR: u8 = 0;
    const DATA: u8 = 1;
    const EXPR_PAYLOAD: u32 = 7;
    const EXPR_CONCAT: u32 = 13;
    fn get<'a>(entries: &[(u8, &'a [u8])], t: u8) -> Option<&'a [u8]> {
        entries.iter().find(|(ty, _)| *ty == t).map(|e| e.1)
    }
    let get_u32 = |v: &[u8]| Some(u32::from_ne_bytes(v.try_into().ok()?));
    let top = udata_entries(udata)?;
    let mut expr = udata_entries(get(&top, DATA_TYPEOF)?)?;
    if get_u32(get(&expr, EXPR)?)? == EXPR_CONCAT {
        let parts = udata_entries(get(&expr, DATA)?)?;
        expr = udata_entries(parts.last()?.1)?;
    }
    if get_u32(get(&expr, EXPR)?)? != EXPR_PAYLOAD {
        return None;
    }
    let payload = udata_entries(get(&expr, DATA)?)?;
    let (desc, field) = (get_u32(get(&payload, 0)?)?, get_u32(get(&payload, 1)?)?);
    match (desc, field) {
        (8, 2) => Some(Protocol::Tcp),
        (6, 2) => Some(Protocol::Udp),
        (10, 2) => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The verdict a kernel verdict code (and chain) stands for, when it is one we use (drop,
/// jump, goto); otherwise its name, as the error.
pub(crate) fn verdict(code: i32, chain: Option<&str>) -> Result<Verdict, String> {
    match (code, chain) {
        (libc::NF_DROP, _) => Ok(Verdict::Drop),
        (libc::NFT_JUMP, Some(c)) => Ok(Verdict::Jump(c.into())),
        (libc::NFT_GOTO, Some(c)) => Ok(Verdict::Goto(c.into())),
        (libc::NF_ACCEPT, _) => Err("accept".into()),
        (libc::NFT_RETURN, _) => Err("return".into()),
        (libc::NFT_CONTINUE, _) => Err("continue".into()),
        (libc::NFT_BREAK, _) => Err("break".into()),
        (libc::NFT_JUMP | libc::NFT_GOTO, None) => Err(format!("{code} without a chain")),
        (other, _) => Err(format!("code {other}")),
    }
}

/// Whether the elements of `set` are read: not for dynamic sets, whose elements the packet
/// path adds (session affinity); they are runtime state, never part of a desired ruleset.
pub(super) fn wants_elements(set: &RawSet) -> bool {
    set.flags & SET_EVAL == 0
}

/// The netfilter hook of an `NF_INET_*` number.
fn hook(number: u32) -> Option<Hook> {
    Some(match number {
        0 => Hook::Prerouting,
        1 => Hook::Input,
        2 => Hook::Forward,
        3 => Hook::Output,
        4 => Hook::Postrouting,
        _ => return None,
    })
}

/// The typed table made of the raw objects of `raw` (of `family`). Rules must name chains of
/// the chain list.
#[cfg(test)]
pub(super) fn table(
    family: Family,
    raw: &RawTable,
    chains: Vec<RawChain>,
    sets: Vec<RawSet>,
    rules: Vec<RawRule>,
) -> Result<Table, ReadError> {
    let mut sorted = Sets::default();
    sets.into_iter().for_each(|s| sorted.add(s, None));
    let anonymous = sorted.anonymous();
    let rules = rules
        .iter()
        .map(|r| ReadRule::new(family, &anonymous, r))
        .collect();
    table_of(family, raw, chains, sorted, rules)
}

/// A rule as read back, typed as soon as its message is parsed: its raw expressions cost
/// several times the typed rule, and a table has 10 000s of rules.
pub(super) struct ReadRule {
    /// The chain it is in.
    pub(super) chain: String,
    /// The kernel's handle of the rule (unique in its table).
    pub(super) handle: u64,
    /// The rule.
    pub(super) rule: Rule,
}

impl ReadRule {
    /// `raw` typed, with the anonymous sets of its table (see [`Sets::anonymous`]).
    pub(super) fn new(family: Family, anonymous: &BTreeMap<&str, &RawSet>, raw: &RawRule) -> Self {
        ReadRule {
            chain: raw.chain.clone(),
            handle: raw.handle,
            rule: rule(family, anonymous, raw),
        }
    }
}

/// The sets of a table as they are read: the anonymous ones raw (the rules that use them are
/// decoded with them), the named ones typed at once, so that only one set's raw elements exist
/// at a time (a raw element costs about twice a typed one, and there are 100 000s).
#[derive(Default)]
pub(super) struct Sets {
    anonymous: Vec<RawSet>,
    named: Vec<(String, Set)>,
}

impl Sets {
    /// The anonymous sets read so far, by name: what [`ReadRule::new`] attaches.
    pub(super) fn anonymous(&self) -> BTreeMap<&str, &RawSet> {
        self.anonymous
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect()
    }

    /// Files a set whose elements (if [`wants_elements`]) have been read; a named set shares
    /// its elements with the same set of `like` when they are the same.
    pub(super) fn add(&mut self, raw: RawSet, like: Option<&Table>) {
        if raw.flags & SET_ANONYMOUS != 0 {
            self.anonymous.push(raw);
        } else {
            let mut typed = named_set(&raw);
            if let Some(theirs) = like.and_then(|t| t.sets.get(&raw.name)) {
                typed.share_elements(theirs);
            }
            self.named.push((raw.name, typed));
        }
    }
}

/// The typed table from its raw objects (`sets` sorted by [`Sets::add`], `rules` typed with its
/// anonymous sets, each chain's in order). At 10 000 Services a table has 12 000 chains: each
/// chain's rules are moved into a vector of their exact number (most chains have one or two),
/// and the chain map is built in one go from the chains sorted by name (full B-tree nodes, no
/// copy of a name).
pub(super) fn table_of(
    family: Family,
    raw: &RawTable,
    mut chains: Vec<RawChain>,
    sets: Sets,
    mut rules: Vec<ReadRule>,
) -> Result<Table, ReadError> {
    let id = format!("{} {}", family.keyword(), raw.name);
    // Stable: each chain's rules keep their order.
    rules.sort_by(|a, b| a.chain.cmp(&b.chain));
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    let not_listed = |r: &ReadRule| ReadError::Malformed {
        object: format!("rule in chain {id} {}", r.chain),
        problem: "the chain was not in the chain list".into(),
    };
    let mut rules = rules.into_iter().peekable();
    let mut typed = Vec::with_capacity(chains.len());
    for c in chains {
        if let Some(r) = rules.next_if(|r| r.chain < c.name) {
            return Err(not_listed(&r));
        }
        let mut own = Vec::new();
        while let Some(r) = rules.next_if(|r| r.chain == c.name) {
            own.push(r.rule);
        }
        own.shrink_to_fit();
        let chain = chain(&c, own);
        typed.push((c.name, chain));
    }
    if let Some(r) = rules.next() {
        return Err(not_listed(&r));
    }
    Ok(Table {
        comment: raw.comment.clone(),
        chains: typed.into_iter().collect(),
        sets: sets.named.into_iter().collect(),
    })
}

/// A chain with its rules. A base chain we would not have made keeps only an undecodable
/// rule, so it never equals a desired chain.
fn chain(raw: &RawChain, rules: Vec<Rule>) -> Chain {
    let Some(base) = &raw.base else {
        return Chain { base: None, rules };
    };
    let kind = match base.kind.as_str() {
        "nat" => Some(ChainType::Nat),
        "filter" => Some(ChainType::Filter),
        _ => None,
    };
    match (kind, hook(base.hook)) {
        (Some(kind), Some(hook)) => {
            let base_chain = Some(BaseChain {
                kind,
                hook,
                priority: base.priority,
            });
            if base.policy == NF_ACCEPT {
                Chain {
                    base: base_chain,
                    rules,
                }
            } else {
                // Our base chains all have policy accept; `BaseChain` cannot say otherwise,
                // so the difference is carried by the rules.
                let policy = verdict(base.policy as i32, None)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|name| name);
                Chain {
                    base: base_chain,
                    rules: vec![decode::undecodable_rule(&format!("policy {policy}"))],
                }
            }
        }
        _ => Chain {
            base: None,
            rules: vec![decode::undecodable_rule(&format!(
                "a base chain of type {} on hook {} with priority {}",
                base.kind, base.hook, base.priority
            ))],
        },
    }
}

/// A named set or map. Anything but the four kinds we make (a plain set, a verdict map, a data
/// map, a dynamic set with a timeout), with keys, data and verdicts we know, gets an empty key.
fn named_set(raw: &RawSet) -> Set {
    let dynamic = raw.flags & (SET_TIMEOUT | SET_EVAL) == SET_TIMEOUT | SET_EVAL;
    let map = raw.flags & SET_MAP != 0;
    let verdict_map = map && raw.data_type == keys::TYPE_VERDICT;
    let data_map = map && !verdict_map;
    let spec = SetSpec {
        key: Vec::new(),
        verdict_map,
        data: Default::default(),
        port_protocol: raw.port_protocol,
        dynamic_timeout: None,
        size: raw.size,
        comment: raw.comment.clone(),
    };
    let unknown = |spec: SetSpec| Set {
        spec,
        elements: Default::default(),
    };
    let expected_flags = if dynamic {
        SET_TIMEOUT | SET_EVAL
    } else if map {
        SET_MAP
    } else {
        0
    };
    if raw.flags != expected_flags || raw.has_exprs {
        return unknown(spec);
    }
    let dynamic_timeout = if dynamic {
        if !raw.timeout_ms.is_multiple_of(1000) {
            return unknown(spec);
        }
        match u32::try_from(raw.timeout_ms / 1000) {
            Ok(secs) => Some(secs),
            Err(_) => return unknown(spec),
        }
    } else {
        None
    };
    let spec = SetSpec {
        dynamic_timeout,
        ..spec
    };
    let Some(key) = keys::types_from_id(raw.key_type, raw.key_len) else {
        return unknown(spec);
    };
    let data = if data_map {
        match keys::types_from_id(raw.data_type, raw.data_len) {
            Some(data) => data,
            None => return unknown(spec),
        }
    } else {
        Vec::new()
    };
    // Collected, then built in one go: a B-tree built from a sequence has full nodes.
    let mut elements = Vec::new();
    // The elements of one service-port share their comment, as in the desired ruleset.
    let mut comments: HashMap<&str, SharedStr> = HashMap::new();
    if !dynamic {
        elements.reserve(raw.elements.len());
        for e in &raw.elements {
            let Some(kv) = element(&key, verdict_map, &data, e, &mut comments) else {
                return unknown(spec);
            };
            elements.push(kv);
        }
    }
    Set {
        spec: SetSpec { key, data, ..spec },
        elements: Arc::new(elements.into_iter().collect()),
    }
}

/// One element of a named set, when it is one we could have written (`data`: the value types
/// of a data map, empty otherwise).
fn element<'r>(
    key: &[KeyType],
    verdict_map: bool,
    data: &[KeyType],
    e: &'r RawElem,
    comments: &mut HashMap<&'r str, SharedStr>,
) -> Option<(ElemKey, ElemValue)> {
    if e.flags != 0 {
        return None;
    }
    let data = match (&e.data, data.is_empty()) {
        (Some(bytes), false) => keys::decode_key(data, bytes)?.0,
        (None, true) => Parts::new(),
        _ => return None,
    };
    let comment = e.comment.as_deref().map(|c| {
        comments
            .entry(c)
            .or_insert_with(|| SharedStr::from(c))
            .clone()
    });
    let k = keys::decode_key(key, &e.key)?;
    let verdict = match (&e.verdict, verdict_map) {
        (Some(v), true) => Some(verdict(v.code, v.chain.as_deref()).ok()?),
        (None, false) => None,
        _ => return None,
    };
    let value = match verdict {
        Some(v) if data.is_empty() => ElemValue::verdict_of(v, comment),
        // A verdict map with a data type: not one of ours.
        Some(_) => return None,
        None => ElemValue::data_of(data, comment),
    };
    Some((k, value))
}

/// A raw rule with its anonymous sets attached: what the decoder gets, or why the rule is not
/// one of ours.
#[derive(Debug)]
enum Attached {
    /// The kernel rule in [`LowRule`] form.
    Low(LowRule),
    /// Why it cannot be one of ours.
    Undecodable(String),
}

/// Attaches the anonymous sets `raw` looks up: each becomes one of the rule's
/// [`AnonSet`]s, numbered in order of first use, and the lookup a [`SetRef::Anonymous`].
fn attach(family: Family, anonymous: &BTreeMap<&str, &RawSet>, raw: &RawRule) -> Attached {
    let exprs = match &raw.exprs {
        Ok(exprs) => exprs,
        Err(reason) => return Attached::Undecodable(reason.clone()),
    };
    let mut names: Vec<&str> = Vec::new();
    let mut anon_sets = Vec::new();
    let mut out = Vec::with_capacity(exprs.len());
    for e in exprs {
        let Low::Lookup {
            set: SetRef::Named(name),
            sreg,
            dreg,
            invert,
        } = e
        else {
            out.push(e.clone());
            continue;
        };
        let Some(set) = anonymous.get(name.as_str()) else {
            out.push(e.clone());
            continue;
        };
        let index = match names.iter().position(|n| n == name) {
            Some(i) => i,
            None => match anon_set(family, set) {
                Ok(s) => {
                    names.push(name);
                    anon_sets.push(s);
                    anon_sets.len() - 1
                }
                Err(reason) => return Attached::Undecodable(reason),
            },
        };
        out.push(Low::Lookup {
            set: SetRef::Anonymous(index),
            sreg: *sreg,
            dreg: *dreg,
            invert: *invert,
        });
    }
    Attached::Low(LowRule {
        exprs: out,
        anon_sets,
        comment: raw.comment.clone(),
    })
}

/// The typed rule of a raw rule: its anonymous sets attached, then decoded. A rule that is not
/// one of ours becomes [`decode::undecodable_rule`].
fn rule(family: Family, anonymous: &BTreeMap<&str, &RawSet>, raw: &RawRule) -> Rule {
    match attach(family, anonymous, raw) {
        Attached::Low(low) => decode::decode_rule(family, &low)
            .unwrap_or_else(|e| decode::undecodable_rule(&e.to_string())),
        Attached::Undecodable(reason) => decode::undecodable_rule(&reason),
    }
}

/// An anonymous set of a rule, by its flags and data type; its elements sorted by key bytes.
fn anon_set(family: Family, raw: &RawSet) -> Result<AnonSet, String> {
    let addr_port = keys::concat_type_id(&[family.addr_type(), KeyType::InetService]);
    let rest = raw.flags & !(SET_ANONYMOUS | SET_CONSTANT);
    let kind = if rest == SET_INTERVAL {
        AnonKind::Prefixes(family)
    } else if rest == SET_MAP && raw.data_type == keys::TYPE_VERDICT {
        AnonKind::GotoMap
    } else if rest == SET_MAP && raw.data_type == addr_port {
        AnonKind::DnatMap(family)
    } else {
        return Err(format!(
            "the anonymous set {} has flags {:#x} and data type {:#x}",
            raw.name, raw.flags, raw.data_type
        ));
    };
    if raw.flags & SET_CONCAT != 0 || raw.has_exprs {
        return Err(format!("the anonymous set {} is not one we make", raw.name));
    }
    let mut elements = Vec::with_capacity(raw.elements.len());
    for e in &raw.elements {
        if e.flags & !ELEM_INTERVAL_END != 0 {
            return Err(format!(
                "an element of {} has flags {:#x}",
                raw.name, e.flags
            ));
        }
        let verdict = match &e.verdict {
            Some(v) => Some(
                verdict(v.code, v.chain.as_deref())
                    .map_err(|name| format!("an element of {} has the verdict {name}", raw.name))?,
            ),
            None => None,
        };
        elements.push(AnonElem {
            key: e.key.clone(),
            interval_end: e.flags & ELEM_INTERVAL_END != 0,
            data: e.data.clone(),
            verdict,
        });
    }
    elements.sort_by(|a, b| (&a.key, a.interval_end).cmp(&(&b.key, b.interval_end)));
    Ok(AnonSet { kind, elements })
}

#[cfg(test)]
mod tests {
    use super::super::objects::{RawBase, RawVerdict};
    use super::*;
    use crate::low::{CmpOp, PayloadBase};
    use ruleset::KeyPart;

    fn udata(entries: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, v) in entries {
            out.push(*t);
            out.push(v.len() as u8);
            out.extend(*v);
        }
        out
    }

    fn raw_table() -> RawTable {
        RawTable {
            name: "kube-nftproxy".into(),
            comment: Some("rules".into()),
        }
    }

    fn set(name: &str, flags: u32, key_type: u32, key_len: u32) -> RawSet {
        RawSet {
            name: name.into(),
            flags,
            key_type,
            key_len,
            ..RawSet::default()
        }
    }

    fn elem(key: &[u8]) -> RawElem {
        RawElem {
            key: key.to_vec(),
            flags: 0,
            data: None,
            verdict: None,
            comment: None,
        }
    }

    fn goto(chain: &str) -> Option<RawVerdict> {
        Some(RawVerdict {
            code: libc::NFT_GOTO,
            chain: Some(chain.into()),
        })
    }

    fn plain_chain(name: &str) -> RawChain {
        RawChain {
            name: name.into(),
            base: None,
        }
    }

    fn ip(s: &str) -> KeyPart {
        KeyPart::Ip(s.parse().expect("ip"))
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// User data as nft 1.0.6 writes it for `typeof numgen random mod 1 . numgen random mod 1
    /// . numgen random mod 1 : ip daddr . <proto> dport` (`nft --debug=mnl`).
    #[test]
    #[cfg(target_endian = "little")]
    fn the_port_protocol_of_a_typeof_declaration() {
        let head = "000400000000010400000000035c00040d0000000154001a000417000000011200040100000\
                    0010401000000020400000000011a00041700000001120004010000000104010000000204000\
                    00000021a0004170000000112000401000000010401000000020400000000043400040d00000\
                    0012c0014000407000000010c00040c00000001040c0000000114000407000000010c0004";
        let tail = "000000010402000000060400000000070a656e64706f696e747300";
        for (desc, want) in [
            ("08", Some(Protocol::Tcp)),
            ("06", Some(Protocol::Udp)),
            ("0a", Some(Protocol::Sctp)),
            ("0b", None), // th dport
        ] {
            let u = unhex(&format!("{head}{desc}{tail}"));
            assert_eq!(typeof_port_protocol(&u), want, "{desc}");
            assert_eq!(udata_string(&u, 7).as_deref(), Some("endpoints"));
        }
        // Without a typeof, or malformed: none.
        assert_eq!(typeof_port_protocol(&unhex("0004010000000706616200")), None);
        assert_eq!(typeof_port_protocol(&unhex(&format!("{head}08"))), None);
    }

    #[test]
    fn udata_strings() {
        // A set's user data: key byte order (type 0, a u32), then the comment (type 7).
        let u = udata(&[(0, &[1, 0, 0, 0]), (7, b"Active ClusterIPs\0")]);
        assert_eq!(udata_string(&u, 7).as_deref(), Some("Active ClusterIPs"));
        assert_eq!(udata_string(&u, 1), None);
        // A rule comment, exactly as nft sent it in the example ruleset.
        let rule = b"\x00\x0bmasquerade\x00";
        assert_eq!(udata_string(rule, 0).as_deref(), Some("masquerade"));
        // Without the NUL, and empty.
        assert_eq!(udata_string(&udata(&[(0, b"x")]), 0).as_deref(), Some("x"));
        assert_eq!(udata_string(&udata(&[(0, b"")]), 0).as_deref(), Some(""));
        // Malformed: the length runs past the end.
        assert_eq!(udata_string(&[0, 9, b'a'], 0), None);
        assert_eq!(udata_string(&[7], 7), None);
        assert_eq!(udata_string(&[], 0), None);
    }

    #[test]
    fn verdict_codes() {
        assert_eq!(verdict(0, None), Ok(Verdict::Drop));
        assert_eq!(verdict(-3, Some("a")), Ok(Verdict::Jump("a".into())));
        assert_eq!(verdict(-4, Some("b")), Ok(Verdict::Goto("b".into())));
        assert_eq!(verdict(1, None), Err("accept".into()));
        assert_eq!(verdict(-5, None), Err("return".into()));
        assert!(verdict(-4, None).is_err());
        assert!(verdict(7, None).is_err());
    }

    #[test]
    fn set_flags_decide_the_kind() {
        let mut vmap = set("service-ips", SET_MAP, 0x730d, 12);
        vmap.data_type = keys::TYPE_VERDICT;
        vmap.comment = Some("c".into());
        let mut e = elem(&[10, 96, 0, 1, 6, 0, 0, 0, 1, 187, 0, 0]);
        e.verdict = goto("svc");
        e.comment = Some("default/kubernetes:https".into());
        vmap.elements.push(e);
        let mut dynamic = set("affinity", SET_TIMEOUT | SET_EVAL, 7, 4);
        dynamic.timeout_ms = 600_000;
        dynamic.size = Some(65535);
        let plain = set("cluster-ips", 0, 7, 4);
        let t = table(
            Family::Ip,
            &raw_table(),
            vec![],
            vec![vmap, dynamic, plain],
            vec![],
        )
        .expect("table");
        assert_eq!(t.comment.as_deref(), Some("rules"));
        let vm = &t.sets["service-ips"];
        assert!(vm.spec.verdict_map);
        assert_eq!(
            vm.spec.key,
            vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService]
        );
        assert_eq!(vm.spec.comment.as_deref(), Some("c"));
        let key = ElemKey::new(vec![
            ip("10.96.0.1"),
            KeyPart::Proto(model::Protocol::Tcp),
            KeyPart::Port(443),
        ]);
        assert_eq!(
            vm.elements[&key],
            ElemValue::verdict_of(
                Verdict::Goto("svc".into()),
                Some("default/kubernetes:https".into())
            )
        );
        let d = &t.sets["affinity"];
        assert_eq!(d.spec.dynamic_timeout, Some(600));
        assert_eq!(d.spec.size, Some(65535));
        assert!(!d.spec.verdict_map);
        assert_eq!(d.spec.key, vec![KeyType::Ipv4Addr]);
        let p = &t.sets["cluster-ips"];
        assert_eq!(p.spec.dynamic_timeout, None);
        assert_eq!(p.spec.size, None);
    }

    #[test]
    fn dynamic_set_elements_are_skipped() {
        let mut dynamic = set("affinity", SET_TIMEOUT | SET_EVAL, 7, 4);
        dynamic.timeout_ms = 10_800_000;
        assert!(!wants_elements(&dynamic));
        assert!(wants_elements(&set("cluster-ips", 0, 7, 4)));
        // Even if elements were read, they are not kept.
        dynamic.elements.push(elem(&[10, 0, 0, 1]));
        let t = table(Family::Ip, &raw_table(), vec![], vec![dynamic], vec![]).expect("table");
        assert!(t.sets["affinity"].elements.is_empty());
        assert_eq!(t.sets["affinity"].spec.dynamic_timeout, Some(10_800));
    }

    #[test]
    fn endpoint_maps_are_read_with_their_data() {
        let key = [KeyType::Integer; 3];
        let mut m = set(
            "endpoints-07",
            SET_MAP,
            keys::concat_type_id(&key),
            keys::key_len(&key),
        );
        m.data_type = keys::concat_type_id(&[KeyType::Ipv4Addr, KeyType::InetService]);
        m.data_len = 8;
        for (i, last) in [(0u32, 1u8), (1, 2)] {
            let k: Vec<u8> = [7u32, 9, i].iter().flat_map(|w| w.to_ne_bytes()).collect();
            let mut e = elem(&k);
            e.data = Some(vec![10, 1, 0, last, 0x1f, 0x90, 0, 0]);
            e.comment = Some("ns/web:http".into());
            m.elements.push(e);
        }
        let t = table(Family::Ip, &raw_table(), vec![], vec![m], vec![]).expect("table");
        let m = &t.sets["endpoints-07"];
        assert_eq!(m.spec.key, key);
        assert!(m
            .elements
            .values()
            .all(|v| v.comment.as_deref() == Some("ns/web:http")));
        assert_eq!(m.spec.data, [KeyType::Ipv4Addr, KeyType::InetService]);
        assert!(!m.spec.verdict_map);
        let got: Vec<(Vec<KeyPart>, Vec<KeyPart>)> = m
            .elements
            .iter()
            .map(|(k, v)| (k.0.to_vec(), v.data_parts().collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    vec![KeyPart::Index(7), KeyPart::Index(9), KeyPart::Index(0)],
                    vec![ip("10.1.0.1"), KeyPart::Port(8080)]
                ),
                (
                    vec![KeyPart::Index(7), KeyPart::Index(9), KeyPart::Index(1)],
                    vec![ip("10.1.0.2"), KeyPart::Port(8080)]
                ),
            ]
        );
    }

    #[test]
    fn sets_we_would_not_make_get_an_empty_key() {
        let mut cases = Vec::new();
        cases.push(set("unknown-type", 0, 9, 6)); // ether_addr
        cases.push(set("interval", SET_INTERVAL, 7, 4));
        let mut data_map = set("data-map", SET_MAP, 7, 4);
        data_map.data_type = 9; // ether_addr
        data_map.data_len = 6;
        cases.push(data_map);
        let mut no_data = set("endpoints-without-data", SET_MAP, keys::TYPE_INTEGER, 4);
        no_data.data_type = keys::concat_type_id(&[KeyType::Ipv4Addr, KeyType::InetService]);
        no_data.data_len = 8;
        no_data.elements.push(elem(&0u32.to_ne_bytes()));
        cases.push(no_data);
        let mut accept = set("accept-map", SET_MAP, 7, 4);
        accept.data_type = keys::TYPE_VERDICT;
        let mut e = elem(&[10, 0, 0, 1]);
        e.verdict = Some(RawVerdict {
            code: libc::NF_ACCEPT,
            chain: None,
        });
        accept.elements.push(e);
        cases.push(accept);
        let mut bad_key = set("bad-key", 0, 7, 4);
        bad_key.elements.push(elem(&[10, 0, 0]));
        cases.push(bad_key);
        let mut half = set("odd-timeout", SET_TIMEOUT | SET_EVAL, 7, 4);
        half.timeout_ms = 1500;
        cases.push(half);
        let mut with_exprs = set("counters", 0, 7, 4);
        with_exprs.has_exprs = true;
        cases.push(with_exprs);
        let names: Vec<String> = cases.iter().map(|s| s.name.clone()).collect();
        let t = table(Family::Ip, &raw_table(), vec![], cases, vec![]).expect("table");
        for name in names {
            let s = &t.sets[&name];
            assert!(s.spec.key.is_empty(), "{name}: {s:?}");
            assert!(s.elements.is_empty(), "{name}");
        }
    }

    #[test]
    fn base_chains_and_policies() {
        let base = |kind: &str, hook: u32, policy: u32| RawChain {
            name: format!("{kind}-{hook}-{policy}"),
            base: Some(RawBase {
                hook,
                priority: -100,
                kind: kind.into(),
                policy,
            }),
        };
        let chains = vec![
            base("nat", 0, 1),
            base("filter", 2, 0),
            base("route", 3, 1),
            plain_chain("services"),
        ];
        let t = table(Family::Ip, &raw_table(), chains, vec![], vec![]).expect("table");
        assert_eq!(
            t.chains["nat-0-1"],
            Chain {
                base: Some(BaseChain {
                    kind: ChainType::Nat,
                    hook: Hook::Prerouting,
                    priority: -100
                }),
                rules: vec![]
            }
        );
        let drop = &t.chains["filter-2-0"];
        assert_eq!(drop.base.map(|b| b.hook), Some(Hook::Forward));
        assert_eq!(drop.rules, vec![decode::undecodable_rule("policy drop")]);
        let route = &t.chains["route-3-1"];
        assert_eq!(route.base, None);
        assert_eq!(route.rules.len(), 1);
        assert!(route.rules[0].exprs.is_empty());
        assert_eq!(t.chains["services"], Chain::default());
    }

    fn numgen_map_rule(chain: &str, set: &str) -> RawRule {
        RawRule {
            chain: chain.into(),
            handle: 1,
            exprs: Ok(vec![
                Low::NumgenRandom {
                    dreg: 1,
                    modulus: 2,
                    offset: 0,
                },
                Low::Lookup {
                    set: SetRef::Named(set.into()),
                    sreg: 1,
                    dreg: Some(0),
                    invert: false,
                },
            ]),
            comment: None,
        }
    }

    #[test]
    fn anonymous_sets_attach_to_their_rules() {
        let mut gotos = set("__map0", SET_ANONYMOUS | SET_CONSTANT | SET_MAP, 4, 4);
        gotos.data_type = keys::TYPE_VERDICT;
        for (k, c) in [([1u8, 0, 0, 0], "b"), ([0u8, 0, 0, 0], "a")] {
            let mut e = elem(&k);
            e.verdict = goto(c);
            gotos.elements.push(e);
        }
        let mut prefixes = set("__set1", SET_ANONYMOUS | SET_CONSTANT | SET_INTERVAL, 7, 4);
        for (k, end) in [
            ([11u8, 0, 0, 0], true),
            ([0, 0, 0, 0], true),
            ([10, 0, 0, 0], false),
        ] {
            let mut e = elem(&k);
            e.flags = u32::from(end);
            prefixes.elements.push(e);
        }
        let mut dnat = set("__map2", SET_ANONYMOUS | SET_CONSTANT | SET_MAP, 4, 4);
        dnat.data_type = (7 << 6) | 13;
        dnat.data_len = 8;
        let mut e = elem(&[0, 0, 0, 0]);
        e.data = Some(vec![10, 244, 1, 2, 0, 53, 0, 0]);
        dnat.elements.push(e);

        let anonymous: BTreeMap<&str, &RawSet> = [(&gotos), (&prefixes), (&dnat)]
            .iter()
            .map(|s| (s.name.as_str(), *s))
            .collect();

        let attach = |raw: &RawRule| match attach(Family::Ip, &anonymous, raw) {
            Attached::Low(low) => low,
            Attached::Undecodable(reason) => panic!("{reason}"),
        };

        let low = attach(&numgen_map_rule("svc", "__map0"));
        assert_eq!(
            low.exprs[1],
            Low::Lookup {
                set: SetRef::Anonymous(0),
                sreg: 1,
                dreg: Some(0),
                invert: false
            }
        );
        assert_eq!(low.anon_sets.len(), 1);
        assert_eq!(low.anon_sets[0].kind, AnonKind::GotoMap);
        let keys: Vec<_> = low.anon_sets[0]
            .elements
            .iter()
            .map(|e| e.key.clone())
            .collect();
        assert_eq!(
            keys,
            vec![vec![0, 0, 0, 0], vec![1, 0, 0, 0]],
            "sorted by key bytes"
        );
        assert_eq!(
            low.anon_sets[0].elements[0].verdict,
            Some(Verdict::Goto("a".into()))
        );

        // Two anonymous sets in one rule, the first used twice: numbered by first use.
        let two = RawRule {
            chain: "fw".into(),
            handle: 2,
            exprs: Ok(vec![
                Low::Payload {
                    base: PayloadBase::Network,
                    offset: 12,
                    len: 4,
                    dreg: 1,
                },
                Low::Lookup {
                    set: SetRef::Named("__set1".into()),
                    sreg: 1,
                    dreg: None,
                    invert: true,
                },
                Low::Lookup {
                    set: SetRef::Named("cluster-ips".into()),
                    sreg: 1,
                    dreg: None,
                    invert: false,
                },
                Low::Lookup {
                    set: SetRef::Named("__map2".into()),
                    sreg: 1,
                    dreg: Some(1),
                    invert: false,
                },
                Low::Lookup {
                    set: SetRef::Named("__set1".into()),
                    sreg: 1,
                    dreg: None,
                    invert: false,
                },
            ]),
            comment: Some("c".into()),
        };
        let low = attach(&two);
        let refs: Vec<_> = low
            .exprs
            .iter()
            .filter_map(|e| match e {
                Low::Lookup { set, .. } => Some(set.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            refs,
            vec![
                SetRef::Anonymous(0),
                SetRef::Named("cluster-ips".into()),
                SetRef::Anonymous(1),
                SetRef::Anonymous(0)
            ]
        );
        assert_eq!(low.anon_sets[0].kind, AnonKind::Prefixes(Family::Ip));
        let ends: Vec<_> = low.anon_sets[0]
            .elements
            .iter()
            .map(|e| (e.key[0], e.interval_end))
            .collect();
        assert_eq!(ends, vec![(0, true), (10, false), (11, true)]);
        assert_eq!(
            keys::prefixes_from_elements(Family::Ip, &low.anon_sets[0].elements),
            Some(vec!["10.0.0.0/8".parse().expect("net")])
        );
        assert_eq!(low.anon_sets[1].kind, AnonKind::DnatMap(Family::Ip));
        assert_eq!(
            low.anon_sets[1].elements[0].data,
            Some(vec![10, 244, 1, 2, 0, 53, 0, 0])
        );
        assert_eq!(low.comment.as_deref(), Some("c"));

        // Through `table`: anonymous sets are not table sets, and the rules land in their
        // chain in order (decoded, or undecodable while the decoder cannot read them).
        let t = table(
            Family::Ip,
            &raw_table(),
            vec![plain_chain("svc"), plain_chain("fw")],
            vec![
                gotos.clone(),
                prefixes.clone(),
                dnat.clone(),
                set("cluster-ips", 0, 7, 4),
            ],
            vec![numgen_map_rule("svc", "__map0"), two],
        )
        .expect("table");
        assert_eq!(t.sets.keys().collect::<Vec<_>>(), vec!["cluster-ips"]);
        assert_eq!(t.chains["svc"].rules.len(), 1);
        assert_eq!(t.chains["fw"].rules.len(), 1);
    }

    #[test]
    fn an_anonymous_set_of_an_unknown_kind_makes_the_rule_undecodable() {
        let odd = set("__set0", SET_ANONYMOUS | SET_CONSTANT, 7, 4);
        let anonymous: BTreeMap<&str, &RawSet> = [("__set0", &odd)].into_iter().collect();
        let r = RawRule {
            chain: "c".into(),
            handle: 3,
            exprs: Ok(vec![Low::Lookup {
                set: SetRef::Named("__set0".into()),
                sreg: 1,
                dreg: None,
                invert: false,
            }]),
            comment: None,
        };
        match attach(Family::Ip, &anonymous, &r) {
            Attached::Undecodable(reason) => assert!(reason.contains("__set0"), "{reason}"),
            Attached::Low(low) => panic!("{low:?}"),
        }
        let got = rule(Family::Ip, &anonymous, &r);
        assert!(got.exprs.is_empty());
        assert!(got.comment.is_some_and(|c| c.contains("__set0")));
    }

    #[test]
    fn rules_keep_their_order_and_unknown_ones_are_placeholders() {
        let rules = vec![
            RawRule {
                chain: "services".into(),
                handle: 4,
                exprs: Err("the expression `counter`".into()),
                comment: None,
            },
            RawRule {
                chain: "services".into(),
                handle: 5,
                exprs: Ok(vec![Low::Cmp {
                    sreg: 1,
                    op: CmpOp::Eq,
                    data: vec![6],
                }]),
                comment: None,
            },
        ];
        let t = table(
            Family::Ip,
            &raw_table(),
            vec![plain_chain("services")],
            vec![],
            rules,
        )
        .expect("table");
        let got = &t.chains["services"].rules;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], decode::undecodable_rule("the expression `counter`"));
    }

    #[test]
    fn rules_of_interleaved_chains_go_to_their_chains_in_order() {
        let rule = |chain: &str, handle: u64, byte: u8| RawRule {
            chain: chain.into(),
            handle,
            exprs: Ok(vec![Low::Cmp {
                sreg: 1,
                op: CmpOp::Eq,
                data: vec![byte],
            }]),
            comment: None,
        };
        let rules = vec![
            rule("zeta", 1, 3),
            rule("alpha", 2, 2),
            rule("zeta", 3, 1),
            rule("alpha", 4, 9),
            rule("zeta", 5, 2),
        ];
        let chains = vec![
            plain_chain("zeta"),
            plain_chain("empty"),
            plain_chain("alpha"),
        ];
        let t = table(Family::Ip, &raw_table(), chains, vec![], rules).expect("table");
        let typed = |raw: Vec<RawRule>| -> Vec<Rule> {
            raw.iter()
                .map(|r| ReadRule::new(Family::Ip, &BTreeMap::new(), r).rule)
                .collect()
        };
        assert_eq!(
            t.chains["zeta"].rules,
            typed(vec![
                rule("zeta", 1, 3),
                rule("zeta", 3, 1),
                rule("zeta", 5, 2)
            ])
        );
        assert_eq!(
            t.chains["alpha"].rules,
            typed(vec![rule("alpha", 2, 2), rule("alpha", 4, 9)])
        );
        assert!(t.chains["empty"].rules.is_empty());
        assert_eq!(t.chains.len(), 3);
    }

    #[test]
    fn a_rule_of_an_unlisted_chain_is_an_error() {
        // Before, between and after the listed chains.
        for ghost in ["aaa", "middle", "zzz"] {
            let rules = vec![RawRule {
                chain: ghost.into(),
                handle: 6,
                exprs: Ok(vec![]),
                comment: None,
            }];
            let err = table(
                Family::Ip6,
                &raw_table(),
                vec![plain_chain("services"), plain_chain("base")],
                vec![],
                rules,
            )
            .expect_err("malformed");
            match err {
                ReadError::Malformed { object, .. } => {
                    assert_eq!(object, format!("rule in chain ip6 kube-nftproxy {ghost}"));
                }
                other => panic!("{other}"),
            }
        }
    }
}
