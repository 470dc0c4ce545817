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
