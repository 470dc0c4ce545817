//! Network namespaces for the benchmarks: each measurement gets fresh ones, deleted on drop
//! (also on a panic) and, on SIGINT or SIGTERM, by a watcher thread before the process exits.

use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use testbed::{NetNs, TestCluster};

/// The names of the namespaces alive now.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn register(name: &str) {
    live().push(name.to_owned());
}

fn unregister(name: &str) {
    live().retain(|n| n != name);
}

/// The path `nft::in_netns` joins for namespace `name`.
pub fn path_of(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// A fresh namespace (`knp-bench-<pid>-<n>`, loopback up).
pub struct Ns {
    inner: NetNs,
}

impl Ns {
    /// Creates one.
    pub fn new() -> Result<Ns> {
        let inner = NetNs::new("bench").context("creating a network namespace")?;
        register(inner.name());
        Ok(Ns { inner })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Runs `f` on a thread inside it and returns its result.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        in_ns(self.name(), f)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        unregister(self.inner.name());
        // `inner` deletes the namespace when dropped right after this.
    }
}

/// Runs `f` on a thread inside the namespace called `name`.
pub fn in_ns<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    nft::in_netns(&path_of(name), f)
        .map_err(|e| anyhow!("running in network namespace {name}: {e}"))?
}

/// A test-bed cluster whose namespaces the signal watcher knows about.
pub struct Cluster {
    /// The cluster (node, client, pods).
    pub inner: TestCluster,
    names: Vec<String>,
}

impl Cluster {
    /// Builds a cluster with a client pod on this node and a server pod on "another".
    pub fn new() -> Result<Cluster> {
        let inner = TestCluster::builder()
            .local_pod("client", 2)
            .remote_pod("server", 3)
            .build()
            .context("building a test-bed cluster")?;
        let mut names = vec![
            inner.node().name().to_owned(),
            inner.client().name().to_owned(),
        ];
        names.extend(inner.pods().iter().map(|p| p.ns().name().to_owned()));
        for name in &names {
            register(name);
        }
        Ok(Cluster { inner, names })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for name in &self.names {
            unregister(name);
        }
    }
}

/// On SIGINT or SIGTERM: delete every namespace still alive, then exit (status 130).
pub fn clean_up_on_signal() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal watcher")?;
    std::thread::spawn(move || {
        let signalled = runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return false;
            };
            tokio::select! {
                _ = int.recv() => true,
                _ = term.recv() => true,
            }
        });
        if !signalled {
            return;
        }
        let names: Vec<String> = live().drain(..).collect();
        for name in names {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::process::exit(130);
    });
    Ok(())
}
