//! The agent's own health: the state behind the node's `/healthz` and `/livez`, and the
//! `serviceProxyHealthy` of every per-Service health check.
//!
//! This mirrors kube-proxy's `pkg/proxy/healthcheck/proxy_health.go`: every IP family records
//! when its oldest not-yet-programmed change arrived ([`ProxyHealth::queued_update`]) and when
//! its rules were last programmed ([`ProxyHealth::updated`]). A family whose change has waited
//! for at least the health timeout (the agent passes 2 × the sync period) makes the agent
//! unhealthy. `/healthz` additionally requires the Node to be eligible (known, not being
//! deleted, not tainted `ToBeDeletedByClusterAutoscaler`); `/livez` does not.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use model::IpFamily;
use serde::{Serialize, Serializer};

/// The taint the Cluster Autoscaler puts on a Node before deleting it (KEP-3836): a Node
/// carrying it fails `/healthz` so that load balancers drain it.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Go's zero `time.Time` as `encoding/json` writes it; kube-proxy reports it as `lastUpdated`
/// before the first successful sync.
const GO_ZERO_TIME: Timestamp = Timestamp::constant(-62_135_596_800, 0);

/// One reading of the clock: the monotonic instant measures how long a change has waited, the
/// wall time is what the JSON bodies report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment {
    mono: Instant,
    wall: Timestamp,
}

impl Moment {
    /// The current time.
    pub(crate) fn now() -> Moment {
        Moment {
            mono: Instant::now(),
            wall: Timestamp::now(),
        }
    }

    /// This moment moved `by` into the future (for tests that move time without sleeping).
    #[cfg(test)]
    pub(crate) fn plus(self, by: Duration) -> Moment {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        Moment {
            mono: self.mono + by,
            wall: self
                .wall
                .checked_add(k8s_openapi::jiff::SignedDuration::from_nanos(nanos))
                .unwrap_or(self.wall),
        }
    }
}

/// The health of the agent and of this Node, shared (in an `Arc`) by the sync loop, the node
/// health server and the per-Service health checks.
///
/// All methods take `&self`; the state sits behind a `std::sync::Mutex` that is never held
/// across an `.await`.
#[derive(Debug)]
pub struct ProxyHealth {
    health_timeout: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// When each family's rules were last programmed.
    last_updated: BTreeMap<IpFamily, Moment>,
    /// When each family's oldest not-yet-programmed change arrived.
    oldest_pending: BTreeMap<IpFamily, Moment>,
    /// The Node's eligibility from the last [`ProxyHealth::set_node`]; `None` before the first
    /// call (the Node is not known yet).
    node_eligible: Option<bool>,
}

/// Which node health endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeEndpoint {
    /// `/healthz`: the agent's health and the Node's eligibility.
    Healthz,
    /// `/livez`: the agent's health only.
    Livez,
}

impl NodeEndpoint {
    /// The path it is served at.
    pub fn path(self) -> &'static str {
        match self {
            NodeEndpoint::Healthz => "/healthz",
            NodeEndpoint::Livez => "/livez",
        }
    }
}

/// The health of one family's rules, an entry of [`ProxyHealthReport::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxierHealthReport {
    /// When this family's rules were last programmed (Go's zero time if never).
    #[serde(serialize_with = "go_time")]
    pub last_updated: Timestamp,
    /// Whether this family has no change waiting for longer than the health timeout.
    pub healthy: bool,
}

/// The JSON body of `/healthz` and `/livez`, field for field kube-proxy's `ProxyHealth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyHealthReport {
    /// The newest `lastUpdated` of all families; the current time when healthy (kube-proxy
    /// keeps this for backward compatibility: it used to be the time of the last sync).
    #[serde(serialize_with = "go_time")]
    pub last_updated: Timestamp,
    /// The time of the response.
    #[serde(serialize_with = "go_time")]
    pub current_time: Timestamp,
    /// Whether the Node is eligible for traffic; only `/healthz` reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_eligible: Option<bool>,
    /// Whether every family is healthy (for `/healthz` this ignores `nodeEligible`, as
    /// kube-proxy's does; the status code accounts for both).
    pub healthy: bool,
    /// The health of each family that has been programmed at least once (or is unhealthy),
    /// keyed `IPv4` / `IPv6`; left out when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<&'static str, ProxierHealthReport>,
}

/// A `/healthz` or `/livez` answer: the status code and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealthResponse {
    /// 200 when healthy (for `/healthz`: and the Node eligible), else 503.
    pub status: StatusCode,
    /// The JSON body.
    pub body: ProxyHealthReport,
}

impl NodeHealthResponse {
    /// The body as JSON, compact like Go's `json.Marshal`.
    pub fn body_json(&self) -> String {
        // Serializing a struct of strings, bools and a string-keyed map cannot fail.
        serde_json::to_string(&self.body).unwrap_or_default()
    }
}

impl IntoResponse for NodeHealthResponse {
    fn into_response(self) -> Response {
        let body = self.body_json();
        (self.status, super::json_headers(), body).into_response()
    }
}

/// The key of a family in [`ProxyHealthReport::status`]: Kubernetes' `IPFamily` spelling.
fn family_key(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    }
}

/// Writes a time as Go's `encoding/json` writes a UTC `time.Time`: RFC 3339 with as many
/// fractional-second digits as needed (none when whole), e.g. `2024-05-01T10:00:00.25Z`.
fn go_time<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(time)
}

/// Whether a Node may receive traffic: not being deleted and not tainted
/// `ToBeDeletedByClusterAutoscaler`.
fn node_eligible(node: &Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let tainted = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == TO_BE_DELETED_TAINT));
    !tainted
}

impl ProxyHealth {
    /// Health state that calls a family unhealthy once a change has waited for `health_timeout`
    /// (the agent passes 2 × the sync period). Healthy while starting up; the Node is unknown
    /// (so `/healthz` fails) until the first [`ProxyHealth::set_node`].
    pub fn new(health_timeout: Duration) -> Self {
        ProxyHealth {
            health_timeout,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A change of `family` arrived that is not programmed yet. While one is pending a later
    /// call keeps the older time: what counts is how long the oldest change has waited.
    pub fn queued_update(&self, family: IpFamily) {
        self.queued_update_at(family, Moment::now());
    }

    pub(crate) fn queued_update_at(&self, family: IpFamily, now: Moment) {
        self.lock().oldest_pending.entry(family).or_insert(now);
    }

    /// The rules of `family` now reflect every change so far: clears the pending change and
    /// stamps `lastUpdated`.
    pub fn updated(&self, family: IpFamily) {
        self.updated_at(family, Moment::now());
    }

    pub(crate) fn updated_at(&self, family: IpFamily, now: Moment) {
        let mut inner = self.lock();
        inner.oldest_pending.remove(&family);
        inner.last_updated.insert(family, now);
    }

    /// The current state of this agent's Node; `None` when the Node does not exist. The Node is
    /// eligible when it exists, has no `deletionTimestamp` and no taint with the key
    /// `ToBeDeletedByClusterAutoscaler` (any other taint is fine).
    ///
    /// Before the first call the Node is unknown and *not* eligible, so `/healthz` answers 503
    /// until the agent has seen its Node. This follows current kube-proxy, whose
    /// `NodeEligible()` reads the node manager's Node and returns false when it is nil; older
    /// releases assumed eligible until the first Node event.
    pub fn set_node(&self, node: Option<&Node>) {
        let eligible = node.is_some_and(node_eligible);
        self.lock().node_eligible = Some(eligible);
    }

    /// Whether the Node is eligible for traffic (see [`ProxyHealth::set_node`]).
    pub fn node_eligible(&self) -> bool {
        self.lock().node_eligible.unwrap_or(false)
    }

    /// Whether no family has a change that has been pending for the health timeout or longer.
    /// Ignores the Node; this is what per-Service health checks report as
    /// `serviceProxyHealthy`.
    pub fn is_healthy(&self) -> bool {
        self.is_healthy_at(Moment::now())
    }

    /// The answer to `/healthz`: 200 iff healthy and the Node eligible, else 503.
    pub fn healthz(&self) -> NodeHealthResponse {
        self.healthz_at(Moment::now())
    }

    /// The answer to `/livez`: 200 iff healthy (the Node is not considered), else 503.
    pub fn livez(&self) -> NodeHealthResponse {
        self.livez_at(Moment::now())
    }

    /// The answer of `endpoint`.
    pub fn respond(&self, endpoint: NodeEndpoint) -> NodeHealthResponse {
        match endpoint {
            NodeEndpoint::Healthz => self.healthz(),
            NodeEndpoint::Livez => self.livez(),
        }
    }

    pub(crate) fn is_healthy_at(&self, now: Moment) -> bool {
        self.report_at(now).healthy
    }

    pub(crate) fn healthz_at(&self, now: Moment) -> NodeHealthResponse {
        let mut body = self.report_at(now);
        let eligible = self.node_eligible();
        body.node_eligible = Some(eligible);
        Self::respond_with(body.healthy && eligible, body, now)
    }

    pub(crate) fn livez_at(&self, now: Moment) -> NodeHealthResponse {
        let body = self.report_at(now);
        Self::respond_with(body.healthy, body, now)
    }

    fn respond_with(ok: bool, mut body: ProxyHealthReport, now: Moment) -> NodeHealthResponse {
        let status = if ok {
            // As kube-proxy: a healthy answer reports lastUpdated = now, which is what the
            // field meant in older releases (the last run of the sync loop).
            body.last_updated = now.wall;
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        NodeHealthResponse { status, body }
    }

    /// The agent's health at `now`, without `nodeEligible` (kube-proxy's `Health()`).
    fn report_at(&self, now: Moment) -> ProxyHealthReport {
        let inner = self.lock();
        let mut status = BTreeMap::new();
        let mut last_updated = GO_ZERO_TIME;
        for (&family, updated) in &inner.last_updated {
            last_updated = last_updated.max(updated.wall);
            status.insert(
                family_key(family),
                ProxierHealthReport {
                    last_updated: updated.wall,
                    healthy: true,
                },
            );
        }
        let mut healthy = true;
        for (&family, queued) in &inner.oldest_pending {
            if now.mono.saturating_duration_since(queued.mono) < self.health_timeout {
                // A change is waiting, but it is not late yet.
                continue;
            }
            healthy = false;
            status.insert(
                family_key(family),
                ProxierHealthReport {
                    last_updated: inner
                        .last_updated
                        .get(&family)
                        .map_or(GO_ZERO_TIME, |m| m.wall),
                    healthy: false,
                },
            );
        }
        ProxyHealthReport {
            last_updated,
            current_time: now.wall,
            node_eligible: None,
            healthy,
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::Value;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn start() -> Moment {
        Moment {
            mono: Instant::now(),
            wall: Timestamp::constant(1_700_000_000, 250_000_000),
        }
    }

    fn node(taints: &[&str], deleted: bool) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some("node-a".into());
        if deleted {
            node.metadata.deletion_timestamp = Some(Time(Timestamp::constant(1_700_000_000, 0)));
        }
        node.spec = Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|key| Taint {
                        key: (*key).to_owned(),
                        effect: "NoSchedule".into(),
                        ..Taint::default()
                    })
                    .collect(),
            ),
            ..NodeSpec::default()
        });
        node
    }

    fn json(response: &NodeHealthResponse) -> Value {
        serde_json::from_str(&response.body_json()).expect("the body is JSON")
    }

    fn health_with_node() -> ProxyHealth {
        let health = ProxyHealth::new(TIMEOUT);
        health.set_node(Some(&node(&[], false)));
        health
    }

    #[test]
    fn healthy_while_starting_up() {
        let health = health_with_node();
        let now = start();
        assert!(health.is_healthy_at(now));
        let healthz = health.healthz_at(now);
        assert_eq!(healthz.status, StatusCode::OK);
        let body = json(&healthz);
        assert_eq!(body["healthy"], true);
        assert_eq!(body["nodeEligible"], true);
        // Healthy: lastUpdated is reported as the current time.
        assert_eq!(body["lastUpdated"], "2023-11-14T22:13:20.25Z");
        assert_eq!(body["currentTime"], "2023-11-14T22:13:20.25Z");
        // No family has been programmed yet: no status map (Go's omitempty).
        assert!(body.get("status").is_none(), "{body}");
        assert_eq!(health.livez_at(now).status, StatusCode::OK);
    }

    #[test]
    fn late_change_fails_healthz_and_livez_until_updated() {
        let health = health_with_node();
        let t0 = start();
        health.updated_at(IpFamily::V4, t0);
        health.updated_at(IpFamily::V6, t0);

        let t1 = t0.plus(Duration::from_secs(10));
        health.queued_update_at(IpFamily::V4, t1);
        // Pending, but not late yet.
        let almost = t1.plus(TIMEOUT - Duration::from_millis(1));
        assert!(health.is_healthy_at(almost));
        assert_eq!(health.healthz_at(almost).status, StatusCode::OK);

        // A later change does not reset the wait.
        health.queued_update_at(IpFamily::V4, t1.plus(Duration::from_secs(30)));
        let late = t1.plus(TIMEOUT);
        assert!(!health.is_healthy_at(late));
        let healthz = health.healthz_at(late);
        let livez = health.livez_at(late);
        assert_eq!(healthz.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(livez.status, StatusCode::SERVICE_UNAVAILABLE);
        let body = json(&healthz);
        assert_eq!(body["healthy"], false);
        assert_eq!(body["nodeEligible"], true);
        // Unhealthy: lastUpdated is the newest programming time, not now.
        assert_eq!(body["lastUpdated"], "2023-11-14T22:13:20.25Z");
        assert_eq!(body["currentTime"], "2023-11-14T22:14:30.25Z");
        assert_eq!(body["status"]["IPv4"]["healthy"], false);
        assert_eq!(
            body["status"]["IPv4"]["lastUpdated"],
            "2023-11-14T22:13:20.25Z"
        );
        assert_eq!(body["status"]["IPv6"]["healthy"], true);
        let livez_body = json(&livez);
        assert!(livez_body.get("nodeEligible").is_none(), "{livez_body}");
        assert_eq!(livez_body["healthy"], false);

        // Updating the other family changes nothing.
        health.updated_at(IpFamily::V6, late);
        assert_eq!(
            health.healthz_at(late).status,
            StatusCode::SERVICE_UNAVAILABLE
        );

        // Programmed: healthy again.
        let t2 = late.plus(Duration::from_secs(1));
        health.updated_at(IpFamily::V4, t2);
        let healthz = health.healthz_at(t2);
        assert_eq!(healthz.status, StatusCode::OK);
        let body = json(&healthz);
        assert_eq!(body["healthy"], true);
        assert_eq!(body["status"]["IPv4"]["healthy"], true);
        assert_eq!(
            body["status"]["IPv4"]["lastUpdated"],
            "2023-11-14T22:14:31.25Z"
        );
        assert_eq!(health.livez_at(t2).status, StatusCode::OK);
    }

    #[test]
    fn change_late_before_first_update_is_unhealthy() {
        let health = health_with_node();
        let t0 = start();
        health.queued_update_at(IpFamily::V6, t0);
        let late = t0.plus(TIMEOUT);
        let livez = health.livez_at(late);
        assert_eq!(livez.status, StatusCode::SERVICE_UNAVAILABLE);
        let body = json(&livez);
        assert_eq!(body["lastUpdated"], "0001-01-01T00:00:00Z");
        assert_eq!(body["status"]["IPv6"]["healthy"], false);
        assert_eq!(
            body["status"]["IPv6"]["lastUpdated"],
            "0001-01-01T00:00:00Z"
        );
        assert!(body["status"].get("IPv4").is_none());
    }

    #[test]
    fn node_eligibility_only_affects_healthz() {
        let health = ProxyHealth::new(TIMEOUT);
        let now = start();
        // Unknown Node: not eligible.
        assert!(!health.node_eligible());
        assert_eq!(
            health.healthz_at(now).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(health.livez_at(now).status, StatusCode::OK);

        let cases: [(Option<Node>, bool); 6] = [
            (Some(node(&[], false)), true),
            (Some(node(&["other"], false)), true),
            (Some(node(&["other", TO_BE_DELETED_TAINT], false)), false),
            (
                Some(node(&["node.kubernetes.io/unschedulable"], false)),
                true,
            ),
            (Some(node(&[], true)), false),
            (None, false),
        ];
        for (node, eligible) in cases {
            health.set_node(node.as_ref());
            let healthz = health.healthz_at(now);
            let want = if eligible {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            assert_eq!(healthz.status, want, "{node:?}");
            let body = json(&healthz);
            assert_eq!(body["nodeEligible"], eligible, "{node:?}");
            // The proxy itself is healthy; only the Node is not.
            assert_eq!(body["healthy"], true);
            if !eligible {
                // Not OK: lastUpdated is not replaced by the current time.
                assert_eq!(body["lastUpdated"], "0001-01-01T00:00:00Z");
            }
            assert_eq!(health.livez_at(now).status, StatusCode::OK, "{node:?}");
            assert!(health.is_healthy_at(now));
        }
    }

    #[test]
    fn go_time_format() {
        let report = ProxierHealthReport {
            last_updated: Timestamp::constant(1_700_000_000, 123_456_000),
            healthy: true,
        };
        assert_eq!(
            serde_json::to_string(&report).expect("serializes"),
            r#"{"lastUpdated":"2023-11-14T22:13:20.123456Z","healthy":true}"#
        );
    }
}
