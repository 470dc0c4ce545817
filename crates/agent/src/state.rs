//! The state the sources write and the sync loop reads: the cluster view, which Services
//! changed since the last sync, and whether every source has delivered its first full list.
//!
//! Sources turn what they see (watch events, manifest files) into [`Change`]s and hand them to
//! [`Shared::apply`]; the sync loop waits on [`Shared::changed`] and takes the pending work with
//! [`Shared::take_pending`]. Plain data behind one mutex: tested without an API server.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use model::{ClusterView, ServiceRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

/// The kinds of objects a source delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// Services.
    Services,
    /// EndpointSlices.
    EndpointSlices,
    /// This node's Node object.
    Node,
}

impl SourceKind {
    /// Every kind; the first sync waits until each has been listed once.
    pub const ALL: [SourceKind; 3] = [
        SourceKind::Services,
        SourceKind::EndpointSlices,
        SourceKind::Node,
    ];
}

/// One change to the cluster state, as a source saw it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A Service was added or modified.
    UpsertService(Box<Service>),
    /// A Service was deleted.
    DeleteService(ServiceRef),
    /// An EndpointSlice was added or modified.
    UpsertSlice(Box<EndpointSlice>),
    /// An EndpointSlice was deleted.
    DeleteSlice {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// This node's Node object (None: it does not exist).
    SetNode(Option<Box<Node>>),
    /// A complete list of the Services (a first list or a relist): every Service not in it is
    /// deleted.
    ReplaceServices(Vec<Service>),
    /// A complete list of the EndpointSlices.
    ReplaceSlices(Vec<EndpointSlice>),
    /// The whole cluster state at once (a manifest source's reload): the view is replaced by
    /// this one, Services, slices and Node together. Only the Services whose stored objects
    /// differ between the two views are marked ([`ClusterView::diff`]); every Service if the
    /// Node differs, as [`Change::SetNode`] does.
    ReplaceView(Box<ClusterView>),
    /// The source of this kind has delivered its first complete list.
    Synced(SourceKind),
}

/// The work waiting for the sync loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Services whose objects or endpoints changed.
    pub services: BTreeSet<ServiceRef>,
    /// Something changed that concerns every Service (this Node: zone, addresses).
    pub all: bool,
    /// When the oldest of these changes arrived (None: nothing pending).
    pub since: Option<Instant>,
    /// EndpointSlice `endpoints.kubernetes.io/last-change-trigger-time` of the changes, per
    /// Service (the earliest), for the network programming latency metric.
    pub trigger_times: BTreeMap<ServiceRef, SystemTime>,
}

impl Pending {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && !self.all
    }
}

#[derive(Debug, Default)]
struct Inner {
    view: ClusterView,
    pending: Pending,
    synced: BTreeSet<SourceKind>,
    /// Views replaced by [`Change::ReplaceView`], dropped once the lock is released (freeing
    /// a large view takes a while; the sync loop need not wait for it).
    retired: Vec<ClusterView>,
    /// While the view is held ([`Shared::with_view_then_hold`]): the changes that arrived
    /// since, in order, applied by [`Shared::release`].
    held: Option<Held>,
}

/// Changes waiting for the view to be released.
#[derive(Debug, Default)]
struct Held {
    changes: Vec<Change>,
    /// When the first of them arrived.
    since: Option<Instant>,
}

/// The shared cluster state.
#[derive(Debug, Default)]
pub struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// The annotation EndpointSlice controllers set to when the change that led to this version of
/// the slice happened (RFC 3339).
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The namespace an object is filed under in the view: its own, or `default` when unset or
/// empty (the model's keying; deletes and relists must use the same key to find the object).
pub(crate) fn default_namespace(namespace: &Option<String>) -> &str {
    namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let text = slice
        .metadata
        .annotations
        .as_ref()?
        .get(TRIGGER_TIME_ANNOTATION)?;
    let t: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(t))
}

impl Shared {
    /// An empty state (nothing listed yet).
    pub fn new() -> Shared {
        Shared::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies changes to the view, records which Services they concern, and wakes the sync
    /// loop when there is something to do (or a source just finished its first list).
    /// While the view is held, they wait (see [`Shared::with_view_then_hold`]).
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut inner = self.lock();
        if let Some(held) = &mut inner.held {
            let before = held.changes.len();
            held.changes.extend(changes);
            if held.changes.len() > before {
                held.since.get_or_insert_with(Instant::now);
            }
            return;
        }
        let mut wake = false;
        for change in changes {
            wake |= inner.apply(change);
        }
        if wake && inner.pending.since.is_none() {
            inner.pending.since = Some(Instant::now());
        }
        self.wake(inner, wake);
    }

    /// Releases the lock, then wakes the sync loop if `wake`, and drops the retired views.
    fn wake(&self, mut inner: std::sync::MutexGuard<'_, Inner>, wake: bool) {
        let retired = std::mem::take(&mut inner.retired);
        drop(inner);
        if wake {
            self.changed.notify_one();
        }
        drop(retired);
    }

    /// Resolves when [`Shared::apply`] recorded something (or already had, unclaimed).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Whether every kind of source has delivered its first complete list.
    pub fn initialized(&self) -> bool {
        let inner = self.lock();
        SourceKind::ALL.iter().all(|k| inner.synced.contains(k))
    }

    /// Takes the pending work, leaving none.
    pub fn take_pending(&self) -> Pending {
        std::mem::take(&mut self.lock().pending)
    }

    /// Puts work back (a failed sync): merged with whatever arrived meanwhile.
    pub fn restore_pending(&self, mut earlier: Pending) {
        let mut inner = self.lock();
        let newer = std::mem::take(&mut inner.pending);
        earlier.services.extend(newer.services);
        earlier.all |= newer.all;
        earlier.since = match (earlier.since, newer.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (svc, t) in newer.trigger_times {
            let slot = earlier.trigger_times.entry(svc).or_insert(t);
            *slot = (*slot).min(t);
        }
        inner.pending = earlier;
    }

    /// How many Services have changes waiting (and whether everything does).
    pub fn pending_count(&self) -> (usize, bool) {
        let inner = self.lock();
        (inner.pending.services.len(), inner.pending.all)
    }

    /// When the oldest unsynced change arrived, if any.
    pub fn pending_since(&self) -> Option<Instant> {
        self.lock().pending.since
    }

    /// Runs `f` on the current view (under the lock: keep it short).
    pub fn with_view<T>(&self, f: impl FnOnce(&ClusterView) -> T) -> T {
        f(&self.lock().view)
    }

    /// Runs `f` on the current view; when `f` also returns true, the view is held as `f` saw
    /// it: changes that arrive are kept aside, unapplied, until [`Shared::release`]. The sync
    /// loop holds it through a full sync, so that what the engine computed from the view can
    /// be computed again after the commit instead of being kept through it
    /// ([`crate::engine::Engine::restore`]). Holding it again while held keeps what waits.
    pub fn with_view_then_hold<T>(&self, f: impl FnOnce(&ClusterView) -> (T, bool)) -> T {
        let mut inner = self.lock();
        let (out, hold) = f(&inner.view);
        if hold && inner.held.is_none() {
            inner.held = Some(Held::default());
        }
        out
    }

    /// Applies the changes that waited while the view was held, in order, and wakes the sync
    /// loop if they gave it something to do; their wait counts as pending time. Nothing when
    /// the view was not held.
    pub fn release(&self) {
        let mut inner = self.lock();
        let Some(held) = inner.held.take() else {
            return;
        };
        let mut wake = false;
        for change in held.changes {
            wake |= inner.apply(change);
        }
        if wake {
            let since = match (inner.pending.since, held.since) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or_else(Instant::now),
            };
            inner.pending.since = Some(since);
        }
        self.wake(inner, wake);
    }
}

impl Inner {
    /// Applies one change; true when it gives the sync loop something to do.
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::UpsertService(svc) => {
                let key = self.view.upsert_service(*svc);
                self.pending.services.insert(key);
            }
            Change::DeleteService(key) => {
                self.view.remove_service(&key);
                self.pending.services.insert(key);
            }
            Change::UpsertSlice(slice) => {
                let when = trigger_time(&slice);
                for svc in self.view.upsert_slice(*slice) {
                    if let Some(t) = when {
                        let slot = self.pending.trigger_times.entry(svc.clone()).or_insert(t);
                        *slot = (*slot).min(t);
                    }
                    self.pending.services.insert(svc);
                }
            }
            Change::DeleteSlice { namespace, name } => {
                let touched = self.view.remove_slice(&namespace, &name);
                self.pending.services.extend(touched);
            }
            Change::SetNode(node) => {
                if self.view.node() == node.as_deref() {
                    // Nothing the view holds changed: no work, no wake-up.
                    return false;
                }
                self.view.set_node(node.map(|n| *n));
                self.pending.all = true;
            }
            Change::ReplaceServices(services) => {
                let mut gone: BTreeSet<ServiceRef> = self.view.service_keys().into_iter().collect();
                for svc in services {
                    let key = self.view.upsert_service(svc);
                    gone.remove(&key);
                    // A relist re-delivers every object; only real changes matter, but a
                    // Service's own fields are cheap to recompute, so mark it.
                    self.pending.services.insert(key);
                }
                for key in gone {
                    self.view.remove_service(&key);
                    self.pending.services.insert(key);
                }
            }
            Change::ReplaceSlices(slices) => {
                let mut gone: BTreeSet<(String, String)> =
                    self.view.slice_keys().into_iter().collect();
                for slice in slices {
                    let key = (
                        default_namespace(&slice.metadata.namespace).to_owned(),
                        slice.metadata.name.clone().unwrap_or_default(),
                    );
                    gone.remove(&key);
                    self.pending.services.extend(self.view.upsert_slice(slice));
                }
                for (namespace, name) in gone {
                    let touched = self.view.remove_slice(&namespace, &name);
                    self.pending.services.extend(touched);
                }
            }
            Change::ReplaceView(view) => {
                let diff = self.view.diff(&view);
                let old = std::mem::replace(&mut self.view, *view);
                self.retired.push(old);
                self.pending.all |= diff.node;
                // The unjoinable slices concern no Service, but a sync reports them.
                let changed = !diff.is_empty();
                self.pending.services.extend(diff.services);
                return changed;
            }
            Change::Synced(kind) => {
                let first = self.synced.insert(kind);
                // The first complete state is worth a sync even if it is empty.
                return first || !self.pending.is_empty();
            }
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures::FutureExt;
    use model::fixtures::{ep, node, node_config, service, slice, NODE};
    use model::{node_view, update_node_view};

    /// The objects of one version of the manifests.
    struct Objects {
        services: Vec<Service>,
        slices: Vec<EndpointSlice>,
        node: Option<Node>,
    }

    /// The lists a source delivered before [`Change::ReplaceView`] existed.
    fn as_lists(objects: &Objects) -> Vec<Change> {
        vec![
            Change::ReplaceServices(objects.services.clone()),
            Change::ReplaceSlices(objects.slices.clone()),
            Change::SetNode(objects.node.clone().map(Box::new)),
            Change::Synced(SourceKind::Services),
            Change::Synced(SourceKind::EndpointSlices),
            Change::Synced(SourceKind::Node),
        ]
    }

    /// The same objects as one fresh view.
    fn as_view(objects: &Objects) -> Vec<Change> {
        let view = ClusterView::from_objects(
            objects.services.clone(),
            objects.slices.clone(),
            objects.node.clone(),
            NODE,
        );
        vec![
            Change::ReplaceView(Box::new(view)),
            Change::Synced(SourceKind::Services),
            Change::Synced(SourceKind::EndpointSlices),
            Change::Synced(SourceKind::Node),
        ]
    }

    fn http_slice(name: &str, service: &str, ip: &str) -> EndpointSlice {
        slice("shop", name, service, "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep(ip, NODE))
            .build()
    }

    fn http_service(name: &str, ip: &str) -> Service {
        service("shop", name, ip).port("http", "TCP", 80).build()
    }

    /// Services web, api, db and cache; slices of web, api and db, plus one that joins no
    /// Service; this Node.
    fn first() -> Objects {
        Objects {
            services: vec![
                http_service("web", "10.96.0.10"),
                http_service("api", "10.96.0.20"),
                http_service("db", "10.96.0.30"),
                http_service("cache", "10.96.0.40"),
            ],
            slices: vec![
                http_slice("web-1", "web", "10.1.0.1"),
                http_slice("api-1", "api", "10.1.0.2"),
                http_slice("db-1", "db", "10.1.0.3"),
                slice("shop", "stray", "x", "IPv4").without_labels().build(),
            ],
            node: Some(node(NODE, &["192.168.0.2"], None)),
        }
    }

    /// `first` with web's Service changed (another port), db deleted (with its slice), and
    /// slice api-1 moved to cache.
    fn second() -> Objects {
        let mut objects = first();
        objects.services[0] = service("shop", "web", "10.96.0.10")
            .port("http", "TCP", 8081)
            .build();
        objects.services.remove(2);
        objects.slices[1] = http_slice("api-1", "cache", "10.1.0.2");
        objects.slices.remove(2);
        objects
    }

    fn keys(names: &[&str]) -> BTreeSet<ServiceRef> {
        names.iter().map(|n| ServiceRef::new("shop", n)).collect()
    }

    /// Whether the sync loop was woken (consumes the wake-up).
    fn woken(shared: &Shared) -> bool {
        shared.changed().now_or_never().is_some()
    }

    /// Both views hold the same objects, and give this node the same services.
    pub(crate) fn assert_same_view(a: &Shared, b: &Shared) {
        let (a, b) = (a.with_view(Clone::clone), b.with_view(Clone::clone));
        assert_eq!(a.service_keys(), b.service_keys());
        assert_eq!(a.slice_keys(), b.slice_keys());
        assert_eq!(a.node(), b.node());
        assert!(a.diff(&b).is_empty(), "{:?}", a.diff(&b));
        let config = node_config();
        assert_eq!(node_view(&a, &config), node_view(&b, &config));
    }

    /// The old lists (`lists`) and the new view (`views`) after a first load of `first()`.
    fn loaded() -> (Shared, Shared) {
        let (lists, views) = (Shared::new(), Shared::new());
        lists.apply(as_lists(&first()));
        views.apply(as_view(&first()));
        (lists, views)
    }

    #[test]
    fn a_first_view_is_what_the_first_lists_were() {
        let (lists, views) = loaded();
        assert!(views.initialized());
        assert!(woken(&views));
        assert_same_view(&lists, &views);
        let (old, new) = (lists.take_pending(), views.take_pending());
        assert_eq!(new.services, old.services);
        assert_eq!(new.services, keys(&["api", "cache", "db", "web"]));
        assert!(new.all && old.all, "the Node arrived");
        assert!(new.since.is_some());
    }

    #[test]
    fn a_reloaded_view_marks_only_what_changed() {
        let (lists, views) = loaded();
        let before = views.with_view(Clone::clone);
        lists.take_pending();
        views.take_pending();
        woken(&views);

        lists.apply(as_lists(&second()));
        views.apply(as_view(&second()));
        assert!(woken(&views));
        assert_same_view(&lists, &views);
        let (old, new) = (lists.take_pending(), views.take_pending());
        // web changed, db is gone, api lost its slice and cache gained it.
        assert_eq!(new.services, keys(&["api", "cache", "db", "web"]));
        assert!(new.services.is_subset(&old.services));
        assert!(!new.all && !old.all, "the same Node");

        // What matters: a partial update of these Services gives what a full computation does.
        let config = node_config();
        let after = views.with_view(Clone::clone);
        let mut services = node_view(&before, &config);
        update_node_view(&after, &config, &mut services, &new.services).expect("no conflicts");
        assert_eq!(services, node_view(&after, &config));

        // One Service changes alone: only it is marked, where the lists marked every Service.
        let mut third = second();
        third.services[1] = service("shop", "api", "10.96.0.21")
            .port("http", "TCP", 80)
            .build();
        lists.apply(as_lists(&third));
        views.apply(as_view(&third));
        assert_same_view(&lists, &views);
        let (old, new) = (lists.take_pending(), views.take_pending());
        assert_eq!(new.services, keys(&["api"]));
        assert_eq!(old.services, keys(&["api", "cache", "web"]));
    }

    #[test]
    fn an_identical_view_marks_nothing_and_wakes_nobody() {
        let (lists, views) = loaded();
        lists.take_pending();
        views.take_pending();
        woken(&views);

        lists.apply(as_lists(&first()));
        views.apply(as_view(&first()));
        assert_same_view(&lists, &views);
        assert!(!woken(&views));
        let new = views.take_pending();
        assert!(new.is_empty(), "{new:?}");
        assert_eq!(new.since, None);
        // The lists marked every Service they held (and every slice's owner).
        assert_eq!(
            lists.take_pending().services,
            keys(&["api", "cache", "db", "web"])
        );
    }

    #[test]
    fn a_new_node_or_a_new_stray_slice_is_work_too() {
        let (_, views) = loaded();
        views.take_pending();
        woken(&views);

        let mut moved = first();
        moved.node = Some(node(NODE, &["192.168.0.2"], Some("z1")));
        views.apply(as_view(&moved));
        assert!(woken(&views));
        let pending = views.take_pending();
        assert!(pending.all && pending.services.is_empty(), "{pending:?}");

        // A slice that joins no Service concerns no Service, but its problem is reported at
        // the next sync.
        moved.slices.push(
            slice("shop", "stray-2", "x", "IPv4")
                .without_labels()
                .build(),
        );
        views.apply(as_view(&moved));
        assert!(woken(&views));
        assert!(views.pending_since().is_some());
        assert!(views.take_pending().is_empty());

        // No Node in the manifests: cleared, as SetNode(None) does.
        moved.node = None;
        views.apply(as_view(&moved));
        assert!(views.with_view(|v| v.node().is_none()));
        assert!(views.take_pending().all);
    }

    #[test]
    fn changes_wait_while_the_view_is_held_and_apply_in_order_when_released() {
        let (shared, _) = loaded();
        shared.take_pending();
        woken(&shared);
        let before = shared.with_view(Clone::clone);

        // Not held when the closure says so.
        let count = shared.with_view_then_hold(|v| (v.service_count(), false));
        assert_eq!(count, 4);
        shared.apply([Change::DeleteService(ServiceRef::new("shop", "cache"))]);
        assert!(woken(&shared));
        assert_eq!(shared.take_pending().services, keys(&["cache"]));
        shared.apply([Change::UpsertService(Box::new(http_service(
            "cache",
            "10.96.0.40",
        )))]);
        shared.take_pending();
        woken(&shared);

        // Held: the view stays as it was, nothing is pending, nobody is woken.
        let count = shared.with_view_then_hold(|v| (v.service_count(), true));
        assert_eq!(count, 4);
        shared.apply([
            Change::DeleteService(ServiceRef::new("shop", "db")),
            Change::UpsertSlice(Box::new(http_slice("web-1", "web", "10.1.0.9"))),
        ]);
        // A second delivery, and holding again while held, keep what waits, in order.
        shared.with_view_then_hold(|_| ((), true));
        shared.apply([Change::UpsertService(Box::new(http_service(
            "db",
            "10.96.0.31",
        )))]);
        assert!(!woken(&shared));
        assert!(shared.pending_since().is_none());
        assert!(shared.with_view(|v| v.diff(&before).is_empty()));

        // Released: applied in the order they came (db deleted, then created again).
        shared.release();
        assert!(woken(&shared));
        assert!(shared.pending_since().is_some());
        assert_eq!(shared.take_pending().services, keys(&["db", "web"]));
        let config = node_config();
        let after = shared.with_view(|v| node_view(v, &config));
        let (db, web) = (
            ServiceRef::new("shop", "db"),
            ServiceRef::new("shop", "web"),
        );
        let db = after.ipv4.service_ports(&db).next().expect("db is back");
        assert_eq!(db.cluster_ip.to_string(), "10.96.0.31");
        let web = after.ipv4.service_ports(&web).next().expect("web");
        assert_eq!(web.cluster_endpoints[0].ip.to_string(), "10.1.0.9");

        // Releasing what is not held does nothing.
        shared.release();
        assert!(!woken(&shared));
    }
}
