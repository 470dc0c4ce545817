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
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut inner = self.lock();
        let mut wake = false;
        for change in changes {
            wake |= inner.apply(change);
        }
        if wake {
            if inner.pending.since.is_none() {
                inner.pending.since = Some(Instant::now());
            }
            drop(inner);
            self.changed.notify_one();
        }
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
            Change::Synced(kind) => {
                let first = self.synced.insert(kind);
                // The first complete state is worth a sync even if it is empty.
                return first || !self.pending.is_empty();
            }
        }
        true
    }
}
