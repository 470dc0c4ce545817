//! The agent's Prometheus metrics, named as kube-proxy names them where the meaning matches
//! (`kube-proxy-nftables.md` §5.1, DESIGN.md §5), in a registry of their own.
//!
//! kube-proxy's metrics, their types, labels and buckets are kept; where ours differ:
//!
//! - `kubeproxy_sync_proxy_rules_service_changes_pending` and
//!   `kubeproxy_sync_proxy_rules_endpoint_changes_pending`: kube-proxy has one change tracker for
//!   Services and one for EndpointSlices, each counting the Services with pending changes. The
//!   agent keeps one set of dirty Services (their spec or their endpoints changed), so both gauges
//!   carry its size, and both `…_total` counters grow by the Services that became dirty (a Service
//!   changed several times before a sync counts once). Do not add the two up.
//! - `kubeproxy_sync_proxy_rules_no_local_endpoints_total` counts service-ports, as kube-proxy does
//!   (its loop runs over service-ports), and is always reported for both families and both
//!   policies, zeros included.
//! - Not emitted: `kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total` (no deferred chain
//!   deletion transaction exists here), `kubeproxy_conntrack_reconciler_sync_duration_seconds`,
//!   `kubeproxy_nftables_localhost_nodeport_rejected_packets_total`.
//!
//! Ours, without a kube-proxy counterpart: `kube_nftproxy_transaction_operations` (operations per
//! applied transaction) and `kube_nftproxy_invalid_objects` (objects skipped as invalid).

use model::{Action, ExternalDispatch, IpFamily, NodeServices, ObjectKind, ObjectRef};
use prometheus::{
    exponential_buckets, linear_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The `ip_family` label values.
const FAMILY: &str = "ip_family";

/// kube-proxy's sync duration buckets: 1 ms doubling, 15 buckets (up to 16.384 s).
fn sync_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 15).expect("static bucket layout")
}

/// kube-proxy's network programming latency buckets: 0.25 s, 0.5 s, 1..=59 s by 1 s,
/// 60..=115 s by 5 s, 120..=300 s by 30 s.
fn network_programming_buckets() -> Vec<f64> {
    let mut buckets = linear_buckets(0.25, 0.25, 2).expect("static bucket layout");
    buckets.extend(linear_buckets(1.0, 1.0, 59).expect("static bucket layout"));
    buckets.extend(linear_buckets(60.0, 5.0, 12).expect("static bucket layout"));
    buckets.extend(linear_buckets(120.0, 30.0, 7).expect("static bucket layout"));
    buckets
}

/// Operations per transaction: 1, 4, 16, … 4^10 (about a million).
fn operation_buckets() -> Vec<f64> {
    exponential_buckets(1.0, 4.0, 11).expect("static bucket layout")
}

/// Seconds since the Unix epoch (0 for earlier times).
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Service-ports of one family with a Local traffic policy and no endpoint on this node while
/// endpoints exist elsewhere (service-ports with no endpoint at all are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoLocalEndpoints {
    /// `internalTrafficPolicy: Local`: ClusterIP traffic is dropped.
    pub internal: usize,
    /// `externalTrafficPolicy: Local`: external traffic is dropped.
    pub external: usize,
}

/// Counts the service-ports of `family` whose Local policies find no local endpoint
/// (`kubeproxy_sync_proxy_rules_no_local_endpoints_total`). External counts only service-ports
/// reachable from outside in this family.
pub fn no_local_endpoints(services: &NodeServices, family: IpFamily) -> NoLocalEndpoints {
    let mut counts = NoLocalEndpoints::default();
    for view in services.family(family).ports.values() {
        // The model's verdict functions already say "Local policy, endpoints exist, none here".
        if view.internal_action() == Action::Drop {
            counts.internal += 1;
        }
        if view.external_dispatch() == Some(ExternalDispatch::Local { has_local: false }) {
            counts.external += 1;
        }
    }
    counts
}

/// Invalid objects by (kind, reason): how many distinct objects had that problem in the last
/// computation (an object with two bad ports counts once for `invalid_port`).
pub fn invalid_objects(services: &NodeServices) -> BTreeMap<(ObjectKind, &'static str), usize> {
    let distinct: BTreeSet<(ObjectKind, &'static str, &ObjectRef)> = services
        .errors
        .iter()
        .map(|e| (e.object.kind, e.reason(), &e.object))
        .collect();
    let mut counts = BTreeMap::new();
    for (kind, reason, _) in distinct {
        *counts.entry((kind, reason)).or_insert(0) += 1;
    }
    counts
}

/// Every metric of the agent, in its own registry.
pub struct Metrics {
    registry: Registry,
    sync_duration: HistogramVec,
    full_sync_duration: HistogramVec,
    partial_sync_duration: HistogramVec,
    last_sync: GaugeVec,
    last_queued: GaugeVec,
    network_programming: HistogramVec,
    endpoint_changes_pending: IntGauge,
    endpoint_changes_total: IntCounter,
    service_changes_pending: IntGauge,
    service_changes_total: IntCounter,
    no_local_endpoints: IntGaugeVec,
    sync_failures: IntCounterVec,
    healthz: IntCounterVec,
    livez: IntCounterVec,
    conntrack_deleted: IntCounterVec,
    transaction_operations: Histogram,
    invalid_objects: IntGaugeVec,
    /// The last value given to [`Metrics::pending`].
    last_pending: AtomicUsize,
    /// The (kind, reason) label sets of `invalid_objects` currently exported.
    invalid_series: Mutex<BTreeSet<(String, String)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a collector; the definitions are static, so a refusal is a programming error.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("static metric definitions are valid and distinct");
    c
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    let vec = HistogramVec::new(opts, &[FAMILY]).expect("static metric definition");
    register(registry, vec)
}

fn gauge_vec(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let vec = GaugeVec::new(Opts::new(name, help), &[FAMILY]).expect("static metric definition");
    register(registry, vec)
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    register(registry, g)
}

fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    register(registry, c)
}

fn int_counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    register(registry, vec)
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    register(registry, vec)
}

impl Metrics {
    /// Every metric, registered in a new registry (never the global one).
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            sync_duration: histogram_vec(
                &r,
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
                sync_buckets(),
            ),
            full_sync_duration: histogram_vec(
                &r,
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for full resyncs",
                sync_buckets(),
            ),
            partial_sync_duration: histogram_vec(
                &r,
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for partial resyncs",
                sync_buckets(),
            ),
            last_sync: gauge_vec(
                &r,
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "The last time proxy rules were successfully synced",
            ),
            last_queued: gauge_vec(
                &r,
                "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                "The last time a sync of proxy rules was queued",
            ),
            network_programming: histogram_vec(
                &r,
                "kubeproxy_network_programming_duration_seconds",
                "In Cluster Network Programming Latency in seconds",
                network_programming_buckets(),
            ),
            endpoint_changes_pending: int_gauge(
                &r,
                "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                "Pending proxy rules Endpoint changes (kube-nftproxy: Services with pending \
                 changes of any kind, the same value as service_changes_pending)",
            ),
            endpoint_changes_total: int_counter(
                &r,
                "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                "Cumulative proxy rules Endpoint changes (kube-nftproxy: Services that became \
                 dirty, the same value as service_changes_total)",
            ),
            service_changes_pending: int_gauge(
                &r,
                "kubeproxy_sync_proxy_rules_service_changes_pending",
                "Pending proxy rules Service changes (kube-nftproxy: Services whose spec or \
                 endpoints changed since the last sync)",
            ),
            service_changes_total: int_counter(
                &r,
                "kubeproxy_sync_proxy_rules_service_changes_total",
                "Cumulative proxy rules Service changes (kube-nftproxy: Services that became \
                 dirty; several changes before a sync count once)",
            ),
            no_local_endpoints: int_gauge_vec(
                &r,
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                "Number of services with a Local traffic policy and no endpoints",
                &["traffic_policy", FAMILY],
            ),
            sync_failures: int_counter_vec(
                &r,
                "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
                "Cumulative proxy nftables sync failures",
                &[FAMILY],
            ),
            healthz: int_counter_vec(
                &r,
                "kubeproxy_proxy_healthz_total",
                "Cumulative proxy healthz HTTP status",
                &["code"],
            ),
            livez: int_counter_vec(
                &r,
                "kubeproxy_proxy_livez_total",
                "Cumulative proxy livez HTTP status",
                &["code"],
            ),
            conntrack_deleted: int_counter_vec(
                &r,
                "kubeproxy_conntrack_reconciler_deleted_entries_total",
                "Cumulative conntrack flows deleted by conntrack reconciler",
                &[FAMILY],
            ),
            transaction_operations: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kube_nftproxy_transaction_operations",
                        "Operations per applied nftables transaction (idle syncs send none \
                         and are not observed)",
                    )
                    .buckets(operation_buckets()),
                )
                .expect("static metric definition"),
            ),
            invalid_objects: int_gauge_vec(
                &r,
                "kube_nftproxy_invalid_objects",
                "Objects (or parts of objects) skipped as invalid in the last computation, \
                 by kind and reason",
                &["kind", "reason"],
            ),
            registry: r,
            last_pending: AtomicUsize::new(0),
            invalid_series: Mutex::new(BTreeSet::new()),
        }
    }

    /// The registry, for adding collectors of other modules.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// A change for `family` was queued at `at`.
    pub fn queued(&self, family: IpFamily, at: SystemTime) {
        self.last_queued
            .with_label_values(&[&family.to_string()])
            .set(unix_seconds(at));
    }

    /// A sync of `families` succeeded: it took `duration`, finished at `finished`, and applied
    /// transactions of these sizes (one, or one per stage of a sync from empty tables; empty
    /// ones were not sent and are not observed).
    pub fn sync_done(
        &self,
        full: bool,
        families: &[IpFamily],
        duration: Duration,
        finished: SystemTime,
        transaction_sizes: &[usize],
    ) {
        let seconds = duration.as_secs_f64();
        for family in families {
            let label = [family.to_string()];
            self.sync_duration
                .with_label_values(&label)
                .observe(seconds);
            let by_kind = if full {
                &self.full_sync_duration
            } else {
                &self.partial_sync_duration
            };
            by_kind.with_label_values(&label).observe(seconds);
            self.last_sync
                .with_label_values(&label)
                .set(unix_seconds(finished));
            // Show the failure counter at 0 so that the first failure is a visible increase.
            self.sync_failures.with_label_values(&label);
        }
        for &operations in transaction_sizes.iter().filter(|&&n| n > 0) {
            self.transaction_operations.observe(operations as f64);
        }
    }

    /// The transaction of a sync of `families` failed (refused, or its outcome unknown).
    pub fn sync_failed(&self, families: &[IpFamily]) {
        for family in families {
            self.sync_failures
                .with_label_values(&[&family.to_string()])
                .inc();
        }
    }

    /// `services` Services now have pending changes (their spec or endpoints changed since the
    /// last sync). Call it whenever the count changes, and with 0 once a sync took them: the
    /// `…_changes_total` counters grow by each rise.
    pub fn pending(&self, services: usize) {
        let previous = self.last_pending.swap(services, Ordering::Relaxed);
        let value = i64::try_from(services).unwrap_or(i64::MAX);
        self.service_changes_pending.set(value);
        self.endpoint_changes_pending.set(value);
        let rise = u64::try_from(services.saturating_sub(previous)).unwrap_or(u64::MAX);
        self.service_changes_total.inc_by(rise);
        self.endpoint_changes_total.inc_by(rise);
    }

    /// A change whose EndpointSlice says it was triggered at `trigger` is in the kernel since
    /// `programmed`. Skipped when `trigger` is later (clocks of different machines disagree).
    pub fn network_programming(
        &self,
        family: IpFamily,
        trigger: SystemTime,
        programmed: SystemTime,
    ) {
        if let Ok(latency) = programmed.duration_since(trigger) {
            self.network_programming
                .with_label_values(&[&family.to_string()])
                .observe(latency.as_secs_f64());
        }
    }

    /// Updates the gauges computed from the last [`NodeServices`]: service-ports with Local
    /// policies and no local endpoint (zeros included, both families), and invalid objects (label
    /// sets that dropped to zero are removed).
    pub fn observe_services(&self, services: &NodeServices) {
        for family in IpFamily::ALL {
            let counts = no_local_endpoints(services, family);
            let f = family.to_string();
            for (policy, n) in [("internal", counts.internal), ("external", counts.external)] {
                self.no_local_endpoints
                    .with_label_values(&[policy, f.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }

        let now: BTreeMap<(String, String), usize> = invalid_objects(services)
            .into_iter()
            .map(|((kind, reason), n)| ((kind.to_string(), reason.to_owned()), n))
            .collect();
        let mut exported = self
            .invalid_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (kind, reason) in exported.iter() {
            if !now.contains_key(&(kind.clone(), reason.clone())) {
                // Absent already would be fine too: the goal is that it is gone.
                let _ = self
                    .invalid_objects
                    .remove_label_values(&[kind.as_str(), reason.as_str()]);
            }
        }
        for ((kind, reason), n) in &now {
            self.invalid_objects
                .with_label_values(&[kind.as_str(), reason.as_str()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        *exported = now.into_keys().collect();
    }

    /// The node health server answered `code` on `endpoint`.
    pub fn node_health_response(&self, endpoint: crate::health::NodeEndpoint, code: u16) {
        match endpoint {
            crate::health::NodeEndpoint::Healthz => self.healthz_response(code),
            crate::health::NodeEndpoint::Livez => self.livez_response(code),
        }
    }

    /// `/healthz` answered `code`.
    pub fn healthz_response(&self, code: u16) {
        self.healthz.with_label_values(&[&code.to_string()]).inc();
    }

    /// `/livez` answered `code`.
    pub fn livez_response(&self, code: u16) {
        self.livez.with_label_values(&[&code.to_string()]).inc();
    }

    /// The conntrack reconciler deleted `n` stale entries of `family`.
    pub fn conntrack_deleted(&self, family: IpFamily, n: usize) {
        self.conntrack_deleted
            .with_label_values(&[&family.to_string()])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::fixtures::{ep, node_config, service, slice};
    use model::{node_view, ClusterView};

    /// One sample of the text exposition: metric name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// Parses the sample lines of the text format (comments skipped).
    fn parse(text: &str) -> Vec<Sample> {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            samples.push((name.to_owned(), labels, value));
        }
        samples
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Every sample named `name`, by labels.
    fn series(samples: &[Sample], name: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
        samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }

    /// Asserts that the samples named `name` are exactly `expected`.
    #[track_caller]
    fn assert_series(samples: &[Sample], name: &str, expected: &[(&[(&str, &str)], f64)]) {
        let got = series(samples, name);
        let want: BTreeMap<_, _> = expected.iter().map(|(l, v)| (labels(l), *v)).collect();
        assert_eq!(got.len(), want.len(), "{name}: got {got:?}, want {want:?}");
        for (l, v) in &want {
            let g = got
                .get(l)
                .unwrap_or_else(|| panic!("{name}{l:?} missing; got {got:?}"));
            assert!((g - v).abs() < 1e-9, "{name}{l:?} = {g}, want {v}");
        }
    }

    /// One sample's value.
    #[track_caller]
    fn value(samples: &[Sample], name: &str, l: &[(&str, &str)]) -> f64 {
        *series(samples, name)
            .get(&labels(l))
            .unwrap_or_else(|| panic!("no {name}{l:?}"))
    }

    const V4: &[(&str, &str)] = &[("ip_family", "IPv4")];
    const V6: &[(&str, &str)] = &[("ip_family", "IPv6")];

    fn at(seconds: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(seconds)
    }

    /// Services of node-a: iTP Local and eTP Local without a local endpoint (counted), Local
    /// policies with no endpoint at all or with a local endpoint, and a Cluster one (not counted);
    /// two Services with bad IPs and a slice without its Service label (invalid).
    fn fixture() -> NodeServices {
        let services = [
            service("ns", "itp", "10.96.0.1")
                .port("", "TCP", 80)
                .itp_local()
                .build(),
            service("ns", "etp", "10.96.0.2")
                .type_("LoadBalancer")
                .node_port("", "TCP", 80, 30080)
                .lb_ingress("203.0.113.1", None)
                .etp_local()
                .health_check_node_port(32000)
                .build(),
            service("ns", "lonely", "10.96.0.3")
                .type_("NodePort")
                .node_port("", "TCP", 80, 30081)
                .itp_local()
                .etp_local()
                .build(),
            service("ns", "here", "10.96.0.4")
                .type_("NodePort")
                .node_port("", "TCP", 80, 30082)
                .itp_local()
                .etp_local()
                .build(),
            service("ns", "plain", "10.96.0.5")
                .port("", "TCP", 80)
                .build(),
            service("ns", "bad", "no-ip").port("", "TCP", 80).build(),
            service("ns", "bad-externals", "10.96.0.6")
                .port("", "TCP", 80)
                .external_ips(&["x", "y"])
                .build(),
        ];
        let remote = |svc: &str| {
            slice("ns", &format!("{svc}-1"), svc, "IPv4")
                .port("", "TCP", 8080)
                .endpoint(ep("10.0.2.1", "node-b"))
                .build()
        };
        let slices = [
            remote("itp"),
            remote("etp"),
            remote("plain"),
            slice("ns", "here-1", "here", "IPv4")
                .port("", "TCP", 8080)
                .endpoint(ep("10.0.1.1", "node-a"))
                .build(),
            slice("ns", "orphan", "x", "IPv4").without_labels().build(),
        ];
        let view = ClusterView::from_objects(services, slices, [], "node-a");
        node_view(&view, &node_config())
    }

    #[test]
    fn no_local_endpoints_counts_local_policies_with_remote_endpoints_only() {
        let services = fixture();
        assert_eq!(
            no_local_endpoints(&services, IpFamily::V4),
            NoLocalEndpoints {
                internal: 1,
                external: 1
            }
        );
        assert_eq!(
            no_local_endpoints(&services, IpFamily::V6),
            NoLocalEndpoints::default()
        );
        let invalid = invalid_objects(&services);
        assert_eq!(
            invalid,
            BTreeMap::from([
                ((ObjectKind::Service, "invalid_ip"), 2),
                ((ObjectKind::EndpointSlice, "missing_service_name"), 1),
            ]),
            "{:?}",
            services.errors
        );
        // Three errors (two on one Service), two distinct Services.
        assert_eq!(
            services
                .errors
                .iter()
                .filter(|e| e.reason() == "invalid_ip")
                .count(),
            3
        );
    }

    #[test]
    fn encodes_exactly_the_recorded_events() {
        let m = Metrics::new();
        m.queued(IpFamily::V4, at(1_700_000_000.0));
        m.sync_done(
            true,
            &[IpFamily::V4],
            Duration::from_millis(3),
            at(1_700_000_001.0),
            &[3],
        );
        m.sync_done(
            false,
            &[IpFamily::V4, IpFamily::V6],
            Duration::from_micros(500),
            at(1_700_000_002.5),
            &[0],
        );
        m.sync_failed(&[IpFamily::V6]);
        m.network_programming(IpFamily::V4, at(1_700_000_000.0), at(1_700_000_002.5));
        // A trigger time in the future (clock skew) is not observed.
        m.network_programming(IpFamily::V4, at(1_700_000_010.0), at(1_700_000_002.5));
        m.pending(4);
        m.pending(2);
        m.pending(5);
        m.observe_services(&fixture());
        m.healthz_response(200);
        m.healthz_response(200);
        m.healthz_response(503);
        m.livez_response(200);
        m.conntrack_deleted(IpFamily::V4, 3);
        m.conntrack_deleted(IpFamily::V4, 2);

        let s = parse(&m.encode());

        // Sync durations: 3 ms (full, IPv4) then 0.5 ms (partial, both families).
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_duration_seconds_count",
            &[(V4, 2.0), (V6, 1.0)],
        );
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_duration_seconds_sum",
            &[(V4, 0.0035), (V6, 0.0005)],
        );
        let bucket = |le: &'static str| [("ip_family", "IPv4"), ("le", le)];
        let name = "kubeproxy_sync_proxy_rules_duration_seconds_bucket";
        assert_eq!(value(&s, name, &bucket("0.001")), 1.0);
        assert_eq!(value(&s, name, &bucket("0.002")), 1.0);
        assert_eq!(value(&s, name, &bucket("0.004")), 2.0);
        assert_eq!(value(&s, name, &bucket("16.384")), 2.0);
        assert_eq!(value(&s, name, &bucket("+Inf")), 2.0);
        // 15 buckets and +Inf per family.
        assert_eq!(series(&s, name).len(), 2 * 16);
        assert_series(
            &s,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
            &[(V4, 1.0)],
        );
        assert_series(
            &s,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_sum",
            &[(V4, 0.003)],
        );
        assert_series(
            &s,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
            &[(V4, 1.0), (V6, 1.0)],
        );

        // Timestamps.
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            &[(V4, 1_700_000_002.5), (V6, 1_700_000_002.5)],
        );
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            &[(V4, 1_700_000_000.0)],
        );

        // Network programming: one observation of 2.5 s, in kube-proxy's buckets.
        assert_series(
            &s,
            "kubeproxy_network_programming_duration_seconds_count",
            &[(V4, 1.0)],
        );
        assert_series(
            &s,
            "kubeproxy_network_programming_duration_seconds_sum",
            &[(V4, 2.5)],
        );
        let name = "kubeproxy_network_programming_duration_seconds_bucket";
        assert_eq!(value(&s, name, &bucket("2")), 0.0);
        assert_eq!(value(&s, name, &bucket("3")), 1.0);
        assert_eq!(value(&s, name, &bucket("0.25")), 0.0);
        assert_eq!(value(&s, name, &bucket("115")), 1.0);
        assert_eq!(value(&s, name, &bucket("300")), 1.0);
        // 0.25, 0.5, 1..59, 60..115 by 5, 120..300 by 30, +Inf.
        assert_eq!(series(&s, name).len(), 2 + 59 + 12 + 7 + 1);

        // Failures: IPv6 once; IPv4 shown at 0 since its first successful sync.
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            &[(V4, 0.0), (V6, 1.0)],
        );

        // Operations per transaction: the idle sync sent nothing and is not counted.
        assert_series(
            &s,
            "kube_nftproxy_transaction_operations_count",
            &[(&[], 1.0)],
        );
        assert_series(
            &s,
            "kube_nftproxy_transaction_operations_sum",
            &[(&[], 3.0)],
        );
        assert_eq!(
            value(
                &s,
                "kube_nftproxy_transaction_operations_bucket",
                &[("le", "1")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &s,
                "kube_nftproxy_transaction_operations_bucket",
                &[("le", "4")]
            ),
            1.0
        );

        // Pending: now 5; the rises were 4 and 3.
        for name in [
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        ] {
            assert_series(&s, name, &[(&[], 5.0)]);
        }
        for name in [
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        ] {
            assert_series(&s, name, &[(&[], 7.0)]);
        }

        // No local endpoints: the iTP Local and the eTP Local Service, both IPv4.
        let policy = |p: &'static str, f: &'static str| [("traffic_policy", p), ("ip_family", f)];
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            &[
                (&policy("internal", "IPv4"), 1.0),
                (&policy("external", "IPv4"), 1.0),
                (&policy("internal", "IPv6"), 0.0),
                (&policy("external", "IPv6"), 0.0),
            ],
        );

        // Invalid objects: distinct objects per kind and reason.
        assert_series(
            &s,
            "kube_nftproxy_invalid_objects",
            &[
                (&[("kind", "Service"), ("reason", "invalid_ip")], 2.0),
                (
                    &[
                        ("kind", "EndpointSlice"),
                        ("reason", "missing_service_name"),
                    ],
                    1.0,
                ),
            ],
        );

        // Health endpoints and conntrack.
        assert_series(
            &s,
            "kubeproxy_proxy_healthz_total",
            &[(&[("code", "200")], 2.0), (&[("code", "503")], 1.0)],
        );
        assert_series(
            &s,
            "kubeproxy_proxy_livez_total",
            &[(&[("code", "200")], 1.0)],
        );
        assert_series(
            &s,
            "kubeproxy_conntrack_reconciler_deleted_entries_total",
            &[(V4, 5.0)],
        );

        // Nothing else: every sample belongs to one of the metrics above.
        let known = [
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "kubeproxy_network_programming_duration_seconds",
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            "kubeproxy_proxy_healthz_total",
            "kubeproxy_proxy_livez_total",
            "kubeproxy_conntrack_reconciler_deleted_entries_total",
            "kube_nftproxy_transaction_operations",
            "kube_nftproxy_invalid_objects",
        ];
        for (name, _, _) in &s {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| known.contains(base))
                .unwrap_or(name);
            assert!(known.contains(&base), "unexpected sample {name}");
        }
    }

    #[test]
    fn series_that_drop_to_zero_are_zeroed_or_removed() {
        let m = Metrics::new();
        m.observe_services(&fixture());
        let before = parse(&m.encode());
        assert_eq!(
            series(&before, "kube_nftproxy_invalid_objects").len(),
            2,
            "{before:?}"
        );

        // Now every Local Service has a local endpoint and nothing is invalid.
        let fixed = {
            let svc = service("ns", "itp", "10.96.0.1")
                .port("", "TCP", 80)
                .itp_local()
                .build();
            let sl = slice("ns", "itp-1", "itp", "IPv4")
                .port("", "TCP", 8080)
                .endpoint(ep("10.0.1.1", "node-a"))
                .build();
            node_view(
                &ClusterView::from_objects([svc], [sl], [], "node-a"),
                &node_config(),
            )
        };
        assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
        m.observe_services(&fixed);
        let after = parse(&m.encode());
        assert!(
            series(&after, "kube_nftproxy_invalid_objects").is_empty(),
            "{after:?}"
        );
        let no_local = series(
            &after,
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
        );
        assert_eq!(no_local.len(), 4);
        assert!(no_local.values().all(|v| *v == 0.0), "{no_local:?}");

        // And back: the series return.
        m.observe_services(&fixture());
        let again = parse(&m.encode());
        assert_eq!(
            value(
                &again,
                "kube_nftproxy_invalid_objects",
                &[("kind", "Service"), ("reason", "invalid_ip")]
            ),
            2.0
        );
    }

    #[test]
    fn pending_totals_count_rises_only() {
        let m = Metrics::new();
        for n in [3, 3, 0, 1, 4, 0] {
            m.pending(n);
        }
        let s = parse(&m.encode());
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_service_changes_total",
            &[(&[], 7.0)],
        );
        assert_series(
            &s,
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            &[(&[], 0.0)],
        );
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.sync_failed(&[IpFamily::V4]);
        assert!(a
            .encode()
            .contains("nftables_sync_failures_total{ip_family=\"IPv4\"} 1"));
        assert!(!b.encode().contains("nftables_sync_failures_total"));
    }
}
