//! The long-running agent: a source (the API server, or a manifest path) fills the shared
//! state; the sync loop turns it into rules when the runner says so; health and metrics are
//! served over HTTP. SIGTERM and SIGINT stop it without touching the rules.

use crate::config::Config;
use crate::engine::Engine;
use crate::health::{self, ProxyHealth, ServiceHealthCheck, ServiceHealthServer};
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::state::{Pending, Shared, SourceKind};
use crate::sync::SyncReport;
use anyhow::{Context, Result};
use model::{node_view, ClusterView, IpFamily, NodeConfig, NodeServices};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Where the cluster state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A manifest file or directory, read again when it changes.
    Manifests(PathBuf),
    /// The API server (kubeconfig, in-cluster, or a URL from the configuration).
    Kube,
}

const FAMILIES: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

/// How often the manifest source looks for changed files.
const MANIFEST_POLL: Duration = Duration::from_secs(1);

/// Everything the loop updates after a sync.
struct Outputs {
    health: Arc<ProxyHealth>,
    service_health: ServiceHealthServer,
    metrics: Arc<Metrics>,
    /// Publishes each sync's [`NodeServices`] to `/debug/services`.
    services: watch::Sender<Option<Weak<NodeServices>>>,
}

/// A listener for one of the node's HTTP servers ([`crate::listen::bind_tcp`]: `0.0.0.0` is
/// both families), logged with the address it got.
fn tokio_listener(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = crate::listen::bind_tcp(address)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if let Ok(local) = listener.local_addr() {
        tracing::info!(configured = %address, listening = %local, "HTTP listener open");
    }
    Ok(listener)
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config, source: Source) -> Result<()> {
    let node_config = config.node_config()?;
    let periods = config.sync_periods();
    let options = config.ruleset_options();
    let shared = Arc::new(Shared::new());
    let health = Arc::new(ProxyHealth::new(periods.retry * 2));
    let metrics = Arc::new(Metrics::new());
    let (services, services_feed) = watch::channel(None);

    // HTTP: /healthz and /livez; /metrics and /debug/services.
    let counted = {
        let metrics = metrics.clone();
        Arc::new(move |endpoint, code| metrics.node_health_response(endpoint, code))
    };
    let healthz = config.healthz_address()?;
    let listener = tokio_listener(healthz)
        .with_context(|| format!("binding healthz_bind_address {healthz}"))?;
    let router = health::node_router(health.clone(), counted);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the healthz server stopped: {e}");
        }
    });
    if let Some(addr) = config.metrics_address()? {
        let listener =
            tokio_listener(addr).with_context(|| format!("binding metrics_bind_address {addr}"))?;
        let router = crate::admin::router(metrics.clone(), services_feed);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("the metrics server stopped: {e}");
            }
        });
    }

    // The source.
    let source_task = match source {
        Source::Manifests(path) => tokio::spawn(crate::manifest_source::run(
            path,
            node_config.node_name.clone(),
            shared.clone(),
            MANIFEST_POLL,
        )),
        Source::Kube => {
            let kubeconfig =
                (!config.kubeconfig.is_empty()).then(|| PathBuf::from(&config.kubeconfig));
            let api_server = (!config.api_server.is_empty()).then(|| config.api_server.clone());
            let client = crate::source::kube::client(kubeconfig.as_deref(), api_server.as_deref())
                .await
                .context("connecting to the API server")?;
            let on_error = Arc::new(|kind: SourceKind, error: &str| {
                tracing::warn!(?kind, "watch error: {error}");
            });
            tokio::spawn(crate::source::kube::run(
                client,
                node_config.node_name.clone(),
                shared.clone(),
                on_error,
            ))
        }
    };

    // The per-Service checks answer with the same proxy health as /healthz.
    let outputs = Outputs {
        service_health: ServiceHealthServer::new(health.clone()),
        health,
        metrics,
        services,
    };
    let result = sync_loop(&config, &node_config, options, shared, &outputs).await;
    source_task.abort();
    result
}

/// The loop: wait for a change, a due sync, the watchdog or a signal.
async fn sync_loop(
    config: &Config,
    node_config: &NodeConfig,
    options: ruleset::Options,
    shared: Arc<Shared>,
    out: &Outputs,
) -> Result<()> {
    let periods = config.sync_periods();
    let mut runner = Runner::new(periods);
    let mut engine = Some(Engine::new(
        node_config.clone(),
        options,
        config.backend.backend(),
    ));
    // What the conntrack cleanup needs of the last sync's Services.
    let mut before: Option<nft::UdpState> = None;
    let mut ready_sent = false;
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut health_retry: Option<(Instant, Vec<ServiceHealthCheck>)> = None;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let watchdog = sd_notify::watchdog_enabled().map(|t| t / 2);
    let idle = Duration::from_secs(3600);

    loop {
        // Record what is waiting, for health and metrics.
        if shared.pending_since().is_some() {
            for family in FAMILIES {
                out.health.queued_update(family);
                out.metrics.queued(family, SystemTime::now());
            }
        }
        let (count, all) = shared.pending_count();
        out.metrics.pending(if all { count.max(1) } else { count });
        out.health
            .set_node(shared.with_view(|v| v.node().cloned()).as_ref());

        let pending = shared.pending_since().is_some();
        let due = if shared.initialized() {
            runner.next(pending)
        } else {
            None
        };
        let wake_at = due.map_or(Instant::now() + idle, |d| d.at);
        let wake_at = watchdog.map_or(wake_at, |w| wake_at.min(Instant::now() + w));
        let wake_at = health_retry
            .as_ref()
            .map_or(wake_at, |(at, _)| wake_at.min(*at));
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping; the rules stay in place");
                return Ok(());
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping; the rules stay in place");
                return Ok(());
            }
            _ = shared.changed() => continue,
            _ = tokio::time::sleep_until(wake_at.into()) => {}
        }
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
        // Health-check ports that could not be bound are tried again every retry period, also
        // when no sync is due.
        if let Some((at, checks)) = health_retry.take() {
            if at <= Instant::now() {
                let failures = out.service_health.sync(checks.clone());
                health_retry =
                    (!failures.is_empty()).then(|| (Instant::now() + periods.retry, checks));
            } else {
                health_retry = Some((at, checks));
            }
        }
        let Some(due) = due.filter(|d| d.at <= Instant::now()) else {
            continue;
        };

        // One sync: compute under the view's lock, commit without it. A full computation
        // holds the view (changes wait) until the engine has computed the node's services
        // again from it after the commit (`Engine::restore`).
        let started = Instant::now();
        let mut work = shared.take_pending();
        let mut e = engine.take().context("the engine is gone")?;
        let computed = shared.with_view_then_hold(|v| {
            let computed = e.compute(v, &work);
            let full = !computed.incremental();
            (computed, full)
        });
        if !computed.incremental() {
            // Everything was computed: which Services changed no longer matters (a first sync
            // names every Service), and a failed full sync is followed by a full one.
            work.services = BTreeSet::new();
            work.all = true;
        }
        let full = due.full;
        let joined = tokio::task::spawn_blocking(move || {
            let result = e.commit(computed, full);
            (e, result)
        })
        .await;
        let joined = joined.map(|(mut e, result)| {
            shared.with_view(|v| e.restore(v));
            (e, result)
        });
        shared.release();
        let (e, result) = joined.context("the sync task panicked")?;
        // Shared with the engine; dropped before its next computation (which then updates
        // them in place instead of copying them). None when the sync failed.
        let services = e.services();
        engine = Some(e);
        if let Some(services) = &services {
            // Each invalid object is reported once (when it appears), not at every sync; the
            // invalid-objects metric keeps counting it.
            let errors: BTreeSet<String> =
                services.errors.iter().map(ToString::to_string).collect();
            for error in &services.errors {
                if !reported.contains(&error.to_string()) {
                    tracing::warn!(reason = error.reason(), "{error}");
                }
            }
            reported = errors;
        }
        let ok = result.is_ok();
        runner.record(started, result.as_ref().map_or(full, |r| r.full), ok);
        match result {
            Ok(report) => {
                // A committed sync always leaves the engine its services (restored).
                let services = services
                    .unwrap_or_else(|| Arc::new(node_view(&ClusterView::new(), node_config)));
                let failed = after_sync(out, &work, &services, &report.sync, report.full, started);
                health_retry =
                    failed.then(|| (Instant::now() + periods.retry, health_checks(&services)));
                if config.conntrack_cleanup {
                    let after = nft::UdpState::of(&services);
                    if let Some(before) = &before {
                        cleanup_conntrack(out, before, &after).await;
                    }
                    before = Some(after);
                }
                if !ready_sent {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                    ready_sent = true;
                }
            }
            Err(e) => {
                tracing::error!("sync failed: {e}; retrying in {:?}", periods.retry);
                out.metrics.sync_failed(&FAMILIES);
                shared.restore_pending(work);
            }
        }
    }
}

/// Health, metrics, health-check listeners and the debug view after a successful sync; true
/// when a health-check port could not be opened.
fn after_sync(
    out: &Outputs,
    work: &Pending,
    services: &Arc<NodeServices>,
    report: &SyncReport,
    full: bool,
    started: Instant,
) -> bool {
    let finished = SystemTime::now();
    for family in FAMILIES {
        out.health.updated(family);
    }
    out.metrics.sync_done(
        full,
        &FAMILIES,
        started.elapsed(),
        finished,
        &report.transaction_sizes,
    );
    out.metrics.observe_services(services);
    for (svc, trigger) in &work.trigger_times {
        for fam in [&services.ipv4, &services.ipv6] {
            if fam.ports.keys().any(|p| &p.service == svc) {
                out.metrics
                    .network_programming(fam.family, *trigger, finished);
            }
        }
    }
    if report.operations > 0 {
        tracing::info!(
            operations = report.operations,
            services = report.services.len(),
            full,
            "{report}"
        );
    } else {
        tracing::debug!(full, "{report}");
    }
    // Bind failures are logged by the listeners and retried by the loop.
    let failed = !out.service_health.sync(health_checks(services)).is_empty();
    out.services.send_replace(Some(Arc::downgrade(services)));
    failed
}

/// One health-check listener per Service with a healthCheckNodePort, per family, on that
/// family's node-port addresses.
pub fn health_checks(services: &NodeServices) -> Vec<ServiceHealthCheck> {
    let mut out = Vec::new();
    for fam in [&services.ipv4, &services.ipv6] {
        if fam.node_port_ips.is_empty() {
            continue;
        }
        for (svc, hc) in &fam.health_checks {
            out.push(ServiceHealthCheck {
                service: svc.clone(),
                family: fam.family,
                port: hc.node_port,
                addresses: fam.node_port_ips.clone(),
                local_endpoints: hc.local_endpoints,
            });
        }
    }
    out
}

/// Deletes the conntrack entries of UDP flows whose endpoint went away (and of UDP
/// destinations that just got endpoints), and counts them.
async fn cleanup_conntrack(out: &Outputs, before: &nft::UdpState, after: &nft::UdpState) {
    let flows = before.stale_flows(after);
    if flows.is_empty() {
        return;
    }
    let result = tokio::task::spawn_blocking(move || {
        FAMILIES
            .iter()
            .map(|family| {
                let mine: Vec<nft::UdpFlowMatch> = flows
                    .iter()
                    .filter(|f| {
                        let (nft::UdpFlowMatch::ToEndpoint { ip, .. }
                        | nft::UdpFlowMatch::ToDestination { ip, .. }) = f;
                        IpFamily::of(ip) == *family
                    })
                    .cloned()
                    .collect();
                (*family, nft::delete_udp_flows(&mine))
            })
            .collect::<Vec<_>>()
    })
    .await;
    match result {
        Ok(per_family) => {
            for (family, deleted) in per_family {
                match deleted {
                    Ok(n) => out.metrics.conntrack_deleted(family, n),
                    Err(e) => tracing::warn!(?family, "deleting stale UDP flows: {e}"),
                }
            }
        }
        Err(e) => tracing::warn!("the conntrack task panicked: {e}"),
    }
}
