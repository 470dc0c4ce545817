//! `kube-nftproxy-bench`: the benchmarks behind `just bench` and `just bench-full`.
//!
//! For each size N (Services with 10 endpoints each, see [`workload`]), in network namespaces
//! made for each measurement and deleted after it:
//! 1. a full sync from empty through the engine, end to end and by part;
//! 2. the same transaction's text through `nft -f -`;
//! 3. the netlink batch alone (`Netlink.apply` of the same transaction);
//! 4. single endpoint changes, and 100 changes coalesced into one sync;
//! 5. restarts adopting the tables, with nothing changed and with 1 % changed;
//! 6. the agent binary's peak RSS (`run --once` from generated YAML manifests);
//! 7. TCP connection times through a ClusterIP with 10 vs N Services in the table.
//!
//! 1–3 are interleaved run by run, so their ratios compare runs made under the same load.
//! Results go to a JSON file and, with `--markdown`, into a generated section of that file.

mod daemon;
mod machine;
mod measure;
mod ns;
mod report;
mod stats;
mod workload;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use measure::{count_of, stat_of, AgentFiles, AgentRun, Connects};
use serde::Serialize;
use stats::{ms, Stat};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Mix, Workload};

/// Benchmarks of kube-nftproxy, in network namespaces of their own (needs root, nft and ip).
#[derive(Debug, Parser)]
#[command(name = "kube-nftproxy-bench")]
struct Args {
    /// 1 000 Services only, fewer runs (the default).
    #[arg(long, conflicts_with_all = ["full", "sizes"])]
    quick: bool,
    /// 1 000, 10 000 and 50 000 Services.
    #[arg(long)]
    full: bool,
    /// Other sizes (comma-separated), with the full mode's runs (implies --full).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Runs of the full-sync, nft -f and batch measurements (default: by mode and size).
    #[arg(long)]
    runs: Option<usize>,
    /// Only these measurements (comma-separated).
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Option<Vec<Measurement>>,
    /// The results file (JSON).
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Also write the results as a section of this Markdown file (others parts are kept).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// The agent binary (default: `kube-nftproxy` beside this program).
    #[arg(long)]
    agent: Option<PathBuf>,
}

/// The groups of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Measurement {
    /// Full sync, nft -f and the batch alone (items 1-3).
    Sync,
    /// Endpoint changes (item 4).
    Change,
    /// Restarts (item 5).
    Restart,
    /// The agent's peak RSS (item 6).
    Memory,
    /// Connection times (item 7).
    DataPlane,
}

/// How many times each measurement runs at one size.
#[derive(Debug, Clone, Copy, Serialize)]
struct Runs {
    sync: usize,
    changes: usize,
    coalesced: usize,
    restarts: usize,
    memory: usize,
    connect_rounds: usize,
    connects_per_round: usize,
}

impl Runs {
    fn for_size(quick: bool, n: usize, sync_override: Option<usize>) -> Runs {
        let mut runs = if quick {
            Runs {
                sync: 5,
                changes: 20,
                coalesced: 5,
                restarts: 5,
                memory: 3,
                connect_rounds: 6,
                connects_per_round: 100,
            }
        } else if n <= 10_000 {
            // The kernel's batch time grows faster than linearly (see docs/benchmarks.md):
            // fewer runs at 10 000.
            Runs {
                sync: if n <= 1_000 { 7 } else { 3 },
                changes: 30,
                coalesced: 5,
                restarts: if n <= 1_000 { 5 } else { 3 },
                memory: if n <= 1_000 { 3 } else { 2 },
                connect_rounds: 10,
                connects_per_round: 100,
            }
        } else {
            Runs {
                sync: 1,
                changes: 20,
                coalesced: 3,
                restarts: 2,
                memory: 1,
                connect_rounds: 10,
                connects_per_round: 100,
            }
        };
        if let Some(sync) = sync_override {
            runs.sync = sync.max(1);
        }
        runs
    }
}

/// Everything one run of the program measured.
#[derive(Debug, Serialize)]
pub struct Results {
    /// `quick` or `full`.
    pub mode: String,
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: machine::Machine,
    /// How peak RSS was measured.
    pub rss_method: String,
    /// Wall time of the whole run, in seconds.
    pub took_s: f64,
    /// One entry per size.
    pub sizes: Vec<SizeResults>,
}

/// What was measured at one size. Times in milliseconds unless named otherwise.
#[derive(Debug, Serialize, Default)]
pub struct SizeResults {
    /// Services.
    pub services: usize,
    /// Endpoints (all Services).
    pub endpoints: usize,
    /// Kinds of Services.
    pub mix: Mix,
    /// The ruleset's size.
    pub ruleset: RulesetSize,
    /// How many runs of each measurement.
    runs: Option<Runs>,
    /// Items 1-3.
    pub sync: Option<SyncResults>,
    /// Item 4.
    pub change: Option<ChangeResults>,
    /// Item 5.
    pub restart: Option<RestartResults>,
    /// Item 6.
    pub memory: Option<MemoryResults>,
    /// Item 7.
    pub data_plane: Option<DataPlaneResults>,
}

/// The size of the desired ruleset and of the transaction that programs it from empty.
#[derive(Debug, Serialize, Default)]
pub struct RulesetSize {
    /// Chains (both tables).
    pub chains: usize,
    /// Rules.
    pub rules: usize,
    /// Sets and maps.
    pub sets: usize,
    /// Set and map elements.
    pub elements: usize,
    /// Operations of the transaction from empty, by kind (`add chain`, …).
    pub operations_by_kind: BTreeMap<String, usize>,
    /// Operations in all.
    pub operations: usize,
    /// The transaction's `nft -f` text, in bytes.
    pub nft_text_bytes: usize,
}

/// Items 1-3: full sync from empty, `nft -f`, the batch alone.
#[derive(Debug, Serialize, Default)]
pub struct SyncResults {
    /// Objects → kernel: view + engine sync.
    pub total: Stat,
    /// Objects into the cluster view.
    pub view: Stat,
    /// The engine's sync (compute + read + plan + apply).
    pub engine: Stat,
    /// Model and ruleset.
    pub compute: Stat,
    /// Reading the kernel (empty).
    pub read: Stat,
    /// Planning.
    pub plan: Stat,
    /// Netlink apply inside the engine.
    pub apply: Stat,
    /// Operations of the full sync.
    pub operations: usize,
    /// Rendering the text and `nft -f -`.
    pub nft_f: Stat,
    /// Rendering the text alone.
    pub nft_render: Stat,
    /// The netlink batch alone.
    pub batch: Stat,
    /// Share of the batch's CPU time spent in the kernel (system time; the rest is user time:
    /// libnftnl building the messages), over all runs.
    pub batch_system_share: f64,
    /// CPU time of the batch per run (user + system), ms (10 ms resolution, mean over runs).
    pub batch_cpu_ms: f64,
    /// total / batch, run by run.
    pub total_over_batch: Stat,
    /// Our own work in the full sync: view + compute + read + plan (everything but apply).
    pub own: Stat,
    /// 1 + own / batch, run by run: the ratio to the batch were apply exactly the batch.
    pub own_over_batch: Stat,
    /// engine / batch, run by run.
    pub engine_over_batch: Stat,
    /// nft -f / total, run by run (how many times faster we are).
    pub nft_over_total: Stat,
}

/// Item 4.
#[derive(Debug, Serialize, Default)]
pub struct ChangeResults {
    /// One endpoint changed: from the change entering the view to the commit.
    pub latency: Stat,
    /// Its compute part.
    pub compute: Stat,
    /// Plan.
    pub plan: Stat,
    /// Apply.
    pub apply: Stat,
    /// Operations.
    pub operations: Stat,
    /// 100 changes coalesced into one sync: latency.
    pub coalesced_latency: Stat,
    /// Its compute part.
    pub coalesced_compute: Stat,
    /// Its plan part.
    pub coalesced_plan: Stat,
    /// Its apply part.
    pub coalesced_apply: Stat,
    /// Its operations.
    pub coalesced_operations: Stat,
    /// Changes per coalesced sync.
    pub per_coalesced_sync: usize,
}

/// Item 5: a new engine's first sync on tables a previous one left.
#[derive(Debug, Serialize, Default)]
pub struct RestartResults {
    /// Nothing changed: time.
    pub unchanged: Stat,
    /// Its parts.
    pub unchanged_compute: Stat,
    /// Reading the tables back.
    pub unchanged_read: Stat,
    /// Plan.
    pub unchanged_plan: Stat,
    /// Apply.
    pub unchanged_apply: Stat,
    /// Operations (the goal is zero).
    pub unchanged_operations: Stat,
    /// Percent of Services changed in the other case.
    pub changed_percent: usize,
    /// Changed: time.
    pub changed: Stat,
    /// Reading the tables back.
    pub changed_read: Stat,
    /// Plan.
    pub changed_plan: Stat,
    /// Apply.
    pub changed_apply: Stat,
    /// Operations.
    pub changed_operations: Stat,
}

/// Item 6: the agent binary, `run --once` from YAML manifests.
#[derive(Debug, Serialize, Default)]
pub struct MemoryResults {
    /// Peak RSS of the first run (empty kernel), MB (10^6 bytes).
    pub peak_rss_mb: Stat,
    /// Peak RSS of the second run (adopting its own tables), MB.
    pub restart_peak_rss_mb: Stat,
    /// Wall time of the first run (manifest parsing included), ms.
    pub wall_ms: Stat,
    /// Peak RSS of the agent as a daemon up to the end of its first sync from empty tables, MB.
    pub daemon_peak_rss_mb: Stat,
    /// The same for a daemon started on the tables the previous one left, MB.
    pub daemon_restart_peak_rss_mb: Stat,
    /// The manifest file's size, bytes.
    pub manifest_bytes: usize,
    /// Every run of `--once`: first, second.
    pub runs: Vec<(AgentRun, AgentRun)>,
    /// Every run of the daemon: first, second.
    pub daemon_runs: Vec<(AgentRun, AgentRun)>,
}

impl MemoryResults {
    /// The highest median peak of all the ways the agent ran: what the goal is judged on.
    pub fn worst_median_mb(&self) -> f64 {
        [
            &self.peak_rss_mb,
            &self.restart_peak_rss_mb,
            &self.daemon_peak_rss_mb,
            &self.daemon_restart_peak_rss_mb,
        ]
        .iter()
        .map(|s| s.median)
        .fold(0.0, f64::max)
    }
}

/// Item 7.
#[derive(Debug, Serialize, Default)]
pub struct DataPlaneResults {
    /// With 10 Services in the table.
    pub ten: Connects,
    /// With N (+1, the target).
    pub n: Connects,
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn op_kind(op: &ruleset::Op) -> String {
    op.render()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ruleset_size(desired: &ruleset::Ruleset, txn: &ruleset::Transaction) -> RulesetSize {
    let mut size = RulesetSize::default();
    for table in desired.tables.values() {
        size.chains += table.chains.len();
        size.rules += table.chains.values().map(|c| c.rules.len()).sum::<usize>();
        size.sets += table.sets.len();
        size.elements += table.sets.values().map(|s| s.elements.len()).sum::<usize>();
    }
    for op in &txn.ops {
        *size.operations_by_kind.entry(op_kind(op)).or_default() += 1;
    }
    size.operations = txn.len();
    size
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn per_run(a: &[Duration], b: &[Duration]) -> Stat {
    Stat::of(
        a.iter()
            .zip(b)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64().max(1e-9))
            .collect(),
    )
}

struct Bench {
    quick: bool,
    runs_override: Option<usize>,
    only: Option<Vec<Measurement>>,
    agent: PathBuf,
    scratch: PathBuf,
}

impl Bench {
    fn wants(&self, m: Measurement) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&m))
    }

    fn size(&self, n: usize) -> Result<SizeResults> {
        let runs = Runs::for_size(self.quick, n, self.runs_override);
        let started = Instant::now();
        let w = Arc::new(Workload::new(n));
        let (desired, txn) = measure::desired(&w);
        let mut size = ruleset_size(&desired, &txn);
        size.nft_text_bytes = txn.render().len();
        say(&format!(
            "== {n} Services: {} operations from empty ({} chains, {} rules, {} elements); generated in {:.1} s",
            size.operations,
            size.chains,
            size.rules,
            size.elements,
            started.elapsed().as_secs_f64()
        ));
        let (desired, txn) = (Arc::new(desired), Arc::new(txn));
        let mut out = SizeResults {
            services: n,
            endpoints: w.slices.iter().map(|s| s.endpoints.len()).sum(),
            mix: w.mix.clone(),
            ruleset: size,
            runs: Some(runs),
            ..SizeResults::default()
        };
        if self.wants(Measurement::Sync) {
            out.sync = Some(self.sync(&w, &desired, &txn, runs)?);
        }
        if self.wants(Measurement::Change) {
            out.change = Some(change(&w, runs)?);
        }
        if self.wants(Measurement::Restart) {
            out.restart = Some(restart(&w, runs)?);
        }
        if self.wants(Measurement::Memory) {
            out.memory = Some(self.memory(&w, runs)?);
        }
        if self.wants(Measurement::DataPlane) {
            out.data_plane = Some(data_plane(&w, runs)?);
        }
        say(&format!(
            "== {n} Services done in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(out)
    }

    fn sync(
        &self,
        w: &Arc<Workload>,
        desired: &Arc<ruleset::Ruleset>,
        txn: &Arc<ruleset::Transaction>,
        runs: Runs,
    ) -> Result<SyncResults> {
        let (mut ours, mut nft, mut batch) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs.sync {
            let check = r == 0;
            // Rotate the order so that none of the three always runs first.
            for k in 0..3 {
                match (r + k) % 3 {
                    0 => ours.push(measure::full_sync(w, desired, check)?),
                    1 => nft.push(measure::nft_f(txn, desired, check)?),
                    _ => batch.push(measure::batch(txn)?),
                }
            }
            let (o, f, b) = (&ours[r], &nft[r], &batch[r]);
            say(&format!(
                "  run {}: ours {:.1} ms (view {:.1}, compute {:.1}, read {:.1}, plan {:.1}, apply {:.1}) | nft -f {:.1} ms | batch alone {:.1} ms",
                r + 1,
                ms(o.total),
                ms(o.view),
                ms(o.compute),
                ms(o.read),
                ms(o.plan),
                ms(o.apply),
                ms(f.total),
                ms(b.total)
            ));
        }
        let totals: Vec<Duration> = ours.iter().map(|o| o.total).collect();
        let engines: Vec<Duration> = ours.iter().map(|o| o.engine).collect();
        let owns: Vec<Duration> = ours
            .iter()
            .map(|o| o.total.saturating_sub(o.apply))
            .collect();
        let nfts: Vec<Duration> = nft.iter().map(|f| f.total).collect();
        let batches: Vec<Duration> = batch.iter().map(|b| b.total).collect();
        let (user, system) = batch
            .iter()
            .fold((0, 0), |(u, s), b| (u + b.user_ticks, s + b.system_ticks));
        Ok(SyncResults {
            total: Stat::ms(&totals),
            view: stat_of(&ours, |o| o.view),
            engine: Stat::ms(&engines),
            compute: stat_of(&ours, |o| o.compute),
            read: stat_of(&ours, |o| o.read),
            plan: stat_of(&ours, |o| o.plan),
            apply: stat_of(&ours, |o| o.apply),
            operations: ours.first().map_or(0, |o| o.operations),
            nft_f: Stat::ms(&nfts),
            nft_render: stat_of(&nft, |f| f.render),
            batch: Stat::ms(&batches),
            batch_system_share: system as f64 / ((user + system) as f64).max(1.0),
            batch_cpu_ms: (user + system) as f64 * 10.0 / batch.len().max(1) as f64,
            total_over_batch: per_run(&totals, &batches),
            own: Stat::ms(&owns),
            own_over_batch: Stat::of(
                owns.iter()
                    .zip(&batches)
                    .map(|(o, b)| 1.0 + o.as_secs_f64() / b.as_secs_f64().max(1e-9))
                    .collect(),
            ),
            engine_over_batch: per_run(&engines, &batches),
            nft_over_total: per_run(&nfts, &totals),
        })
    }

    fn memory(&self, w: &Workload, runs: Runs) -> Result<MemoryResults> {
        let dir = self.scratch.join(format!("agent-{}", w.n));
        let files = AgentFiles::write(&dir, w)?;
        let result = (|| -> Result<MemoryResults> {
            let mut pairs = Vec::new();
            for r in 0..runs.memory {
                let (first, second) = measure::agent_pair(&self.agent, &files)?;
                say_pair(&format!("agent run {}", r + 1), &first, &second);
                pairs.push((first, second));
            }
            let mut daemons = Vec::new();
            for r in 0..runs.memory {
                let ns = ns::Ns::new()?;
                let first = daemon::agent_daemon(&ns, &self.agent, &files)?;
                let second = daemon::agent_daemon(&ns, &self.agent, &files)?;
                say_pair(
                    &format!("daemon run {} (until its first sync)", r + 1),
                    &first,
                    &second,
                );
                daemons.push((first, second));
            }
            let peaks = |runs: &[(AgentRun, AgentRun)], second: bool| {
                let pick = |(a, b): &(AgentRun, AgentRun)| {
                    if second {
                        b.peak_rss_kib
                    } else {
                        a.peak_rss_kib
                    }
                };
                Stat::of(runs.iter().map(|r| mb(pick(r))).collect())
            };
            Ok(MemoryResults {
                peak_rss_mb: peaks(&pairs, false),
                restart_peak_rss_mb: peaks(&pairs, true),
                wall_ms: Stat::of(pairs.iter().map(|(a, _)| a.wall_ms).collect()),
                daemon_peak_rss_mb: peaks(&daemons, false),
                daemon_restart_peak_rss_mb: peaks(&daemons, true),
                manifest_bytes: files.manifest_bytes,
                runs: pairs,
                daemon_runs: daemons,
            })
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

/// Logs one run of the agent from empty tables and its restart on them.
fn say_pair(what: &str, first: &AgentRun, second: &AgentRun) {
    say(&format!(
        "  {what}: peak RSS {:.1} MB, {:.0} ms: {}; restarted: {:.1} MB: {}",
        mb(first.peak_rss_kib),
        first.wall_ms,
        first.summary,
        mb(second.peak_rss_kib),
        second.summary
    ));
}

fn change(w: &Arc<Workload>, runs: Runs) -> Result<ChangeResults> {
    const PER_BATCH: usize = 100;
    let (one, many) = measure::changes(w, runs.changes, runs.coalesced, PER_BATCH)?;
    let r = ChangeResults {
        latency: stat_of(&one, |c| c.latency),
        compute: stat_of(&one, |c| c.compute),
        plan: stat_of(&one, |c| c.plan),
        apply: stat_of(&one, |c| c.apply),
        operations: count_of(&one, |c| c.operations),
        coalesced_latency: stat_of(&many, |c| c.latency),
        coalesced_compute: stat_of(&many, |c| c.compute),
        coalesced_plan: stat_of(&many, |c| c.plan),
        coalesced_apply: stat_of(&many, |c| c.apply),
        coalesced_operations: count_of(&many, |c| c.operations),
        per_coalesced_sync: PER_BATCH,
    };
    say(&format!(
        "  one endpoint change: {} ms (compute {}, plan {}, apply {}), {} operations; {PER_BATCH} coalesced: {} ms, {} operations",
        r.latency.show(2),
        r.compute.show(2),
        r.plan.show(2),
        r.apply.show(2),
        r.operations.show(0),
        r.coalesced_latency.show(1),
        r.coalesced_operations.show(0)
    ));
    Ok(r)
}

fn restart(w: &Arc<Workload>, runs: Runs) -> Result<RestartResults> {
    const PERCENT: usize = 1;
    let (same, changed) = measure::restarts(w, runs.restarts, PERCENT)?;
    let r = RestartResults {
        unchanged: stat_of(&same, |r| r.total),
        unchanged_compute: stat_of(&same, |r| r.compute),
        unchanged_read: stat_of(&same, |r| r.read),
        unchanged_plan: stat_of(&same, |r| r.plan),
        unchanged_apply: stat_of(&same, |r| r.apply),
        unchanged_operations: count_of(&same, |r| r.operations),
        changed_percent: PERCENT,
        changed: stat_of(&changed, |r| r.total),
        changed_read: stat_of(&changed, |r| r.read),
        changed_plan: stat_of(&changed, |r| r.plan),
        changed_apply: stat_of(&changed, |r| r.apply),
        changed_operations: count_of(&changed, |r| r.operations),
    };
    say(&format!(
        "  restart, nothing changed: {} operations in {} ms (read {}); {PERCENT}% changed: {} operations in {} ms",
        r.unchanged_operations.show(0),
        r.unchanged.show(1),
        r.unchanged_read.show(1),
        r.changed_operations.show(0),
        r.changed.show(1)
    ));
    Ok(r)
}

fn data_plane(w: &Arc<Workload>, runs: Runs) -> Result<DataPlaneResults> {
    let (ten, n) = measure::data_plane(w, runs.connect_rounds, runs.connects_per_round)?;
    say(&format!(
        "  connect through a ClusterIP: {} Services median {:.0} µs p99 {:.0} µs; {} Services median {:.0} µs p99 {:.0} µs ({} + {} failures)",
        ten.services, ten.median_us, ten.p99_us, n.services, n.median_us, n.p99_us, ten.failures, n.failures
    ));
    Ok(DataPlaneResults { ten, n })
}

fn main() -> Result<()> {
    // The agent's heap settings, so that what is timed here allocates as the agent does.
    heap::configure();
    let args = Args::parse();
    if !is_root() {
        bail!("the benchmarks make network namespaces: run them as root");
    }
    ns::clean_up_on_signal()?;
    let quick = args.quick || (!args.full && args.sizes.is_none());
    let mode = if quick { "quick" } else { "full" };
    let sizes = match (&args.sizes, quick) {
        (Some(sizes), _) => sizes.clone(),
        (None, true) => vec![1_000],
        (None, false) => vec![1_000, 10_000, 50_000],
    };
    if sizes.contains(&0) {
        bail!("sizes must be at least 1");
    }
    let agent = match &args.agent {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("finding this program")?
            .with_file_name("kube-nftproxy"),
    };
    if args
        .only
        .as_ref()
        .is_none_or(|o| o.contains(&Measurement::Memory))
        && !agent.exists()
    {
        bail!(
            "the agent binary {} does not exist (build it: cargo build --release -p agent)",
            agent.display()
        );
    }
    let scratch = std::env::temp_dir().join(format!("kube-nftproxy-bench-{}", std::process::id()));
    let bench = Bench {
        quick,
        runs_override: args.runs,
        only: args.only.clone(),
        agent,
        scratch: scratch.clone(),
    };
    let started = Instant::now();
    let mut machine = machine::describe();
    say(&format!(
        "kube-nftproxy-bench ({mode}): sizes {sizes:?} on {} ({} CPUs), kernel {}, load {}",
        machine.cpu, machine.cpus, machine.kernel, machine.load_at_start
    ));
    let mut results = Vec::new();
    let outcome = (|| -> Result<()> {
        for &n in &sizes {
            results.push(bench.size(n)?);
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    outcome?;
    machine.load_at_end = machine::load();
    let command = std::env::var("KNP_BENCH_COMMAND")
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|_| {
            std::iter::once("kube-nftproxy-bench".to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ")
        });
    let results = Results {
        mode: mode.to_owned(),
        command,
        machine,
        rss_method: measure::rss_method().to_owned(),
        took_s: started.elapsed().as_secs_f64(),
        sizes: results,
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&results).context("encoding the results")?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    say(&format!("results: {}", args.out.display()));
    if let Some(path) = &args.markdown {
        report::update_markdown(path, &results)?;
        say(&format!("report: {}", path.display()));
    }
    say(&format!("done in {:.1} min", results.took_s / 60.0));
    Ok(())
}
