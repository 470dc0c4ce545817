#!/usr/bin/env bash
# The upstream Kubernetes e2e tests of Services against the kind cluster (run.sh calls it when
# E2E_UPSTREAM=1; it can also run on its own after `just e2e-up`): tests/e2e/upstream.sh [DIR].
#
# The test binaries are those of the cluster's own Kubernetes version (the API server's
# gitVersion, v1.33.1 with the pinned node image; E2E_K8S_VERSION overrides it): `e2e.test` and
# `ginkgo` are copied out of the official conformance image registry.k8s.io/conformance:VERSION
# (the registry kind's images and the test pods come from anyway), once, into
# target/e2e/upstream/VERSION. They run on this host, against the cluster's kubeconfig, with
# --provider=local. Linux only (they are Linux binaries and reach the node addresses).
#
# Settings: E2E_UPSTREAM_FOCUS, E2E_UPSTREAM_SKIP (ginkgo regular expressions),
# E2E_UPSTREAM_PROCS (parallel processes, default 4), E2E_UPSTREAM_TIMEOUT (ginkgo's, default
# 60m). Results: DIR (default the artifacts directory)/ginkgo.log and junit_01.xml.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

check_settings
require kind kubectl "$CONTAINER_ENGINE" timeout
require_engine
[[ $(uname -s) == Linux ]] || die "the upstream e2e binaries run on a Linux host only"
cluster_exists || die "no kind cluster ${KIND_CLUSTER} ('just e2e-up' makes it)"

out=${1:-${E2E_ARTIFACTS:-${E2E_WORKDIR}/artifacts/upstream-$(date +%Y%m%d-%H%M%S)}}
mkdir -p "$out"

version=${E2E_K8S_VERSION:-$(k get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')}
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    die "cannot tell the cluster's Kubernetes version ('$version'); set E2E_K8S_VERSION=vX.Y.Z"
image="registry.k8s.io/conformance:${version}"
bin="${E2E_ROOT}/target/e2e/upstream/${version}"

if [[ ! -x ${bin}/e2e.test || ! -x ${bin}/ginkgo ]]; then
    log "extracting e2e.test and ginkgo from ${image}"
    mkdir -p "$bin"
    timeout 900 "$CONTAINER_ENGINE" pull "$image" >/dev/null
    container=$("$CONTAINER_ENGINE" create "$image")
    trap '"$CONTAINER_ENGINE" rm "$container" >/dev/null 2>&1 || true' EXIT
    "$CONTAINER_ENGINE" cp "${container}:/usr/local/bin/e2e.test" "${bin}/e2e.test"
    "$CONTAINER_ENGINE" cp "${container}:/usr/local/bin/ginkgo" "${bin}/ginkgo"
    chmod +x "${bin}/e2e.test" "${bin}/ginkgo"
fi

kind get kubeconfig --name "$KIND_CLUSTER" >"${out}/kubeconfig"

# Services, minus what cannot run here or is not ours: serial and disruptive tests (they
# restart nodes or components), flaky and alpha/feature-gated ones, and "should check
# kube-proxy urls" (kube-proxy's own /proxyMode endpoint, which kube-nftproxy does not serve;
# kpng's nftables backend skipped it too).
focus=${E2E_UPSTREAM_FOCUS:-'\[sig-network\] Services'}
skip=${E2E_UPSTREAM_SKIP:-'\[Serial\]|\[Disruptive\]|\[Flaky\]|\[Alpha\]|\[Feature:|should check kube-proxy urls'}
procs=${E2E_UPSTREAM_PROCS:-4}
ginkgo_timeout=${E2E_UPSTREAM_TIMEOUT:-60m}

log "running upstream ${version} e2e: focus '${focus}', skip '${skip}', ${procs} processes; output in ${out}"
# ginkgo stops itself at its --timeout; the outer timeout is a backstop.
timeout 7200 "${bin}/ginkgo" \
    --procs="$procs" \
    --focus="$focus" \
    --skip="$skip" \
    --no-color \
    --timeout="$ginkgo_timeout" \
    "${bin}/e2e.test" -- \
    --kubeconfig="${out}/kubeconfig" \
    --provider=local \
    --report-dir="$out" \
    --disable-log-dump \
    2>&1 | tee "${out}/ginkgo.log"
