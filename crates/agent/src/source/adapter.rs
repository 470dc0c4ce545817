//! Watch events to [`Change`]s, without I/O.
//!
//! A [`WatchAdapter`] follows one watcher's event stream the way kube's reflector store does:
//! objects of a (re)list (`Init`, `InitApply`…, `InitDone`) are buffered and handed over as one
//! complete list at `InitDone`, so the view never holds half a list and objects deleted while
//! the watch was down (a relist after 410 Gone) disappear at that point. `Apply` and `Delete`
//! become single changes. Every object is stripped of what the proxy never reads before it is
//! stored ([`Watched::strip`]).

use crate::state::{default_namespace, Change, SourceKind};
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use model::ServiceRef;

/// The annotation `kubectl apply` leaves on objects: a copy of the whole object, never read.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object kind the agent watches: how its objects become [`Change`]s.
pub trait Watched: Sized {
    /// Which source this kind is.
    const KIND: SourceKind;

    /// Drops what the proxy never reads (managed fields first of all), to keep memory small
    /// and to keep unchanged objects comparing equal.
    fn strip(&mut self);

    /// The change for an object that was added or modified.
    fn applied(self) -> Change;

    /// The change for an object that was deleted.
    fn deleted(self) -> Change;

    /// The change for a complete list of the objects (a first list or a relist).
    fn listed(objects: Vec<Self>) -> Change;
}

/// Drops the managed fields and the `kubectl apply` copy of the object.
fn strip_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

impl Watched for Service {
    const KIND: SourceKind = SourceKind::Services;

    /// Keeps everything but the managed fields and the last-applied annotation: the model reads
    /// the metadata (name, namespace, labels), the spec and `status.loadBalancer`.
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
    }

    fn applied(self) -> Change {
        Change::UpsertService(Box::new(self))
    }

    fn deleted(self) -> Change {
        let namespace = default_namespace(&self.metadata.namespace);
        let name = self.metadata.name.as_deref().unwrap_or("");
        Change::DeleteService(ServiceRef::new(namespace, name))
    }

    fn listed(objects: Vec<Self>) -> Change {
        Change::ReplaceServices(objects)
    }
}

impl Watched for EndpointSlice {
    const KIND: SourceKind = SourceKind::EndpointSlices;

    /// Keeps everything but the managed fields and the last-applied annotation: the model reads
    /// the labels (the owning Service), the endpoints and ports, and the agent the
    /// last-change-trigger-time annotation.
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
    }

    fn applied(self) -> Change {
        Change::UpsertSlice(Box::new(self))
    }

    fn deleted(self) -> Change {
        Change::DeleteSlice {
            namespace: default_namespace(&self.metadata.namespace).to_owned(),
            name: self.metadata.name.unwrap_or_default(),
        }
    }

    fn listed(objects: Vec<Self>) -> Change {
        Change::ReplaceSlices(objects)
    }
}

impl Watched for Node {
    const KIND: SourceKind = SourceKind::Node;

    /// Keeps only what the proxy reads: name, uid, labels (the zone) and deletion timestamp;
    /// taints (`ToBeDeletedByClusterAutoscaler`) and pod CIDRs; the addresses. Everything else
    /// (conditions, heartbeats, images, resourceVersion, annotations) changes often or is big,
    /// and would make every status update of the Node look like a change of this node.
    fn strip(&mut self) {
        let metadata = ObjectMeta {
            name: self.metadata.name.take(),
            uid: self.metadata.uid.take(),
            labels: self.metadata.labels.take(),
            deletion_timestamp: self.metadata.deletion_timestamp.take(),
            ..ObjectMeta::default()
        };
        let spec = self.spec.take().map(|spec| NodeSpec {
            taints: spec.taints,
            pod_cidr: spec.pod_cidr,
            pod_cidrs: spec.pod_cidrs,
            ..NodeSpec::default()
        });
        let status = self.status.take().map(|status| NodeStatus {
            addresses: status.addresses,
            ..NodeStatus::default()
        });
        *self = Node {
            metadata,
            spec,
            status,
        };
    }

    fn applied(self) -> Change {
        Change::SetNode(Some(Box::new(self)))
    }

    fn deleted(self) -> Change {
        Change::SetNode(None)
    }

    /// The field selector lists at most this one Node; none means it does not exist.
    fn listed(objects: Vec<Self>) -> Change {
        Change::SetNode(objects.into_iter().next().map(Box::new))
    }
}

/// Turns one watcher's events into [`Change`]s, buffering the objects of a (re)list until it is
/// complete.
#[derive(Debug)]
pub struct WatchAdapter<K> {
    /// The objects of the list in progress.
    buffer: Vec<K>,
}

impl<K> Default for WatchAdapter<K> {
    fn default() -> Self {
        WatchAdapter { buffer: Vec::new() }
    }
}

impl<K: Watched> WatchAdapter<K> {
    /// An adapter waiting for its first list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The changes one event makes: none while a list is in progress, the whole list and
    /// `Synced` at its end, one change for `Apply` and `Delete`.
    pub fn handle(&mut self, event: Event<K>) -> Vec<Change> {
        match event {
            Event::Init => {
                self.buffer.clear();
                Vec::new()
            }
            Event::InitApply(mut object) => {
                object.strip();
                self.buffer.push(object);
                Vec::new()
            }
            Event::InitDone => {
                let objects = std::mem::take(&mut self.buffer);
                vec![K::listed(objects), Change::Synced(K::KIND)]
            }
            Event::Apply(mut object) => {
                object.strip();
                vec![object.applied()]
            }
            Event::Delete(object) => vec![object.deleted()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Pending, Shared};
    use futures::FutureExt;
    use serde_json::{json, Value};

    fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("a valid object")
    }

    /// A ClusterIP Service as the API server sends it: with managed fields and kubectl's copy.
    fn service(namespace: &str, name: &str, ip: &str) -> Service {
        from_json(json!({
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": "1",
                "annotations": {
                    LAST_APPLIED_ANNOTATION: "{\"a\":\"big copy\"}",
                    "team": "blue",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip,
                "clusterIPs": [ip],
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            },
        }))
    }

    /// An EndpointSlice of Service `namespace/service` with one endpoint.
    fn slice(namespace: &str, name: &str, service: &str, ip: &str) -> EndpointSlice {
        from_json(json!({
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": "1",
                "labels": {"kubernetes.io/service-name": service},
                "managedFields": [{"manager": "endpointslice-controller", "operation": "Update"}],
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "nodeName": "node-a"}],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        }))
    }

    /// Node `node-a` in `zone`, with the status noise kubelet keeps updating.
    fn node(zone: &str, beat: u32) -> Node {
        let heartbeat = format!("2026-01-01T00:00:{beat:02}Z");
        from_json(json!({
            "metadata": {
                "name": "node-a",
                "uid": "u-1",
                "resourceVersion": beat.to_string(),
                "labels": {"topology.kubernetes.io/zone": zone},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
            },
            "spec": {
                "podCIDR": "10.244.1.0/24",
                "providerID": "kind://docker/kind/node-a",
                "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}],
            },
            "status": {
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "conditions": [{"type": "Ready", "status": "True",
                                "lastHeartbeatTime": heartbeat}],
                "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320000}],
                "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "c",
                             "kernelVersion": "6", "kubeProxyVersion": "", "kubeletVersion": "v1.33",
                             "machineID": "m", "operatingSystem": "linux", "osImage": "o",
                             "systemUUID": "s"},
            },
        }))
    }

    fn key(namespace: &str, name: &str) -> ServiceRef {
        ServiceRef::new(namespace, name)
    }

    /// The three adapters of one agent, feeding one [`Shared`].
    #[derive(Default)]
    struct Sources {
        shared: Shared,
        services: WatchAdapter<Service>,
        slices: WatchAdapter<EndpointSlice>,
        node: WatchAdapter<Node>,
    }

    impl Sources {
        fn services(&mut self, event: Event<Service>) {
            self.shared.apply(self.services.handle(event));
        }
        fn slices(&mut self, event: Event<EndpointSlice>) {
            self.shared.apply(self.slices.handle(event));
        }
        fn node(&mut self, event: Event<Node>) {
            self.shared.apply(self.node.handle(event));
        }

        /// Whether the sync loop was woken (consumes the wake-up).
        fn woken(&self) -> bool {
            self.shared.changed().now_or_never().is_some()
        }

        /// First lists: Services a and b, slices of both, this Node; then nothing pending.
        fn listed() -> Sources {
            let mut s = Sources::default();
            s.services(Event::Init);
            s.services(Event::InitApply(service("ns", "a", "10.96.0.1")));
            s.services(Event::InitApply(service("ns", "b", "10.96.0.2")));
            s.services(Event::InitDone);
            s.slices(Event::Init);
            s.slices(Event::InitApply(slice("ns", "a-1", "a", "10.244.1.1")));
            s.slices(Event::InitApply(slice("ns", "b-1", "b", "10.244.1.2")));
            s.slices(Event::InitDone);
            s.node(Event::Init);
            s.node(Event::InitApply(node("z1", 1)));
            s.node(Event::InitDone);
            assert!(s.shared.initialized());
            s.shared.take_pending();
            s.woken();
            s
        }
    }

    fn pending_services(p: &Pending) -> Vec<ServiceRef> {
        p.services.iter().cloned().collect()
    }

    /// The first sync waits for all three first lists, and then has every listed Service and
    /// this Node to program; list events before `InitDone` never wake the sync loop.
    #[test]
    fn initialized_only_after_all_three_first_lists() {
        let mut s = Sources::default();
        s.services(Event::Init);
        s.services(Event::InitApply(service("ns", "a", "10.96.0.1")));
        s.services(Event::InitApply(service("ns", "b", "10.96.0.2")));
        s.slices(Event::Init);
        s.slices(Event::InitApply(slice("ns", "a-1", "a", "10.244.1.1")));
        s.node(Event::Init);
        s.node(Event::InitApply(node("z1", 1)));
        assert!(!s.woken());
        assert_eq!(s.shared.pending_since(), None);
        assert!(!s.shared.initialized());

        s.services(Event::InitDone);
        assert!(s.woken());
        assert!(!s.shared.initialized());
        s.slices(Event::InitDone);
        assert!(!s.shared.initialized());
        s.node(Event::InitDone);
        assert!(s.shared.initialized());
        assert!(s.woken());

        let pending = s.shared.take_pending();
        assert_eq!(pending_services(&pending), [key("ns", "a"), key("ns", "b")]);
        assert!(pending.all, "the Node arrived");
        assert!(pending.since.is_some());
        s.shared.with_view(|v| {
            assert_eq!(v.service_keys(), [key("ns", "a"), key("ns", "b")]);
            assert_eq!(v.slice_keys(), [("ns".to_owned(), "a-1".to_owned())]);
            assert_eq!(
                v.node().and_then(|n| n.metadata.name.as_deref()),
                Some("node-a")
            );
        });
    }

    /// `Init` and `InitApply` alone (a list in progress, never finished) change nothing.
    #[test]
    fn list_in_progress_produces_no_work() {
        let mut s = Sources::default();
        assert!(s.services.handle(Event::Init).is_empty());
        assert!(s
            .services
            .handle(Event::InitApply(service("ns", "a", "10.96.0.1")))
            .is_empty());
        assert!(s.slices.handle(Event::Init).is_empty());
        assert!(s
            .slices
            .handle(Event::InitApply(slice("ns", "a-1", "a", "10.244.1.1")))
            .is_empty());
        assert!(s.node.handle(Event::Init).is_empty());
        assert!(s.node.handle(Event::InitApply(node("z1", 1))).is_empty());
        assert!(!s.woken());
        assert!(s.shared.take_pending().is_empty());
        assert!(s.shared.with_view(|v| v.service_keys().is_empty()));
    }

    /// A list that restarts (the watcher emits `Init` again after an error mid-list) forgets
    /// the objects of the abandoned attempt.
    #[test]
    fn restarted_list_drops_the_abandoned_buffer() {
        let mut adapter = WatchAdapter::<Service>::new();
        adapter.handle(Event::Init);
        adapter.handle(Event::InitApply(service("ns", "a", "10.96.0.1")));
        adapter.handle(Event::Init);
        adapter.handle(Event::InitApply(service("ns", "b", "10.96.0.2")));
        let changes = adapter.handle(Event::InitDone);
        let [Change::ReplaceServices(listed), Change::Synced(SourceKind::Services)] = &changes[..]
        else {
            panic!("unexpected changes {changes:?}");
        };
        let names: Vec<_> = listed.iter().map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names, [Some("b".to_owned())]);
    }

    /// `Apply` and `Delete` mark exactly the Services concerned; a slice marks its Service
    /// through the `kubernetes.io/service-name` label.
    #[test]
    fn apply_and_delete_mark_the_right_services() {
        let mut s = Sources::listed();

        s.services(Event::Apply(service("ns", "c", "10.96.0.3")));
        assert!(s.woken());
        assert_eq!(pending_services(&s.shared.take_pending()), [key("ns", "c")]);

        s.slices(Event::Apply(slice("ns", "a-1", "a", "10.244.1.9")));
        let pending = s.shared.take_pending();
        assert_eq!(pending_services(&pending), [key("ns", "a")]);
        assert!(!pending.all);

        s.slices(Event::Apply(slice("ns", "b-2", "b", "10.244.2.2")));
        assert_eq!(pending_services(&s.shared.take_pending()), [key("ns", "b")]);

        s.slices(Event::Delete(slice("ns", "b-2", "b", "10.244.2.2")));
        assert_eq!(pending_services(&s.shared.take_pending()), [key("ns", "b")]);

        s.services(Event::Delete(service("ns", "b", "10.96.0.2")));
        assert_eq!(pending_services(&s.shared.take_pending()), [key("ns", "b")]);
        s.shared.with_view(|v| {
            assert_eq!(v.service_keys(), [key("ns", "a"), key("ns", "c")]);
            assert_eq!(
                v.slice_keys(),
                [
                    ("ns".to_owned(), "a-1".to_owned()),
                    ("ns".to_owned(), "b-1".to_owned())
                ]
            );
        });
    }

    /// A relist (what the watcher emits after 410 Gone) swaps the whole list at `InitDone`:
    /// the view keeps every object until then, and afterwards holds only the relisted ones;
    /// the Services that disappeared (or lost their slices) are marked.
    #[test]
    fn relist_removes_what_was_not_relisted() {
        let mut s = Sources::listed();
        s.services(Event::Apply(service("ns", "c", "10.96.0.3")));
        s.shared.take_pending();
        s.woken();

        s.services(Event::Init);
        s.services(Event::InitApply(service("ns", "a", "10.96.0.1")));
        assert!(!s.woken());
        assert_eq!(s.shared.with_view(|v| v.service_count()), 3);
        s.services(Event::InitDone);
        assert!(s.woken());
        assert_eq!(s.shared.with_view(|v| v.service_keys()), [key("ns", "a")]);
        let pending = pending_services(&s.shared.take_pending());
        assert!(pending.contains(&key("ns", "b")), "{pending:?}");
        assert!(pending.contains(&key("ns", "c")), "{pending:?}");

        s.slices(Event::Init);
        s.slices(Event::InitApply(slice("ns", "a-1", "a", "10.244.1.1")));
        s.slices(Event::InitDone);
        assert_eq!(
            s.shared.with_view(|v| v.slice_keys()),
            [("ns".to_owned(), "a-1".to_owned())]
        );
        let pending = pending_services(&s.shared.take_pending());
        assert!(pending.contains(&key("ns", "b")), "{pending:?}");
        assert!(s.shared.initialized());
    }

    /// What is stored has no managed fields nor kubectl's copy of the object; the rest of the
    /// metadata the model and the agent read stays.
    #[test]
    fn managed_fields_are_stripped() {
        let mut services = WatchAdapter::<Service>::new();
        let changes = services.handle(Event::Apply(service("ns", "a", "10.96.0.1")));
        let [Change::UpsertService(svc)] = &changes[..] else {
            panic!("unexpected changes {changes:?}");
        };
        assert_eq!(svc.metadata.managed_fields, None);
        let annotations = svc.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert!(svc.spec.is_some());

        services.handle(Event::Init);
        services.handle(Event::InitApply(service("ns", "a", "10.96.0.1")));
        let changes = services.handle(Event::InitDone);
        let [Change::ReplaceServices(listed), _] = &changes[..] else {
            panic!("unexpected changes {changes:?}");
        };
        assert!(listed.iter().all(|s| s.metadata.managed_fields.is_none()));

        let mut slices = WatchAdapter::<EndpointSlice>::new();
        let changes = slices.handle(Event::Apply(slice("ns", "a-1", "a", "10.244.1.1")));
        let [Change::UpsertSlice(sl)] = &changes[..] else {
            panic!("unexpected changes {changes:?}");
        };
        assert_eq!(sl.metadata.managed_fields, None);
        assert!(sl.metadata.labels.is_some());
        assert_eq!(sl.endpoints.len(), 1);

        let mut s = Sources::listed();
        let stored = s.shared.with_view(|v| v.node().cloned()).expect("a Node");
        assert_eq!(stored.metadata.managed_fields, None);
        assert_eq!(stored.metadata.resource_version, None);
        assert_eq!(stored.metadata.annotations, None);
        assert_eq!(stored.metadata.uid.as_deref(), Some("u-1"));
        assert!(stored.metadata.labels.is_some());
        let spec = stored.spec.clone().unwrap_or_default();
        assert_eq!(spec.taints.map(|t| t.len()), Some(1));
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.1.0/24"));
        assert_eq!(spec.provider_id, None);
        let status = stored.status.clone().unwrap_or_default();
        assert_eq!(status.addresses.map(|a| a.len()), Some(1));
        assert_eq!(status.conditions, None);
        assert_eq!(status.images, None);
        assert_eq!(status.node_info, None);

        // A heartbeat (new resourceVersion, new condition times) is no change for the proxy.
        s.node(Event::Apply(node("z1", 2)));
        assert!(!s.woken());
        assert!(s.shared.take_pending().is_empty());
        // A new zone is.
        s.node(Event::Apply(node("z2", 3)));
        assert!(s.woken());
        assert!(s.shared.take_pending().all);
    }

    /// Deleting this Node clears it from the view and concerns every Service; a first list
    /// without it leaves the view without a Node but still counts as listed.
    #[test]
    fn node_deletion_clears_the_node() {
        let mut adapter = WatchAdapter::<Node>::new();
        let changes = adapter.handle(Event::Delete(node("z1", 5)));
        assert!(
            matches!(changes[..], [Change::SetNode(None)]),
            "{changes:?}"
        );

        let mut s = Sources::listed();
        s.node(Event::Delete(node("z1", 5)));
        assert!(s.woken());
        assert!(s.shared.with_view(|v| v.node().is_none()));
        assert!(s.shared.take_pending().all);

        let mut s = Sources::default();
        s.services(Event::Init);
        s.services(Event::InitDone);
        s.slices(Event::Init);
        s.slices(Event::InitDone);
        s.node(Event::Init);
        let changes = s.node.handle(Event::InitDone);
        assert!(
            matches!(
                changes[..],
                [Change::SetNode(None), Change::Synced(SourceKind::Node)]
            ),
            "{changes:?}"
        );
        s.shared.apply(changes);
        assert!(s.shared.initialized());
        assert!(s.shared.with_view(|v| v.node().is_none()));
    }

    /// Objects without a namespace are filed under `default`, and their deletes and relists
    /// find them there.
    #[test]
    fn objects_without_namespace_are_found_again() {
        let mut s = Sources::listed();
        let mut svc = service("", "d", "10.96.0.4");
        svc.metadata.namespace = None;
        let mut sl = slice("", "d-1", "d", "10.244.1.4");
        sl.metadata.namespace = None;
        s.services(Event::Apply(svc.clone()));
        s.slices(Event::Apply(sl.clone()));
        assert!(s
            .shared
            .with_view(|v| v.service_keys().contains(&key("default", "d"))));
        s.slices(Event::Init);
        s.slices(Event::InitApply(sl.clone()));
        s.slices(Event::InitDone);
        let slice_d = ("default".to_owned(), "d-1".to_owned());
        assert!(s.shared.with_view(|v| v.slice_keys().contains(&slice_d)));
        s.slices(Event::Delete(sl));
        s.services(Event::Delete(svc));
        s.shared.with_view(|v| {
            assert!(!v.slice_keys().contains(&slice_d));
            assert!(!v.service_keys().contains(&key("default", "d")));
        });
    }
}
