//! Loading Kubernetes manifests (YAML or JSON) from files, for `kube-nftproxy render` and
//! `run --manifests`.
//!
//! The loader reads what `kubectl get -o yaml` (or `-o json`) prints, or a
//! directory of such files, and keeps the three kinds the agent cares about:
//! `v1` Service, `discovery.k8s.io/v1` EndpointSlice and `v1` Node. Every other
//! kind is skipped and counted.
//!
//! Loading is forgiving: a document that cannot be understood becomes a
//! [`ManifestProblem`] and loading goes on with the next one, so that one bad
//! object does not hide the others. Only a path that cannot be read at all is
//! a hard [`ManifestError`].
//!
//! [`load_path`] collects everything into [`Manifests`]; [`load_path_into`]
//! hands each object to a [`ManifestSink`] as soon as it is parsed instead, so
//! that a caller that only files the objects away (such as [`ViewSink`], which
//! builds a [`ClusterView`]) never holds all the parsed objects at once.
//!
//! Rules, in the spirit of `kubectl apply -f`:
//!
//! * A file may hold several YAML documents separated by `---`; empty
//!   documents are skipped. A file whose text starts with `{` is read as a
//!   stream of JSON objects.
//! * A `kind: List` document, or any `…List` kind with an `items` array
//!   (`ServiceList`, `EndpointSliceList`, …), contributes its items. Items of a
//!   typed list that lack `apiVersion`/`kind` (as the raw API returns them)
//!   take them from the list.
//! * YAML anchors, aliases and `<<` merge keys are resolved.
//! * A Service or EndpointSlice without `metadata.namespace` is put in the
//!   `default` namespace.
//! * A document whose kind is Service, EndpointSlice or Node in the right API
//!   group but with another version (say `discovery.k8s.io/v1beta1`) is a
//!   problem rather than silently skipped; the same kind name in another group
//!   (say Knative's `serving.knative.dev/v1` Service) is an unrelated kind and
//!   is skipped.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, Node, NodeAddress, NodeSpec, NodeStatus, Service, ServicePort,
    ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use model::ClusterView;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// File name extensions (compared without regard to case) that [`load_path`]
/// picks up from a directory.
pub const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The namespace given to a namespaced object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The objects found in one or more manifest files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifests {
    /// `v1` Services, in the order they were found.
    pub services: Vec<Service>,
    /// `discovery.k8s.io/v1` EndpointSlices, in the order they were found.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// `v1` Nodes, in the order they were found.
    pub nodes: Vec<Node>,
    /// How many objects of other kinds (Deployment, Pod, ConfigMap, …) were skipped.
    pub ignored: usize,
    /// Documents that could not be loaded, in the order they were found.
    pub problems: Vec<ManifestProblem>,
}

impl Manifests {
    /// Appends everything in `other` to `self`, keeping the order (`self` first).
    pub fn merge(&mut self, other: Manifests) {
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
        self.nodes.extend(other.nodes);
        self.ignored += other.ignored;
        self.problems.extend(other.problems);
    }
}

/// Receives what the loader finds, one object (or problem) at a time, in the
/// order of the input: files in name order, documents in file order, items in
/// list order.
pub trait ManifestSink {
    /// A `v1` Service (put in the `default` namespace when it names none).
    fn service(&mut self, service: Service);
    /// A `discovery.k8s.io/v1` EndpointSlice (put in the `default` namespace
    /// when it names none).
    fn endpoint_slice(&mut self, slice: EndpointSlice);
    /// A `v1` Node.
    fn node(&mut self, node: Node);
    /// An object of another kind was skipped. Does nothing unless overridden.
    fn ignored(&mut self) {}
    /// A document (or a whole file) could not be loaded.
    fn problem(&mut self, problem: ManifestProblem);
}

/// Collects everything, in the order it was found.
impl ManifestSink for Manifests {
    fn service(&mut self, service: Service) {
        self.services.push(service);
    }

    fn endpoint_slice(&mut self, slice: EndpointSlice) {
        self.endpoint_slices.push(slice);
    }

    fn node(&mut self, node: Node) {
        self.nodes.push(node);
    }

    fn ignored(&mut self) {
        self.ignored += 1;
    }

    fn problem(&mut self, problem: ManifestProblem) {
        self.problems.push(problem);
    }
}

/// A [`ManifestSink`] that files each object into a [`ClusterView`] as soon as
/// it is parsed, so that the Kubernetes objects never all exist at once.
///
/// The view is the one [`ClusterView::from_objects`] makes of [`load_path`]'s
/// lists for the same node name: a Service or EndpointSlice replaces an
/// earlier one of the same namespace and name (Services and slices are filed
/// apart, so which of a Service and its slices comes first does not matter),
/// and the *first* Node named `node_name` is this node's (later ones of that
/// name, and other Nodes, are dropped). Each problem is handed to
/// `on_problem` as it is found.
pub struct ViewSink<'a, F> {
    view: ClusterView,
    node_name: &'a str,
    on_problem: F,
}

impl<'a, F: FnMut(ManifestProblem)> ViewSink<'a, F> {
    /// An empty view for the node `node_name`; `on_problem` gets every problem.
    pub fn new(node_name: &'a str, on_problem: F) -> Self {
        ViewSink {
            view: ClusterView::new(),
            node_name,
            on_problem,
        }
    }

    /// The view of everything received so far.
    pub fn into_view(self) -> ClusterView {
        self.view
    }
}

impl<F: FnMut(ManifestProblem)> ManifestSink for ViewSink<'_, F> {
    fn service(&mut self, service: Service) {
        self.view.upsert_service(service);
    }

    fn endpoint_slice(&mut self, slice: EndpointSlice) {
        self.view.upsert_slice(slice);
    }

    fn node(&mut self, node: Node) {
        if self.view.node().is_none() && node.metadata.name.as_deref() == Some(self.node_name) {
            self.view.set_node(Some(node));
        }
    }

    fn problem(&mut self, problem: ManifestProblem) {
        (self.on_problem)(problem);
    }
}

/// Hands `out` a problem found at `at`.
fn report(
    out: &mut dyn ManifestSink,
    at: &Place<'_>,
    kind: Option<&str>,
    object: Option<String>,
    message: String,
) {
    out.problem(ManifestProblem {
        origin: at.origin.to_owned(),
        document: at.document,
        item: at.item,
        kind: kind.map(str::to_owned),
        object,
        message,
    });
}

/// A document (or a whole file) that could not be loaded.
///
/// Displays as, for example,
/// `examples/bad.yaml document 3 (Service shop/broken): spec.ports[0].port: invalid type: string "eighty", expected i32`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestProblem {
    /// Where the text came from: the file's path, or the origin given to [`load_str`].
    pub origin: String,
    /// The 1-based position of the document in the file (counting empty
    /// documents too); 0 when the problem concerns the whole file.
    pub document: usize,
    /// The 1-based position of the object in a list document's `items`.
    pub item: Option<usize>,
    /// The document's `kind`, when it has one.
    pub kind: Option<String>,
    /// The object's `namespace/name` (only `name` for a Node or an object that
    /// names no namespace), when readable.
    pub object: Option<String>,
    /// What is wrong: serde's or the YAML parser's message, led by the path of
    /// the offending field when it could be found.
    pub message: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if self.document > 0 {
            write!(f, " document {}", self.document)?;
        }
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        match (&self.kind, &self.object) {
            (Some(kind), Some(object)) => write!(f, " ({kind} {object})")?,
            (Some(kind), None) => write!(f, " ({kind})")?,
            (None, Some(object)) => write!(f, " ({object})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestProblem {}

/// A path that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file (or the directory itself) could not be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The path that could not be read.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The directory's entries could not be listed.
    #[error("cannot list directory {}: {error}", path.display())]
    ListDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

/// Loads the manifests in `path`: a file, or a directory whose `*.yaml`,
/// `*.yml` and `*.json` files (directly in it, not in subdirectories) are read
/// in the order of their file names.
///
/// Documents that cannot be understood, including files that are not valid
/// YAML or JSON, end up in [`Manifests::problems`]; only a path that cannot be
/// read is an error.
pub fn load_path(path: &Path) -> Result<Manifests, ManifestError> {
    let mut manifests = Manifests::default();
    load_path_into(path, &mut manifests)?;
    Ok(manifests)
}

/// Loads the manifests in `path` as [`load_path`] does, handing each object
/// and problem to `sink` as soon as it is found instead of collecting them.
///
/// On an error (a path that cannot be read), `sink` has already received what
/// the files before it held.
pub fn load_path_into(path: &Path, sink: &mut dyn ManifestSink) -> Result<(), ManifestError> {
    let metadata = fs::metadata(path).map_err(|error| ManifestError::Read {
        path: path.to_owned(),
        error,
    })?;
    if !metadata.is_dir() {
        return load_file(path, sink);
    }

    let list_error = |error| ManifestError::ListDirectory {
        path: path.to_owned(),
        error,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let file = entry.path();
        if !has_manifest_extension(&file) {
            continue;
        }
        // Follows symbolic links, as reading the file will.
        let is_dir = fs::metadata(&file)
            .map_err(|error| ManifestError::Read {
                path: file.clone(),
                error,
            })?
            .is_dir();
        if !is_dir {
            files.push((entry.file_name(), file));
        }
    }
    files.sort();

    for (_, file) in files {
        load_file(&file, sink)?;
    }
    Ok(())
}

/// Loads the manifests in `text`, one file's contents; `origin` (usually the
/// file's name) is used in problem messages.
///
/// Text whose first non-blank character is `{` is read as a stream of JSON
/// objects, anything else as a stream of YAML documents.
pub fn load_str(text: &str, origin: &str) -> Manifests {
    let mut manifests = Manifests::default();
    load_str_into(text, origin, &mut manifests);
    manifests
}

/// Loads the manifests in `text` as [`load_str`] does, handing each object and
/// problem to `sink` as soon as it is found.
pub fn load_str_into(text: &str, origin: &str, sink: &mut dyn ManifestSink) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        load_json(text, origin, sink);
    } else {
        load_yaml(text, origin, sink);
    }
}

fn has_manifest_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            MANIFEST_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

fn load_file(path: &Path, sink: &mut dyn ManifestSink) -> Result<(), ManifestError> {
    let bytes = fs::read(path).map_err(|error| ManifestError::Read {
        path: path.to_owned(),
        error,
    })?;
    let origin = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => load_str_into(&text, &origin, sink),
        Err(error) => {
            let at = Place {
                origin: &origin,
                document: 0,
                item: None,
            };
            report(sink, &at, None, None, format!("not UTF-8 text: {error}"));
        }
    }
    Ok(())
}

/// Where a value was found, for problem messages.
struct Place<'a> {
    origin: &'a str,
    document: usize,
    item: Option<usize>,
}

fn load_yaml(text: &str, origin: &str, out: &mut dyn ManifestSink) {
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let at = Place {
            origin,
            document: index + 1,
            item: None,
        };
        let value = serde_norway::Value::deserialize(document)
            .map_err(|error| format!("invalid YAML: {error}"))
            .and_then(|mut value| {
                value
                    .apply_merge()
                    .map_err(|error| format!("invalid YAML merge key: {error}"))?;
                yaml_to_json(value)
            });
        match value {
            Ok(value) => add_document(value, &at, None, out),
            Err(message) => {
                // The parser cannot be trusted to go on after an error (it may
                // report the same error for ever): skip the rest of the file.
                report(
                    out,
                    &at,
                    None,
                    None,
                    format!("{message}; rest of file skipped"),
                );
                return;
            }
        }
    }
}

fn load_json(text: &str, origin: &str, out: &mut dyn ManifestSink) {
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (index, value) in stream.enumerate() {
        let at = Place {
            origin,
            document: index + 1,
            item: None,
        };
        match value {
            Ok(value) => add_document(value, &at, None, out),
            Err(error) => {
                let message = format!("invalid JSON: {error}; rest of file skipped");
                report(out, &at, None, None, message);
                return;
            }
        }
    }
}

/// Converts a YAML value to a JSON one as `kubectl` does: scalar mapping keys
/// become strings and tags are dropped.
fn yaml_to_json(value: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("unsupported number {n}"))?
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Bool(b) => b.to_string(),
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Null => "null".to_owned(),
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                map.insert(key, yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// The kinds the loader keeps.
#[derive(Clone, Copy)]
enum Known {
    Service,
    EndpointSlice,
    Node,
}

impl Known {
    const ALL: [Known; 3] = [Known::Service, Known::EndpointSlice, Known::Node];

    fn kind(self) -> &'static str {
        match self {
            Known::Service => "Service",
            Known::EndpointSlice => "EndpointSlice",
            Known::Node => "Node",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Known::Service | Known::Node => "v1",
            Known::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    fn namespaced(self) -> bool {
        !matches!(self, Known::Node)
    }
}

/// The API group of an `apiVersion`: `""` for the core group (`v1`).
fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `namespace/name`, `name`, or nothing, from an object's raw metadata.
fn object_name(map: &Map<String, Value>, default_namespace: Option<&str>) -> Option<String> {
    let metadata = map.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .or(default_namespace);
    Some(match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    })
}

/// `(apiVersion, kind)` that items of a list take when they name none.
type Inherited<'a> = Option<(&'a str, &'a str)>;

fn add_document(
    value: Value,
    at: &Place<'_>,
    inherited: Inherited<'_>,
    out: &mut dyn ManifestSink,
) {
    let mut map = match value {
        // An empty document (or a comment-only one).
        Value::Null if at.item.is_none() => return,
        Value::Object(map) => map,
        other => {
            let message = format!(
                "expected a Kubernetes object (a mapping), found {}",
                describe(&other)
            );
            report(out, at, None, None, message);
            return;
        }
    };

    if let Some((api_version, kind)) = inherited {
        if !map.contains_key("kind") && !map.contains_key("apiVersion") {
            map.insert("apiVersion".to_owned(), Value::from(api_version));
            map.insert("kind".to_owned(), Value::from(kind));
        }
    }

    let kind = match map.get("kind") {
        Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
        _ => {
            let object = object_name(&map, None);
            let message = "not a Kubernetes object: no `kind` string".to_owned();
            report(out, at, None, object, message);
            return;
        }
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(api_version)) if !api_version.is_empty() => api_version.clone(),
        _ => {
            let object = object_name(&map, None);
            let message = "not a Kubernetes object: no `apiVersion` string".to_owned();
            report(out, at, Some(&kind), object, message);
            return;
        }
    };

    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        add_list(map, &api_version, &kind, at, out);
        return;
    }

    let Some(known) = Known::ALL.into_iter().find(|known| known.kind() == kind) else {
        tracing::trace!(origin = at.origin, document = at.document, %kind, "skipping object");
        out.ignored();
        return;
    };
    if api_version != known.api_version() {
        if api_group(&api_version) == api_group(known.api_version()) {
            let object = object_name(&map, None);
            let message = format!(
                "unsupported apiVersion {api_version} for {kind} (expected {})",
                known.api_version()
            );
            report(out, at, Some(&kind), object, message);
        } else {
            // The same kind name in another API group: an unrelated kind.
            tracing::trace!(origin = at.origin, document = at.document, %kind, %api_version, "skipping object");
            out.ignored();
        }
        return;
    }

    let value = Value::Object(map);
    let result = match known {
        Known::Service => parse::<Service>(&value).map(|mut service| {
            default_namespace(&mut service.metadata);
            out.service(service);
        }),
        Known::EndpointSlice => parse::<EndpointSlice>(&value).map(|mut slice| {
            default_namespace(&mut slice.metadata);
            out.endpoint_slice(slice);
        }),
        Known::Node => parse::<Node>(&value).map(|node| out.node(node)),
    };
    if let Err(whole) = result {
        let message = locate(known, &value).unwrap_or(whole);
        let object = match &value {
            Value::Object(map) => object_name(map, known.namespaced().then_some(DEFAULT_NAMESPACE)),
            _ => None,
        };
        report(out, at, Some(&kind), object, message);
    }
}

fn add_list(
    mut map: Map<String, Value>,
    api_version: &str,
    kind: &str,
    at: &Place<'_>,
    out: &mut dyn ManifestSink,
) {
    let items = match map.remove("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            let message = format!("`items` should be a list, found {}", describe(&other));
            report(out, at, Some(kind), None, message);
            return;
        }
    };
    // `ServiceList` items may omit their kind; a plain `List` says nothing
    // about its items.
    let item_kind = kind
        .strip_suffix("List")
        .filter(|item_kind| !item_kind.is_empty());
    for (index, item) in items.into_iter().enumerate() {
        let item_at = Place {
            origin: at.origin,
            document: at.document,
            item: Some(index + 1),
        };
        let inherited = item_kind.map(|item_kind| (api_version, item_kind));
        add_document(item, &item_at, inherited, out);
    }
}

fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|error| error.to_string())
}

fn default_namespace(metadata: &mut ObjectMeta) {
    if metadata.namespace.as_deref().is_none_or(str::is_empty) {
        metadata.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
}

/// Finds which part of an object that failed to deserialize is at fault, and
/// returns serde's message for it led by the field's path, such as
/// `spec.ports[0].port: invalid type: string "eighty", expected i32`.
fn locate(known: Known, object: &Value) -> Option<String> {
    type Check = fn(&str, &Value) -> Option<String>;
    // Most specific first; `[]` marks a list whose items are checked one by one.
    let candidates: &[(&str, Check)] = match known {
        Known::Service => &[
            ("spec.ports[]", pinpoint::<ServicePort>),
            (
                "status.loadBalancer.ingress[]",
                pinpoint::<LoadBalancerIngress>,
            ),
            ("metadata", pinpoint::<ObjectMeta>),
            ("spec", pinpoint::<ServiceSpec>),
            ("status", pinpoint::<ServiceStatus>),
        ],
        Known::EndpointSlice => &[
            ("endpoints[]", pinpoint::<Endpoint>),
            ("ports[]", pinpoint::<EndpointPort>),
            ("metadata", pinpoint::<ObjectMeta>),
        ],
        Known::Node => &[
            ("status.addresses[]", pinpoint::<NodeAddress>),
            ("metadata", pinpoint::<ObjectMeta>),
            ("spec", pinpoint::<NodeSpec>),
            ("status", pinpoint::<NodeStatus>),
        ],
    };
    candidates.iter().find_map(|&(path, check)| {
        if let Some(list) = path.strip_suffix("[]") {
            match pointer(object, list)? {
                Value::Array(values) => values
                    .iter()
                    .enumerate()
                    .find_map(|(index, value)| check(&format!("{list}[{index}]"), value)),
                _ => None,
            }
        } else {
            check(path, pointer(object, path)?)
        }
    })
}

/// Looks up a dotted path of object fields.
fn pointer<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |value, key| value.get(key))
}

/// If `value` is not a valid `T`, says why, naming the field at fault when
/// `value` is a mapping and one field alone is enough to fail (every field of
/// the Kubernetes types may be left out when deserializing).
fn pinpoint<T: DeserializeOwned>(path: &str, value: &Value) -> Option<String> {
    let whole = parse::<T>(value).err()?;
    if let Value::Object(map) = value {
        for (key, field) in map {
            let alone = Value::Object(Map::from_iter([(key.clone(), field.clone())]));
            if let Err(error) = parse::<T>(&alone) {
                return Some(format!("{path}.{key}: {error}"));
            }
        }
    }
    Some(format!("{path}: {whole}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(manifests: &Manifests) -> Vec<String> {
        let mut names = Vec::new();
        for service in &manifests.services {
            names.push(format!(
                "Service {}/{}",
                service.metadata.namespace.as_deref().unwrap_or("-"),
                service.metadata.name.as_deref().unwrap_or("-")
            ));
        }
        for slice in &manifests.endpoint_slices {
            names.push(format!(
                "EndpointSlice {}/{}",
                slice.metadata.namespace.as_deref().unwrap_or("-"),
                slice.metadata.name.as_deref().unwrap_or("-")
            ));
        }
        for node in &manifests.nodes {
            names.push(format!(
                "Node {}",
                node.metadata.name.as_deref().unwrap_or("-")
            ));
        }
        names
    }

    const SERVICE_AND_SLICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: ClusterIP
  clusterIP: 10.96.0.20
  clusterIPs: [10.96.0.20]
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
---
# An empty document between two objects.
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: ["10.244.1.5"]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  creationTimestamp: "2025-01-02T03:04:05Z"
spec:
  podCIDRs: [10.244.1.0/24]
status:
  addresses:
  - type: InternalIP
    address: 10.0.0.11
"#;

    impl Manifests {
        fn object_count(&self) -> usize {
            self.services.len() + self.endpoint_slices.len() + self.nodes.len()
        }
    }

    #[test]
    fn loads_a_multi_document_file() {
        let manifests = load_str(SERVICE_AND_SLICE, "cluster.yaml");
        assert_eq!(manifests.problems, []);
        assert_eq!(manifests.ignored, 0);
        assert_eq!(
            names_of(&manifests),
            [
                "Service shop/web",
                "EndpointSlice shop/web-abcde",
                "Node node-a"
            ]
        );
        let service = &manifests.services[0];
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.20"));
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(port.port, 80);
        assert_eq!(
            port.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
        );
        let slice = &manifests.endpoint_slices[0];
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.endpoints[0].addresses, ["10.244.1.5"]);
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("node-a"));
        let conditions = slice.endpoints[0].conditions.as_ref().expect("conditions");
        assert_eq!(conditions.ready, Some(true));
        assert_eq!(conditions.terminating, Some(false));
        assert!(manifests.nodes[0].metadata.creation_timestamp.is_some());
        assert_eq!(manifests.object_count(), 3);
    }

    #[test]
    fn empty_and_comment_only_text_loads_nothing() {
        for text in [
            "",
            "\n",
            "# nothing here\n",
            "---\n---\n",
            "---\n# c\n...\n",
        ] {
            let manifests = load_str(text, "empty.yaml");
            assert_eq!(manifests, Manifests::default(), "{text:?}");
        }
    }

    #[test]
    fn list_documents_contribute_their_items() {
        let text = r#"
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: x}
  spec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a, namespace: x}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: a-1, namespace: x}
  addressType: IPv4
  endpoints: []
---
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: b, namespace: y}
  spec: {clusterIP: 10.96.0.31}
- metadata: {name: c, namespace: y}
  spec: {ports: [{port: "eighty"}]}
"#;
        let manifests = load_str(text, "list.yaml");
        assert_eq!(
            names_of(&manifests),
            ["Service x/a", "Service y/b", "EndpointSlice x/a-1"]
        );
        assert_eq!(manifests.ignored, 1);
        assert_eq!(manifests.problems.len(), 1);
        assert_eq!(
            manifests.problems[0].to_string(),
            "list.yaml document 2 item 2 (Service y/c): spec.ports[0].port: \
             invalid type: string \"eighty\", expected i32"
        );
    }

    #[test]
    fn loads_json_including_a_stream_of_objects() {
        let text = r#"{
  "apiVersion": "v1",
  "kind": "Service",
  "metadata": {"name": "api", "namespace": "shop"},
  "spec": {"clusterIP": "10.96.0.40", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
}
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}},
  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
]}
"#;
        let manifests = load_str(text, "cluster.json");
        assert_eq!(manifests.problems, []);
        assert_eq!(names_of(&manifests), ["Service shop/api", "Node node-b"]);
        assert_eq!(manifests.ignored, 1);
        let port = &manifests.services[0]
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.as_ref())
            .expect("ports")[0];
        assert_eq!(
            port.target_port,
            Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                    "http".to_owned()
                )
            )
        );

        let broken = load_str("{\"apiVersion\": \"v1\", \"kind\": ", "broken.json");
        assert_eq!(broken.object_count(), 0);
        assert_eq!(broken.problems.len(), 1);
        let message = broken.problems[0].to_string();
        assert!(
            message.starts_with("broken.json document 1: invalid JSON: EOF while parsing"),
            "{message}"
        );
    }

    #[test]
    fn a_broken_document_is_a_problem_and_the_others_still_load() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: good, namespace: shop}
spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: good-1, namespace: shop, labels: {kubernetes.io/service-name: good}}
addressType: IPv4
endpoints:
- addresses: [10.244.1.9]
  conditions: {ready: "sure"}
---
apiVersion: v1
kind: Service
metadata:
  name: broken
  namespace: shop
spec:
  clusterIP: 10.96.0.51
  ports:
  - name: http
    port: "eighty"
---
apiVersion: v1
kind: Service
metadata: {name: no-namespace}
spec: {ports: [{port: 81}]}
---
apiVersion: v1
kind: Service
metadata: {name: bad-metadata, labels: [a, b]}
---
apiVersion: v1
kind: Node
metadata: {name: node-x}
status: {addresses: [{type: InternalIP, address: 10.0.0.99}, {type: Hostname, address: 7}]}
"#;
        let manifests = load_str(text, "examples/bad.yaml");
        assert_eq!(
            names_of(&manifests),
            ["Service shop/good", "Service default/no-namespace"]
        );
        let problems: Vec<String> = manifests.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "examples/bad.yaml document 2 (EndpointSlice shop/good-1): \
                 endpoints[0].conditions: invalid type: string \"sure\", expected a boolean",
                "examples/bad.yaml document 3 (Service shop/broken): \
                 spec.ports[0].port: invalid type: string \"eighty\", expected i32",
                "examples/bad.yaml document 5 (Service default/bad-metadata): \
                 metadata.labels: invalid type: sequence, expected a map",
                "examples/bad.yaml document 6 (Node node-x): \
                 status.addresses[1].address: invalid type: integer `7`, expected a string",
            ]
        );
        let problem = &manifests.problems[1];
        assert_eq!(problem.document, 3);
        assert_eq!(problem.item, None);
        assert_eq!(problem.kind.as_deref(), Some("Service"));
        assert_eq!(problem.object.as_deref(), Some("shop/broken"));
    }

    #[test]
    fn a_yaml_syntax_error_is_a_problem_for_the_file() {
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n---\n\
                    apiVersion: v1\nkind: Node\nmetadata: {name: n3}\n";
        let manifests = load_str(text, "syntax.yaml");
        assert_eq!(names_of(&manifests), ["Node n1"]);
        assert_eq!(manifests.problems.len(), 1);
        let problem = &manifests.problems[0];
        assert_eq!(problem.document, 2);
        assert_eq!(problem.kind, None);
        let message = problem.to_string();
        assert!(
            message.starts_with("syntax.yaml document 2: invalid YAML: "),
            "{message}"
        );
        assert!(message.contains("line "), "{message}");
        assert!(message.ends_with("; rest of file skipped"), "{message}");

        // Tabs used for indentation are a classic.
        let manifests = load_str(
            "apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n",
            "tab.yaml",
        );
        assert_eq!(manifests.object_count(), 0);
        assert_eq!(manifests.problems.len(), 1);

        // Duplicate keys are refused, as kubectl does.
        let manifests = load_str("apiVersion: v1\nkind: Node\nkind: Node\n", "dup.yaml");
        assert_eq!(manifests.object_count(), 0);
        assert_eq!(manifests.problems.len(), 1);
    }

    #[test]
    fn other_kinds_are_ignored_and_counted() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {replicas: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: knative, namespace: shop}
spec: {template: {}}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: shop}
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: old, namespace: shop}
addressType: IPv4
endpoints: []
---
- just
- a list
---
metadata: {name: no-kind}
---
kind: Node
metadata: {name: no-api-version}
"#;
        let manifests = load_str(text, "mixed.yaml");
        assert_eq!(manifests.object_count(), 0);
        assert_eq!(manifests.ignored, 4);
        let problems: Vec<String> = manifests.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "mixed.yaml document 5 (EndpointSlice shop/old): unsupported apiVersion \
                 discovery.k8s.io/v1beta1 for EndpointSlice (expected discovery.k8s.io/v1)",
                "mixed.yaml document 6: expected a Kubernetes object (a mapping), found a list",
                "mixed.yaml document 7 (no-kind): not a Kubernetes object: no `kind` string",
                "mixed.yaml document 8 (Node no-api-version): not a Kubernetes object: \
                 no `apiVersion` string",
            ]
        );
    }

    #[test]
    fn yaml_anchors_and_merge_keys_are_resolved() {
        let text = r#"
apiVersion: v1
kind: List
items:
- &base
  apiVersion: v1
  kind: Service
  metadata: {name: one, namespace: x}
  spec: &spec {clusterIP: 10.96.0.60, ports: [{port: 80}]}
- <<: *base
  metadata: {name: two, namespace: x}
  spec:
    <<: *spec
    clusterIP: 10.96.0.61
"#;
        let manifests = load_str(text, "anchors.yaml");
        assert_eq!(manifests.problems, []);
        assert_eq!(names_of(&manifests), ["Service x/one", "Service x/two"]);
        let ips: Vec<_> = manifests
            .services
            .iter()
            .map(|service| {
                service
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.cluster_ip.clone())
            })
            .collect();
        assert_eq!(
            ips,
            [Some("10.96.0.60".to_owned()), Some("10.96.0.61".to_owned())]
        );
        assert_eq!(
            manifests.services[1]
                .spec
                .as_ref()
                .and_then(|spec| spec.ports.as_ref())
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn the_shipped_examples_load() {
        let cluster = load_str(
            include_str!("../../../examples/cluster.yaml"),
            "cluster.yaml",
        );
        assert_eq!(cluster.problems, []);
        assert_eq!(cluster.ignored, 0);
        assert_eq!(
            (
                cluster.services.len(),
                cluster.endpoint_slices.len(),
                cluster.nodes.len()
            ),
            (12, 13, 2)
        );

        let bad = load_str(
            include_str!("../../../examples/bad/broken.yaml"),
            "broken.yaml",
        );
        let problems: Vec<String> = bad.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "broken.yaml document 8 (Service bad/unparseable): spec.ports[0].port: \
              invalid type: string \"eighty\", expected i32"
            ]
        );
        assert!(names_of(&bad).contains(&"Service bad/fine".to_owned()));
        assert!(names_of(&bad).contains(&"EndpointSlice bad/fine-j7k8l".to_owned()));
    }

    /// A directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::time::{SystemTime, UNIX_EPOCH};
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or_default();
            let path = std::env::temp_dir().join(format!(
                "kube-nftproxy-manifests-{tag}-{}-{nanos}",
                std::process::id()
            ));
            fs::create_dir_all(&path).expect("create temporary directory");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn node(name: &str) -> String {
        format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n")
    }

    #[test]
    fn a_directory_loads_its_manifest_files_in_name_order() {
        let dir = TempDir::new("dir");
        let write = |name: &str, text: &str| {
            fs::write(dir.0.join(name), text).expect("write test file");
        };
        write("b.yaml", &format!("{}---\n{}", node("b1"), node("b2")));
        write("a.YML", &node("a"));
        write(
            "c.json",
            r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "c"}}"#,
        );
        write("d.yaml", "kind: [broken\n");
        write("notes.txt", &node("not-loaded"));
        fs::create_dir(dir.0.join("sub.yaml")).expect("create subdirectory");
        fs::create_dir(dir.0.join("nested")).expect("create subdirectory");
        fs::write(dir.0.join("nested").join("e.yaml"), node("nested")).expect("write");

        let manifests = load_path(&dir.0).expect("load directory");
        assert_eq!(
            names_of(&manifests),
            ["Node a", "Node b1", "Node b2", "Node c"]
        );
        assert_eq!(manifests.problems.len(), 1);
        let origin = dir.0.join("d.yaml").display().to_string();
        assert_eq!(manifests.problems[0].origin, origin);

        // One file of it.
        let manifests = load_path(&dir.0.join("b.yaml")).expect("load file");
        assert_eq!(names_of(&manifests), ["Node b1", "Node b2"]);
        // Any name will do for a file given directly.
        let manifests = load_path(&dir.0.join("notes.txt")).expect("load file");
        assert_eq!(names_of(&manifests), ["Node not-loaded"]);

        // Not UTF-8: a problem, not an error.
        fs::write(dir.0.join("e.yaml"), b"kind: \xff\n").expect("write");
        let manifests = load_path(&dir.0.join("e.yaml")).expect("load file");
        assert_eq!(manifests.problems.len(), 1);
        assert!(manifests.problems[0].message.starts_with("not UTF-8"));
    }

    /// A directory of several files where later documents replace earlier ones, a slice comes
    /// before its Service (and again after it), a second Node of the same name comes later, and
    /// some documents are broken.
    fn write_streaming_dir(dir: &Path) {
        let write = |name: &str, text: &str| {
            fs::write(dir.join(name), text).expect("write test file");
        };
        let late_slice = |ip: &str, node: &str| {
            format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: svc-1, namespace: late, \
                 labels: {{kubernetes.io/service-name: svc}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
                 endpoints:\n- addresses: [{ip}]\n  nodeName: {node}\n"
            )
        };
        write("1-slice-first.yaml", &late_slice("10.244.1.50", "node-a"));
        write(
            "2-cluster.yaml",
            include_str!("../../../examples/cluster.yaml"),
        );
        write(
            "3-broken.yaml",
            include_str!("../../../examples/bad/broken.yaml"),
        );
        write(
            "4-later.json",
            r#"{"apiVersion": "v1", "kind": "Service",
  "metadata": {"name": "svc", "namespace": "late"},
  "spec": {"clusterIP": "10.96.9.9", "ports": [{"name": "http", "port": 80}]}}
{"apiVersion": "v1", "kind": "Service",
  "metadata": {"name": "web", "namespace": "shop"},
  "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 8081}]}}
{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
  "metadata": {"name": "web-4xq7d", "namespace": "shop",
               "labels": {"kubernetes.io/service-name": "web"}},
  "addressType": "IPv4", "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}],
  "endpoints": [{"addresses": ["10.244.2.99"], "nodeName": "node-b"}]}
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
   "status": {"addresses": [{"type": "InternalIP", "address": "10.9.9.9"}]}},
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad", "namespace": "late"},
   "spec": {"ports": [{"port": "eighty"}]}}
]}
"#,
        );
        write(
            "5-again.yaml",
            &format!(
                "{}---\n{}",
                late_slice("10.244.2.51", "node-b"),
                node("node-c")
            ),
        );
    }

    #[test]
    fn streaming_into_a_view_gives_the_collected_view() {
        use model::{node_view, NodeConfig};

        let dir = TempDir::new("stream");
        write_streaming_dir(&dir.0);
        let collected = load_path(&dir.0).expect("load directory");
        assert!(collected.problems.len() >= 2, "{:?}", collected.problems);

        for node_name in ["node-a", "node-b", "node-c", "node-z"] {
            let mut problems = Vec::new();
            let mut sink = ViewSink::new(node_name, |problem| problems.push(problem));
            load_path_into(&dir.0, &mut sink).expect("stream directory");
            let streamed = sink.into_view();
            assert_eq!(problems, collected.problems);

            let reference = ClusterView::from_objects(
                collected.services.clone(),
                collected.endpoint_slices.clone(),
                collected.nodes.clone(),
                node_name,
            );
            assert_eq!(streamed.service_keys(), reference.service_keys());
            assert_eq!(streamed.slice_keys(), reference.slice_keys());
            assert_eq!(streamed.node(), reference.node(), "{node_name}");
            // Node addresses and pod CIDRs from the Node object, so that it matters too.
            let config = NodeConfig {
                node_name: node_name.to_owned(),
                pod_cidrs_from_node: true,
                ..NodeConfig::default()
            };
            let view = node_view(&streamed, &config);
            assert_eq!(view, node_view(&reference, &config), "{node_name}");

            if node_name == "node-a" {
                // The first Node of the name is this node's, as with `from_objects`.
                assert_eq!(
                    view.ipv4.node_ips,
                    ["10.0.0.11".parse::<std::net::IpAddr>().expect("ip")]
                );
                // The later Service and slice replaced the earlier ones; the slice that came
                // before its Service counts, in its last version.
                let web = view
                    .ipv4
                    .ports
                    .values()
                    .find(|p| p.label() == "shop/web:http");
                let web = web.expect("shop/web:http");
                assert_eq!(web.port, 8081);
                let addresses: Vec<String> = web
                    .cluster_endpoints
                    .iter()
                    .map(|e| format!("{}:{}", e.ip, e.port))
                    .collect();
                assert!(
                    addresses.contains(&"10.244.2.99:9090".to_owned()),
                    "{addresses:?}"
                );
                let late = view
                    .ipv4
                    .ports
                    .values()
                    .find(|p| p.label() == "late/svc:http");
                let late = late.expect("late/svc:http");
                assert_eq!(
                    late.cluster_endpoints
                        .iter()
                        .map(|e| e.ip.to_string())
                        .collect::<Vec<_>>(),
                    ["10.244.2.51"]
                );
            }
        }
    }

    #[test]
    fn an_unreadable_path_is_an_error_naming_it() {
        let dir = TempDir::new("missing");
        let missing = dir.0.join("nope.yaml");
        let error = load_path(&missing).expect_err("missing file");
        assert!(matches!(error, ManifestError::Read { .. }));
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot read {}: ", missing.display())),
            "{message}"
        );
    }

    #[test]
    fn merge_appends_in_order() {
        let mut first = load_str(&node("one"), "1.yaml");
        let second = load_str(
            &format!("{}---\nkind: Pod\napiVersion: v1\n---\n[]\n", node("two")),
            "2.yaml",
        );
        first.merge(second);
        assert_eq!(names_of(&first), ["Node one", "Node two"]);
        assert_eq!(first.ignored, 1);
        assert_eq!(first.problems.len(), 1);
        assert_eq!(first.problems[0].origin, "2.yaml");
    }

    #[test]
    fn problem_display_without_object() {
        let problem = ManifestProblem {
            origin: "x.yaml".to_owned(),
            document: 0,
            item: None,
            kind: None,
            object: None,
            message: "not UTF-8 text".to_owned(),
        };
        assert_eq!(problem.to_string(), "x.yaml: not UTF-8 text");
    }
}
