//! Reading our tables back from a real kernel (`nft::read_tables`): each example ruleset is
//! loaded with `nft -f` into a network namespace made for the test, read back over netlink,
//! and compared with the desired `Ruleset` it was rendered from.

use integration::example;
use ruleset::{render, Ruleset, TableId};
use std::path::PathBuf;
use testbed::{require_kernel, NetNs};

const TABLE: &str = "kube-nftproxy";

const EXAMPLES: [(&str, &str); 3] = [
    ("examples/cluster.yaml", "node-a"),
    ("examples/cluster.yaml", "node-b"),
    ("examples/bad", "node-a"),
];

/// `nft::read_tables(TABLE, None)` inside `ns`.
fn read_back(ns: &NetNs) -> Ruleset {
    let path = PathBuf::from(format!("/var/run/netns/{}", ns.name()));
    nft::in_netns(&path, || nft::read_tables(TABLE, None))
        .unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
        .unwrap_or_else(|e| panic!("reading {TABLE} in {}: {e}", ns.name()))
}

/// A namespace holding `rules`, loaded with `nft -f`.
fn loaded(prefix: &str, rules: &Ruleset) -> NetNs {
    let ns = NetNs::new(prefix).unwrap_or_else(|e| panic!("netns: {e}"));
    let text = render(rules);
    ns.nft_load(&text)
        .unwrap_or_else(|e| panic!("the kernel refused the ruleset: {e}\n{text}"));
    ns
}

fn nft(ns: &NetNs, args: &[&str]) {
    ns.run("nft", args)
        .unwrap_or_else(|e| panic!("nft {}: {e}", args.join(" ")));
}

/// The same ruleset with every chain's rules removed.
fn without_rules(r: &Ruleset) -> Ruleset {
    let mut r = r.clone();
    for table in r.tables.values_mut() {
        for chain in table.chains.values_mut() {
            chain.rules.clear();
        }
    }
    r
}

/// Lines of `want` missing from `got` (`-`) and lines of `got` not in `want` (`+`), each in
/// its own order. Enough to see what differs in two renderings of one ruleset.
fn line_diff(want: &str, got: &str) -> String {
    let want_lines: Vec<&str> = want.lines().collect();
    let got_lines: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for line in &want_lines {
        if !got_lines.contains(line) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    for line in &got_lines {
        if !want_lines.contains(line) {
            out.push_str(&format!("+ {line}\n"));
        }
    }
    out
}

/// Which tables, sets and chains differ, with both values (for what a rendering may not show).
fn object_diff(want: &Ruleset, got: &Ruleset) -> String {
    let mut out = String::new();
    let ids: std::collections::BTreeSet<&TableId> =
        want.tables.keys().chain(got.tables.keys()).collect();
    for id in ids {
        let (w, g) = (want.tables.get(id), got.tables.get(id));
        let (Some(w), Some(g)) = (w, g) else {
            out.push_str(&format!(
                "table {id}: desired {:?}, read {:?}\n",
                w.is_some(),
                g.is_some()
            ));
            continue;
        };
        if w.comment != g.comment {
            out.push_str(&format!(
                "table {id} comment: desired {:?}, read {:?}\n",
                w.comment, g.comment
            ));
        }
        let names: std::collections::BTreeSet<&String> =
            w.sets.keys().chain(g.sets.keys()).collect();
        for name in names {
            if w.sets.get(name) != g.sets.get(name) {
                out.push_str(&format!(
                    "set {id} {name}:\n  desired {:?}\n  read    {:?}\n",
                    w.sets.get(name),
                    g.sets.get(name)
                ));
            }
        }
        let names: std::collections::BTreeSet<&String> =
            w.chains.keys().chain(g.chains.keys()).collect();
        for name in names {
            if w.chains.get(name) != g.chains.get(name) {
                out.push_str(&format!(
                    "chain {id} {name}:\n  desired {:?}\n  read    {:?}\n",
                    w.chains.get(name),
                    g.chains.get(name)
                ));
            }
        }
    }
    out
}

/// Asserts the whole read-back equals `want`; on failure says whether everything but the rules
/// already matches, and shows the differences.
fn assert_reads_back(got: &Ruleset, want: &Ruleset, context: &str) {
    if got == want {
        return;
    }
    let structure = if without_rules(got) == without_rules(want) {
        "tables, chains, sets and elements match; only rules differ"
    } else {
        "tables, chains, sets or elements differ (not only rules)"
    };
    panic!(
        "{context}: the read-back differs from the desired ruleset ({structure}).\n\
         rendering (- desired, + read):\n{}\nobjects:\n{}",
        line_diff(&render(want), &render(got)),
        object_diff(want, got)
    );
}

#[test]
fn every_example_reads_back_as_the_desired_ruleset() {
    if !require_kernel() {
        return;
    }
    for (manifests, node) in EXAMPLES {
        let (_, rules) = example(manifests, node);
        let ns = loaded("readback", &rules);
        let got = read_back(&ns);
        assert_reads_back(&got, &rules, &format!("{manifests} for {node}"));
    }
}

/// The name of a dynamic (session affinity) set of the ip table.
#[test]
fn a_read_like_the_desired_ruleset_shares_the_elements_of_every_set_it_holds_unchanged() {
    if !require_kernel() {
        return;
    }
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    let ns = loaded("rb-like", &rules);
    // One set differs in the kernel: an element deleted by hand.
    let id = TableId {
        family: ruleset::Family::Ip,
        name: TABLE.into(),
    };
    let (changed, key) = rules.tables[&id]
        .sets
        .iter()
        .find_map(|(name, set)| {
            (name == "cluster-ips")
                .then(|| {
                    set.elements
                        .keys()
                        .next()
                        .map(|k| (name.clone(), k.clone()))
                })
                .flatten()
        })
        .expect("a ClusterIP");
    nft(
        &ns,
        &[
            "delete",
            "element",
            "ip",
            TABLE,
            &changed,
            &format!("{{ {key} }}"),
        ],
    );

    let path = PathBuf::from(format!("/var/run/netns/{}", ns.name()));
    let like = rules.clone();
    let (read, rules) = nft::in_netns(&path, move || {
        nft::read_tables(TABLE, Some(&like)).map(|read| (read, like))
    })
    .expect("netns")
    .expect("read");
    let mut shared = 0;
    for (tid, table) in &rules.tables {
        for (name, set) in &table.sets {
            let got = &read.tables[tid].sets[name];
            let same = std::sync::Arc::ptr_eq(&got.elements, &set.elements);
            if tid == &id && name == &changed {
                assert!(!same, "{name} differs but was shared");
                assert_eq!(got.elements.len() + 1, set.elements.len(), "{name}");
            } else if !set.elements.is_empty() {
                assert!(same, "{tid} {name} is unchanged but was copied");
                shared += 1;
            }
        }
    }
    assert!(shared > 3, "only {shared} sets shared");
    // Sharing changes nothing of what was read.
    let plain = read_back(&ns);
    assert!(plain == read, "{}", object_diff(&plain, &read));
}

fn affinity_set(rules: &Ruleset) -> String {
    let ip = rules
        .tables
        .iter()
        .find(|(id, _)| id.family == ruleset::Family::Ip)
        .map(|(_, t)| t)
        .expect("an ip table");
    ip.sets
        .iter()
        .find(|(_, s)| s.spec.dynamic_timeout.is_some())
        .map(|(name, _)| name.clone())
        .expect("the example has a session-affinity set")
}

#[test]
fn elements_packets_add_to_dynamic_sets_are_not_read() {
    if !require_kernel() {
        return;
    }
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    let ns = loaded("readback-dyn", &rules);
    let set = affinity_set(&rules);
    nft(&ns, &["add", "element", "ip", TABLE, &set, "{ 10.0.0.1 }"]);
    let listed = ns
        .run("nft", &["list", "set", "ip", TABLE, &set])
        .unwrap_or_else(|e| panic!("listing {set}: {e}"));
    assert!(
        listed.contains("10.0.0.1"),
        "the element is in the kernel:\n{listed}"
    );

    let got = read_back(&ns);
    let read_set = got
        .tables
        .values()
        .find_map(|t| t.sets.get(&set))
        .expect("the dynamic set is read");
    assert!(read_set.elements.is_empty(), "{read_set:?}");
    assert_reads_back(&got, &rules, "with an affinity entry");
}

#[test]
fn tables_of_other_names_and_families_are_not_read() {
    if !require_kernel() {
        return;
    }
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    let ns = loaded("readback-other", &rules);
    ns.nft_load(
        "table ip other {\n\
         \tset s { type ipv4_addr; elements = { 1.2.3.4 }; }\n\
         \tchain c { type filter hook input priority 0; policy accept; counter; }\n\
         }\n\
         table ip6 other { chain c { counter; }; }\n\
         table inet kube-nftproxy { chain services { counter; }; }\n",
    )
    .unwrap_or_else(|e| panic!("loading the other tables: {e}"));
    let got = read_back(&ns);
    assert_reads_back(&got, &rules, "beside other tables");
}

#[test]
fn a_missing_table_reads_as_an_empty_ruleset() {
    if !require_kernel() {
        return;
    }
    let ns = NetNs::new("readback-empty").unwrap_or_else(|e| panic!("netns: {e}"));
    assert_eq!(read_back(&ns), Ruleset::default(), "an empty namespace");
    ns.nft_load("table ip other { chain c { counter; }; }\n")
        .unwrap_or_else(|e| panic!("loading: {e}"));
    assert_eq!(read_back(&ns), Ruleset::default(), "only another table");
}

#[test]
fn an_ip6_only_ruleset_reads_back_without_an_ip_table() {
    if !require_kernel() {
        return;
    }
    let (_, mut rules) = example("examples/cluster.yaml", "node-a");
    rules
        .tables
        .retain(|id, _| id.family == ruleset::Family::Ip6);
    let ns = loaded("readback-ip6", &rules);
    let got = read_back(&ns);
    assert_eq!(got.tables.len(), 1);
    assert_reads_back(&got, &rules, "ip6 only");
}

#[test]
fn a_rule_added_by_hand_reads_back_as_undecodable() {
    if !require_kernel() {
        return;
    }
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    let ns = loaded("readback-hand", &rules);
    nft(&ns, &["add", "rule", "ip", TABLE, "services", "counter"]);
    let mut got = read_back(&ns);
    let ip = TableId {
        family: ruleset::Family::Ip,
        name: TABLE.to_owned(),
    };
    let services = got
        .tables
        .get_mut(&ip)
        .and_then(|t| t.chains.get_mut("services"))
        .expect("the services chain");
    let last = services.rules.pop().expect("the hand-made rule");
    assert!(last.exprs.is_empty(), "{last:?}");
    let comment = last.comment.unwrap_or_default();
    assert!(
        comment.starts_with("kube-nftproxy cannot read this rule") && comment.contains("counter"),
        "{comment}"
    );
    assert_reads_back(&got, &rules, "after removing the hand-made rule");
}

#[test]
fn a_base_chain_with_policy_drop_differs_from_ours() {
    if !require_kernel() {
        return;
    }
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    let ns = loaded("readback-policy", &rules);
    nft(
        &ns,
        &["chain", "ip", TABLE, "filter-input", "{ policy drop ; }"],
    );
    let got = read_back(&ns);
    let ip = TableId {
        family: ruleset::Family::Ip,
        name: TABLE.to_owned(),
    };
    let read = &got.tables[&ip].chains["filter-input"];
    let want = &rules.tables[&ip].chains["filter-input"];
    assert_eq!(
        read.base, want.base,
        "hook, type and priority are still read"
    );
    assert_eq!(
        read.rules,
        vec![nft::decode::undecodable_rule("policy drop")]
    );
    assert_ne!(got, rules);
}

#[test]
fn rules_with_anonymous_prefix_sets_read_back() {
    if !require_kernel() {
        return;
    }
    let (_, mut rules) = example("examples/cluster.yaml", "node-a");
    for (id, table) in rules.tables.iter_mut() {
        let cidrs = match id.family {
            ruleset::Family::Ip => ["10.0.0.0/8", "192.168.0.0/16", "255.255.255.255/32"],
            ruleset::Family::Ip6 => ["::/8", "2001:db8::/32", "fd00::/8"],
        };
        let rule = ruleset::Rule::new(vec![
            ruleset::Expr::SaddrInCidrs {
                negate: true,
                cidrs: cidrs.iter().map(|c| c.parse().expect("cidr")).collect(),
            },
            ruleset::Expr::Verdict(ruleset::Verdict::Drop),
        ])
        .with_comment("an anonymous prefix set");
        let services = table.chains.get_mut("services").expect("services chain");
        services.rules.push(rule);
    }
    let ns = loaded("readback-prefix", &rules);
    let got = read_back(&ns);
    assert_reads_back(&got, &rules, "with anonymous prefix sets");
}

#[test]
fn large_sets_and_maps_read_back_completely() {
    if !require_kernel() {
        return;
    }
    let (_, mut rules) = example("examples/cluster.yaml", "node-a");
    let ip = TableId {
        family: ruleset::Family::Ip,
        name: TABLE.to_owned(),
    };
    let table = rules.tables.get_mut(&ip).expect("the ip table");
    let target = table
        .sets
        .get("service-ips")
        .and_then(|s| s.elements.values().find_map(|v| v.verdict().cloned()))
        .expect("a verdict of service-ips");
    // Thousands of elements: the element dumps take many datagrams.
    for i in 0..4000u32 {
        let addr = std::net::Ipv4Addr::from(0x0a60_1000 + i);
        table
            .sets
            .get_mut("cluster-ips")
            .expect("cluster-ips")
            .elements_mut()
            .insert(
                ruleset::ElemKey::new(vec![ruleset::KeyPart::Ip(addr.into())]),
                Default::default(),
            );
        table
            .sets
            .get_mut("service-ips")
            .expect("service-ips")
            .elements_mut()
            .insert(
                ruleset::ElemKey::new(vec![
                    ruleset::KeyPart::Ip(addr.into()),
                    ruleset::KeyPart::Proto(model::Protocol::Tcp),
                    ruleset::KeyPart::Port(80),
                ]),
                ruleset::ElemValue::verdict_of(
                    target.clone(),
                    Some(format!("ns/svc-{i}:http").into()),
                ),
            );
    }
    let ns = loaded("readback-large", &rules);
    let got = read_back(&ns);
    let (read, want) = (&got.tables[&ip], &rules.tables[&ip]);
    for set in ["cluster-ips", "service-ips"] {
        assert_eq!(
            read.sets[set].elements.len(),
            want.sets[set].elements.len(),
            "{set}"
        );
    }
    assert_reads_back(&got, &rules, "with large sets");
}

/// While `nft -f` switches the tables between two rulesets, transaction after transaction,
/// every read sees one of them whole (or gives up after its retries), never a mix.
#[test]
fn reads_during_concurrent_transactions_see_one_ruleset() {
    if !require_kernel() {
        return;
    }
    let (_, a) = example("examples/cluster.yaml", "node-a");
    let (_, b) = example("examples/cluster.yaml", "node-b");
    let ns = loaded("readback-race", &a);
    let (to_b, to_a) = (
        ruleset::plan(&a, &b).render(),
        ruleset::plan(&b, &a).render(),
    );
    let path = PathBuf::from(format!("/var/run/netns/{}", ns.name()));
    let done = std::sync::atomic::AtomicBool::new(false);
    let (mut seen_a, mut seen_b, mut gave_up) = (0, 0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..30 {
                let text = if i % 2 == 0 { &to_b } else { &to_a };
                let result = ns.nft_load(text);
                if let Err(e) = result {
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("transaction {i}: {e}");
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let path = path.clone();
            match nft::in_netns(&path, || nft::read_tables(TABLE, None)).expect("netns") {
                Ok(got) if got == a => seen_a += 1,
                Ok(got) if got == b => seen_b += 1,
                Ok(got) => panic!(
                    "a read saw neither ruleset.\nagainst node-a:\n{}\nagainst node-b:\n{}",
                    object_diff(&a, &got),
                    object_diff(&b, &got)
                ),
                Err(nft::ReadError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::Interrupted =>
                {
                    gave_up += 1
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    });
    eprintln!("reads: {seen_a} saw node-a, {seen_b} saw node-b, {gave_up} gave up");
    assert!(seen_a + seen_b > 0, "no read completed");
}

/// `rules` as the agent laid them out before the endpoint maps: each chain's endpoints in an
/// anonymous map inside its DNAT rule (`dnat ip to numgen random mod N map { 0 : IP . PORT, … }`)
/// and no endpoint maps.
fn with_anonymous_endpoint_maps(rules: &Ruleset) -> Ruleset {
    use ruleset::{Expr, KeyPart};
    let mut old = rules.clone();
    for table in old.tables.values_mut() {
        let maps = table.sets.clone();
        for chain in table.chains.values_mut() {
            for rule in &mut chain.rules {
                for expr in &mut rule.exprs {
                    let Expr::DnatEndpointMap { tag, modulus, map } = expr else {
                        continue;
                    };
                    let prefix =
                        ruleset::Parts::from([KeyPart::Index(tag[0]), KeyPart::Index(tag[1])]);
                    let endpoints: Vec<_> = maps[map.as_str()]
                        .elements
                        .iter()
                        .filter(|(k, _)| k.0.starts_with(&prefix))
                        .filter_map(|(_, v)| match v.data()?.to_vec().as_slice() {
                            [KeyPart::Ip(ip), KeyPart::Port(port)] => Some((*ip, *port)),
                            _ => None,
                        })
                        .collect();
                    assert_eq!(endpoints.len(), *modulus as usize, "{map}");
                    *expr = Expr::Dnat(endpoints);
                }
            }
        }
        table.sets.retain(|name, _| !name.starts_with("endpoints-"));
    }
    old
}

/// An agent upgraded over tables of the earlier layout reads its anonymous maps, replaces them
/// in one transaction, and then holds exactly the desired ruleset.
#[test]
fn tables_of_the_anonymous_map_layout_are_read_and_replaced() {
    if !require_kernel() {
        return;
    }
    let (_, rules) = example("examples/cluster.yaml", "node-a");
    let old = with_anonymous_endpoint_maps(&rules);
    assert_ne!(
        old, rules,
        "the example has Services with several endpoints"
    );
    let ns = loaded("readback-upgrade", &old);
    let found = read_back(&ns);
    assert_eq!(
        found, old,
        "the earlier layout reads back as it was written"
    );

    let txn = ruleset::plan(&found, &rules);
    assert!(
        txn.ops.iter().any(
            |op| matches!(op, ruleset::Op::AddSet { set, .. } if set.starts_with("endpoints-"))
        ),
        "{}",
        txn.render()
    );
    ns.nft_load(&txn.render())
        .unwrap_or_else(|e| panic!("the kernel refused the upgrade: {e}\n{}", txn.render()));
    let after = read_back(&ns);
    assert_eq!(after, rules);
    assert!(ruleset::plan(&after, &rules).is_empty());
}
