#!/usr/bin/env bash
# `just e2e-up`: a kind cluster without kube-proxy, running kube-nftproxy, with Services working.
#
# 1. Creates the cluster from packaging/kind/cluster.yaml (cluster-dual.yaml with
#    E2E_IP_FAMILY=dual), or reuses it when it exists.
# 2. Builds the image (`just image E2E_IMAGE`, else packaging/container/Containerfile;
#    E2E_SKIP_BUILD=1 uses the image already built) and loads it, and the test servers'
#    image, into the nodes.
# 3. Applies packaging/kubernetes through an overlay that points api_server at this cluster's
#    control plane, and waits for the DaemonSet's rollout, every node's /healthz, and CoreDNS
#    (which cannot become Ready before Services work).
# On failure, the logs go to a directory printed at the end.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"

check_settings
require kind kubectl "$CONTAINER_ENGINE" timeout
require_engine

artifacts="${E2E_ARTIFACTS:-${E2E_WORKDIR}/artifacts/up-$(date +%Y%m%d-%H%M%S)}"
on_exit() {
    local rc=$?
    # (run.sh exports the logs itself.)
    if ((rc != 0)) && [[ ${E2E_UP_EXPORT_LOGS:-1} == 1 ]] && cluster_exists; then
        export_logs "$artifacts"
        log "e2e-up failed; logs in: $artifacts"
    fi
}
trap on_exit EXIT

# kind >= v0.29: the pinned node image (Kubernetes v1.33.1) is built for it.
kind_version=$(kind version 2>/dev/null | awk '{print $2}')
case $kind_version in
v0.[0-9].* | v0.1[0-9].* | v0.2[0-8].*)
    log "warning: kind ${kind_version} is older than v0.29.0, which the pinned node image needs"
    ;;
esac

# 1. The cluster.
existed=0
if cluster_exists; then
    existed=1
    log "reusing the kind cluster ${KIND_CLUSTER}"
else
    log "creating the kind cluster ${KIND_CLUSTER} ($(kind_config))"
    create=(kind create cluster --name "$KIND_CLUSTER" --config "$(kind_config)" --wait 180s)
    if [[ -n ${KIND_NODE_IMAGE:-} ]]; then
        create+=(--image "$KIND_NODE_IMAGE")
    fi
    timeout 600 "${create[@]}"
fi
if k -n kube-system get daemonset kube-proxy >/dev/null 2>&1; then
    die "the cluster ${KIND_CLUSTER} runs kube-proxy: it was not created from packaging/kind (kubeProxyMode: none); run 'just e2e-down' first"
fi

# 2. The images.
image_exists() { "$CONTAINER_ENGINE" image inspect "$1" >/dev/null 2>&1; }
build_image() {
    if [[ ${E2E_SKIP_BUILD:-0} == 1 ]]; then
        image_exists "$E2E_IMAGE" || die "E2E_SKIP_BUILD=1 but there is no image ${E2E_IMAGE}"
        log "using the existing image ${E2E_IMAGE}"
        return
    fi
    if command -v just >/dev/null 2>&1 &&
        (cd "$E2E_ROOT" && just --summary 2>/dev/null) | tr ' ' '\n' | grep -qx image; then
        log "building ${E2E_IMAGE} with 'just image'"
        (cd "$E2E_ROOT" && timeout 3600 just image "$E2E_IMAGE")
        if image_exists "$E2E_IMAGE"; then
            return
        fi
        log "'just image' did not produce ${E2E_IMAGE}; building it from the Containerfile"
    fi
    local containerfile="${E2E_ROOT}/packaging/container/Containerfile"
    [[ -f $containerfile ]] || die "no ${containerfile} (and no 'just image' recipe): cannot build ${E2E_IMAGE}"
    log "building ${E2E_IMAGE} from packaging/container/Containerfile"
    timeout 3600 "$CONTAINER_ENGINE" build -f "$containerfile" -t "$E2E_IMAGE" "$E2E_ROOT"
}
load_image() {
    local image=$1
    log "loading ${image} into the nodes"
    if [[ $CONTAINER_ENGINE == docker ]]; then
        timeout 600 kind load docker-image "$image" --name "$KIND_CLUSTER" >/dev/null
    else
        local archive="${E2E_WORKDIR}/image.tar"
        mkdir -p "$E2E_WORKDIR"
        "$CONTAINER_ENGINE" save -o "$archive" "$image"
        timeout 600 kind load image-archive "$archive" --name "$KIND_CLUSTER" >/dev/null
        rm -f "$archive"
    fi
}
build_image
load_image "$E2E_IMAGE"
if ! image_exists "$AGNHOST_IMAGE"; then
    log "pulling ${AGNHOST_IMAGE}"
    timeout 600 "$CONTAINER_ENGINE" pull "$AGNHOST_IMAGE" >/dev/null
fi
load_image "$AGNHOST_IMAGE"

# 3. The agent.
overlay=$(write_overlay)
log "applying packaging/kubernetes (api_server https://${CONTROL_PLANE}:6443) from ${overlay}"
k apply -k "$overlay" >/dev/null
if ((existed)); then
    # The same tag may carry a new image: start the pods again.
    k -n kube-system rollout restart daemonset/kube-nftproxy >/dev/null
fi
if ! k -n kube-system rollout status daemonset/kube-nftproxy --timeout=180s; then
    k -n kube-system get pods -l app.kubernetes.io/name=kube-nftproxy -o wide >&2 || true
    k -n kube-system logs -l app.kubernetes.io/name=kube-nftproxy --prefix --tail=20 >&2 || true
    die "the kube-nftproxy DaemonSet did not roll out"
fi
nodes=$(kind get nodes --name "$KIND_CLUSTER")
for node in $nodes; do
    eventually 120 "/healthz of the agent on ${node}" \
        status_is 200 "$node" http://127.0.0.1:10256/healthz ||
        die "the agent on ${node} is not healthy: $(node_curl "$node" http://127.0.0.1:10256/healthz 2>&1)"
done
log "waiting for CoreDNS (it reaches the API server through the kubernetes ClusterIP)"
k -n kube-system rollout status deployment/coredns --timeout=180s
log "cluster ${KIND_CLUSTER} is ready: kubectl --context ${E2E_CONTEXT} ..."
