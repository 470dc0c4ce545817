#!/usr/bin/env bash
# `just e2e [SCENARIO...]`: brings the kind cluster up (tests/e2e/up.sh; E2E_SKIP_UP=1 uses it
# as it is), runs the scenarios of tests/e2e/scenarios (all, or those whose file name contains
# one of the SCENARIO words), with E2E_UPSTREAM=1 also the upstream `[sig-network] Services`
# e2e tests (tests/e2e/upstream.sh), and prints "N passed, N failed".
#
# On failure (or always, with E2E_EXPORT_LOGS=1) the logs go to a directory printed at the end
# (E2E_ARTIFACTS, default target/e2e/CLUSTER/artifacts/DATE). A cluster this run created is
# deleted at the end unless E2E_KEEP=1; a cluster that was already there is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "${here}/lib.sh"

check_settings
require kind kubectl "$CONTAINER_ENGINE" timeout
require_engine

# The scenarios to run: every file, or those matching a word given.
scenarios=()
for file in "${here}"/scenarios/*.sh; do
    if (($# == 0)); then
        scenarios+=("$file")
        continue
    fi
    for word in "$@"; do
        if [[ $(basename "$file") == *"$word"* ]]; then
            scenarios+=("$file")
            break
        fi
    done
done
if (($# > 0 && ${#scenarios[@]} == 0)); then
    die "no scenario matches: $* (see tests/e2e/scenarios/)"
fi

artifacts="${E2E_ARTIFACTS:-${E2E_WORKDIR}/artifacts/$(date +%Y%m%d-%H%M%S)}"
export E2E_ARTIFACTS="$artifacts"
mkdir -p "$artifacts"

created=0
passed=0
failed=0
failures=()
finish() {
    local rc=$?
    if ((rc != 0 || failed > 0)) || [[ ${E2E_EXPORT_LOGS:-0} == 1 ]]; then
        if cluster_exists; then
            export_logs "$artifacts"
        fi
    fi
    if ((created)) && [[ ${E2E_KEEP:-0} != 1 ]]; then
        bash "${here}/down.sh" || log "deleting the cluster failed"
    elif cluster_exists; then
        log "the cluster ${KIND_CLUSTER} is kept ('just e2e-down' deletes it)"
    fi
    if ((failed > 0)); then
        log "failed: ${failures[*]}"
    fi
    log "artifacts and logs: ${artifacts}"
}
trap finish EXIT

if [[ ${E2E_SKIP_UP:-0} == 1 ]]; then
    cluster_exists || die "E2E_SKIP_UP=1 but there is no kind cluster ${KIND_CLUSTER} ('just e2e-up' makes it)"
else
    cluster_exists || created=1
    E2E_UP_EXPORT_LOGS=0 bash "${here}/up.sh"
fi

for file in "${scenarios[@]}"; do
    name=$(basename "$file" .sh)
    log "=== scenario ${name}"
    if timeout "${E2E_SCENARIO_TIMEOUT:-600}" bash "$file"; then
        passed=$((passed + 1))
        log "=== scenario ${name}: passed"
    else
        failed=$((failed + 1))
        failures+=("$name")
        log "=== scenario ${name}: FAILED"
    fi
done

if [[ ${E2E_UPSTREAM:-0} == 1 ]]; then
    log "=== upstream [sig-network] Services e2e"
    if bash "${here}/upstream.sh" "${artifacts}/upstream"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("upstream")
    fi
fi

echo "e2e: ${passed} passed, ${failed} failed"
((failed == 0))
