//! The Markdown report: one generated section per mode in a file whose other parts (the
//! analysis written by hand) are kept as they are.

use crate::stats::Stat;
use crate::{Results, SizeResults};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

fn begin(mode: &str) -> String {
    format!("<!-- BEGIN GENERATED {mode}: written by kube-nftproxy-bench, do not edit by hand -->")
}

fn end(mode: &str) -> String {
    format!("<!-- END GENERATED {mode} -->")
}

/// Replaces this mode's generated section of `path` (or appends it; creates the file).
pub fn update_markdown(path: &Path, results: &Results) -> Result<()> {
    let section = section(results);
    let (b, e) = (begin(&results.mode), end(&results.mode));
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = match (old.find(&b), old.find(&e)) {
        (Some(start), Some(stop)) if start < stop => {
            format!("{}{section}{}", &old[..start], &old[stop + e.len()..])
        }
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

fn c(stat: &Stat, digits: usize) -> String {
    stat.show(digits)
}

/// Decimals that suit a figure of this size.
fn auto(stat: &Stat) -> String {
    let digits = if stat.median >= 100.0 {
        0
    } else if stat.median >= 10.0 {
        1
    } else {
        2
    };
    stat.show(digits)
}

fn section(r: &Results) -> String {
    let mut s = String::new();
    let sizes: Vec<String> = r.sizes.iter().map(|z| thousands(z.services)).collect();
    let m = &r.machine;
    let _ = writeln!(s, "{}", begin(&r.mode));
    let _ = writeln!(
        s,
        "\n### {} mode: {} Services\n",
        capitalise(&r.mode),
        sizes.join(", ")
    );
    let _ = writeln!(
        s,
        "Produced by `{}` on {} in {:.1} minutes ({}).\n",
        r.command,
        m.date,
        r.took_s / 60.0,
        json_name(r)
    );
    let _ = writeln!(s, "| machine | |\n|---|---|");
    let _ = writeln!(
        s,
        "| CPU | {}, {} CPUs, {} MiB memory (shared, noisy) |",
        m.cpu, m.cpus, m.memory_mib
    );
    let _ = writeln!(s, "| OS, kernel | {}, Linux {} |", m.os, m.kernel);
    let _ = writeln!(s, "| nftables | {}, {} |", m.nft, m.libnftnl);
    let _ = writeln!(
        s,
        "| build | kube-nftproxy {}, {}, release profile |",
        m.kube_nftproxy, m.rustc
    );
    let _ = writeln!(
        s,
        "| load average (1, 5, 15 min) | {} at the start, {} at the end |",
        m.load_at_start, m.load_at_end
    );
    let _ = writeln!(
        s,
        "\nFigures are the median (min–max) of the runs given. Ratios are taken run by run — \
         the three measurements of items 1–3 run back to back, in a rotating order, each in a \
         fresh namespace — and then summarised the same way. Times in milliseconds unless \
         marked.\n"
    );

    let _ = writeln!(s, "#### Workload and ruleset\n");
    let _ = writeln!(
        s,
        "| Services | endpoints | ClusterIP / NodePort / LoadBalancer (eTP Local) | iTP Local | ClientIP affinity | chains | rules | sets, maps | elements | operations from empty | `nft -f` text |"
    );
    let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for z in &r.sizes {
        let x = &z.mix;
        let g = &z.ruleset;
        let _ = writeln!(
            s,
            "| {} | {} | {} / {} / {} ({}) | {} | {} | {} | {} | {} | {} | {} | {:.1} MB |",
            thousands(z.services),
            thousands(z.endpoints),
            thousands(x.cluster_ip),
            thousands(x.node_port),
            x.load_balancer,
            x.external_local,
            thousands(x.internal_local),
            x.affinity,
            thousands(g.chains),
            thousands(g.rules),
            g.sets,
            thousands(g.elements),
            thousands(g.operations),
            g.nft_text_bytes as f64 / 1e6
        );
    }
    if let Some(z) = r.sizes.last() {
        let kinds: Vec<String> = z
            .ruleset
            .operations_by_kind
            .iter()
            .map(|(k, n)| format!("{} {k}", thousands(*n)))
            .collect();
        let _ = writeln!(
            s,
            "\nOperations from empty at {} Services: {}.",
            thousands(z.services),
            kinds.join(", ")
        );
    }

    if r.sizes.iter().any(|z| z.sync.is_some()) {
        let _ = writeln!(
            s,
            "\n#### 1–3. Full sync from empty; the same transaction through `nft -f`; the netlink batch alone\n"
        );
        let _ = writeln!(
            s,
            "| Services | runs | ours, end to end | objects → view | compute (model + ruleset) | read | plan | apply (netlink) | netlink batch alone | `nft -f` (of which rendering) | ours / batch | `nft -f` / ours |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for z in &r.sizes {
            let Some(y) = &z.sync else { continue };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {}× | {}× |",
                thousands(z.services),
                y.total.samples.len(),
                auto(&y.total),
                auto(&y.view),
                auto(&y.compute),
                auto(&y.read),
                auto(&y.plan),
                auto(&y.apply),
                auto(&y.batch),
                auto(&y.nft_f),
                auto(&y.nft_render),
                c(&y.total_over_batch, 2),
                c(&y.nft_over_total, 1),
            );
        }
        let _ = writeln!(
            s,
            "\n\"Ours, end to end\" is objects → `ClusterView` → `Engine::sync` (model, ruleset, \
             read of the empty tables, plan, netlink apply: above {stage} Services in stages of \
             {stage} whole Services, each its own transaction, as the agent does into empty \
             tables). \"Netlink batch alone\" is `nft::Netlink.apply` of the same operations \
             in one transaction, timed by itself: libnftnl building \
             the messages, then the kernel processing the batch inside `sendmsg`. Where the \
             batch's CPU time goes (thread user vs system time, 10 ms ticks, all runs):",
            stage = thousands(agent::sync::STAGE_SERVICES)
        );
        for z in &r.sizes {
            let Some(y) = &z.sync else { continue };
            let _ = writeln!(
                s,
                "- {} Services: {:.0} ms of CPU per batch, {:.0} % in the kernel (system time), {:.0} % building the messages (user time).",
                thousands(z.services),
                y.batch_cpu_ms,
                y.batch_system_share * 100.0,
                (1.0 - y.batch_system_share) * 100.0
            );
        }
        let _ = writeln!(
            s,
            "\nThe engine's sync alone (without building the view) over the batch alone: {}.",
            r.sizes
                .iter()
                .filter_map(|z| z.sync.as_ref().map(|y| format!(
                    "{}× at {}",
                    c(&y.engine_over_batch, 2),
                    thousands(z.services)
                )))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if r.sizes.iter().any(|z| z.change.is_some()) {
        let _ = writeln!(s, "\n#### 4. Endpoint changes (partial syncs)\n");
        let _ = writeln!(
            s,
            "| Services | changes | one endpoint: latency | compute | plan | apply | operations | syncs | 100 coalesced: latency | compute | plan | apply | operations |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for z in &r.sizes {
            let Some(y) = &z.change else { continue };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                thousands(z.services),
                y.latency.samples.len(),
                auto(&y.latency),
                auto(&y.compute),
                auto(&y.plan),
                auto(&y.apply),
                c(&y.operations, 0),
                y.coalesced_latency.samples.len(),
                auto(&y.coalesced_latency),
                auto(&y.coalesced_compute),
                auto(&y.coalesced_plan),
                auto(&y.coalesced_apply),
                c(&y.coalesced_operations, 0),
            );
        }
        let _ = writeln!(
            s,
            "\nLatency runs from the new EndpointSlice entering the `ClusterView` to \
             `Engine::sync` returning with the transaction committed (the engine is told \
             exactly which Services changed), without the configured minimum interval between \
             syncs. The changed endpoint is on another node (a pod replaced by a new one)."
        );
    }

    if r.sizes.iter().any(|z| z.restart.is_some()) {
        let _ = writeln!(
            s,
            "\n#### 5. Restart: a new engine adopting the tables a previous one left\n"
        );
        let _ = writeln!(
            s,
            "| Services | runs | nothing changed: operations | time | compute | read | plan | 1 % changed: operations | time | read | plan | apply |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for z in &r.sizes {
            let Some(y) = &z.restart else { continue };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                thousands(z.services),
                y.unchanged.samples.len(),
                c(&y.unchanged_operations, 0),
                auto(&y.unchanged),
                auto(&y.unchanged_compute),
                auto(&y.unchanged_read),
                auto(&y.unchanged_plan),
                c(&y.changed_operations, 0),
                auto(&y.changed),
                auto(&y.changed_read),
                auto(&y.changed_plan),
                auto(&y.changed_apply),
            );
        }
    }

    if r.sizes.iter().any(|z| z.memory.is_some()) {
        let _ = writeln!(s, "\n#### 6. Memory: peak RSS of the agent process\n");
        let _ = writeln!(
            s,
            "| Services | runs | `--once` from empty: peak RSS, MB | `--once` restarted on its tables | operations when restarted | daemon, first sync from empty | daemon restarted on its tables | wall time from empty (`--once`), ms | manifest (YAML) |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for z in &r.sizes {
            let Some(y) = &z.memory else { continue };
            let restart_ops: Vec<String> = y
                .runs
                .iter()
                .map(|(_, b)| b.operations.map_or("?".into(), |n| n.to_string()))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MB |",
                thousands(z.services),
                y.runs.len(),
                c(&y.peak_rss_mb, 1),
                c(&y.restart_peak_rss_mb, 1),
                restart_ops.join(", "),
                c(&y.daemon_peak_rss_mb, 1),
                c(&y.daemon_restart_peak_rss_mb, 1),
                auto(&y.wall_ms),
                y.manifest_bytes as f64 / 1e6
            );
        }
        let _ = writeln!(
            s,
            "\n`kube-nftproxy run --manifests DIR --config FILE --once` in a fresh namespace, \
             reading the generated YAML, then again on the tables it left; peak RSS by {}. \
             The daemon is the same command without `--once`, as a node runs it: it keeps the \
             cluster view, the model's output and the desired ruleset between syncs; its peak \
             is its VmHWM once its first sync is committed (its log line), after which it is \
             stopped. MB are 10^6 bytes.",
            r.rss_method
        );
    }

    if r.sizes.iter().any(|z| z.data_plane.is_some()) {
        let _ = writeln!(
            s,
            "\n#### 7. Data plane: opening a TCP connection through a ClusterIP\n"
        );
        let _ = writeln!(
            s,
            "| N | connections each | 10 Services: median, µs | p99, µs | N Services: median, µs | p99, µs | median N / 10 | failures |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|");
        for z in &r.sizes {
            let Some(y) = &z.data_plane else { continue };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} |",
                thousands(z.services),
                y.n.count,
                y.ten.median_us,
                y.ten.p99_us,
                y.n.median_us,
                y.n.p99_us,
                y.n.median_us / y.ten.median_us.max(1e-9),
                y.ten.failures + y.n.failures
            );
        }
        let _ = writeln!(
            s,
            "\nA client pod connects (`TcpStream::connect_timeout`, from a thread inside its \
             namespace) to a ClusterIP whose one endpoint is a pod behind the node; the node's \
             table holds 10 Services in one test-bed cluster and N (+ the target) in another, \
             measured in alternating rounds of 100 connections. The time is the TCP handshake: \
             the SYN is the packet that goes through the `nat` chains."
        );
    }

    let _ = writeln!(s, "\n#### Goals\n");
    goals(&mut s, r);
    let _ = writeln!(s, "\n{}", end(&r.mode));
    s
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn json_name(r: &Results) -> String {
    let sizes: Vec<String> = r.sizes.iter().map(|z| z.services.to_string()).collect();
    format!(
        "{} Services; the JSON results hold every sample",
        sizes.join(", ")
    )
}

/// The goals, judged at 10 000 Services when measured, else at the largest size measured.
fn goals(s: &mut String, r: &Results) {
    let at = r
        .sizes
        .iter()
        .find(|z| z.services == 10_000)
        .or_else(|| r.sizes.iter().max_by_key(|z| z.services));
    let Some(z) = at else { return };
    let note = if z.services == 10_000 {
        String::new()
    } else {
        format!(
            " (10 000 not measured in this mode: judged at {})",
            thousands(z.services)
        )
    };
    let _ = writeln!(
        s,
        "Judged at {} Services{note}.\n\n| goal | measured | met |\n|---|---|:-:|",
        thousands(z.services)
    );
    let mark = |ok: bool| if ok { "yes" } else { "**no**" };
    if let Some(y) = &z.sync {
        let _ = writeln!(
            s,
            "| full sync ≤ 1.2 × the kernel's own batch time | {}× run by run ({} ms vs {} ms); our own work besides the apply (view, compute, read, plan) is {} ms: 1 + own / batch = {}× | {} |",
            c(&y.total_over_batch, 2),
            auto(&y.total),
            auto(&y.batch),
            auto(&y.own),
            c(&y.own_over_batch, 3),
            mark(y.total_over_batch.median <= 1.2)
        );
        let _ = writeln!(
            s,
            "| full sync ≥ 2 × faster than `nft -f` | {}× ({} ms vs {} ms) | {} |",
            c(&y.nft_over_total, 1),
            auto(&y.total),
            auto(&y.nft_f),
            mark(y.nft_over_total.median >= 2.0)
        );
    }
    if let Some(y) = &z.change {
        let _ = writeln!(
            s,
            "| one endpoint change committed in < 5 ms (+ the minimum interval) | {} ms, {} operations | {} |",
            auto(&y.latency),
            c(&y.operations, 0),
            mark(y.latency.median < 5.0)
        );
    }
    let restarts: Vec<&SizeResults> = r.sizes.iter().filter(|z| z.restart.is_some()).collect();
    if !restarts.is_empty() {
        let all_zero = restarts.iter().all(|z| {
            z.restart
                .as_ref()
                .is_some_and(|y| y.unchanged_operations.max == 0.0)
        });
        let figures: Vec<String> = restarts
            .iter()
            .filter_map(|z| {
                z.restart.as_ref().map(|y| {
                    format!(
                        "{} operations at {}",
                        c(&y.unchanged_operations, 0),
                        thousands(z.services)
                    )
                })
            })
            .collect();
        let _ = writeln!(
            s,
            "| restart with nothing changed: zero operations | {} | {} |",
            figures.join(", "),
            mark(all_zero)
        );
    }
    if let Some(y) = &z.memory {
        let _ = writeln!(
            s,
            "| peak RSS < 60 MB (10 000 Services × 10 endpoints; the highest of `--once` and the daemon, from empty and restarted) | {:.1} MB | {} |",
            y.worst_median_mb(),
            mark(y.worst_median_mb() < 60.0)
        );
    }
}
