//! `kube-nftproxy render`: the ruleset (or the model's view) a node would get from manifests.

use crate::config::{self, FlagOverrides};
use crate::manifests;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use model::{node_view, ClusterView, NodeServices};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A manifest file or a directory of them (YAML or JSON; multi-document and `kind: List`).
    #[arg(long)]
    manifests: PathBuf,
    /// The node to compute for (overrides `node_name` from the configuration).
    #[arg(long)]
    node: Option<String>,
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// What to print: the nftables ruleset, or the per-service-port view as JSON.
    #[arg(long, value_enum, default_value_t = RenderFormat::Nft)]
    format: RenderFormat,
}

/// What `render` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RenderFormat {
    /// The ruleset as `nft list ruleset` prints it.
    Nft,
    /// What the node does for each service-port, and why (JSON).
    Json,
}

/// Loads the manifests and the configuration and computes the node's view; every problem found
/// in the input is logged as a warning naming the object.
pub fn compute(args: &RenderArgs) -> Result<(NodeServices, ruleset::Options)> {
    let flags = FlagOverrides {
        node_name: args.node.clone(),
    };
    let config = config::load(args.config.as_deref(), &flags)?;
    let node_config = config.node_config()?;
    let loaded = manifests::load_path(&args.manifests)
        .with_context(|| format!("loading manifests from {}", args.manifests.display()))?;
    for problem in &loaded.problems {
        tracing::warn!(%problem, "skipped a manifest document");
    }
    if !loaded
        .nodes
        .iter()
        .any(|n| n.metadata.name.as_deref() == Some(&node_config.node_name))
    {
        tracing::warn!(node = %node_config.node_name, "no Node object with this name in the manifests");
    }
    let view = ClusterView::from_objects(
        loaded.services,
        loaded.endpoint_slices,
        loaded.nodes,
        &node_config.node_name,
    );
    let services = node_view(&view, &node_config);
    for error in &services.errors {
        tracing::warn!(reason = error.reason(), "{error}");
    }
    Ok((services, config.ruleset_options()))
}

/// Runs `render`.
pub fn run(args: &RenderArgs) -> Result<()> {
    let (services, options) = compute(args)?;
    let text = match args.format {
        RenderFormat::Nft => ruleset::render(&ruleset::desired(&services, &options)),
        RenderFormat::Json => serde_json::to_string_pretty(&services)? + "\n",
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to standard output")?;
    Ok(())
}
