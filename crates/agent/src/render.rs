//! `kube-nftproxy render`: the ruleset (or the model's view) a node would get from manifests.

use crate::config::{self, FlagOverrides};
use crate::manifests;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use model::{node_view, ClusterView, NodeServices};
use std::io::Write;
use std::path::PathBuf;

/// Where the cluster state and the configuration come from (`render` and `run`).
#[derive(Debug, Args)]
pub struct InputArgs {
    /// A manifest file or a directory of them (YAML or JSON; multi-document and `kind: List`).
    #[arg(long)]
    pub manifests: PathBuf,
    /// The node to compute for (overrides `node_name` from the configuration).
    #[arg(long)]
    pub node: Option<String>,
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    input: InputArgs,
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

/// Loads the configuration (file, environment, `--node`).
pub fn load_config(args: &InputArgs) -> Result<config::Config> {
    let flags = FlagOverrides {
        node_name: args.node.clone(),
        ..FlagOverrides::default()
    };
    Ok(config::load(args.config.as_deref(), &flags)?)
}

/// Loads the manifests and the configuration and computes the node's view; every problem found
/// in the input is logged as a warning naming the object.
pub fn compute(args: &InputArgs) -> Result<(NodeServices, config::Config)> {
    let config = load_config(args)?;
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
    Ok((services, config))
}

/// Runs `render`.
pub fn run(args: &RenderArgs) -> Result<()> {
    let (services, config) = compute(&args.input)?;
    let text = match args.format {
        RenderFormat::Nft => {
            ruleset::render(&ruleset::desired(&services, &config.ruleset_options()))
        }
        RenderFormat::Json => serde_json::to_string_pretty(&services)? + "\n",
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to standard output")?;
    Ok(())
}
