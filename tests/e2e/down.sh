#!/usr/bin/env bash
# `just e2e-down`: deletes the kind e2e cluster ($KIND_CLUSTER) when it exists. The artifacts
# under target/e2e/ stay.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

check_settings
require kind timeout
if cluster_exists; then
    log "deleting the kind cluster ${KIND_CLUSTER}"
    timeout 300 kind delete cluster --name "$KIND_CLUSTER"
else
    log "no kind cluster ${KIND_CLUSTER}"
fi
rm -rf "$E2E_OVERLAY"
