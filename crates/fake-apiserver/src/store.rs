//! The objects, their history of changes, and the live feed watches follow.
//!
//! Resource versions are one counter for every kind (as etcd's revision). Every change gets the
//! next one and is kept in the history until [`Store::compact`], which makes every resource
//! version handed out so far too old: a watch (or an `Exact` list, or a `continue` token) from
//! one of them is answered with 410 Gone.

use crate::selector::{FieldSelector, LabelSelector};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// How many messages the live feed buffers for a slow watch before the watch is ended (its
/// client resumes from its last resource version, served from the history).
const FEED_CAPACITY: usize = 4096;

/// The annotation of the bookmark that ends the initial events of a streaming list.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A collection of the API: group (empty for the core group), version, plural.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceType {
    /// The API group (`""`, `discovery.k8s.io`).
    pub group: String,
    /// The version (`v1`).
    pub version: String,
    /// The plural name in URLs (`services`).
    pub plural: String,
}

/// What the API says about a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// `Service`.
    pub kind: String,
    /// `v1`, `discovery.k8s.io/v1`.
    pub api_version: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

/// An object's namespace (empty for cluster-scoped kinds) and name; the order of lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// The namespace, or `""`.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// The type of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

/// One change, with the object before it (to reconstruct old states, and to tell a watch with
/// a selector that an object left it).
#[derive(Debug)]
pub struct Change {
    rv: u64,
    rtype: ResourceType,
    key: ObjKey,
    ty: ChangeType,
    /// The object after the change; for a deletion, its last state with the deletion's
    /// resource version.
    object: Arc<Value>,
    /// The object before the change (None for an addition).
    prev: Option<Arc<Value>>,
}

impl Change {
    /// The change's resource version.
    pub fn rv(&self) -> u64 {
        self.rv
    }
}

/// A message of the live feed.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A change.
    Change(Arc<Change>),
    /// Send a bookmark (to watches that allow them); every change up to `last_change` has been
    /// sent before this message.
    Bookmark {
        /// The resource version of the latest change.
        last_change: u64,
    },
    /// End every watch.
    Close,
}

/// An error answered as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// The `reason` (`NotFound`, `Expired`, `BadRequest`…).
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    /// 404 NotFound.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: message.into(),
        }
    }

    /// 410 Expired: the resource version is older than the history kept.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 410,
            reason: "Expired",
            message: message.into(),
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// Which objects of a collection a request is about.
#[derive(Debug, Clone)]
pub struct Query {
    /// The collection.
    pub rtype: ResourceType,
    /// Only this namespace (a namespaced URL).
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Query {
    fn matches(&self, object: &Value) -> bool {
        let namespace_ok = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns)
        });
        namespace_ok && self.labels.matches(object) && self.fields.matches(object)
    }

    /// The watch event this change is for a watch of this query, if any: an object that
    /// starts matching is ADDED, one that stops matching is DELETED (its previous state, with
    /// the change's resource version).
    pub fn event(&self, change: &Change) -> Option<String> {
        if change.rtype != self.rtype {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.prev.as_deref().is_some_and(|p| self.matches(p));
        match change.ty {
            ChangeType::Added if now => Some(event_line("ADDED", &change.object)),
            ChangeType::Deleted if now => Some(event_line("DELETED", &change.object)),
            ChangeType::Modified => match (before, now) {
                (true, true) => Some(event_line("MODIFIED", &change.object)),
                (false, true) => Some(event_line("ADDED", &change.object)),
                (true, false) => {
                    let mut last = change.prev.as_deref().cloned().unwrap_or(Value::Null);
                    set_resource_version(&mut last, change.rv);
                    Some(event_line("DELETED", &last))
                }
                (false, false) => None,
            },
            _ => None,
        }
    }
}

/// One line of a watch response.
pub fn event_line(ty: &str, object: &Value) -> String {
    let mut line = json!({ "type": ty, "object": object }).to_string();
    line.push('\n');
    line
}

fn set_resource_version(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// How a list picks its state (`resourceVersion`, `resourceVersionMatch`, `continue`).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `resourceVersion`: None when unset or empty.
    pub resource_version: Option<u64>,
    /// `resourceVersionMatch=Exact`.
    pub exact: bool,
    /// `limit` (0: no limit).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
}

/// How a watch starts.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `resourceVersion`: None when unset, empty or `0` (start with the current state as
    /// ADDED events).
    pub resource_version: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`: end the initial ADDED events with a bookmark annotated
    /// [`INITIAL_EVENTS_END`].
    pub send_initial_events: bool,
}

/// A watch, ready to stream: the lines to send first, then the live feed.
#[derive(Debug)]
pub struct WatchStart {
    /// Lines to send before any live event.
    pub backlog: VecDeque<String>,
    /// End the response after the backlog (a 410 error event).
    pub end_after_backlog: bool,
    /// The live feed, subscribed to under the same lock as the backlog was made: no change is
    /// missed or sent twice.
    pub feed: broadcast::Receiver<Msg>,
    /// The resource version the client knows after the backlog.
    pub position: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The latest resource version handed out.
    rv: u64,
    /// The resource version of the latest change.
    last_change: u64,
    /// Watches, exact lists and continue tokens from below this are expired.
    floor: u64,
    kinds: BTreeMap<ResourceType, KindInfo>,
    objects: BTreeMap<ResourceType, BTreeMap<ObjKey, Arc<Value>>>,
    history: Vec<Arc<Change>>,
    next_uid: u64,
    requests: Vec<String>,
}

/// The objects, their history and the live feed.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    feed: broadcast::Sender<Msg>,
    open_watches: AtomicUsize,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// Counts an open watch while alive.
#[derive(Debug)]
pub struct WatchGuard(Arc<Store>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Store {
    /// An empty store at resource version 1.
    pub fn new() -> Store {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Inner::default()
            }),
            feed,
            open_watches: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves (empty) lists of this collection from now on.
    pub fn register(&self, rtype: ResourceType, info: KindInfo) {
        self.lock().kinds.insert(rtype, info);
    }

    /// The kind served at `rtype`, if any.
    pub fn kind(&self, rtype: &ResourceType) -> Option<KindInfo> {
        self.lock().kinds.get(rtype).cloned()
    }

    /// Records a request URI.
    pub fn record(&self, uri: String) {
        self.lock().requests.push(uri);
    }

    /// The request URIs seen.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// The latest resource version.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Watches open now.
    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }

    /// Creates or replaces an object (JSON with `metadata.name`); returns its new resource
    /// version. An object equal to the stored one (ignoring `resourceVersion`) changes nothing.
    pub fn apply(&self, rtype: ResourceType, info: KindInfo, mut object: Value) -> u64 {
        let mut inner = self.lock();
        inner.kinds.insert(rtype.clone(), info.clone());
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("fake API server: a {} without metadata.name", info.kind))
            .to_owned();
        let Some(obj) = object.as_object_mut() else {
            panic!("fake API server: a {} that is not a JSON object", info.kind);
        };
        obj.insert("apiVersion".into(), Value::String(info.api_version.clone()));
        obj.insert("kind".into(), Value::String(info.kind.clone()));
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .unwrap_or_else(|| panic!("fake API server: metadata of {name} is not an object"));
        let namespace = if info.namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_owned();
            meta.insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        let key = ObjKey { namespace, name };
        let prev = inner
            .objects
            .get(&rtype)
            .and_then(|objects| objects.get(&key))
            .cloned();
        // Identity fields the server owns survive updates.
        let kept = |field: &str| {
            prev.as_ref()
                .and_then(|p| p.pointer(&format!("/metadata/{field}")))
                .cloned()
        };
        if let Some(uid) = kept("uid") {
            meta.insert("uid".into(), uid);
        } else if !meta.contains_key("uid") {
            inner.next_uid += 1;
            let uid = format!("00000000-0000-4000-8000-{:012}", inner.next_uid);
            meta.insert("uid".into(), Value::String(uid));
        }
        if let Some(created) = kept("creationTimestamp") {
            meta.insert("creationTimestamp".into(), created);
        } else if !meta.contains_key("creationTimestamp") {
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            meta.insert("creationTimestamp".into(), Value::String(now));
        }
        meta.remove("resourceVersion");
        if let Some(prev) = &prev {
            let mut unversioned = Value::clone(prev);
            if let Some(m) = unversioned
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
            {
                m.remove("resourceVersion");
            }
            if unversioned == object {
                return prev
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|rv| rv.parse().ok())
                    .unwrap_or(inner.rv);
            }
        }
        inner.rv += 1;
        let rv = inner.rv;
        set_resource_version(&mut object, rv);
        let object = Arc::new(object);
        inner
            .objects
            .entry(rtype.clone())
            .or_default()
            .insert(key.clone(), object.clone());
        let ty = if prev.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        inner.record_change(
            &self.feed,
            Change {
                rv,
                rtype,
                key,
                ty,
                object,
                prev,
            },
        );
        rv
    }

    /// Deletes an object; false when there was none.
    pub fn delete(&self, rtype: &ResourceType, namespace: &str, name: &str) -> bool {
        let mut inner = self.lock();
        let key = ObjKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let Some(prev) = inner
            .objects
            .get_mut(rtype)
            .and_then(|objects| objects.remove(&key))
        else {
            return false;
        };
        inner.rv += 1;
        let rv = inner.rv;
        let mut last = Value::clone(&prev);
        set_resource_version(&mut last, rv);
        inner.record_change(
            &self.feed,
            Change {
                rv,
                rtype: rtype.clone(),
                key,
                ty: ChangeType::Deleted,
                object: Arc::new(last),
                prev: Some(prev),
            },
        );
        true
    }

    /// Forgets the history: every resource version handed out so far becomes too old to watch
    /// from (410), and the next list returns a new one.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.rv += 1;
        inner.floor = inner.rv;
    }

    /// Sends a bookmark to every watch that allows them.
    pub fn bookmark(&self) {
        let inner = self.lock();
        let _ = self.feed.send(Msg::Bookmark {
            last_change: inner.last_change,
        });
    }

    /// Ends every open watch.
    pub fn close_watches(&self) {
        let _inner = self.lock();
        let _ = self.feed.send(Msg::Close);
    }

    /// One object.
    pub fn get(&self, rtype: &ResourceType, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let key = ObjKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.lock()
            .objects
            .get(rtype)
            .and_then(|objects| objects.get(&key))
            .cloned()
    }

    /// A list response (`…List` with `metadata.resourceVersion`, maybe `continue`).
    pub fn list(&self, query: &Query, options: &ListOptions) -> Result<Value, ApiError> {
        let inner = self.lock();
        let info = inner.kinds.get(&query.rtype).cloned().ok_or_else(|| {
            ApiError::not_found("the server could not find the requested resource")
        })?;
        let (at, after) = match &options.continue_token {
            Some(token) => {
                let (rv, key) = decode_continue(token).ok_or_else(|| {
                    ApiError::bad_request(format!("invalid continue token {token:?}"))
                })?;
                if rv < inner.floor {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some(key))
            }
            None => match (options.resource_version, options.exact) {
                (Some(rv), true) => (rv, None),
                // Unset, 0, or NotOlderThan: the current state (which is never older).
                _ => (inner.rv, None),
            },
        };
        let objects = inner.objects_at(&query.rtype, at)?;
        let matching: Vec<(&ObjKey, &Arc<Value>)> = objects
            .iter()
            .filter(|(key, _)| after.as_ref().is_none_or(|a| *key > a))
            .filter(|(_, object)| query.matches(object))
            .collect();
        let page_len = if options.limit > 0 {
            options.limit.min(matching.len())
        } else {
            matching.len()
        };
        let items: Vec<Value> = matching[..page_len]
            .iter()
            .map(|(_, object)| Value::clone(object))
            .collect();
        let remaining = matching.len() - page_len;
        let last_key = page_len
            .checked_sub(1)
            .and_then(|i| matching.get(i))
            .map(|(key, _)| (*key).clone());
        let mut metadata = Map::new();
        metadata.insert("resourceVersion".into(), Value::String(at.to_string()));
        if remaining > 0 {
            if let Some(key) = &last_key {
                metadata.insert("continue".into(), Value::String(encode_continue(at, key)));
                metadata.insert("remainingItemCount".into(), json!(remaining));
            }
        }
        Ok(json!({
            "apiVersion": info.api_version,
            "kind": format!("{}List", info.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Starts a watch. A resource version older than the history kept is not an error of the
    /// request: the watch answers with one ERROR event (410 Expired) and ends, as the API
    /// server does.
    pub fn watch(&self, query: &Query, options: &WatchOptions) -> Result<WatchStart, ApiError> {
        let inner = self.lock();
        let info = inner.kinds.get(&query.rtype).cloned().ok_or_else(|| {
            ApiError::not_found("the server could not find the requested resource")
        })?;
        let feed = self.feed.subscribe();
        let mut backlog = VecDeque::new();
        match options.resource_version {
            Some(n) if n < inner.floor => {
                let error =
                    ApiError::expired(format!("too old resource version: {n} ({})", inner.floor));
                backlog.push_back(event_line("ERROR", &error.status()));
                Ok(WatchStart {
                    backlog,
                    end_after_backlog: true,
                    feed,
                    position: n,
                })
            }
            Some(n) => {
                for change in inner.history.iter().filter(|c| c.rv > n) {
                    if let Some(line) = query.event(change) {
                        backlog.push_back(line);
                    }
                }
                Ok(WatchStart {
                    backlog,
                    end_after_backlog: false,
                    feed,
                    position: n.max(inner.last_change),
                })
            }
            None => {
                if let Some(objects) = inner.objects.get(&query.rtype) {
                    for object in objects.values().filter(|o| query.matches(o)) {
                        backlog.push_back(event_line("ADDED", object));
                    }
                }
                if options.send_initial_events && options.bookmarks {
                    backlog.push_back(bookmark_line(&info, inner.rv, true));
                }
                Ok(WatchStart {
                    backlog,
                    end_after_backlog: false,
                    feed,
                    position: inner.rv,
                })
            }
        }
    }

    /// Counts a watch as open until the guard is dropped.
    pub fn watch_guard(self: &Arc<Self>) -> WatchGuard {
        self.open_watches.fetch_add(1, Ordering::SeqCst);
        WatchGuard(Arc::clone(self))
    }
}

/// A BOOKMARK event line.
pub fn bookmark_line(info: &KindInfo, rv: u64, initial_events_end: bool) -> String {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
    }
    event_line(
        "BOOKMARK",
        &json!({
            "kind": info.kind,
            "apiVersion": info.api_version,
            "metadata": metadata,
        }),
    )
}

impl Inner {
    fn record_change(&mut self, feed: &broadcast::Sender<Msg>, change: Change) {
        self.last_change = change.rv;
        let change = Arc::new(change);
        self.history.push(change.clone());
        // No receiver is fine: nobody watches.
        let _ = feed.send(Msg::Change(change));
    }

    /// The objects of a collection as they were at resource version `rv`.
    fn objects_at(
        &self,
        rtype: &ResourceType,
        rv: u64,
    ) -> Result<BTreeMap<ObjKey, Arc<Value>>, ApiError> {
        if rv < self.floor {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                self.floor
            )));
        }
        if rv > self.rv {
            return Err(ApiError {
                code: 504,
                reason: "Timeout",
                message: format!("Too large resource version: {rv}, current: {}", self.rv),
            });
        }
        let mut objects = self.objects.get(rtype).cloned().unwrap_or_default();
        for change in self.history.iter().rev() {
            if change.rv <= rv {
                break;
            }
            if &change.rtype != rtype {
                continue;
            }
            match (&change.ty, &change.prev) {
                (ChangeType::Added, _) => {
                    objects.remove(&change.key);
                }
                (_, Some(prev)) => {
                    objects.insert(change.key.clone(), prev.clone());
                }
                (_, None) => {}
            }
        }
        Ok(objects)
    }
}

/// `continue` tokens: hex of `rv/namespace/name` (opaque to clients, as the real ones).
fn encode_continue(rv: u64, key: &ObjKey) -> String {
    format!("{rv}/{}/{}", key.namespace, key.name)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(u64, ObjKey)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '/');
    let rv = parts.next()?.parse().ok()?;
    let namespace = parts.next()?.to_owned();
    let name = parts.next()?.to_owned();
    Some((rv, ObjKey { namespace, name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> (ResourceType, KindInfo) {
        (
            ResourceType {
                group: String::new(),
                version: "v1".into(),
                plural: "services".into(),
            },
            KindInfo {
                kind: "Service".into(),
                api_version: "v1".into(),
                namespaced: true,
            },
        )
    }

    fn svc(name: &str, app: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}})
    }

    fn query(labels: &str) -> Query {
        Query {
            rtype: services().0,
            namespace: None,
            labels: LabelSelector::parse(labels).unwrap_or_default(),
            fields: FieldSelector::default(),
        }
    }

    fn names(list: &Value) -> Vec<String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.pointer("/metadata/name")?.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn exact_lists_reconstruct_old_states_until_compacted() {
        let store = Store::new();
        let (rtype, info) = services();
        let rv_a = store.apply(rtype.clone(), info.clone(), svc("a", "x"));
        let rv_b = store.apply(rtype.clone(), info.clone(), svc("b", "x"));
        assert!(store.delete(&rtype, "default", "a"));
        assert!(!store.delete(&rtype, "default", "a"), "already gone");
        let exact = |rv| ListOptions {
            resource_version: Some(rv),
            exact: true,
            ..ListOptions::default()
        };
        let q = query("");
        let at = |rv| {
            names(
                &store
                    .list(&q, &exact(rv))
                    .unwrap_or_else(|e| panic!("{e:?}")),
            )
        };
        assert_eq!(at(rv_a), ["a"]);
        assert_eq!(at(rv_b), ["a", "b"]);
        assert_eq!(at(store.resource_version()), ["b"]);
        // An unchanged object is no change.
        let rv = store.resource_version();
        store.apply(rtype.clone(), info, svc("b", "x"));
        assert_eq!(store.resource_version(), rv);
        store.compact();
        let err = store.list(&q, &exact(rv_b)).expect_err("compacted");
        assert_eq!((err.code, err.reason), (410, "Expired"));
    }

    #[test]
    fn pages_are_consistent_snapshots() {
        let store = Store::new();
        let (rtype, info) = services();
        for name in ["a", "b", "c"] {
            store.apply(rtype.clone(), info.clone(), svc(name, "x"));
        }
        let q = query("app=x");
        let page = |token: Option<String>| {
            let options = ListOptions {
                limit: 2,
                continue_token: token,
                ..ListOptions::default()
            };
            store.list(&q, &options).unwrap_or_else(|e| panic!("{e:?}"))
        };
        let first = page(None);
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first["metadata"]["remainingItemCount"], json!(1));
        let token = first["metadata"]["continue"].as_str().map(str::to_owned);
        // A change between pages does not show in the second page.
        store.apply(rtype.clone(), info, svc("d", "x"));
        let second = page(token.clone());
        assert_eq!(names(&second), ["c"]);
        assert!(second["metadata"].get("continue").is_none());
        store.compact();
        let err = store
            .list(
                &q,
                &ListOptions {
                    limit: 2,
                    continue_token: token,
                    ..ListOptions::default()
                },
            )
            .expect_err("compacted");
        assert_eq!(err.code, 410);
    }

    #[test]
    fn watch_backlog_follows_selectors() {
        let store = Store::new();
        let (rtype, info) = services();
        let start = store.resource_version();
        store.apply(rtype.clone(), info.clone(), svc("a", "x"));
        store.apply(rtype.clone(), info.clone(), svc("a", "y"));
        store.apply(rtype.clone(), info.clone(), svc("a", "x"));
        store.delete(&rtype, "default", "a");
        let options = WatchOptions {
            resource_version: Some(start),
            ..WatchOptions::default()
        };
        let types = |labels: &str| -> Vec<String> {
            let w = store
                .watch(&query(labels), &options)
                .unwrap_or_else(|e| panic!("{e:?}"));
            w.backlog
                .iter()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap_or_default();
                    v["type"].as_str().unwrap_or_default().to_owned()
                })
                .collect()
        };
        assert_eq!(types(""), ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]);
        assert_eq!(types("app=x"), ["ADDED", "DELETED", "ADDED", "DELETED"]);
        assert_eq!(types("app=y"), ["ADDED", "DELETED"]);
        store.compact();
        let w = store
            .watch(&query(""), &options)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(w.end_after_backlog);
        let line: Value = serde_json::from_str(&w.backlog[0]).unwrap_or_default();
        assert_eq!(line["type"], "ERROR");
        assert_eq!(line["object"]["code"], 410);
    }

    #[test]
    fn continue_tokens_round_trip() {
        let key = ObjKey {
            namespace: "kube-system".into(),
            name: "a.b-c".into(),
        };
        assert_eq!(decode_continue(&encode_continue(42, &key)), Some((42, key)));
        assert_eq!(decode_continue("zz"), None);
    }
}
