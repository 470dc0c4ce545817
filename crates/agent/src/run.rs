//! `kube-nftproxy run` and `kube-nftproxy cleanup`: program this node's rules from manifests
//! (once, or again whenever the manifests change), and remove them.

use crate::render::{compute, load_config, InputArgs};
use crate::sync::{cleanup, sync_once};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Sync once, print a one-line summary, and exit.
    #[arg(long)]
    once: bool,
    /// Without `--once`: how often to read the manifests again and sync (seconds).
    #[arg(long, default_value_t = 10)]
    resync_seconds: u64,
}

/// Arguments of `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to standard output")
}

/// One sync from the manifests; returns the summary line.
fn sync_from_manifests(args: &RunArgs) -> Result<String> {
    let (services, config) = compute(&args.input)?;
    let options = config.ruleset_options();
    let desired = ruleset::desired(&services, &options);
    let backend = config.backend.backend();
    let report = sync_once(backend.as_ref(), &options.table_name, &desired)?;
    if report.operations > 0 {
        tracing::info!(
            operations = report.operations,
            services = ?report.services,
            "programmed the node's rules"
        );
    }
    Ok(report.to_string())
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> Result<()> {
    if args.once {
        return say(&sync_from_manifests(args)?);
    }
    let period = Duration::from_secs(args.resync_seconds.max(1));
    loop {
        match sync_from_manifests(args) {
            Ok(summary) => tracing::debug!("{summary}"),
            // A bad manifest or a refused transaction is logged; the next period retries.
            Err(e) => tracing::error!("sync failed: {e:#}"),
        }
        std::thread::sleep(period);
    }
}

/// Runs `cleanup`.
pub fn run_cleanup(args: &CleanupArgs) -> Result<()> {
    let input = InputArgs {
        manifests: PathBuf::new(),
        node: None,
        config: args.config.clone(),
    };
    let config = load_config(&input)?;
    let options = config.ruleset_options();
    let deleted = cleanup(config.backend.backend().as_ref(), &options.table_name)?;
    if deleted.is_empty() {
        say(&format!("no {} tables to delete", options.table_name))
    } else {
        say(&format!("deleted table {}", deleted.join(", table ")))
    }
}
