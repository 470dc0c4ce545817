# kube-nftproxy tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Build every crate (release binary: target/release/kube-nftproxy).
build:
    cargo build --workspace --release

# Print the ruleset NODE would get from the example cluster (the no-cluster main job).
demo node="node-a":
    cargo run --quiet --release -p agent -- render --manifests examples/cluster.yaml --config examples/config.toml --node {{node}}

# Print what NODE does for each service-port of the example cluster, and why, as JSON.
demo-json node="node-a":
    cargo run --quiet --release -p agent -- render --manifests examples/cluster.yaml --config examples/config.toml --node {{node}} --format json

# As root: program the example cluster's rules for NODE into a scratch network namespace with
# `run --once` (twice: the second run applies nothing), list them, then `cleanup` and delete it.
demo-netns node="node-a":
    cargo build --quiet --release -p agent
    ns=knp-demo-$$; ip netns add "$ns"; trap 'ip netns del "$ns"' EXIT; \
    run() { ip netns exec "$ns" target/release/kube-nftproxy "$@"; }; \
    run run --manifests examples/cluster.yaml --config examples/config.toml --node {{node}} --once; \
    run run --manifests examples/cluster.yaml --config examples/config.toml --node {{node}} --once; \
    ip netns exec "$ns" nft list ruleset | sed -n 1,40p; echo "…"; \
    run cleanup

# Run every test. Kernel tests need root, nft and ip; they make and delete their own network namespaces.
test:
    cargo test --workspace --all-targets

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Review changed snapshots (needs cargo-insta), or accept them all with INSTA_UPDATE=always just test.
snapshots:
    cargo insta review

# As root: benchmarks in network namespaces they create and delete (quick: 1 000 Services, a few
# minutes). Writes target/bench/quick.json and the quick section of docs/benchmarks.md.
bench:
    cargo build --quiet --release -p agent -p bench
    KNP_BENCH_COMMAND="just bench" target/release/kube-nftproxy-bench --quick --out target/bench/quick.json --markdown docs/benchmarks.md

# As root: the full benchmarks, 1 000, 10 000 and 50 000 Services (long: see docs/benchmarks.md).
# Other sizes: just bench-full --sizes 1000,10000
bench-full *args:
    cargo build --quiet --release -p agent -p bench
    KNP_BENCH_COMMAND="just bench-full {{args}}" target/release/kube-nftproxy-bench --full --out target/bench/full.json --markdown docs/benchmarks.md {{args}}

# The Debian package target/debian/kube-nftproxy_*.deb (release build; installs cargo-deb if missing).
deb:
    cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --version '^3.8' --locked
    cargo deb -p agent --locked

# The container image kube-nftproxy:dev (or TAG) with $CONTAINER_ENGINE (default docker, or podman).
image tag="kube-nftproxy:dev":
    @engine="${CONTAINER_ENGINE:-docker}"; \
    if ! command -v "$engine" >/dev/null 2>&1; then \
        echo "just image: no '$engine' command; install docker or podman, or set CONTAINER_ENGINE" >&2; exit 1; \
    fi; \
    if ! "$engine" info >/dev/null 2>&1; then \
        echo "just image: '$engine' cannot reach a container engine ('$engine info' failed): start it, or set CONTAINER_ENGINE=podman" >&2; exit 1; \
    fi; \
    version=$(cargo pkgid -p agent); version=${version##*[#@]}; \
    set -x; \
    "$engine" build -f packaging/container/Containerfile \
        --build-arg VERSION="$version" --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        -t {{tag}} .

# Check the unit, modules list, .deb (builds it: slow the first time), maintainer scripts, Containerfile.
package-check:
    bash packaging/tests/check.sh

# Needs kind, docker (or CONTAINER_ENGINE=podman) and kubectl; see tests/e2e/README.md.
# E2E_UPSTREAM=1 also runs upstream's [sig-network] Services tests; E2E_KEEP=1 keeps the cluster.
# kind e2e: cluster up (no kube-proxy), image loaded, DaemonSet applied, tests/e2e/scenarios run.
e2e *scenarios:
    bash tests/e2e/run.sh {{scenarios}}

# The cluster is $KIND_CLUSTER (default kube-nftproxy-e2e); E2E_IP_FAMILY=dual for dual stack.
# Create (or reuse) the kind e2e cluster with kube-nftproxy deployed; wait until Services work.
e2e-up:
    bash tests/e2e/up.sh

# Delete the kind e2e cluster.
e2e-down:
    bash tests/e2e/down.sh
