//! The manifest source of `run --manifests PATH`: the objects of a file or directory, read
//! again whenever a file in it changes (checked every `poll`), delivered as one complete,
//! atomic replacement of the cluster state.
//!
//! # Design: a fresh view, swapped in whole
//!
//! Each (re)load streams the manifests into a fresh [`ClusterView`] with
//! [`ViewSink`]: every object is filed as soon as it is parsed (a Service as it is, an
//! EndpointSlice as the model's compact copy), so the parsed Kubernetes objects never all
//! exist at once. Loading holds the previous view (in [`Shared`]), the new view being built,
//! the text of one file and the objects of one document; not every object of the manifests
//! plus the view, as collecting lists of objects did.
//!
//! The finished view is handed over in one [`Change::ReplaceView`] (followed by the `Synced`
//! marks), applied under the state's lock: the sync loop sees the old view or the new one,
//! never part of each. Every Service and slice not in the manifests is gone with the old view.
//! [`Shared::apply`] compares the two views ([`ClusterView::diff`], one ordered walk) and
//! marks only the Services whose Service object or slices differ, plus every Service when this
//! node's Node differs (the first Node named like this node, as before; none clears it). A
//! reload of identical manifests (a touched file) marks nothing and wakes no sync.
//!
//! A path that cannot be read (at any file) drops the partly built view: the previous objects
//! stay. Documents that cannot be understood are logged as they are found, naming the file
//! and document, and loading goes on.

use crate::manifests::{load_path_into, ManifestError, ViewSink};
use crate::state::{Change, Shared, SourceKind};
use model::ClusterView;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What identifies a version of the manifests: every file's path, size and modification time.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(path: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else {
            out.push((p, meta.len(), meta.modified().ok()));
        }
    }
    out.sort();
    out
}

/// The view of the manifests in `path`, each object filed as soon as it is parsed; `node_name`
/// picks this node's Node (the first of that name). Every document that cannot be understood
/// is logged as a warning naming it, as it is found; returns the view and how many there were.
///
/// On an error (a path that cannot be read) the partly built view is dropped.
pub fn load(path: &Path, node_name: &str) -> Result<(ClusterView, usize), ManifestError> {
    let mut problems = 0;
    let mut sink = ViewSink::new(node_name, |problem| {
        problems += 1;
        tracing::warn!(%problem, "skipped a manifest document");
    });
    load_path_into(path, &mut sink)?;
    let view = sink.into_view();
    Ok((view, problems))
}

/// The changes that make the state hold exactly `view` (this node's Node included): one
/// atomic replacement, then every kind marked as listed.
pub fn changes(view: ClusterView) -> Vec<Change> {
    vec![
        Change::ReplaceView(Box::new(view)),
        Change::Synced(SourceKind::Services),
        Change::Synced(SourceKind::EndpointSlices),
        Change::Synced(SourceKind::Node),
    ]
}

/// Reads `path` now and again after every change of its files, until the task is dropped. A
/// manifest path that cannot be read is logged and the previous objects stay.
pub async fn run(path: PathBuf, node_name: String, shared: Arc<Shared>, poll: Duration) {
    let mut seen: Option<Fingerprint> = None;
    loop {
        let now = fingerprint(&path);
        if seen.as_ref() != Some(&now) {
            // Parsing takes about a second at 10 000 Services: not on a runtime worker.
            let loaded = tokio::task::spawn_blocking({
                let (path, node_name) = (path.clone(), node_name.clone());
                move || load(&path, &node_name)
            })
            .await;
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!(
                        "reading manifests (the previous objects stay): the task failed: {e}"
                    );
                    seen = Some(now);
                    tokio::time::sleep(poll).await;
                    continue;
                }
            };
            match loaded {
                Ok((view, problems)) => {
                    tracing::info!(
                        path = %path.display(),
                        services = view.service_count(),
                        slices = view.slice_count(),
                        node = view.node().is_some(),
                        problems,
                        "read the manifests"
                    );
                    shared.apply(changes(view));
                }
                Err(e) => tracing::error!("reading manifests (the previous objects stay): {e}"),
            }
            seen = Some(now);
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster.yaml")
    }

    #[test]
    fn a_changed_file_changes_the_fingerprint() {
        let dir = std::env::temp_dir().join(format!("knp-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("a.yaml");
        std::fs::write(&file, "kind: List\nitems: []\n").expect("write");
        let before = fingerprint(&dir);
        std::fs::write(&file, "kind: List\nitems: []\n# more\n").expect("write");
        let after = fingerprint(&dir);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_ne!(before, after);
    }

    /// A scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("knp-ms-{what}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What this source delivered before it streamed into a view: every object collected, as
    /// complete lists.
    fn as_lists(path: &Path, node_name: &str) -> Vec<Change> {
        let manifests = crate::manifests::load_path(path).expect("manifests");
        let node = manifests
            .nodes
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name))
            .map(Box::new);
        vec![
            Change::ReplaceServices(manifests.services),
            Change::ReplaceSlices(manifests.endpoint_slices),
            Change::SetNode(node),
            Change::Synced(SourceKind::Services),
            Change::Synced(SourceKind::EndpointSlices),
            Change::Synced(SourceKind::Node),
        ]
    }

    fn as_view(path: &Path, node_name: &str) -> Vec<Change> {
        let (view, _) = load(path, node_name).expect("manifests");
        changes(view)
    }

    use crate::state::tests::assert_same_view;

    #[test]
    fn manifests_become_one_view_and_mark_every_kind_listed() {
        let shared = Shared::new();
        let (view, problems) = load(&example_path(), "node-a").expect("example manifests");
        assert_eq!(problems, 0);
        let services = view.service_count();
        assert!(services > 0);
        shared.apply(changes(view));
        assert!(shared.initialized());
        assert_eq!(shared.with_view(|v| v.service_count()), services);
        assert!(shared.with_view(|v| v.node().is_some()));
        assert!(!shared.take_pending().is_empty());
        // The same manifests again: still every Service, nothing lost, nothing to do.
        let (again, _) = load(&example_path(), "node-a").expect("again");
        shared.apply(changes(again));
        assert_eq!(shared.with_view(|v| v.service_count()), services);
        assert!(shared.take_pending().is_empty());
    }

    /// Service `default/name` with one port (`port`), and its slice `slice` with `endpoint`.
    fn service_and_slice(name: &str, port: u16, slice: &str, endpoint: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{clusterIP: 10.96.77.{port}, ports: [{{name: http, port: {port}}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {slice}, namespace: default, \
             labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
             endpoints:\n- addresses: [{endpoint}]\n  nodeName: node-a\n---\n"
        )
    }

    fn pending_of(shared: &Shared) -> (Vec<String>, bool) {
        let pending = shared.take_pending();
        let services = pending.services.iter().map(ToString::to_string).collect();
        (services, pending.all)
    }

    /// Files read into a view give the state the collected lists gave, at a first load and a
    /// reload; the reload marks only the Services whose objects changed; a path that cannot be
    /// read is an error (the daemon then keeps the previous objects).
    #[test]
    fn a_reloaded_directory_replaces_the_view_as_the_lists_did() {
        let dir = TempDir::new("reload");
        let example = std::fs::read_to_string(example_path()).expect("example");
        std::fs::write(dir.0.join("cluster.yaml"), &example).expect("write");
        let extra = [
            service_and_slice("one", 81, "one-1", "10.244.7.1"),
            service_and_slice("two", 82, "two-1", "10.244.7.2"),
            service_and_slice("three", 83, "three-1", "10.244.7.3"),
        ]
        .concat();
        std::fs::write(dir.0.join("extra.yaml"), extra).expect("write");
        let (lists, views) = (Shared::new(), Shared::new());
        lists.apply(as_lists(&dir.0, "node-a"));
        views.apply(as_view(&dir.0, "node-a"));
        assert_same_view(&lists, &views);
        let first = pending_of(&views);
        assert_eq!(first, pending_of(&lists));
        assert!(first.0.contains(&"default/two".to_owned()), "{first:?}");
        assert!(first.1, "the Node arrived");

        // one changed its port, two is gone, three's slice now belongs to one.
        let mut changed = service_and_slice("one", 91, "one-1", "10.244.7.1");
        changed.push_str(
            &service_and_slice("one", 91, "three-1", "10.244.7.3").replace(
                "apiVersion: v1\nkind: Service\nmetadata: {name: one, namespace: default}\n\
                 spec: {clusterIP: 10.96.77.91, ports: [{name: http, port: 91}]}\n---\n",
                "",
            ),
        );
        changed.push_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: three, namespace: default}\n\
             spec: {clusterIP: 10.96.77.83, ports: [{name: http, port: 83}]}\n",
        );
        std::fs::write(dir.0.join("extra.yaml"), changed).expect("write");
        lists.apply(as_lists(&dir.0, "node-a"));
        views.apply(as_view(&dir.0, "node-a"));
        assert_same_view(&lists, &views);
        let (new, old) = (pending_of(&views), pending_of(&lists));
        assert_eq!(
            new,
            (
                vec![
                    "default/one".to_owned(),
                    "default/three".to_owned(),
                    "default/two".to_owned()
                ],
                false
            )
        );
        // The lists marked every Service they held.
        assert!(new.0.iter().all(|s| old.0.contains(s)), "{old:?}");
        assert!(old.0.len() > new.0.len(), "{old:?}");

        // Unchanged files read again: the same view, nothing to do.
        views.apply(as_view(&dir.0, "node-a"));
        assert_same_view(&lists, &views);
        assert_eq!(pending_of(&views), (Vec::new(), false));

        // A file that cannot be read fails the whole load.
        std::os::unix::fs::symlink(dir.0.join("missing"), dir.0.join("zz.yaml")).expect("link");
        assert!(load(&dir.0, "node-a").is_err());
    }
}
