//! The manifest source of `run --manifests PATH`: the objects of a file or directory, read
//! again whenever a file in it changes (checked every `poll`), delivered as complete lists.

use crate::manifests::{load_path, Manifests};
use crate::state::{Change, Shared, SourceKind};
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

/// The changes that make the view hold exactly these manifests (this node's Node among them).
pub fn changes(manifests: Manifests, node_name: &str) -> Vec<Change> {
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

/// Reads `path` now and again after every change of its files, until the task is dropped. A
/// manifest that cannot be read is logged and the previous objects stay.
pub async fn run(path: PathBuf, node_name: String, shared: Arc<Shared>, poll: Duration) {
    let mut seen: Option<Fingerprint> = None;
    loop {
        let now = fingerprint(&path);
        if seen.as_ref() != Some(&now) {
            match load_path(&path) {
                Ok(loaded) => {
                    for problem in &loaded.problems {
                        tracing::warn!(%problem, "skipped a manifest document");
                    }
                    tracing::info!(
                        path = %path.display(),
                        services = loaded.services.len(),
                        slices = loaded.endpoint_slices.len(),
                        "read the manifests"
                    );
                    shared.apply(changes(loaded, &node_name));
                }
                Err(e) => tracing::error!("reading manifests: {e}"),
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

    #[test]
    fn manifests_become_complete_lists_and_mark_every_kind_listed() {
        let shared = Shared::new();
        let loaded = load_path(&example_path()).expect("example manifests");
        let services = loaded.services.len();
        shared.apply(changes(loaded, "node-a"));
        assert!(shared.initialized());
        assert_eq!(shared.with_view(|v| v.service_count()), services);
        assert!(shared.with_view(|v| v.node().is_some()));
        assert!(!shared.take_pending().is_empty());
        // The same manifests again: still every Service, nothing lost.
        let again = load_path(&example_path()).expect("again");
        shared.apply(changes(again, "node-a"));
        assert_eq!(shared.with_view(|v| v.service_count()), services);
    }
}
