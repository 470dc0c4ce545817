# shellcheck shell=bash
# Shared by the e2e scripts (sourced, never run): settings, tool checks, kubectl and node
# helpers, bounded waits, the kustomize overlay and the log export. Sourcing it has no side
# effect besides setting variables and functions.
#
# Settings (environment):
#   KIND_CLUSTER        the kind cluster's name (default kube-nftproxy-e2e)
#   E2E_IP_FAMILY       ipv4 (default) or dual: packaging/kind/cluster.yaml or cluster-dual.yaml
#   E2E_IMAGE           the agent's image (default kube-nftproxy:dev)
#   CONTAINER_ENGINE    docker (default) or podman
#   KIND_NODE_IMAGE     a kindest/node image instead of the one pinned in the cluster file
#   AGNHOST_IMAGE       the test servers' image (default registry.k8s.io/e2e-test-images/agnhost:2.52)

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIND_CLUSTER=${KIND_CLUSTER:-kube-nftproxy-e2e}
E2E_IP_FAMILY=${E2E_IP_FAMILY:-ipv4}
E2E_IMAGE=${E2E_IMAGE:-kube-nftproxy:dev}
CONTAINER_ENGINE=${CONTAINER_ENGINE:-docker}
AGNHOST_IMAGE=${AGNHOST_IMAGE:-registry.k8s.io/e2e-test-images/agnhost:2.52}
# The kubectl context kind writes for the cluster; every kubectl call names it, so the user's
# current context does not matter.
E2E_CONTEXT="kind-${KIND_CLUSTER}"
# Scratch space of this cluster (the kustomize overlay, upstream binaries, artifacts), under the
# git-ignored target/.
E2E_WORKDIR="${E2E_ROOT}/target/e2e/${KIND_CLUSTER}"
E2E_OVERLAY="${E2E_WORKDIR}/overlay"
# kind names its node containers (and the Nodes) after the cluster. (Used by the scripts that
# source this file.)
# shellcheck disable=SC2034
{
    CONTROL_PLANE="${KIND_CLUSTER}-control-plane"
    WORKER="${KIND_CLUSTER}-worker"
    WORKER2="${KIND_CLUSTER}-worker2"
}
# The pod and service subnets of packaging/kind/cluster*.yaml.
POD_CIDR_V4="10.244.0.0/16"
POD_CIDR_V6="fd00:10:244::/56"
export KIND_CLUSTER E2E_IP_FAMILY E2E_IMAGE CONTAINER_ENGINE AGNHOST_IMAGE
# kind drives docker unless told otherwise.
if [[ $CONTAINER_ENGINE != docker ]]; then
    export KIND_EXPERIMENTAL_PROVIDER="${KIND_EXPERIMENTAL_PROVIDER:-$CONTAINER_ENGINE}"
fi

log() { printf '%s e2e: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# A scenario's check passed / failed (failing ends the scenario).
pass() { log "PASS: $*"; }
fail() {
    log "FAIL: $*"
    exit 1
}

# Exits with a clear message unless every tool named is on PATH.
require() {
    local tool missing=()
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]} > 0)); then
        die "missing tool(s): ${missing[*]}. The e2e tests need kind (>= v0.29), ${CONTAINER_ENGINE}, kubectl and coreutils' timeout (see tests/e2e/README.md, Prerequisites)."
    fi
}

# The settings are usable: a cluster name kind accepts (it is also a path component here) and a
# known IP family.
check_settings() {
    [[ $KIND_CLUSTER =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] ||
        die "KIND_CLUSTER=$KIND_CLUSTER: use lower-case letters, digits and '-'"
    case $E2E_IP_FAMILY in
    ipv4 | dual) ;;
    *) die "E2E_IP_FAMILY=$E2E_IP_FAMILY: expected ipv4 or dual" ;;
    esac
}

# The container engine answers (not only installed).
require_engine() {
    "$CONTAINER_ENGINE" info >/dev/null 2>&1 ||
        die "'$CONTAINER_ENGINE info' failed: is the container engine running and usable by $(id -un)?"
}

# The kind cluster file for E2E_IP_FAMILY.
kind_config() {
    case $E2E_IP_FAMILY in
    dual) echo "${E2E_ROOT}/packaging/kind/cluster-dual.yaml" ;;
    *) echo "${E2E_ROOT}/packaging/kind/cluster.yaml" ;;
    esac
}

# kubectl against the e2e cluster.
k() { kubectl --context "$E2E_CONTEXT" "$@"; }

cluster_exists() { kind get clusters 2>/dev/null | grep -qxF "$KIND_CLUSTER"; }

# Runs a command in a node's container (its host network namespace).
node_exec() {
    local node=$1
    shift
    "$CONTAINER_ENGINE" exec "$node" "$@"
}

# A node's first InternalIP of a family (4 or 6).
node_ip() {
    local node=$1 family=${2:-4} addr
    for addr in $(k get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}'); do
        if [[ $family == 6 && $addr == *:* ]] || [[ $family == 4 && $addr != *:* ]]; then
            echo "$addr"
            return 0
        fi
    done
    log "node ${node} has no IPv${family} InternalIP"
    return 1
}

# Runs "$@" every second until it succeeds, for at most TIMEOUT seconds; returns 1 (and says
# what it waited for) when time is up.
eventually() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${timeout}s waiting for: $what"
            return 1
        fi
        sleep 1
    done
}

quietly() { "$@" >/dev/null 2>&1; }

# HTTP from a pod, from a node's host network; curl's timeout is CURL_TIMEOUT (default 5 s).
pod_curl() {
    local ns=$1 pod=$2 url=$3
    k -n "$ns" exec "$pod" -- curl -sS -g --max-time "${CURL_TIMEOUT:-5}" "$url"
}
node_curl() {
    local node=$1 url=$2
    node_exec "$node" curl -sS -g --max-time "${CURL_TIMEOUT:-5}" "$url"
}
# The HTTP status code a node gets for URL ("000" when there is no answer).
node_status() {
    local node=$1 url=$2
    node_exec "$node" curl -s -g -o /dev/null -w '%{http_code}' --max-time "${CURL_TIMEOUT:-5}" "$url" || true
}
# `node_status ... == CODE`, as a command for `eventually`.
status_is() {
    local code=$1 node=$2 url=$3
    [[ $(node_status "$node" "$url") == "$code" ]]
}

# Runs "$@" (a request printing the answering pod's name) until every name in EXPECTED (comma
# separated) has answered, at most 40 times. An answer from any other pod fails at once; failed
# requests are retried (the rules may not be programmed yet).
expect_backends() {
    local what=$1 expected=$2
    shift 2
    local -A want=() seen=()
    local name out i
    for name in ${expected//,/ }; do want[$name]=1; done
    for ((i = 1; i <= 40; i++)); do
        if out=$("$@" 2>&1); then
            [[ -n $out && -n ${want[$out]:-} ]] || fail "$what: answered by '$out', expected one of $expected"
            seen[$out]=1
            if ((${#seen[@]} == ${#want[@]})); then
                pass "$what: answered by $expected"
                return 0
            fi
        else
            log "$what: request $i failed (retrying): $out"
            sleep 1
        fi
    done
    fail "$what: after 40 requests only '${!seen[*]}' answered, expected $expected"
}

# Waits (30 s at most) for "$@" to answer, then requires 10 answers in a row, all EXPECTED.
expect_only() {
    local what=$1 expected=$2
    shift 2
    local out i
    eventually 30 "$what: a first answer" quietly "$@" || fail "$what: no answer"
    for ((i = 1; i <= 10; i++)); do
        out=$("$@" 2>&1) || fail "$what: request $i failed: $out"
        [[ $out == "$expected" ]] || fail "$what: answered by '$out', expected only '$expected'"
    done
    pass "$what: 10 answers, all from $expected"
}

# Requires "$@" to fail 3 times in a row (with curl timeouts of 3 s).
expect_no_answer() {
    local what=$1
    shift
    local out i
    for ((i = 1; i <= 3; i++)); do
        if out=$(CURL_TIMEOUT=3 "$@" 2>&1); then
            fail "$what: expected no answer, got '$out'"
        fi
    done
    pass "$what: no answer, as expected"
}

# A new, empty namespace, with its default ServiceAccount (created asynchronously; pods are
# refused until it exists).
fresh_namespace() {
    local ns=$1
    k delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
    k create namespace "$ns" >/dev/null
    eventually 60 "the default ServiceAccount of ${ns}" quietly k -n "$ns" get serviceaccount default ||
        fail "namespace ${ns} has no default ServiceAccount"
}

# Deletes a scenario's namespace without waiting (kept on failure, for the log export).
drop_namespace() { k delete namespace "$1" --wait=false >/dev/null 2>&1 || true; }

# An agnhost netexec pod (HTTP on 8080: /hostname, /clientip, /shell) on NODE, labelled
# app=APP. With PRESTOP seconds > 0 it sleeps that long in a preStop hook before it gets
# SIGTERM (it stays Terminating and keeps serving meanwhile).
server_pod() {
    local ns=$1 name=$2 node=$3 app=$4 prestop=${5:-0}
    local grace=5 lifecycle=""
    if ((prestop > 0)); then
        grace=$((prestop + 30))
        lifecycle="    lifecycle:
      preStop:
        exec:
          command: [/bin/sh, -c, \"sleep ${prestop}\"]"
    fi
    k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
  labels:
    app: ${app}
spec:
  nodeSelector:
    kubernetes.io/hostname: ${node}
  tolerations:
  - operator: Exists
  terminationGracePeriodSeconds: ${grace}
  containers:
  - name: netexec
    image: ${AGNHOST_IMAGE}
    imagePullPolicy: IfNotPresent
    args: [netexec, --http-port=8080, --udp-port=8081]
    ports:
    - containerPort: 8080
    readinessProbe:
      httpGet:
        path: /hostname
        port: 8080
      periodSeconds: 1
${lifecycle}
EOF
}

# An agnhost pod that only sleeps (curl runs in it with kubectl exec), on NODE.
client_pod() {
    local ns=$1 name=$2 node=$3
    k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  nodeSelector:
    kubernetes.io/hostname: ${node}
  tolerations:
  - operator: Exists
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: ${AGNHOST_IMAGE}
    imagePullPolicy: IfNotPresent
    args: [pause]
EOF
}

# Waits (3 min at most) until every pod of the namespace is Ready.
wait_pods() {
    local ns=$1
    k -n "$ns" wait --for=condition=Ready pod --all --timeout=180s >/dev/null ||
        fail "pods of $ns not Ready: $(k -n "$ns" get pods -o wide 2>&1)"
}

# A field of a Service (jsonpath).
svc_field() {
    local ns=$1 svc=$2 path=$3
    k -n "$ns" get service "$svc" -o "jsonpath={${path}}"
}

# Writes the kustomize overlay that deploys packaging/kubernetes to this cluster: config.toml
# with api_server set to this cluster's control plane (and both pod CIDRs on dual stack), and
# E2E_IMAGE as the image. Printed: the overlay's directory.
write_overlay() {
    local api="https://${CONTROL_PLANE}:6443" cidrs="[\"${POD_CIDR_V4}\"]"
    local base="${E2E_ROOT}/packaging/kubernetes"
    if [[ $E2E_IP_FAMILY == dual ]]; then
        cidrs="[\"${POD_CIDR_V4}\", \"${POD_CIDR_V6}\"]"
    fi
    mkdir -p "$E2E_OVERLAY"
    sed -e "s|^api_server = .*|api_server = \"${api}\"|" \
        -e "s|^cluster_cidrs = .*|cluster_cidrs = ${cidrs}|" \
        "${base}/config.toml" >"${E2E_OVERLAY}/config.toml"
    grep -qxF "api_server = \"${api}\"" "${E2E_OVERLAY}/config.toml" ||
        die "could not set api_server in ${E2E_OVERLAY}/config.toml"
    grep -qxF "cluster_cidrs = ${cidrs}" "${E2E_OVERLAY}/config.toml" ||
        die "could not set cluster_cidrs in ${E2E_OVERLAY}/config.toml"

    # NAME[:TAG] (a registry's :port is not a tag).
    local name=$E2E_IMAGE tag=""
    if [[ ${E2E_IMAGE##*/} == *:* ]]; then
        name=${E2E_IMAGE%:*}
        tag=${E2E_IMAGE##*:}
    fi
    # kustomize accepts only relative paths to a base: target/e2e/CLUSTER/overlay -> the root.
    cat >"${E2E_OVERLAY}/kustomization.yaml" <<EOF
# Written by tests/e2e/lib.sh (write_overlay) for the kind cluster ${KIND_CLUSTER}.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../../../packaging/kubernetes
configMapGenerator:
- name: kube-nftproxy-config
  namespace: kube-system
  behavior: replace
  files:
  - config.toml
images:
- name: kube-nftproxy
  newName: ${name}
${tag:+  newTag: ${tag}}
EOF
    echo "$E2E_OVERLAY"
}

# Everything useful to debug a failure, into DIR: kind's logs (every node's journal, kubelet,
# containers), the agent's logs, the objects, and per node the nftables ruleset, the agent's
# /debug/services and /metrics.
export_logs() {
    local dir=$1 node
    mkdir -p "$dir"
    log "exporting logs to $dir"
    timeout 300 kind export logs "${dir}/kind" --name "$KIND_CLUSTER" >/dev/null 2>&1 ||
        log "kind export logs failed (is the cluster there?)"
    timeout 60 kubectl --context "$E2E_CONTEXT" get nodes,pods,services,endpointslices -A -o wide \
        >"${dir}/objects.txt" 2>&1 || true
    timeout 60 kubectl --context "$E2E_CONTEXT" get services,endpointslices -A -o yaml \
        >"${dir}/services-endpointslices.yaml" 2>&1 || true
    timeout 60 kubectl --context "$E2E_CONTEXT" -n kube-system logs \
        -l app.kubernetes.io/name=kube-nftproxy --prefix --timestamps --tail=-1 \
        >"${dir}/kube-nftproxy.log" 2>&1 || true
    for node in $(kind get nodes --name "$KIND_CLUSTER" 2>/dev/null); do
        timeout 30 "$CONTAINER_ENGINE" exec "$node" nft list ruleset >"${dir}/${node}.nft" 2>&1 || true
        timeout 30 "$CONTAINER_ENGINE" exec "$node" curl -s --max-time 5 \
            http://127.0.0.1:10249/debug/services >"${dir}/${node}-debug-services.json" 2>&1 || true
        timeout 30 "$CONTAINER_ENGINE" exec "$node" curl -s --max-time 5 \
            http://127.0.0.1:10249/metrics >"${dir}/${node}-metrics.txt" 2>&1 || true
    done
}
