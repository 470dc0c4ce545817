//! From what the node does ([`model::NodeServices`]) to the ruleset it needs (DESIGN.md §3).
//!
//! Layout of each family's table (see `docs/architecture.md` for the why of each piece):
//!
//! | base chain | hook, priority | does |
//! |---|---|---|
//! | `filter-prerouting-pre-dnat` | prerouting, −110 | new connections: `firewall-check` (source ranges) |
//! | `filter-output-pre-dnat` | output, −110 | the same for the node's own traffic |
//! | `nat-prerouting` | prerouting, −101 | `services`: DNAT by the verdict maps |
//! | `nat-output` | output, −101 | the same for the node's own traffic |
//! | `filter-input` | input, 0 | new connections: no-endpoint drop/reject for NodePorts and services |
//! | `filter-forward` | forward, 0 | new connections: no-endpoint checks, unknown ClusterIP ports |
//! | `filter-output` | output, 0 | the same for the node's own traffic |
//! | `nat-postrouting` | postrouting, 99 | `masquerading`: marked and hairpin connections |
//!
//! The nat chains run one step before kube-proxy's (dstnat −100, srcnat 100), so that while
//! both rulesets are in the kernel ours decide every new connection, whichever program
//! (re)created its chains last ("Beside kube-proxy: the live switch" in the architecture).

use crate::names::{
    affinity_set_name, chain_name, endpoint_chain_name, endpoint_map_name, endpoint_maps,
    endpoint_tag, is_endpoint_map, ChainKind, EndpointTag,
};
use crate::parts::Parts;
use crate::rule::{Expr, Rule};
use crate::types::{
    BaseChain, Chain, ChainType, ElemKey, ElemTarget, ElemValue, Family, Hook, KeyPart, KeyType,
    Ruleset, Set, SetSpec, SharedStr, Table, TableId, Verdict,
};
use model::{
    Action, Endpoint, EndpointSet, ExternalDispatch, FamilyServices, NodeServices, Protocol,
    ServicePortView,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Names of the fixed sets, maps and chains.
pub(crate) mod fixed {
    pub const CLUSTER_IPS: &str = "cluster-ips";
    pub const NODEPORT_IPS: &str = "nodeport-ips";
    pub const SERVICE_IPS: &str = "service-ips";
    pub const SERVICE_NODEPORTS: &str = "service-nodeports";
    pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
    pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
    pub const FIREWALL_IPS: &str = "firewall-ips";
    pub const HAIRPIN: &str = "hairpin-connections";
    pub const SERVICES: &str = "services";
    pub const MASQUERADING: &str = "masquerading";
    pub const FIREWALL_CHECK: &str = "firewall-check";
    pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
    pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
    pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
    pub const REJECT_CHAIN: &str = "reject-chain";
}
use fixed::*;

/// Settings of the ruleset that are not Kubernetes semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The name of our table in each family.
    pub table_name: String,
    /// The bit of the packet mark that asks for masquerade (kube-proxy's default is 14).
    pub masquerade_bit: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            table_name: "kube-nftproxy".into(),
            masquerade_bit: 14,
        }
    }
}

impl Options {
    fn mark(&self) -> u32 {
        1u32 << (self.masquerade_bit % 32)
    }
}

/// Priority of our DNAT chains: dstnat − 1, just before kube-proxy's (and iptables' `nat`)
/// dstnat chains. nf_nat runs a hook's nat chains in priority order for a connection's first
/// packet and stops at the first that sets up a mapping, so while both are loaded ours decide.
pub(crate) const NAT_DST_PRIORITY: i32 = -101;
/// Priority of our masquerade chain: srcnat − 1, just before kube-proxy's.
pub(crate) const NAT_SRC_PRIORITY: i32 = 99;

/// The comment of our tables.
pub(crate) const TABLE_COMMENT: &str = "rules for kube-nftproxy";

/// The desired ruleset: one table per family.
pub fn desired(services: &NodeServices, options: &Options) -> Ruleset {
    let mut ruleset = Ruleset::default();
    for fam in [&services.ipv4, &services.ipv6] {
        let id = TableId {
            family: fam.family.into(),
            name: options.table_name.clone(),
        };
        ruleset.tables.insert(id, desired_table(fam, options));
    }
    ruleset
}

/// The desired table of one family.
pub fn desired_table(fam: &FamilyServices, options: &Options) -> Table {
    let mut b = Builder::new(fam, options);
    b.fixed(fam);
    for view in fam.ports.values() {
        b.service_port(view, fam);
    }
    b.finish()
}

/// The desired table of one family, and how many service-ports contribute each element that
/// more than one contributes (two Services can share a hairpin element); an element of the
/// table not counted there has one contributor, or is one of the table's fixed elements (which
/// no service-port adds). Each service-port's view is dropped as soon as its part is built,
/// so the views and the table being built do not exist whole at once.
pub(crate) fn desired_table_counted(
    mut fam: FamilyServices,
    options: &Options,
) -> (Table, BTreeMap<(String, ElemKey), u32>) {
    let mut b = Builder::new(&fam, options);
    b.fixed(&fam);
    b.counts = Some(BTreeMap::new());
    for view in std::mem::take(&mut fam.ports).into_values() {
        b.service_port(&view, &fam);
    }
    b.finish_counted()
}

/// What one service-port adds to its family's table: its chains, its sets (session affinity),
/// and its elements of the table's sets and maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Fragment {
    pub(crate) chains: BTreeMap<String, Chain>,
    pub(crate) sets: BTreeMap<String, Set>,
    pub(crate) elements: Vec<(String, ElemKey, ElemValue)>,
}

/// The fragment of one service-port (`fam` gives the node-level facts it depends on).
pub(crate) fn port_fragment(
    view: &ServicePortView,
    fam: &FamilyServices,
    options: &Options,
) -> Fragment {
    let mut b = Builder::new(fam, options);
    b.record = Some(Vec::new());
    b.service_port(view, fam);
    Fragment {
        chains: b.table.chains,
        sets: b.table.sets,
        elements: b.record.unwrap_or_default(),
    }
}

struct Builder {
    family: Family,
    mark: u32,
    table: Table,
    /// Counting contributions to elements (see [`desired_table_counted`]): filled by
    /// [`Builder::finish_counted`], where equal keys sit side by side.
    counts: Option<BTreeMap<(String, ElemKey), u32>>,
    /// Recording elements instead of adding them (see [`port_fragment`]).
    record: Option<Vec<(String, ElemKey, ElemValue)>>,
    /// The elements of each set, in the order they were added, until [`Builder::finish`] builds
    /// the sets' trees from them: a vector is dense, a B-tree filled in key order is half
    /// empty (about twice the memory, at the peak of a full computation).
    elements: BTreeMap<String, Vec<(ElemKey, ElemValue)>>,
}

fn goto(chain: &str) -> Expr {
    Expr::Verdict(Verdict::Goto(chain.into()))
}

fn jump(chain: &str) -> Expr {
    Expr::Verdict(Verdict::Jump(chain.into()))
}

impl Builder {
    fn new(fam: &FamilyServices, options: &Options) -> Builder {
        Builder {
            family: fam.family.into(),
            mark: options.mark(),
            table: Table {
                comment: Some(TABLE_COMMENT.into()),
                ..Table::default()
            },
            counts: None,
            record: None,
            elements: BTreeMap::new(),
        }
    }

    /// The table, each set with its elements (the first added of each key, as a map's
    /// `entry().or_insert` would keep).
    fn finish(self) -> Table {
        self.finish_counted().0
    }

    /// [`Builder::finish`], with the counts of elements added more than once when counting.
    fn finish_counted(mut self) -> (Table, BTreeMap<(String, ElemKey), u32>) {
        for (name, mut elements) in std::mem::take(&mut self.elements) {
            let Some(set) = self.table.sets.get_mut(&name) else {
                continue;
            };
            // Stable: equal keys keep the order they were added in; `dedup_by` keeps the first.
            elements.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(counts) = self.counts.as_mut().filter(|_| !is_endpoint_map(&name)) {
                for run in elements.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
                    let n = u32::try_from(run.len()).unwrap_or(u32::MAX);
                    counts.insert((name.clone(), run[0].0.clone()), n);
                }
            }
            elements.dedup_by(|later, first| later.0 == first.0);
            let mut all = std::mem::take(set.elements_mut());
            if all.is_empty() {
                set.elements = Arc::new(elements.into_iter().collect());
            } else {
                // Elements already in the set (none today) win, as with `or_insert`.
                for (key, value) in elements {
                    all.entry(key).or_insert(value);
                }
                set.elements = Arc::new(all);
                set.pack();
            }
        }
        (self.table, self.counts.unwrap_or_default())
    }

    fn set(&mut self, name: &str, key: Vec<KeyType>, verdict_map: bool, comment: &str) {
        let spec = SetSpec {
            key,
            verdict_map,
            comment: Some(comment.into()),
            ..SetSpec::default()
        };
        self.table.sets.insert(
            name.into(),
            Set {
                spec,
                ..Set::default()
            },
        );
    }

    fn chain(&mut self, name: &str, base: Option<BaseChain>, rules: Vec<Rule>) {
        self.table.chains.insert(name.into(), Chain { base, rules });
    }

    fn base(&mut self, name: &str, kind: ChainType, hook: Hook, priority: i32, rules: Vec<Rule>) {
        let base = BaseChain {
            kind,
            hook,
            priority,
        };
        self.chain(name, Some(base), rules);
    }

    fn element(
        &mut self,
        set: &str,
        key: Vec<KeyPart>,
        verdict: Option<Verdict>,
        comment: Option<SharedStr>,
    ) {
        let value = ElemValue {
            target: verdict.map_or(ElemTarget::None, ElemTarget::Verdict),
            comment,
        };
        self.put(set, ElemKey::new(key), value);
    }

    /// Adds (or records) one element of a set the table declares.
    fn put(&mut self, set: &str, key: ElemKey, value: ElemValue) {
        if let Some(record) = &mut self.record {
            record.push((set.to_owned(), key, value));
            return;
        }
        if self.table.sets.contains_key(set) {
            match self.elements.get_mut(set) {
                Some(elements) => elements.push((key, value)),
                None => {
                    self.elements.insert(set.to_owned(), vec![(key, value)]);
                }
            }
        }
    }

    /// The sets, maps and chains every table has, whatever the Services.
    fn fixed(&mut self, fam: &FamilyServices) {
        let addr = self.family.addr_type();
        use KeyType::{InetProto, InetService};
        self.set(CLUSTER_IPS, vec![addr], false, "Active ClusterIPs");
        self.set(
            NODEPORT_IPS,
            vec![addr],
            false,
            "IPs that accept NodePort traffic",
        );
        self.set(
            SERVICE_IPS,
            vec![addr, InetProto, InetService],
            true,
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        );
        self.set(
            SERVICE_NODEPORTS,
            vec![InetProto, InetService],
            true,
            "NodePort traffic",
        );
        self.set(
            NO_ENDPOINT_SERVICES,
            vec![addr, InetProto, InetService],
            true,
            "drop or reject traffic to services without usable endpoints",
        );
        self.set(
            NO_ENDPOINT_NODEPORTS,
            vec![InetProto, InetService],
            true,
            "drop or reject traffic to NodePorts without usable endpoints",
        );
        self.set(
            FIREWALL_IPS,
            vec![addr, InetProto, InetService],
            true,
            "destinations subject to loadBalancerSourceRanges",
        );
        self.set(
            HAIRPIN,
            vec![addr, addr, InetProto, InetService],
            false,
            "service hairpin connections",
        );
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            for shard in 0..endpoint_maps(protocol) {
                let spec = SetSpec {
                    key: vec![KeyType::Integer; 3],
                    data: vec![addr, InetService],
                    port_protocol: Some(protocol),
                    comment: Some("endpoints of service chains, by tag".into()),
                    ..SetSpec::default()
                };
                self.table.sets.insert(
                    endpoint_map_name(protocol, shard),
                    Set {
                        spec,
                        ..Set::default()
                    },
                );
            }
        }
        for ip in &fam.node_port_ips {
            self.element(NODEPORT_IPS, vec![KeyPart::Ip(*ip)], None, None);
        }

        let new_jump = |chain: &str| Rule::new(vec![Expr::CtStateNew, jump(chain)]);
        use ChainType::{Filter, Nat};
        use Hook::*;
        self.base(
            "filter-prerouting-pre-dnat",
            Filter,
            Prerouting,
            -110,
            vec![new_jump(FIREWALL_CHECK)],
        );
        self.base(
            "filter-output-pre-dnat",
            Filter,
            Output,
            -110,
            vec![new_jump(FIREWALL_CHECK)],
        );
        self.base(
            "nat-prerouting",
            Nat,
            Prerouting,
            NAT_DST_PRIORITY,
            vec![Rule::new(vec![jump(SERVICES)])],
        );
        self.base(
            "nat-output",
            Nat,
            Output,
            NAT_DST_PRIORITY,
            vec![Rule::new(vec![jump(SERVICES)])],
        );
        self.base(
            "filter-input",
            Filter,
            Input,
            0,
            vec![
                new_jump(NODEPORT_ENDPOINTS_CHECK),
                new_jump(SERVICE_ENDPOINTS_CHECK),
            ],
        );
        for (name, hook) in [("filter-forward", Forward), ("filter-output", Output)] {
            self.base(
                name,
                Filter,
                hook,
                0,
                vec![
                    new_jump(SERVICE_ENDPOINTS_CHECK),
                    new_jump(CLUSTER_IPS_CHECK),
                ],
            );
        }
        self.base(
            "nat-postrouting",
            Nat,
            Postrouting,
            NAT_SRC_PRIORITY,
            vec![Rule::new(vec![jump(MASQUERADING)])],
        );

        let mut services = Vec::new();
        if fam.masquerade_all {
            services.push(
                Rule::new(vec![
                    Expr::DaddrInSet(CLUSTER_IPS.into()),
                    Expr::SetMark(self.mark),
                ])
                .with_comment("masquerade all ClusterIP traffic"),
            );
        } else if !fam.cluster_cidrs.is_empty() {
            services.push(
                Rule::new(vec![
                    Expr::DaddrInSet(CLUSTER_IPS.into()),
                    Expr::saddr_in_cidrs(true, &fam.cluster_cidrs),
                    Expr::SetMark(self.mark),
                ])
                .with_comment("masquerade ClusterIP traffic from outside the cluster"),
            );
        }
        services.push(Rule::new(vec![Expr::DestinationVmap(SERVICE_IPS.into())]));
        services.push(Rule::new(vec![
            Expr::DaddrInSet(NODEPORT_IPS.into()),
            Expr::PortVmap(SERVICE_NODEPORTS.into()),
        ]));
        self.chain(SERVICES, None, services);
        self.chain(
            MASQUERADING,
            None,
            vec![
                Rule::new(vec![
                    Expr::MarkIsSet(self.mark),
                    Expr::ToggleMark(self.mark),
                    Expr::Masquerade,
                ]),
                Rule::new(vec![
                    Expr::CtStatusDnat,
                    Expr::HairpinLookup(HAIRPIN.into()),
                    Expr::Masquerade,
                ])
                .with_comment("hairpin: a pod reaching itself through a service"),
            ],
        );
        self.chain(
            FIREWALL_CHECK,
            None,
            vec![Rule::new(vec![Expr::DestinationVmap(FIREWALL_IPS.into())])],
        );
        self.chain(
            SERVICE_ENDPOINTS_CHECK,
            None,
            vec![Rule::new(vec![Expr::DestinationVmap(
                NO_ENDPOINT_SERVICES.into(),
            )])],
        );
        self.chain(
            NODEPORT_ENDPOINTS_CHECK,
            None,
            vec![Rule::new(vec![
                Expr::DaddrInSet(NODEPORT_IPS.into()),
                Expr::PortVmap(NO_ENDPOINT_NODEPORTS.into()),
            ])],
        );
        self.chain(
            CLUSTER_IPS_CHECK,
            None,
            vec![
                Rule::new(vec![Expr::DaddrInSet(CLUSTER_IPS.into()), Expr::Reject])
                    .with_comment("reject traffic to undefined ports of ClusterIPs"),
            ],
        );
        self.chain(REJECT_CHAIN, None, vec![Rule::new(vec![Expr::Reject])]);
    }

    /// Everything one service-port adds: its chains, its map elements, its affinity sets.
    fn service_port(&mut self, view: &ServicePortView, fam: &FamilyServices) {
        let label = view.label();
        let proto = view.name.protocol;
        let dest = |ip: IpAddr| {
            vec![
                KeyPart::Ip(ip),
                KeyPart::Proto(proto),
                KeyPart::Port(view.port),
            ]
        };
        let reject = Some(Verdict::Goto(REJECT_CHAIN.into()));
        let service_chain = chain_name(ChainKind::Service, view);
        let local_chain = chain_name(ChainKind::Local, view);
        let external_chain = chain_name(ChainKind::External, view);

        self.element(CLUSTER_IPS, vec![KeyPart::Ip(view.cluster_ip)], None, None);
        let internal = view.internal_action();
        let external = view.external_dispatch();
        let uses_cluster = internal == Action::Forward(EndpointSet::Cluster)
            || matches!(
                external,
                Some(ExternalDispatch::Cluster | ExternalDispatch::Local { .. })
            );
        let uses_local = internal == Action::Forward(EndpointSet::Local)
            || external == Some(ExternalDispatch::Local { has_local: true });
        if uses_cluster {
            let rules = self.dispatch(view, &view.cluster_endpoints, ChainKind::Service);
            self.chain(&service_chain, None, rules);
        }
        if uses_local {
            let rules = self.dispatch(view, &view.local_endpoints, ChainKind::Local);
            self.chain(&local_chain, None, rules);
        }

        // ClusterIP.
        let cluster_dest = dest(view.cluster_ip);
        let comment: Option<SharedStr> = Some(label.as_str().into());
        match internal {
            Action::Forward(EndpointSet::Cluster) => self.element(
                SERVICE_IPS,
                cluster_dest,
                Some(Verdict::Goto(service_chain.as_str().into())),
                comment.clone(),
            ),
            Action::Forward(EndpointSet::Local) => self.element(
                SERVICE_IPS,
                cluster_dest,
                Some(Verdict::Goto(local_chain.as_str().into())),
                comment.clone(),
            ),
            Action::Drop => self.element(
                NO_ENDPOINT_SERVICES,
                cluster_dest,
                Some(Verdict::Drop),
                comment.clone(),
            ),
            Action::Reject => self.element(
                NO_ENDPOINT_SERVICES,
                cluster_dest,
                reject.clone(),
                comment.clone(),
            ),
        }

        // External entry points.
        let Some(external) = external else { return };
        let external_ips: Vec<IpAddr> = view
            .external_ips
            .iter()
            .chain(&view.load_balancer_ips)
            .copied()
            .collect();
        let node_port = view
            .node_port
            .map(|np| vec![KeyPart::Proto(proto), KeyPart::Port(np)]);
        match external {
            ExternalDispatch::Reject => {
                for ip in &external_ips {
                    self.element(
                        NO_ENDPOINT_SERVICES,
                        dest(*ip),
                        reject.clone(),
                        comment.clone(),
                    );
                }
                if let Some(key) = node_port.clone() {
                    self.element(NO_ENDPOINT_NODEPORTS, key, reject.clone(), comment.clone());
                }
            }
            ExternalDispatch::Cluster | ExternalDispatch::Local { .. } => {
                let to_external = Some(Verdict::Goto(external_chain.as_str().into()));
                for ip in &external_ips {
                    self.element(SERVICE_IPS, dest(*ip), to_external.clone(), comment.clone());
                }
                if let Some(key) = node_port.clone() {
                    self.element(SERVICE_NODEPORTS, key, to_external.clone(), comment.clone());
                }
                if external == (ExternalDispatch::Local { has_local: false }) {
                    // Not DNATed by the external chain (no local endpoint): dropped at the
                    // filter stage, after pods and the node were short-circuited.
                    for ip in &external_ips {
                        self.element(
                            NO_ENDPOINT_SERVICES,
                            dest(*ip),
                            Some(Verdict::Drop),
                            comment.clone(),
                        );
                    }
                    if let Some(key) = node_port.clone() {
                        self.element(
                            NO_ENDPOINT_NODEPORTS,
                            key,
                            Some(Verdict::Drop),
                            comment.clone(),
                        );
                    }
                }
                let rules = self.external_rules(external, fam, &service_chain, &local_chain);
                self.chain(&external_chain, None, rules);
            }
        }

        // loadBalancerSourceRanges, checked before DNAT.
        if let Some(allowed) = &view.firewall {
            let firewall_chain = chain_name(ChainKind::Firewall, view);
            let rule = if allowed.is_empty() {
                Rule::new(vec![Expr::Verdict(Verdict::Drop)])
            } else {
                Rule::new(vec![
                    Expr::saddr_in_cidrs(true, allowed),
                    Expr::Verdict(Verdict::Drop),
                ])
            };
            self.chain(&firewall_chain, None, vec![rule]);
            for ip in &view.load_balancer_ips {
                self.element(
                    FIREWALL_IPS,
                    dest(*ip),
                    Some(Verdict::Goto(firewall_chain.as_str().into())),
                    comment.clone(),
                );
            }
        }
    }

    /// The rules of the external chain.
    fn external_rules(
        &self,
        external: ExternalDispatch,
        fam: &FamilyServices,
        service_chain: &str,
        local_chain: &str,
    ) -> Vec<Rule> {
        match external {
            ExternalDispatch::Reject => Vec::new(),
            ExternalDispatch::Cluster => vec![
                Rule::new(vec![Expr::SetMark(self.mark)]).with_comment("masquerade"),
                Rule::new(vec![goto(service_chain)]),
            ],
            ExternalDispatch::Local { has_local } => {
                let mut rules = Vec::new();
                if !fam.cluster_cidrs.is_empty() {
                    rules.push(
                        Rule::new(vec![
                            Expr::saddr_in_cidrs(false, &fam.cluster_cidrs),
                            goto(service_chain),
                        ])
                        .with_comment("short-circuit pod traffic"),
                    );
                }
                rules.push(
                    Rule::new(vec![Expr::FibSaddrLocal, Expr::SetMark(self.mark)])
                        .with_comment("masquerade local traffic"),
                );
                rules.push(
                    Rule::new(vec![Expr::FibSaddrLocal, goto(service_chain)])
                        .with_comment("short-circuit local traffic"),
                );
                if has_local {
                    rules.push(Rule::new(vec![goto(local_chain)]));
                }
                rules
            }
        }
    }

    /// The rules of the `kind` chain of `view` that pick one endpoint of `endpoints` (not
    /// empty), plus hairpin elements; several endpoints are elements of an endpoint map, and with
    /// session affinity there are per-endpoint chains and sets.
    fn dispatch(
        &mut self,
        view: &ServicePortView,
        endpoints: &[Endpoint],
        kind: ChainKind,
    ) -> Vec<Rule> {
        let proto = view.name.protocol;
        for ep in endpoints.iter().filter(|e| e.is_local) {
            let key = vec![
                KeyPart::Ip(ep.ip),
                KeyPart::Ip(ep.ip),
                KeyPart::Proto(proto),
                KeyPart::Port(ep.port),
            ];
            self.element(HAIRPIN, key, None, None);
        }
        let dnat = |ep: &Endpoint| {
            Rule::new(vec![
                Expr::L4Proto(proto),
                Expr::Dnat(vec![(ep.ip, ep.port)]),
            ])
        };
        let Some(timeout) = view.affinity_timeout else {
            return match endpoints {
                [one] => vec![dnat(one)],
                many => vec![Rule::new(vec![
                    Expr::L4Proto(proto),
                    self.endpoint_map(view, kind, many),
                ])],
            };
        };
        let mut rules = Vec::new();
        let mut chains = Vec::new();
        for ep in endpoints {
            let chain = endpoint_chain_name(view, &ep.ip, ep.port);
            let set = affinity_set_name(view, &ep.ip, ep.port);
            self.table.sets.insert(
                set.clone(),
                Set {
                    spec: SetSpec {
                        key: vec![self.family.addr_type()],
                        dynamic_timeout: Some(timeout),
                        size: Some(65_535),
                        ..SetSpec::default()
                    },
                    ..Set::default()
                },
            );
            self.chain(
                &chain,
                None,
                vec![Rule::new(vec![Expr::UpdateSaddr(set.clone())]), dnat(ep)],
            );
            rules.push(Rule::new(vec![Expr::SaddrInSet(set), goto(&chain)]));
            chains.push(chain);
        }
        rules.push(Rule::new(vec![Expr::NumgenGoto(chains)]));
        rules
    }

    /// The elements of `endpoints` in their endpoint map (endpoint `i` at `tag . i`, each
    /// with the service-port's label), and the DNAT that reads them. Replacing an endpoint then
    /// changes elements only: no rule, nothing for the kernel to validate.
    fn endpoint_map(
        &mut self,
        view: &ServicePortView,
        kind: ChainKind,
        endpoints: &[Endpoint],
    ) -> Expr {
        let EndpointTag { map, tag } = endpoint_tag(kind, view);
        let label: SharedStr = view.label().into();
        for (i, ep) in (0u32..).zip(endpoints) {
            let key = ElemKey::new([
                KeyPart::Index(tag[0]),
                KeyPart::Index(tag[1]),
                KeyPart::Index(i),
            ]);
            let value = ElemValue {
                target: ElemTarget::Data(Parts::from([KeyPart::Ip(ep.ip), KeyPart::Port(ep.port)])),
                comment: Some(label.clone()),
            };
            self.put(&map, key, value);
        }
        Expr::DnatEndpointMap {
            tag,
            modulus: u32::try_from(endpoints.len()).unwrap_or(u32::MAX),
            map,
        }
    }
}
