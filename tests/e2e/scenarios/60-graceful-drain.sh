#!/usr/bin/env bash
# Graceful drain with externalTrafficPolicy: Local: the only endpoint, on the first worker, has
# a 30 s preStop hook. A 15 s request is in flight through the worker's NodePort when the pod is
# deleted. While the pod is still terminating (and the request still running), the worker's
# health check turns 503 (load balancers stop sending new clients), a new connection still
# reaches the terminating endpoint (kube-proxy's fallback to serving terminating endpoints),
# and the in-flight request completes.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../lib.sh"

ns=e2e-drain
fresh_namespace "$ns"
server_pod "$ns" drain-1 "$WORKER" drain 30
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: drain
  namespace: ${ns}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector:
    app: drain
  ports:
  - name: http
    port: 80
    targetPort: 8080
YAML
wait_pods "$ns"

hcport=$(svc_field "$ns" drain .spec.healthCheckNodePort)
port=$(svc_field "$ns" drain '.spec.ports[0].nodePort')
worker_ip=$(node_ip "$WORKER")
hc_url="http://${worker_ip}:${hcport}/"
eventually 30 "the health check of ${WORKER} to answer 200" status_is 200 "$CONTROL_PLANE" "$hc_url" ||
    fail "health check ${hc_url} before the drain: $(node_status "$CONTROL_PLANE" "$hc_url")"
eventually 30 "the NodePort of ${WORKER}" quietly node_curl "$CONTROL_PLANE" "http://${worker_ip}:${port}/hostname" ||
    fail "NodePort ${worker_ip}:${port} does not answer before the drain"

# The long request: netexec's /shell runs `sleep 15; echo done` and answers when it is done.
inflight_out="${E2E_ARTIFACTS:-/tmp}/drain-inflight.$$"
mkdir -p "$(dirname "$inflight_out")"
"$CONTAINER_ENGINE" exec "$CONTROL_PLANE" curl -sS --max-time 60 \
    "http://${worker_ip}:${port}/shell?cmd=sleep%2015%3B%20echo%20done" >"$inflight_out" 2>&1 &
inflight=$!
trap 'kill "$inflight" 2>/dev/null || true' EXIT
started() { k -n "$ns" logs drain-1 2>/dev/null | grep -q 'GET /shell'; }
eventually 10 "the long request to reach the backend" started ||
    fail "the long request did not reach drain-1: $(cat "$inflight_out")"

k -n "$ns" delete pod drain-1 --wait=false >/dev/null
deleted_at=$SECONDS
eventually 15 "the health check of ${WORKER} to answer 503" status_is 503 "$CONTROL_PLANE" "$hc_url" ||
    fail "health check ${hc_url}: still $(node_status "$CONTROL_PLANE" "$hc_url") $((SECONDS - deleted_at))s after the delete"
took=$((SECONDS - deleted_at))
terminating=$(k -n "$ns" get pod drain-1 -o 'jsonpath={.metadata.deletionTimestamp}' 2>/dev/null || true)
[[ -n $terminating ]] || fail "drain-1 was already gone when the health check turned 503 (it should be in its preStop hook)"
kill -0 "$inflight" 2>/dev/null ||
    fail "the in-flight request ended before the health check turned 503: $(cat "$inflight_out")"
pass "health check of ${WORKER}: 503 ${took}s after the delete, while drain-1 terminates and the request is in flight"

out=$(node_curl "$CONTROL_PLANE" "http://${worker_ip}:${port}/hostname") ||
    fail "a new connection during the drain was not served (terminating endpoints): $out"
[[ $out == drain-1 ]] || fail "a new connection during the drain reached '$out', expected drain-1"
pass "a new connection during the drain reaches the terminating endpoint"

rc=0
wait "$inflight" || rc=$?
trap - EXIT
grep -q 'done' "$inflight_out" ||
    fail "the in-flight request did not complete (curl exit ${rc}): $(cat "$inflight_out")"
((rc == 0)) || fail "the in-flight request failed (curl exit ${rc}): $(cat "$inflight_out")"
pass "the in-flight request completed: $(tr -d '\n' <"$inflight_out")"
rm -f "$inflight_out"

drop_namespace "$ns"
