//! `Ruleset::apply` makes the kernel's checks, all or nothing: what is added must not exist,
//! what is used or deleted must exist, nothing referenced or non-empty is deleted, jump targets
//! exist and are not base chains, element keys fit the set type.

use super::{compute, ruleset, table_id};
use crate::{
    chain_name, plan, ChainKind, ElemKey, ElemTarget, ElemValue, Expr, Family, KeyPart, Op, Rule,
    Ruleset, SetSpec, TableId, Transaction, Verdict,
};
use model::fixtures::{ep, node_config, service, slice, Slice, Svc};
use model::Protocol;
use std::net::IpAddr;

fn objects() -> (Vec<Svc>, Vec<Slice>) {
    (
        vec![service("default", "web", "10.96.0.10")
            .type_("NodePort")
            .node_port("http", "TCP", 80, 30080)],
        vec![slice("default", "web-1", "web", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.1.0.1", "node-a"))
            .endpoint(ep("10.1.0.2", "node-b"))],
    )
}

/// A ruleset with default/web (NodePort), and web's service and external chains.
fn base() -> (Ruleset, String, String) {
    let (services, slices) = objects();
    let out = compute(&node_config(), &services, &slices);
    let view = out.ipv4.ports.values().next().expect("web");
    let rs = ruleset(&services, &slices);
    (
        rs,
        chain_name(ChainKind::Service, view),
        chain_name(ChainKind::External, view),
    )
}

fn t() -> TableId {
    table_id(Family::Ip)
}

fn ip(s: &str) -> KeyPart {
    KeyPart::Ip(s.parse::<IpAddr>().expect("ip"))
}

fn goto(chain: &str) -> Expr {
    Expr::Verdict(Verdict::Goto(chain.into()))
}

fn add_rule(chain: &str, rule: Rule) -> Op {
    Op::AddRule {
        table: t(),
        chain: chain.into(),
        rule,
    }
}

fn add_element(set: &str, key: Vec<KeyPart>, verdict: Option<Verdict>) -> Op {
    Op::AddElement {
        table: t(),
        set: set.into(),
        key: ElemKey::new(key),
        value: ElemValue {
            target: verdict.map_or(ElemTarget::None, ElemTarget::Verdict),
            comment: None,
        },
    }
}

/// Applies `ops` to `rs`; asserts it fails at `index` with a reason containing `reason`, and
/// that `rs` is unchanged.
#[track_caller]
fn fails(rs: &Ruleset, ops: Vec<Op>, index: usize, reason: &str) {
    let mut after = rs.clone();
    let txn = Transaction { ops };
    let err = after.apply(&txn).expect_err("the transaction should fail");
    assert_eq!(err.index, index, "{err}");
    assert!(err.reason.contains(reason), "{err}");
    assert_eq!(err.op, txn.ops[index].render());
    assert!(after == *rs, "a failed transaction changed the ruleset");
}

/// Applies `ops` to a copy of `rs` and returns it; panics on failure.
#[track_caller]
fn applies(rs: &Ruleset, ops: Vec<Op>) -> Ruleset {
    let mut after = rs.clone();
    if let Err(e) = after.apply(&Transaction { ops }) {
        panic!("{e}");
    }
    after
}

#[test]
fn deleting_a_chain_still_referenced_by_a_map_element_fails() {
    let (rs, svc, ext) = base();
    let flush_delete = |chain: &str| {
        vec![
            Op::FlushChain {
                table: t(),
                chain: chain.into(),
            },
            Op::DeleteChain {
                table: t(),
                chain: chain.into(),
            },
        ]
    };
    // The external chain is the target of the NodePort element only.
    fails(
        &rs,
        flush_delete(&ext),
        1,
        "still used by an element of service-nodeports",
    );
    // Once the element is gone, it can go.
    let key = vec![KeyPart::Proto(Protocol::Tcp), KeyPart::Port(30080)];
    let mut ops = vec![Op::DeleteElement {
        table: t(),
        set: "service-nodeports".into(),
        key: ElemKey::new(key),
        value: ElemValue::default(),
    }];
    ops.extend(flush_delete(&ext));
    let after = applies(&rs, ops);
    assert!(!after.tables[&t()].chains.contains_key(&ext));

    // The service chain is used by the external chain's rules (and the ClusterIP element).
    fails(
        &rs,
        flush_delete(&svc),
        1,
        "still used by a rule of chain external-",
    );
    // Not flushed first: not empty.
    fails(&rs, flush_delete(&svc)[1..].to_vec(), 0, "is not empty");
}

#[test]
fn jumping_to_a_missing_chain_fails() {
    let (rs, svc, _) = base();
    let missing = "service-XXXXXXXX-default/gone/tcp/http";
    fails(
        &rs,
        vec![add_rule("services", Rule::new(vec![goto(missing)]))],
        0,
        "no chain service-XXXXXXXX-default/gone/tcp/http to continue in",
    );
    let numgen = Rule::new(vec![Expr::NumgenGoto(vec![svc.clone(), missing.into()])]);
    fails(&rs, vec![add_rule(&svc, numgen)], 0, "to continue in");
    let key = vec![
        ip("10.96.0.99"),
        KeyPart::Proto(Protocol::Tcp),
        KeyPart::Port(80),
    ];
    fails(
        &rs,
        vec![add_element(
            "service-ips",
            key.clone(),
            Some(Verdict::Goto(missing.into())),
        )],
        0,
        "to continue in",
    );
    // Added first in the same transaction: fine.
    let after = applies(
        &rs,
        vec![
            Op::AddChain {
                table: t(),
                chain: missing.into(),
                base: None,
            },
            add_element("service-ips", key, Some(Verdict::Goto(missing.into()))),
            add_rule("services", Rule::new(vec![goto(missing)])),
        ],
    );
    assert_eq!(after.tables[&t()].chains["services"].rules.len(), 4);
}

#[test]
fn jumping_to_a_base_chain_fails() {
    let (rs, svc, _) = base();
    let to_base = Rule::new(vec![Expr::Verdict(Verdict::Jump("nat-output".into()))]);
    fails(
        &rs,
        vec![add_rule(&svc, to_base)],
        0,
        "nat-output is a base chain",
    );
    let key = vec![
        ip("10.96.0.99"),
        KeyPart::Proto(Protocol::Tcp),
        KeyPart::Port(80),
    ];
    fails(
        &rs,
        vec![add_element(
            "service-ips",
            key,
            Some(Verdict::Goto("filter-input".into())),
        )],
        0,
        "filter-input is a base chain",
    );
}

#[test]
fn a_failed_transaction_leaves_the_ruleset_unchanged() {
    let (rs, svc, _) = base();
    let valid = vec![
        Op::FlushChain {
            table: t(),
            chain: svc.clone(),
        },
        add_rule(&svc, Rule::new(vec![Expr::Reject])),
        add_element("cluster-ips", vec![ip("10.96.0.99")], None),
        Op::DeleteElement {
            table: t(),
            set: "cluster-ips".into(),
            key: ElemKey::new(vec![ip("10.96.0.10")]),
            value: ElemValue::default(),
        },
        Op::AddSet {
            table: t(),
            set: "extra".into(),
            spec: SetSpec {
                key: vec![crate::KeyType::Ipv4Addr],
                ..SetSpec::default()
            },
        },
        Op::DeleteTable {
            table: table_id(Family::Ip6),
        },
    ];
    // Valid on their own: they change the ruleset.
    assert!(applies(&rs, valid.clone()) != rs);
    // Followed by one that fails: nothing happened.
    let mut ops = valid;
    ops.push(Op::AddTable {
        table: t(),
        comment: None,
    });
    fails(&rs, ops, 6, "table ip kube-nftproxy exists");

    // The same with a real plan followed by a bad operation.
    let (services, slices) = objects();
    let empty = Ruleset::default();
    let mut txn = plan(&empty, &ruleset(&services, &slices));
    assert!(txn.len() > 10);
    txn.ops.push(Op::DeleteChain {
        table: t(),
        chain: "services".into(),
    });
    let index = txn.len() - 1;
    fails(&empty, txn.ops, index, "chain services is not empty");
    assert!(empty.tables.is_empty());
}

#[test]
fn adding_what_exists_fails() {
    let (rs, svc, _) = base();
    fails(
        &rs,
        vec![Op::AddChain {
            table: t(),
            chain: svc.clone(),
            base: None,
        }],
        0,
        "exists",
    );
    fails(
        &rs,
        vec![Op::AddSet {
            table: t(),
            set: "cluster-ips".into(),
            spec: SetSpec::default(),
        }],
        0,
        "set cluster-ips exists",
    );
    fails(
        &rs,
        vec![add_element("cluster-ips", vec![ip("10.96.0.10")], None)],
        0,
        "element 10.96.0.10 exists in cluster-ips",
    );
    // Missing things cannot be used or deleted either.
    fails(
        &rs,
        vec![Op::DeleteElement {
            table: t(),
            set: "cluster-ips".into(),
            key: ElemKey::new(vec![ip("10.96.0.99")]),
            value: ElemValue::default(),
        }],
        0,
        "no element",
    );
    fails(
        &rs,
        vec![Op::FlushChain {
            table: t(),
            chain: "nope".into(),
        }],
        0,
        "no chain nope",
    );
    let other = TableId {
        family: Family::Ip,
        name: "other".into(),
    };
    fails(
        &rs,
        vec![Op::DeleteTable { table: other }],
        0,
        "no table ip other",
    );
}

#[test]
fn element_keys_must_fit_the_set_type() {
    let (rs, svc, _) = base();
    // An IPv6 address in an IPv4 set.
    fails(
        &rs,
        vec![add_element("cluster-ips", vec![ip("fd00::1")], None)],
        0,
        "does not fit the type of cluster-ips",
    );
    // Too few fields.
    fails(
        &rs,
        vec![add_element(
            "service-ips",
            vec![ip("10.96.0.99"), KeyPart::Port(80)],
            Some(Verdict::Goto(svc.as_str().into())),
        )],
        0,
        "does not fit",
    );
    // Fields in the wrong order.
    fails(
        &rs,
        vec![add_element(
            "service-nodeports",
            vec![KeyPart::Port(30081), KeyPart::Proto(Protocol::Tcp)],
            Some(Verdict::Goto(svc.as_str().into())),
        )],
        0,
        "does not fit",
    );
    // A verdict map needs a verdict; a set takes none.
    let key = vec![
        ip("10.96.0.99"),
        KeyPart::Proto(Protocol::Tcp),
        KeyPart::Port(80),
    ];
    fails(
        &rs,
        vec![add_element("service-ips", key, None)],
        0,
        "disagree on a verdict",
    );
    fails(
        &rs,
        vec![add_element(
            "cluster-ips",
            vec![ip("10.96.0.99")],
            Some(Verdict::Drop),
        )],
        0,
        "disagree on a verdict",
    );
}

#[test]
fn sets_used_by_rules_cannot_be_deleted_and_rules_need_their_sets() {
    let (rs, _, _) = base();
    fails(
        &rs,
        vec![Op::DeleteSet {
            table: t(),
            set: "cluster-ips".into(),
            map: false,
        }],
        0,
        "set cluster-ips is still used by chain",
    );
    fails(
        &rs,
        vec![Op::DeleteSet {
            table: t(),
            set: "service-ips".into(),
            map: false,
        }],
        0,
        "service-ips is not a set",
    );
    fails(
        &rs,
        vec![add_rule(
            "services",
            Rule::new(vec![Expr::DaddrInSet("missing".into()), Expr::Reject]),
        )],
        0,
        "no set missing",
    );
    // Once no rule uses it: fine, even with elements.
    let after = applies(
        &rs,
        vec![
            Op::FlushChain {
                table: t(),
                chain: "cluster-ips-check".into(),
            },
            Op::FlushChain {
                table: t(),
                chain: "services".into(),
            },
            Op::DeleteSet {
                table: t(),
                set: "cluster-ips".into(),
                map: false,
            },
        ],
    );
    assert!(!after.tables[&t()].sets.contains_key("cluster-ips"));
    // Flushing only one of its users is not enough.
    fails(
        &rs,
        vec![
            Op::FlushChain {
                table: t(),
                chain: "services".into(),
            },
            Op::DeleteSet {
                table: t(),
                set: "cluster-ips".into(),
                map: false,
            },
        ],
        1,
        "set cluster-ips is still used by chain cluster-ips-check",
    );
}
