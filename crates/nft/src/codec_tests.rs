//! Encoding and decoding of rules, without a kernel: every expression survives the round trip
//! in both families, and the kernel form of the tricky ones is exactly what nft sends.

use crate::decode::{decode_rule, undecodable_rule};
use crate::encode::encode_rule;
use crate::low::{reg, AnonKind, CmpOp, Low, MetaKey, PayloadBase, SetRef};
use ipnet::IpNet;
use model::Protocol;
use proptest::prelude::*;
use ruleset::{Expr, Family, Rule, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().expect("cidr")).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Every expression variant, with addresses of `family`.
fn all_exprs(family: Family) -> Vec<Expr> {
    let (a, b, cidrs, one, odd) = match family {
        Family::Ip => (
            ip("10.244.1.10"),
            ip("10.244.2.10"),
            nets(&["10.0.0.0/8", "192.168.0.0/16"]),
            nets(&["10.244.0.0/16"]),
            nets(&["10.240.0.0/12"]),
        ),
        Family::Ip6 => (
            ip("fd00:10:244:1::10"),
            ip("fd00:10:244:2::10"),
            nets(&["2001:db8::/32", "fd00::/8"]),
            nets(&["fd00:10:244::/56"]),
            nets(&["fd00:10:240::/44"]),
        ),
    };
    vec![
        Expr::CtStateNew,
        Expr::CtStatusDnat,
        Expr::DaddrInSet("cluster-ips".into()),
        Expr::SaddrInSet("affinity-X".into()),
        Expr::SaddrInCidrs {
            negate: true,
            cidrs: cidrs.clone(),
        },
        Expr::SaddrInCidrs {
            negate: false,
            cidrs,
        },
        Expr::SaddrInCidrs {
            negate: true,
            cidrs: one.clone(),
        },
        Expr::SaddrInCidrs {
            negate: false,
            cidrs: one,
        },
        Expr::SaddrInCidrs {
            negate: true,
            cidrs: odd,
        },
        Expr::DestinationVmap("service-ips".into()),
        Expr::PortVmap("service-nodeports".into()),
        Expr::HairpinLookup("hairpin-connections".into()),
        Expr::FibSaddrLocal,
        Expr::L4Proto(Protocol::Tcp),
        Expr::L4Proto(Protocol::Udp),
        Expr::L4Proto(Protocol::Sctp),
        Expr::MarkIsSet(0x4000),
        Expr::SetMark(0x4000),
        Expr::ToggleMark(0x4000),
        Expr::Masquerade,
        Expr::UpdateSaddr("affinity-X".into()),
        Expr::Dnat(vec![(a, 8080)]),
        Expr::Dnat(vec![(a, 8080), (b, 9090)]),
        Expr::DnatEndpointMap {
            tag: [3_735_928_559, 0],
            modulus: 3,
            map: "endpoints-07".into(),
        },
        Expr::DnatEndpointMap {
            tag: [0, 1],
            modulus: 2,
            map: "endpoints-31".into(),
        },
        Expr::NumgenGoto(vec![
            "endpoint-a".into(),
            "endpoint-b".into(),
            "endpoint-c".into(),
        ]),
        Expr::Reject,
        Expr::Verdict(Verdict::Drop),
        Expr::Verdict(Verdict::Jump("services".into())),
        Expr::Verdict(Verdict::Goto("reject-chain".into())),
    ]
}

fn round_trip(family: Family, rule: &Rule) -> Rule {
    decode_rule(family, &encode_rule(family, rule))
        .unwrap_or_else(|e| panic!("{}: {e}", rule.render(family)))
}

#[test]
fn every_expression_survives_the_round_trip_alone() {
    for family in [Family::Ip, Family::Ip6] {
        for expr in all_exprs(family) {
            let rule = Rule::new(vec![expr]).with_comment("a comment");
            assert_eq!(round_trip(family, &rule), rule, "{family:?}");
        }
    }
}

#[test]
fn the_rules_of_our_ruleset_survive_the_round_trip() {
    let f = Family::Ip;
    let rules = [
        Rule::new(vec![
            Expr::MarkIsSet(0x4000),
            Expr::ToggleMark(0x4000),
            Expr::Masquerade,
        ]),
        Rule::new(vec![
            Expr::CtStatusDnat,
            Expr::HairpinLookup("hairpin-connections".into()),
            Expr::Masquerade,
        ])
        .with_comment("hairpin"),
        Rule::new(vec![
            Expr::DaddrInSet("cluster-ips".into()),
            Expr::SaddrInCidrs {
                negate: true,
                cidrs: nets(&["10.244.0.0/16"]),
            },
            Expr::SetMark(0x4000),
        ]),
        Rule::new(vec![
            Expr::DaddrInSet("nodeport-ips".into()),
            Expr::PortVmap("service-nodeports".into()),
        ]),
        Rule::new(vec![
            Expr::L4Proto(Protocol::Tcp),
            Expr::Dnat(vec![(ip("10.0.0.1"), 80), (ip("10.0.0.2"), 80)]),
        ]),
        Rule::new(vec![
            Expr::FibSaddrLocal,
            Expr::Verdict(Verdict::Goto("service-x".into())),
        ]),
        Rule::new(vec![
            Expr::SaddrInSet("affinity-x".into()),
            Expr::Verdict(Verdict::Goto("endpoint-x".into())),
        ]),
    ];
    for rule in rules {
        assert_eq!(round_trip(f, &rule), rule);
    }
}

#[test]
fn an_endpoint_map_rule_is_what_nft_sends() {
    // nft --debug=netlink for `dnat ip to numgen random mod 1 offset 5 . numgen random mod 1
    // offset 7 . numgen random mod 2 map @eps`:
    //   [ numgen reg 1 = random mod 1 offset 5 ] [ numgen reg 9 = random mod 1 offset 7 ]
    //   [ numgen reg 10 = random mod 2 ] [ lookup reg 1 set eps dreg 1 ]
    //   [ nat dnat ip addr_min reg 1 proto_min reg 9 ]
    for (family, port_reg) in [(Family::Ip, 9), (Family::Ip6, 2)] {
        let rule = Rule::new(vec![Expr::DnatEndpointMap {
            tag: [5, 7],
            modulus: 2,
            map: "eps".into(),
        }]);
        let low = encode_rule(family, &rule);
        assert!(low.anon_sets.is_empty());
        let numgen = |dreg, modulus, offset| Low::NumgenRandom {
            dreg,
            modulus,
            offset,
        };
        assert_eq!(
            low.exprs,
            vec![
                numgen(1, 1, 5),
                numgen(9, 1, 7),
                numgen(10, 2, 0),
                Low::Lookup {
                    set: SetRef::Named("eps".into()),
                    sreg: 1,
                    dreg: Some(1),
                    invert: false
                },
                Low::Dnat {
                    family,
                    addr_reg: 1,
                    proto_reg: port_reg,
                    flags: 0
                },
            ]
        );
    }
}

#[test]
fn concatenations_use_nfts_registers() {
    // nft --debug=netlink: `ip6 daddr . meta l4proto . th dport vmap @service-ips` loads the
    // address into reg 1, the protocol into reg 2 (16-byte aligned) and the port into reg 13.
    let low = encode_rule(
        Family::Ip6,
        &Rule::new(vec![Expr::DestinationVmap("service-ips".into())]),
    );
    assert_eq!(
        low.exprs,
        vec![
            Low::Payload {
                base: PayloadBase::Network,
                offset: 24,
                len: 16,
                dreg: 1
            },
            Low::Meta {
                key: MetaKey::L4Proto,
                dreg: 2
            },
            Low::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: 13
            },
            Low::Lookup {
                set: SetRef::Named("service-ips".into()),
                sreg: 1,
                dreg: Some(reg::VERDICT),
                invert: false
            },
        ]
    );
    // IPv4 hairpin: saddr reg 1, daddr reg 9, l4proto reg 10, dport reg 11.
    let low = encode_rule(
        Family::Ip,
        &Rule::new(vec![Expr::HairpinLookup("h".into())]),
    );
    let dregs: Vec<u32> = low
        .exprs
        .iter()
        .filter_map(|l| match l {
            Low::Payload { dreg, .. } | Low::Meta { dreg, .. } => Some(*dreg),
            _ => None,
        })
        .collect();
    assert_eq!(dregs, vec![1, 9, 10, 11]);
}

#[test]
fn a_byte_aligned_prefix_loads_only_its_bytes_and_others_are_masked() {
    let aligned = encode_rule(
        Family::Ip,
        &Rule::new(vec![Expr::SaddrInCidrs {
            negate: true,
            cidrs: nets(&["10.244.0.0/16"]),
        }]),
    );
    assert_eq!(
        aligned.exprs,
        vec![
            Low::Payload {
                base: PayloadBase::Network,
                offset: 12,
                len: 2,
                dreg: 1
            },
            Low::Cmp {
                sreg: 1,
                op: CmpOp::Neq,
                data: vec![10, 244]
            },
        ]
    );
    let masked = encode_rule(
        Family::Ip,
        &Rule::new(vec![Expr::SaddrInCidrs {
            negate: false,
            cidrs: nets(&["10.240.0.0/12"]),
        }]),
    );
    assert!(matches!(
        masked.exprs.as_slice(),
        [Low::Payload { len: 4, .. }, Low::Bitwise { mask, .. }, Low::Cmp { data, .. }]
            if mask == &vec![255, 240, 0, 0] && data == &vec![10, 240, 0, 0]
    ));
}

#[test]
fn several_prefixes_become_an_anonymous_interval_set() {
    let low = encode_rule(
        Family::Ip,
        &Rule::new(vec![Expr::SaddrInCidrs {
            negate: true,
            cidrs: nets(&["192.168.0.0/16", "10.0.0.0/8"]),
        }]),
    );
    assert_eq!(low.anon_sets.len(), 1);
    assert_eq!(low.anon_sets[0].kind, AnonKind::Prefixes(Family::Ip));
    assert!(matches!(
        low.exprs.as_slice(),
        [
            _,
            Low::Lookup {
                set: SetRef::Anonymous(0),
                invert: true,
                dreg: None,
                ..
            }
        ]
    ));
}

#[test]
fn foreign_rules_do_not_decode() {
    let mut low = encode_rule(
        Family::Ip,
        &Rule::new(vec![Expr::L4Proto(Protocol::Tcp), Expr::Masquerade]),
    );
    // `meta l4proto 47` (GRE) is not a Service protocol.
    if let Some(Low::Cmp { data, .. }) = low.exprs.get_mut(1) {
        *data = vec![47];
    }
    assert!(decode_rule(Family::Ip, &low).is_err());
    // A rule of the other family's addresses.
    let v6 = encode_rule(Family::Ip6, &Rule::new(vec![Expr::DaddrInSet("s".into())]));
    assert!(decode_rule(Family::Ip, &v6).is_err());
    // The placeholder for such rules never equals a rule we make.
    assert!(undecodable_rule("counter").exprs.is_empty());
}

fn arb_prefixes(family: Family) -> impl Strategy<Value = Vec<IpNet>> {
    let one = match family {
        Family::Ip => (any::<u32>(), 0u8..=32)
            .prop_map(|(a, len)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len)
                    .map(|n| n.trunc())
                    .expect("valid prefix length")
            })
            .boxed(),
        Family::Ip6 => (any::<u128>(), 0u8..=128)
            .prop_map(|(a, len)| {
                IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len)
                    .map(|n| n.trunc())
                    .expect("valid prefix length")
            })
            .boxed(),
    };
    prop::collection::vec(one, 1..6).prop_map(|v| IpNet::aggregate(&v))
}

proptest! {
    #[test]
    fn any_ipv4_prefix_list_survives_the_round_trip(
        negate in any::<bool>(),
        cidrs in arb_prefixes(Family::Ip),
    ) {
        let rule = Rule::new(vec![Expr::SaddrInCidrs { negate, cidrs }]);
        prop_assert_eq!(round_trip(Family::Ip, &rule), rule);
    }

    #[test]
    fn any_ipv6_prefix_list_survives_the_round_trip(
        negate in any::<bool>(),
        cidrs in arb_prefixes(Family::Ip6),
    ) {
        let rule = Rule::new(vec![Expr::SaddrInCidrs { negate, cidrs }]);
        prop_assert_eq!(round_trip(Family::Ip6, &rule), rule);
    }

    #[test]
    fn any_endpoint_list_survives_the_round_trip(
        eps in prop::collection::vec((any::<u32>(), any::<u16>()), 1..20),
    ) {
        let endpoints: Vec<(IpAddr, u16)> = eps
            .into_iter()
            .map(|(a, p)| (IpAddr::V4(Ipv4Addr::from(a)), p))
            .collect();
        let rule = Rule::new(vec![Expr::Dnat(endpoints)]);
        prop_assert_eq!(round_trip(Family::Ip, &rule), rule);
    }
}
