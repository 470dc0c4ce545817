//! `plan` as a property: for rulesets A and B made by `desired` from random small clusters,
//! applying `plan(A, B)` to A (in memory, with the kernel's checks) gives exactly B, and
//! `plan(B, B)` is empty. B is an independent cluster, a small mutation of A's cluster (endpoint
//! churn, a Service removed, a policy flipped, affinity changed, node configuration changed), or
//! nothing at all; A may also be nothing (first sync).

use super::compute;
use crate::{desired, plan, render, Options, Ruleset};
use model::fixtures::{ep, node_config, service, slice, Ep, Slice, Svc};
use model::NodeConfig;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    V4,
    V6,
    Dual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    ServingTerminating,
    Terminated,
    NotReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranges {
    None,
    WithNode,
    WithoutNode,
}

#[derive(Debug, Clone)]
struct EpSpec {
    /// Last part of the address; unique within the Service.
    host: u8,
    local: bool,
    state: State,
}

#[derive(Debug, Clone)]
struct SvcSpec {
    /// Unique in the cluster; gives the name and every address.
    id: u8,
    kind: Kind,
    stack: Stack,
    itp_local: bool,
    etp_local: bool,
    /// One entry per port: true for UDP.
    ports: Vec<bool>,
    /// None: no affinity; Some(None): ClientIP with the default timeout.
    affinity: Option<Option<i32>>,
    external_ip: bool,
    lb_ingress: u8,
    ranges: Ranges,
    endpoints: Vec<EpSpec>,
}

#[derive(Debug, Clone)]
struct ClusterSpec {
    services: Vec<SvcSpec>,
    cluster_cidrs: bool,
    masquerade_all: bool,
    masquerade_bit: u8,
}

impl SvcSpec {
    fn namespace(&self) -> &'static str {
        if self.id.is_multiple_of(3) {
            "kube-system"
        } else {
            "default"
        }
    }

    fn name(&self) -> String {
        format!("svc-{}", self.id)
    }

    fn port_name(&self, j: usize) -> String {
        // A single port is sometimes unnamed.
        if self.ports.len() == 1 && self.id.is_multiple_of(2) {
            String::new()
        } else {
            format!("p{j}")
        }
    }

    fn families(&self) -> &'static [bool] {
        // true: IPv6.
        match self.stack {
            Stack::V4 => &[false],
            Stack::V6 => &[true],
            Stack::Dual => &[false, true],
        }
    }

    fn build(&self) -> (Svc, Vec<Slice>) {
        let (ns, name, id) = (self.namespace(), self.name(), self.id);
        let per_family = |v4: String, v6: String| -> Vec<String> {
            self.families()
                .iter()
                .map(|&six| if six { v6.clone() } else { v4.clone() })
                .collect()
        };
        let cluster_ips = per_family(format!("10.96.0.{id}"), format!("fd00:96::{id}"));
        let refs: Vec<&str> = cluster_ips.iter().map(String::as_str).collect();
        let mut svc = service(ns, &name, refs[0]).cluster_ips(&refs);
        svc = match self.kind {
            Kind::ClusterIp => svc,
            Kind::NodePort => svc.type_("NodePort"),
            Kind::LoadBalancer => svc.type_("LoadBalancer"),
        };
        for (j, &udp) in self.ports.iter().enumerate() {
            let protocol = if udp { "UDP" } else { "TCP" };
            let port = 80 + j as i32;
            svc = match self.kind {
                Kind::ClusterIp => svc.port(&self.port_name(j), protocol, port),
                _ => svc.node_port(
                    &self.port_name(j),
                    protocol,
                    port,
                    30000 + i32::from(id) * 10 + j as i32,
                ),
            };
        }
        if self.itp_local {
            svc = svc.itp_local();
        }
        if self.etp_local {
            svc = svc.etp_local();
            if self.kind == Kind::LoadBalancer {
                svc = svc.health_check_node_port(32000 + i32::from(id));
            }
        }
        if let Some(timeout) = self.affinity {
            svc = svc.affinity(timeout);
        }
        if self.external_ip {
            let ips = per_family(format!("203.0.113.{id}"), format!("2001:db8:e::{id}"));
            let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
            svc = svc.external_ips(&refs);
        }
        for k in 0..self.lb_ingress {
            let n = u16::from(id) + 100 * u16::from(k);
            for ip in per_family(format!("198.51.100.{n}"), format!("2001:db8:1b::{n}")) {
                svc = svc.lb_ingress(&ip, None);
            }
        }
        match self.ranges {
            Ranges::None => {}
            Ranges::WithNode => {
                svc = svc.source_ranges(&["203.0.113.0/24", "192.168.0.0/16", "2001:db8::/64"])
            }
            Ranges::WithoutNode => svc = svc.source_ranges(&["203.0.113.0/24", "2001:db8:f::/48"]),
        }

        let mut slices = Vec::new();
        for &six in self.families() {
            let (suffix, kind) = if six { ("v6", "IPv6") } else { ("v4", "IPv4") };
            let mut s = slice(ns, &format!("{name}-{suffix}"), &name, kind);
            for (j, &udp) in self.ports.iter().enumerate() {
                let protocol = if udp { "UDP" } else { "TCP" };
                s = s.port(&self.port_name(j), protocol, 8080 + j as i32);
            }
            for e in &self.endpoints {
                let ip = if six {
                    format!("fd00:10::{id}:{}", e.host)
                } else {
                    format!("10.{id}.0.{}", e.host)
                };
                s = s.endpoint(endpoint(&ip, e));
            }
            slices.push(s);
        }
        (svc, slices)
    }
}

fn endpoint(ip: &str, e: &EpSpec) -> Ep {
    let base = ep(ip, if e.local { "node-a" } else { "node-b" });
    match e.state {
        State::Ready => base,
        State::ServingTerminating => base.serving_terminating(),
        State::Terminated => base.terminated(),
        State::NotReady => base.not_ready(),
    }
}

impl ClusterSpec {
    fn config(&self) -> NodeConfig {
        let mut config = node_config();
        if !self.cluster_cidrs {
            config.cluster_cidrs.clear();
        }
        config.masquerade_all = self.masquerade_all;
        config
    }

    fn options(&self) -> Options {
        Options {
            masquerade_bit: self.masquerade_bit,
            ..Options::default()
        }
    }

    fn node_services(&self) -> model::NodeServices {
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for s in &self.services {
            let (svc, sl) = s.build();
            services.push(svc);
            slices.extend(sl);
        }
        compute(&self.config(), &services, &slices)
    }

    fn ruleset(&self) -> Ruleset {
        desired(&self.node_services(), &self.options())
    }
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        4 => Just(State::Ready),
        1 => Just(State::ServingTerminating),
        1 => Just(State::Terminated),
        1 => Just(State::NotReady),
    ]
}

fn endpoint_spec() -> impl Strategy<Value = EpSpec> {
    (1u8..=8, any::<bool>(), state()).prop_map(|(host, local, state)| EpSpec { host, local, state })
}

fn affinity() -> impl Strategy<Value = Option<Option<i32>>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(None)),
        2 => prop::sample::select(vec![1, 60, 90, 3600, 86_400]).prop_map(|t| Some(Some(t))),
    ]
}

fn service_spec() -> impl Strategy<Value = SvcSpec> {
    let kind = prop_oneof![
        Just(Kind::ClusterIp),
        Just(Kind::NodePort),
        Just(Kind::LoadBalancer)
    ];
    let stack = prop_oneof![2 => Just(Stack::V4), 1 => Just(Stack::V6), 1 => Just(Stack::Dual)];
    let ranges = prop_oneof![
        2 => Just(Ranges::None),
        1 => Just(Ranges::WithNode),
        1 => Just(Ranges::WithoutNode)
    ];
    (
        (kind, stack, any::<bool>(), any::<bool>()),
        prop::collection::vec(prop::bool::weighted(0.3), 1..=3),
        affinity(),
        (prop::bool::weighted(0.3), 0u8..=2, ranges),
        prop::collection::vec(endpoint_spec(), 0..=4),
    )
        .prop_map(
            |((kind, stack, itp_local, etp_local), ports, affinity, extra, mut endpoints)| {
                let (external_ip, lb_ingress, ranges) = extra;
                endpoints.sort_by_key(|e| e.host);
                endpoints.dedup_by_key(|e| e.host);
                SvcSpec {
                    id: 0,
                    kind,
                    stack,
                    itp_local,
                    etp_local,
                    ports,
                    affinity,
                    external_ip,
                    lb_ingress,
                    ranges,
                    endpoints,
                }
            },
        )
}

fn cluster_spec() -> impl Strategy<Value = ClusterSpec> {
    (
        prop::collection::vec(service_spec(), 1..=8),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop_oneof![3 => Just(14u8), 1 => 0u8..32],
    )
        .prop_map(
            |(mut services, cluster_cidrs, masquerade_all, masquerade_bit)| {
                for (i, s) in services.iter_mut().enumerate() {
                    s.id = i as u8 + 1;
                }
                ClusterSpec {
                    services,
                    cluster_cidrs,
                    masquerade_all,
                    masquerade_bit,
                }
            },
        )
}

/// A small change of a cluster.
#[derive(Debug, Clone)]
enum Mutation {
    AddEndpoint(Index, bool, State),
    RemoveEndpoint(Index, Index),
    FlipEndpoint(Index, Index, bool, State),
    RemoveService(Index),
    FlipItp(Index),
    FlipEtp(Index),
    Affinity(Index, Option<Option<i32>>),
    Config(bool, bool, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<Index>;
    prop_oneof![
        3 => (i(), any::<bool>(), state()).prop_map(|(s, l, st)| Mutation::AddEndpoint(s, l, st)),
        3 => (i(), i()).prop_map(|(s, e)| Mutation::RemoveEndpoint(s, e)),
        3 => (i(), i(), any::<bool>(), state())
            .prop_map(|(s, e, l, st)| Mutation::FlipEndpoint(s, e, l, st)),
        1 => i().prop_map(Mutation::RemoveService),
        1 => i().prop_map(Mutation::FlipItp),
        1 => i().prop_map(Mutation::FlipEtp),
        2 => (i(), affinity()).prop_map(|(s, a)| Mutation::Affinity(s, a)),
        1 => (any::<bool>(), any::<bool>(), 0u8..32).prop_map(|(c, m, b)| Mutation::Config(c, m, b)),
    ]
}

impl Mutation {
    /// Applies the change; returns the Service changed (`None` for a configuration change,
    /// which may touch every Service).
    fn apply(&self, c: &mut ClusterSpec) -> Option<Option<String>> {
        if let Mutation::Config(cidrs, all, bit) = *self {
            c.cluster_cidrs ^= cidrs;
            c.masquerade_all ^= all;
            c.masquerade_bit = bit;
            return None;
        }
        if c.services.is_empty() {
            return Some(None);
        }
        let pick = |i: &Index| i.index(c.services.len());
        let idx = match self {
            Mutation::AddEndpoint(s, ..)
            | Mutation::RemoveEndpoint(s, _)
            | Mutation::FlipEndpoint(s, ..)
            | Mutation::RemoveService(s)
            | Mutation::FlipItp(s)
            | Mutation::FlipEtp(s)
            | Mutation::Affinity(s, _) => pick(s),
            Mutation::Config(..) => unreachable!(),
        };
        let svc = &mut c.services[idx];
        let name = format!("{}/{}", svc.namespace(), svc.name());
        match self {
            Mutation::AddEndpoint(_, local, state) => {
                let host = svc.endpoints.iter().map(|e| e.host).max().unwrap_or(0) + 1;
                svc.endpoints.push(EpSpec {
                    host,
                    local: *local,
                    state: *state,
                });
            }
            Mutation::RemoveEndpoint(_, e) if !svc.endpoints.is_empty() => {
                let e = e.index(svc.endpoints.len());
                svc.endpoints.remove(e);
            }
            Mutation::FlipEndpoint(_, e, flip_local, state) if !svc.endpoints.is_empty() => {
                let e = e.index(svc.endpoints.len());
                let endpoint = &mut svc.endpoints[e];
                endpoint.local ^= flip_local;
                endpoint.state = *state;
            }
            Mutation::RemoveService(_) => {
                c.services.remove(idx);
            }
            Mutation::FlipItp(_) => svc.itp_local = !svc.itp_local,
            Mutation::FlipEtp(_) => svc.etp_local = !svc.etp_local,
            Mutation::Affinity(_, a) => svc.affinity = *a,
            _ => {}
        }
        Some(Some(name))
    }
}

/// `plan(a, b)` applied to `a` gives exactly `b`, and `plan(b, b)` is empty.
fn check(a: &Ruleset, b: &Ruleset) -> Result<crate::Transaction, TestCaseError> {
    let txn = plan(a, b);
    let mut got = a.clone();
    if let Err(e) = got.apply(&txn) {
        return Err(TestCaseError::fail(format!(
            "plan does not apply: {e}\nfrom:\n{}\nto:\n{}\nplan:\n{}",
            render(a),
            render(b),
            txn.render()
        )));
    }
    prop_assert!(
        got == *b,
        "applying the plan gives\n{}\ninstead of\n{}\nplan:\n{}",
        render(&got),
        render(b),
        txn.render()
    );
    let again = plan(b, b);
    prop_assert!(
        again.is_empty(),
        "plan(B, B) is not empty:\n{}",
        again.render()
    );
    Ok(txn)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 80, ..ProptestConfig::default() })]

    #[test]
    fn plan_between_independent_clusters(a in cluster_spec(), b in cluster_spec()) {
        check(&a.ruleset(), &b.ruleset())?;
    }

    #[test]
    fn plan_after_small_mutations(a in cluster_spec(), mutations in prop::collection::vec(mutation(), 1..=3)) {
        let mut b = a.clone();
        // The Services changed; `None` once the node configuration changed.
        let mut changed = Some(BTreeSet::new());
        for m in &mutations {
            match (m.apply(&mut b), changed.as_mut()) {
                (Some(Some(name)), Some(set)) => {
                    set.insert(name);
                }
                (None, _) => changed = None,
                _ => {}
            }
        }
        let txn = check(&a.ruleset(), &b.ruleset())?;
        check(&b.ruleset(), &a.ruleset())?;
        if let Some(changed) = changed {
            // Only the changed Services are touched.
            for s in txn.services() {
                prop_assert!(changed.contains(&s), "{s} touched, changed: {changed:?}\n{}", txn.render());
            }
        }
    }

    #[test]
    fn plan_from_and_to_nothing(a in cluster_spec()) {
        let a = a.ruleset();
        let empty = Ruleset::default();
        // First sync, and cleanup: all tables deleted.
        let first = check(&empty, &a)?;
        prop_assert_eq!(first.ops.iter().filter(|op| matches!(op, crate::Op::AddTable { .. })).count(), 2);
        let cleanup = check(&a, &empty)?;
        prop_assert_eq!(cleanup.len(), 2, "{}", cleanup.render());
        // To and from a cluster without Services.
        let none = ClusterSpec { services: Vec::new(), cluster_cidrs: true, masquerade_all: false, masquerade_bit: 14 };
        check(&none.ruleset(), &a)?;
        check(&a, &none.ruleset())?;
    }
}

/// A realistic cluster for the hand-made cases below.
fn sample() -> Ruleset {
    let c = ClusterSpec {
        services: (1..=3)
            .map(|id| SvcSpec {
                id,
                kind: Kind::LoadBalancer,
                stack: Stack::Dual,
                itp_local: false,
                etp_local: id == 2,
                ports: vec![false, true],
                affinity: (id == 3).then_some(Some(60)),
                external_ip: true,
                lb_ingress: 1,
                ranges: Ranges::WithNode,
                endpoints: vec![
                    EpSpec {
                        host: 1,
                        local: true,
                        state: State::Ready,
                    },
                    EpSpec {
                        host: 2,
                        local: false,
                        state: State::Ready,
                    },
                ],
            })
            .collect(),
        cluster_cidrs: true,
        masquerade_all: false,
        masquerade_bit: 14,
    };
    c.ruleset()
}

/// The IPv4 table of a ruleset, to edit.
fn v4(rs: &mut Ruleset) -> &mut crate::Table {
    let id = super::table_id(crate::Family::Ip);
    rs.tables.get_mut(&id).expect("ip table")
}

// The kernel may hold what an earlier version of the agent made: the same planner must get
// from there to the current layout.

#[test]
fn plan_redeclares_a_fixed_map_whose_declaration_changed() {
    let want = sample();
    let mut have = want.clone();
    let table = v4(&mut have);
    table
        .sets
        .get_mut("service-ips")
        .expect("service-ips")
        .spec
        .comment = Some("an older comment".into());
    let txn = super::planned(&have, &want);
    // The map's users are flushed and refilled, the map deleted and re-added with its elements.
    let rendered = txn.render();
    assert!(
        rendered.contains("flush chain ip kube-nftproxy services\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("delete map ip kube-nftproxy service-ips\n"),
        "{rendered}"
    );
}

#[test]
fn plan_re_adds_a_base_chain_whose_hook_changed() {
    let want = sample();
    let mut have = want.clone();
    let chain = v4(&mut have)
        .chains
        .get_mut("nat-prerouting")
        .expect("nat-prerouting");
    chain.base.as_mut().expect("base").priority = -99;
    let txn = super::planned(&have, &want);
    assert_eq!(txn.len(), 4, "{}", txn.render());
}

/// The upgrade from versions whose nat chains had kube-proxy's priorities (dstnat −100, srcnat
/// 100): each of the three chains is flushed, deleted, re-added at its new priority and refilled,
/// in both families and in the one transaction; nothing else is touched.
#[test]
fn plan_moves_nat_chains_of_an_older_version_to_their_new_priorities() {
    let want = sample();
    let mut have = want.clone();
    let old = [
        ("nat-prerouting", -100),
        ("nat-output", -100),
        ("nat-postrouting", 100),
    ];
    for table in have.tables.values_mut() {
        for (name, priority) in old {
            let chain = table.chains.get_mut(name).expect("nat chain");
            chain.base.as_mut().expect("base chain").priority = priority;
        }
    }
    let txn = super::planned(&have, &want);
    let mut expected = Vec::new();
    for family in ["ip", "ip6"] {
        let t = format!("{family} kube-nftproxy");
        for (name, _) in old {
            expected.push(format!("flush chain {t} {name}"));
            expected.push(format!("delete chain {t} {name}"));
        }
        for (name, hook, priority, target) in [
            ("nat-output", "output", "-101", "services"),
            (
                "nat-postrouting",
                "postrouting",
                "srcnat - 1",
                "masquerading",
            ),
            ("nat-prerouting", "prerouting", "dstnat - 1", "services"),
        ] {
            expected.push(format!(
                "add chain {t} {name} {{ type nat hook {hook} priority {priority}; policy accept; }}"
            ));
            expected.push(format!("add rule {t} {name} jump {target}"));
        }
    }
    let mut got = super::lines(&txn);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{}", txn.render());
    // Once moved, nothing more to do.
    assert!(plan(&want, &want).is_empty());
}

#[test]
fn plan_removes_an_obsolete_map_and_the_chain_its_elements_target() {
    let want = sample();
    let mut have = want.clone();
    let table = v4(&mut have);
    // An earlier layout: a map (unused by rules now) whose element continues in an old chain.
    table.chains.insert(
        "old-chain".into(),
        crate::Chain {
            base: None,
            rules: vec![crate::Rule::new(vec![crate::Expr::Reject])],
        },
    );
    let mut old = table.sets["service-nodeports"].clone();
    old.elements_mut().clear();
    old.elements_mut().insert(
        crate::ElemKey::new(vec![
            crate::KeyPart::Proto(model::Protocol::Tcp),
            crate::KeyPart::Port(1),
        ]),
        crate::ElemValue::verdict_of(crate::Verdict::Goto("old-chain".into()), None),
    );
    table.sets.insert("old-map".into(), old);
    super::planned(&have, &want);
}

/// The views of the service-ports of `dirty` Services, both families.
fn views_of<'a>(
    services: &'a model::NodeServices,
    dirty: &BTreeSet<model::ServiceRef>,
) -> Vec<&'a model::ServicePortView> {
    [&services.ipv4, &services.ipv6]
        .into_iter()
        .flat_map(|f| f.ports.values().map(|v| &**v))
        .filter(|v| dirty.contains(&v.name.service))
        .collect()
}

/// The Services whose service-ports differ between two results.
fn changed_services(
    a: &model::NodeServices,
    b: &model::NodeServices,
) -> BTreeSet<model::ServiceRef> {
    let mut all: BTreeSet<model::ServiceRef> = BTreeSet::new();
    for (x, y) in [(a, b), (b, a)] {
        for (fx, fy) in [(&x.ipv4, &y.ipv4), (&x.ipv6, &y.ipv6)] {
            for (name, view) in &fx.ports {
                if fy.ports.get(name) != Some(view) {
                    all.insert(name.service.clone());
                }
            }
        }
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The incremental desired state, updated for the changed Services only, equals the full
    /// desired ruleset, and its transaction carries the old ruleset to the new one.
    #[test]
    fn incremental_updates_equal_the_full_desired_ruleset(
        a in cluster_spec(),
        mutations in prop::collection::vec(mutation(), 1..4),
        extra in any::<Index>(),
    ) {
        let options = a.options();
        let before = a.node_services();
        let mut state = crate::DesiredState::new(&before, &options);
        prop_assert!(state.ruleset() == &desired(&before, &options), "counted build differs");

        let mut b = a.clone();
        for m in &mutations {
            // A node-level change is a full recomputation, not an incremental one.
            prop_assume!(!matches!(m, Mutation::Config(..)));
            m.apply(&mut b);
        }
        let after = b.node_services();
        let mut dirty = changed_services(&before, &after);
        // A Service marked dirty without a change must cost nothing and break nothing.
        if let Some(s) = a.services.get(extra.index(a.services.len())) {
            dirty.insert(model::ServiceRef::new(s.namespace(), &s.name()));
        }
        let txn = state.update(&after, &views_of(&before, &dirty), &views_of(&after, &dirty));
        let want = desired(&after, &options);
        prop_assert!(
            state.ruleset() == &want,
            "incremental state\n{}\ninstead of\n{}",
            render(state.ruleset()),
            render(&want)
        );
        let mut got = desired(&before, &options);
        if let Err(e) = got.apply(&txn) {
            return Err(TestCaseError::fail(format!("the transaction does not apply: {e}\n{}", txn.render())));
        }
        prop_assert!(got == want, "the transaction gives\n{}\ninstead of\n{}\ntxn:\n{}", render(&got), render(&want), txn.render());
        prop_assert_eq!(txn.len(), plan(&desired(&before, &options), &want).len());

        // And back: what the first update counted still holds (an element two service-ports
        // share stays until both are gone).
        let txn = state.update(&before, &views_of(&after, &dirty), &views_of(&before, &dirty));
        let want = desired(&before, &options);
        prop_assert!(
            state.ruleset() == &want,
            "incremental state after the way back\n{}\ninstead of\n{}",
            render(state.ruleset()),
            render(&want)
        );
        let mut got = desired(&after, &options);
        if let Err(e) = got.apply(&txn) {
            return Err(TestCaseError::fail(format!("the way back does not apply: {e}\n{}", txn.render())));
        }
        prop_assert!(got == want, "the way back gives\n{}\ninstead of\n{}", render(&got), render(&want));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    /// Building from nothing in stages of whole Services: every stage applies on top of the
    /// ones before (with the kernel's checks), together they give exactly the desired ruleset,
    /// each Service's operations are all in one stage, and the ClusterIPs come with the last.
    #[test]
    fn stages_from_nothing_build_the_same_ruleset(a in cluster_spec(), per_stage in 1usize..4) {
        let want = a.ruleset();
        let whole = plan(&Ruleset::default(), &want);
        let stages = crate::split_by_service(whole.clone(), per_stage);
        // Planned one stage at a time from the desired ruleset: the same stages.
        let streamed = crate::stages_from_empty(&want, per_stage);
        prop_assert_eq!(streamed.stages(), stages.len());
        let streamed: Vec<crate::Transaction> = streamed.collect();
        prop_assert!(streamed == stages, "streamed:\n{}\nsplit:\n{}",
            streamed.iter().map(crate::Transaction::render).collect::<Vec<_>>().join("--\n"),
            stages.iter().map(crate::Transaction::render).collect::<Vec<_>>().join("--\n"));
        let services = whole.services();
        let expected_stages = if services.len() > per_stage {
            1 + services.len().div_ceil(per_stage)
        } else {
            1
        };
        prop_assert_eq!(stages.len(), expected_stages);
        prop_assert_eq!(stages.iter().map(crate::Transaction::len).sum::<usize>(), whole.len());
        let mut have = Ruleset::default();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (i, stage) in stages.iter().enumerate() {
            if let Err(e) = have.apply(stage) {
                return Err(TestCaseError::fail(format!("stage {i} refused: {e}\n{}", stage.render())));
            }
            for s in stage.services() {
                prop_assert!(seen.insert(s.clone()), "{s} in two stages");
            }
            if stages.len() > 1 && i + 1 < stages.len() {
                let cluster_ip = stage.ops.iter().any(|op| matches!(op, crate::Op::AddElement { set, .. } if set == "cluster-ips"));
                prop_assert!(!cluster_ip, "a ClusterIP before the last stage:\n{}", stage.render());
            }
        }
        prop_assert_eq!(render(&have), render(&want));
        prop_assert_eq!(have, want);
    }
}

/// A transaction that changes existing tables is never split.
#[test]
fn only_transactions_from_nothing_are_split() {
    let want = sample();
    let mut have = want.clone();
    for table in have.tables.values_mut() {
        table.chains.retain(|name, _| !name.contains('/'));
    }
    let txn = plan(&have, &want);
    assert!(txn.services().len() > 1);
    assert!(crate::split_by_service(txn.clone(), 1) == vec![txn]);
    let whole = plan(&Ruleset::default(), &want);
    assert_eq!(crate::split_by_service(whole.clone(), 1).len(), 1 + 3);
    assert!(crate::split_by_service(whole.clone(), 0) == vec![whole.clone()]);
    assert!(crate::split_by_service(whole.clone(), 3) == vec![whole.clone()]);
    assert!(crate::stages_from_empty(&want, 0).collect::<Vec<_>>() == vec![whole.clone()]);
    assert!(crate::stages_from_empty(&want, 3).collect::<Vec<_>>() == vec![whole]);
    assert_eq!(crate::stages_from_empty(&want, 1).count(), 1 + 3);
}
