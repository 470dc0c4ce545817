//! Shared helpers for the integration tests: the example cluster, and listings made comparable.

pub mod packet_support;

use model::{node_view, ClusterView, NodeServices};
use ruleset::{Options, Ruleset};
use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// What `node` does, and its ruleset, for the manifests at `manifests` (relative to the
/// repository root) with `examples/config.toml`.
pub fn example(manifests: &str, node: &str) -> (NodeServices, Ruleset) {
    let root = repo_root();
    let flags = agent::config::FlagOverrides {
        node_name: Some(node.to_owned()),
        ..agent::config::FlagOverrides::default()
    };
    let config = agent::config::load(Some(&root.join("examples/config.toml")), &flags)
        .unwrap_or_else(|e| panic!("examples/config.toml: {e}"));
    let node_config = config
        .node_config()
        .unwrap_or_else(|e| panic!("node config: {e}"));
    let loaded = agent::manifests::load_path(&root.join(manifests))
        .unwrap_or_else(|e| panic!("{manifests}: {e}"));
    let view =
        ClusterView::from_objects(loaded.services, loaded.endpoint_slices, loaded.nodes, node);
    let services = node_view(&view, &node_config);
    let rules = ruleset::desired(&services, &config.ruleset_options());
    (services, rules)
}

/// The default ruleset options.
pub fn options() -> Options {
    Options::default()
}

/// Makes an `nft list ruleset` text (or our rendering) comparable: elements sorted
/// ([`testbed::normalize_nft_listing`]) and, within each table, the set, map and chain blocks
/// sorted by their first line (nft lists them in creation order, which depends on the history
/// of transactions, not on their content).
pub fn canonical_listing(text: &str) -> String {
    let normalized = testbed::normalize_nft_listing(text);
    let mut out = String::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in normalized.lines() {
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line == "\t}" {
                blocks.push(block.clone());
                current = None;
            }
            continue;
        }
        let starts_block = ["\tset ", "\tmap ", "\tchain "]
            .iter()
            .any(|p| line.starts_with(p));
        if starts_block {
            current = Some(format!("{line}\n"));
        } else if line == "}" {
            blocks.sort();
            out.extend(blocks.drain(..));
            out.push_str("}\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
