//! The measurements. Each runs in network namespaces of its own, made fresh for it and deleted
//! after it; the engine and the backends only ever run on threads inside them.

use crate::ns::{in_ns, Cluster, Ns};
use crate::stats::{ms, percentile, Stat};
use crate::workload::{self, Workload, NODE};
use agent::engine::{Engine, EngineReport};
use agent::state::Pending;
use anyhow::{bail, Context, Result};
use model::ClusterView;
use nft::{Backend, Netlink, NftCommand};
use ruleset::{plan, Ruleset, Transaction};
use serde::Serialize;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A new engine for the benchmark node, programming over netlink.
fn engine() -> Engine {
    Engine::new(
        workload::node_config(),
        ruleset::Options::default(),
        Box::new(Netlink),
    )
}

/// Pending work that names every Service (a first sync, a restart).
fn everything(w: &Workload) -> Pending {
    Pending {
        services: w.service_refs().into_iter().collect(),
        all: true,
        since: Some(Instant::now()),
        ..Pending::default()
    }
}

/// The desired ruleset of `w` and the transaction that programs it into an empty kernel.
pub fn desired(w: &Workload) -> (Ruleset, Transaction) {
    let services = model::node_view(&w.view(), &workload::node_config());
    let desired = ruleset::desired(&services, &ruleset::Options::default());
    let txn = plan(&Ruleset::default(), &desired);
    (desired, txn)
}

/// Fails unless the kernel of the calling thread's namespace holds exactly `desired`.
fn check_kernel(desired: &Ruleset, what: &str) -> Result<()> {
    let current = Netlink
        .read(&ruleset::Options::default().table_name)
        .context("reading the tables back")?;
    let diff = plan(&current, desired);
    if !diff.is_empty() {
        bail!(
            "after {what} the kernel differs from the desired ruleset by {} operations, first: {}",
            diff.len(),
            diff.ops.first().map(|op| op.render()).unwrap_or_default()
        );
    }
    Ok(())
}

/// User and system CPU time of the calling thread, in clock ticks (1/100 s).
fn thread_cpu_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return (0, 0);
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0);
    (field(14), field(15))
}

/// One full sync from empty through the engine.
#[derive(Debug, Clone, Default)]
pub struct FullRun {
    /// Objects → view → model → ruleset → kernel.
    pub total: Duration,
    /// Objects into the cluster view.
    pub view: Duration,
    /// The engine's sync alone (compute, read, plan, apply).
    pub engine: Duration,
    /// Its parts.
    pub compute: Duration,
    /// Reading the (empty) kernel tables.
    pub read: Duration,
    /// Planning.
    pub plan: Duration,
    /// Applying (netlink: encoding and the kernel).
    pub apply: Duration,
    /// Operations.
    pub operations: usize,
}

/// A full sync from empty in a fresh namespace; `check` verifies the kernel afterwards.
pub fn full_sync(w: &Arc<Workload>, desired: &Arc<Ruleset>, check: bool) -> Result<FullRun> {
    let ns = Ns::new()?;
    let (w, desired) = (w.clone(), desired.clone());
    ns.run(move || {
        let pending = everything(&w);
        let (services, slices, nodes) = (w.services.clone(), w.slices.clone(), w.nodes.clone());
        let mut engine = engine();
        let started = Instant::now();
        let view = ClusterView::from_objects(services, slices, nodes, NODE);
        let view_took = started.elapsed();
        let report = engine.sync(&view, &pending, true)?;
        let total = started.elapsed();
        if check {
            check_kernel(&desired, "our full sync")?;
        }
        Ok(FullRun {
            total,
            view: view_took,
            engine: total - view_took,
            compute: report.compute,
            read: report.sync.read,
            plan: report.sync.plan,
            apply: report.sync.apply,
            operations: report.sync.operations,
        })
    })
}

/// One `nft -f` load of the whole transaction.
#[derive(Debug, Clone, Default)]
pub struct NftRun {
    /// Rendering the text and running `nft -f -` on it.
    pub total: Duration,
    /// Rendering the text alone.
    pub render: Duration,
}

/// The transaction's text piped to `nft -f -` in a fresh namespace.
pub fn nft_f(txn: &Arc<Transaction>, desired: &Arc<Ruleset>, check: bool) -> Result<NftRun> {
    let ns = Ns::new()?;
    let (txn, desired) = (txn.clone(), desired.clone());
    ns.run(move || {
        let started = Instant::now();
        let text = txn.render();
        let render = started.elapsed();
        drop(text);
        let started = Instant::now();
        // Renders the text again, then pipes it to nft.
        NftCommand::default().apply(&txn)?;
        let total = started.elapsed();
        if check {
            check_kernel(&desired, "nft -f")?;
        }
        Ok(NftRun { total, render })
    })
}

/// The netlink batch alone.
#[derive(Debug, Clone, Default)]
pub struct BatchRun {
    /// Building the batch with libnftnl, sending it, the kernel processing it.
    pub total: Duration,
    /// User CPU time of the thread meanwhile (ticks of 10 ms).
    pub user_ticks: u64,
    /// System CPU time (the kernel processing the batch inside `sendmsg`).
    pub system_ticks: u64,
}

/// `Netlink.apply` of the whole transaction, timed by itself, in a fresh namespace.
pub fn batch(txn: &Arc<Transaction>) -> Result<BatchRun> {
    let ns = Ns::new()?;
    let txn = txn.clone();
    ns.run(move || {
        let (user0, system0) = thread_cpu_ticks();
        let started = Instant::now();
        Netlink.apply(&txn)?;
        let total = started.elapsed();
        let (user1, system1) = thread_cpu_ticks();
        Ok(BatchRun {
            total,
            user_ticks: user1.saturating_sub(user0),
            system_ticks: system1.saturating_sub(system0),
        })
    })
}

/// A partial sync.
#[derive(Debug, Clone, Default)]
pub struct ChangeRun {
    /// From the change entering the view to the transaction committed.
    pub latency: Duration,
    /// The engine's compute.
    pub compute: Duration,
    /// Plan.
    pub plan: Duration,
    /// Apply.
    pub apply: Duration,
    /// Operations.
    pub operations: usize,
}

impl ChangeRun {
    fn new(latency: Duration, report: &EngineReport) -> ChangeRun {
        ChangeRun {
            latency,
            compute: report.compute,
            plan: report.sync.plan,
            apply: report.sync.apply,
            operations: report.sync.operations,
        }
    }
}

/// Endpoint changes after a full sync, in a fresh namespace: `singles` changes of one
/// endpoint each (one sync each), then `batches` syncs of `per_batch` changes coalesced.
pub fn changes(
    w: &Arc<Workload>,
    singles: usize,
    batches: usize,
    per_batch: usize,
) -> Result<(Vec<ChangeRun>, Vec<ChangeRun>)> {
    let ns = Ns::new()?;
    let w = w.clone();
    ns.run(move || {
        let mut view = w.view();
        let mut engine = engine();
        engine.sync(&view, &everything(&w), true)?;
        let picks = w.pick(singles + batches * per_batch, 1);
        let mut picks = picks.iter().copied().cycle();
        let mut serial = 0;
        let mut one = Vec::new();
        for _ in 0..singles {
            let i = picks.next().unwrap_or_default();
            let slice = w.changed_slice(i, serial);
            serial += 1;
            // Let the kernel finish the previous transaction's deferred work.
            std::thread::sleep(Duration::from_millis(10));
            let started = Instant::now();
            let touched = view.upsert_slice(slice);
            let pending = Pending {
                services: touched.into_iter().collect(),
                since: Some(started),
                ..Pending::default()
            };
            let report = engine.sync(&view, &pending, false)?;
            one.push(ChangeRun::new(started.elapsed(), &report));
        }
        let mut coalesced = Vec::new();
        for _ in 0..batches {
            let slices: Vec<_> = (0..per_batch)
                .map(|_| {
                    serial += 1;
                    w.changed_slice(picks.next().unwrap_or_default(), serial)
                })
                .collect();
            std::thread::sleep(Duration::from_millis(10));
            let started = Instant::now();
            let mut pending = Pending {
                since: Some(started),
                ..Pending::default()
            };
            for slice in slices {
                pending.services.extend(view.upsert_slice(slice));
            }
            let report = engine.sync(&view, &pending, false)?;
            coalesced.push(ChangeRun::new(started.elapsed(), &report));
        }
        Ok((one, coalesced))
    })
}

/// A restart: a new engine adopting the tables a previous one left.
#[derive(Debug, Clone, Default)]
pub struct RestartRun {
    /// The whole first sync of the new engine.
    pub total: Duration,
    /// Compute.
    pub compute: Duration,
    /// Reading the kernel's tables back.
    pub read: Duration,
    /// Plan.
    pub plan: Duration,
    /// Apply.
    pub apply: Duration,
    /// Operations.
    pub operations: usize,
}

/// Restarts in a fresh namespace: `runs` with nothing changed, then `runs` with `percent` of
/// the Services changed (one endpoint each) since the previous engine's last sync.
pub fn restarts(
    w: &Arc<Workload>,
    runs: usize,
    percent: usize,
) -> Result<(Vec<RestartRun>, Vec<RestartRun>)> {
    let ns = Ns::new()?;
    let w = w.clone();
    ns.run(move || {
        let view_a = w.view();
        let pending = everything(&w);
        engine().sync(&view_a, &pending, true)?;
        let restart = |view: &ClusterView| -> Result<RestartRun> {
            let mut engine = engine();
            let pending = everything(&w);
            let started = Instant::now();
            let report = engine.sync(view, &pending, true)?;
            Ok(RestartRun {
                total: started.elapsed(),
                compute: report.compute,
                read: report.sync.read,
                plan: report.sync.plan,
                apply: report.sync.apply,
                operations: report.sync.operations,
            })
        };
        let unchanged = (0..runs)
            .map(|_| restart(&view_a))
            .collect::<Result<Vec<_>>>()?;
        let mut view_b = view_a.clone();
        for i in w.pick((w.n * percent).div_ceil(100), 11) {
            view_b.upsert_slice(w.changed_slice(i, 1_000_000 + i));
        }
        // The kernel holds A: restart into B, then back into A, and so on.
        let changed = (0..runs)
            .map(|r| {
                restart(if r.is_multiple_of(2) {
                    &view_b
                } else {
                    &view_a
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((unchanged, changed))
    })
}

/// One run of the agent binary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentRun {
    /// Its peak resident set size, in KiB.
    pub peak_rss_kib: u64,
    /// Wall time of the process (reading the manifests included).
    pub wall_ms: f64,
    /// Operations it applied (from its summary line).
    pub operations: Option<usize>,
    /// Its summary line.
    pub summary: String,
}

/// Where the agent's manifests and configuration are written for one workload.
pub struct AgentFiles {
    /// The manifest directory.
    pub manifests: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// Scratch files (GNU time's output).
    pub scratch: PathBuf,
    /// The manifest's size in bytes.
    pub manifest_bytes: usize,
}

impl AgentFiles {
    /// Writes them under `dir` (created; the caller removes it).
    pub fn write(dir: &Path, w: &Workload) -> Result<AgentFiles> {
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests)
            .with_context(|| format!("creating {}", manifests.display()))?;
        let yaml = w.manifest_yaml().context("writing the manifests as YAML")?;
        let manifest_bytes = yaml.len();
        std::fs::write(manifests.join("cluster.yaml"), yaml).context("writing the manifests")?;
        let config = dir.join("config.toml");
        std::fs::write(&config, workload::config_toml()).context("writing the configuration")?;
        Ok(AgentFiles {
            manifests,
            config,
            scratch: dir.to_owned(),
            manifest_bytes,
        })
    }
}

/// How peak RSS is measured.
pub fn rss_method() -> &'static str {
    if Path::new(GNU_TIME).exists() {
        "GNU time (wait4 ru_maxrss of the agent process)"
    } else {
        "VmHWM of /proc/<pid>/status, polled every millisecond"
    }
}

const GNU_TIME: &str = "/usr/bin/time";

/// Runs `agent run --manifests … --config … --once` in `ns` and measures it.
pub fn agent_once(ns: &Ns, agent: &Path, files: &AgentFiles) -> Result<AgentRun> {
    let args = [
        "run".as_ref(),
        "--manifests".as_ref(),
        files.manifests.as_os_str(),
        "--config".as_ref(),
        files.config.as_os_str(),
        "--once".as_ref(),
    ];
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let time_file = files.scratch.join("time.txt");
    let gnu_time = Path::new(GNU_TIME).exists();
    if gnu_time {
        cmd.arg(GNU_TIME)
            .args(["-f", "%M", "-o"])
            .arg(&time_file)
            .arg(agent);
    } else {
        // `ip netns exec` execs the program: the child is the agent itself.
        cmd.arg(agent);
    }
    cmd.args(args);
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting the agent")?;
    let mut hwm = 0;
    if !gnu_time {
        let status = format!("/proc/{}/status", child.id());
        while child.try_wait()?.is_none() {
            if let Ok(text) = std::fs::read_to_string(&status) {
                hwm = hwm.max(kib_field(&text, "VmHWM:").unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let out = child.wait_with_output().context("waiting for the agent")?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        bail!(
            "the agent failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let peak_rss_kib = if gnu_time {
        std::fs::read_to_string(&time_file)
            .context("reading GNU time's output")?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .context("no peak RSS in GNU time's output")?
    } else {
        hwm
    };
    let operations = stdout
        .strip_prefix("applied ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Ok(AgentRun {
        peak_rss_kib,
        wall_ms: ms(wall),
        operations,
        summary: stdout,
    })
}

/// The value in KiB of a `/proc/<pid>/status` line such as `VmHWM:   1234 kB`.
pub fn kib_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The agent from empty (its peak RSS) and restarted on its own tables, in a fresh namespace.
pub fn agent_pair(agent: &Path, files: &AgentFiles) -> Result<(AgentRun, AgentRun)> {
    let ns = Ns::new()?;
    let first = agent_once(&ns, agent, files)?;
    let second = agent_once(&ns, agent, files)?;
    Ok((first, second))
}

/// TCP connection times through the target ClusterIP, in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connects {
    /// Services in the table (the target included).
    pub services: usize,
    /// Median of every connection.
    pub median_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Fastest and slowest.
    pub min_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// The median of each round.
    pub round_medians_us: Vec<f64>,
    /// Connections that failed (timed out or refused).
    pub failures: usize,
    /// Connections timed.
    pub count: usize,
}

impl Connects {
    fn of(services: usize, rounds: &[Vec<f64>], failures: usize) -> Connects {
        let mut all: Vec<f64> = rounds.iter().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        let round_medians_us = rounds
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.sort_by(f64::total_cmp);
                percentile(&r, 50.0)
            })
            .collect();
        Connects {
            services,
            median_us: percentile(&all, 50.0),
            p99_us: percentile(&all, 99.0),
            min_us: all.first().copied().unwrap_or_default(),
            max_us: all.last().copied().unwrap_or_default(),
            round_medians_us,
            failures,
            count: all.len(),
        }
    }
}

/// A test-bed cluster programmed with `w` plus the target Service, its echo server running.
struct DataPlaneCluster {
    // Declared first: the server stops before the namespaces go.
    _server: testbed::EchoServer,
    cluster: Cluster,
    services: usize,
}

impl DataPlaneCluster {
    fn new(w: &Arc<Workload>) -> Result<DataPlaneCluster> {
        let cluster = Cluster::new()?;
        let server = cluster.inner.pod("server");
        let endpoint = server.ipv4();
        let echo = testbed::EchoServer::start_protos(
            server.ns(),
            workload::TARGET_ENDPOINT_PORT,
            &[testbed::Proto::Tcp],
        )
        .context("starting the echo server")?;
        let services = w.n + 1;
        let w = w.clone();
        in_ns(cluster.inner.node().name(), move || {
            let mut view = w.view();
            let (svc, slice) = workload::target(endpoint);
            let mut pending = everything(&w);
            pending.services.insert(view.upsert_service(svc));
            pending.services.extend(view.upsert_slice(slice));
            engine().sync(&view, &pending, true)?;
            Ok(())
        })?;
        Ok(DataPlaneCluster {
            _server: echo,
            cluster,
            services,
        })
    }

    /// `count` connections from the client pod; their times in µs, and the failures.
    fn connect(&self, count: usize) -> Result<(Vec<f64>, usize)> {
        let client = self.cluster.inner.pod("client").ns().name().to_owned();
        in_ns(&client, move || {
            let to = SocketAddr::from((workload::TARGET_IP, workload::TARGET_PORT));
            let mut times = Vec::with_capacity(count);
            let mut failures = 0;
            for _ in 0..count {
                let started = Instant::now();
                match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                    Ok(stream) => {
                        times.push(started.elapsed().as_secs_f64() * 1e6);
                        drop(stream);
                    }
                    Err(_) => failures += 1,
                }
            }
            Ok((times, failures))
        })
    }
}

/// Connection times with 10 Services and with `w`'s N in the table, measured alternately in
/// two test-bed clusters: `rounds` rounds of `per_round` connections each.
pub fn data_plane(
    w: &Arc<Workload>,
    rounds: usize,
    per_round: usize,
) -> Result<(Connects, Connects)> {
    let small = DataPlaneCluster::new(&Arc::new(Workload::new(9)))?;
    let large = DataPlaneCluster::new(w)?;
    // Warm up: neighbour entries, route lookups, the echo server's first accepts.
    for c in [&small, &large] {
        let (_, failures) = c.connect(20)?;
        if failures == 20 {
            bail!("no connection through the ClusterIP succeeded");
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut fa, mut fb) = (0, 0);
    for round in 0..rounds {
        // Alternate which goes first, so drift in the machine's load hits both alike.
        let order = if round.is_multiple_of(2) {
            [(&small, 0), (&large, 1)]
        } else {
            [(&large, 1), (&small, 0)]
        };
        for (c, which) in order {
            let (times, failures) = c.connect(per_round)?;
            if which == 0 {
                a.push(times);
                fa += failures;
            } else {
                b.push(times);
                fb += failures;
            }
        }
    }
    Ok((
        Connects::of(small.services, &a, fa),
        Connects::of(large.services, &b, fb),
    ))
}

/// Summaries of runs, field by field.
pub fn stat_of<T>(runs: &[T], f: impl Fn(&T) -> Duration) -> Stat {
    Stat::ms(&runs.iter().map(f).collect::<Vec<_>>())
}

/// Summary of a count over runs.
pub fn count_of<T>(runs: &[T], f: impl Fn(&T) -> usize) -> Stat {
    Stat::of(runs.iter().map(|r| f(r) as f64).collect())
}
