#!/usr/bin/env bash
# healthCheckNodePort: a LoadBalancer Service with externalTrafficPolicy: Local (kind has no
# load balancer, but the API server allocates the health check port all the same). Its health
# check answers 200 (localEndpoints 1) on the node with a ready local endpoint and 503
# (localEndpoints 0) on the others; a second endpoint on another node turns that node's check
# to 200, and deleting it back to 503. Every node's /healthz on 10256 (what load balancers
# probe for externalTrafficPolicy: Cluster) answers 200. All checked from another node.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../lib.sh"

ns=e2e-health-check
fresh_namespace "$ns"
server_pod "$ns" hc-1 "$WORKER" hc
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: hc
  namespace: ${ns}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector:
    app: hc
  ports:
  - name: http
    port: 80
    targetPort: 8080
YAML
wait_pods "$ns"

hcport=$(svc_field "$ns" hc .spec.healthCheckNodePort)
[[ $hcport =~ ^[0-9]+$ ]] || fail "the Service has no healthCheckNodePort: '$hcport'"
cp_ip=$(node_ip "$CONTROL_PLANE")
worker_ip=$(node_ip "$WORKER")
worker2_ip=$(node_ip "$WORKER2")

# NODE_IP answers CODE with localEndpoints COUNT, asked from the host network of FROM.
check() {
    local from=$1 ip=$2 code=$3 count=$4 body
    status_is "$code" "$from" "http://${ip}:${hcport}/" || return 1
    body=$(node_exec "$from" curl -s --max-time 5 "http://${ip}:${hcport}/") || true
    [[ $body == *"\"localEndpoints\":${count}"* ]]
}
expect_check() {
    local from=$1 ip=$2 code=$3 count=$4 what=$5
    eventually 30 "$what" check "$from" "$ip" "$code" "$count" ||
        fail "$what: got $(node_status "$from" "http://${ip}:${hcport}/") $(node_exec "$from" curl -s --max-time 5 "http://${ip}:${hcport}/" || true)"
    pass "$what"
}

expect_check "$CONTROL_PLANE" "$worker_ip" 200 1 "health check ${worker_ip}:${hcport} (${WORKER}, one local endpoint): 200"
expect_check "$CONTROL_PLANE" "$worker2_ip" 503 0 "health check ${worker2_ip}:${hcport} (${WORKER2}, none): 503"
expect_check "$WORKER" "$cp_ip" 503 0 "health check ${cp_ip}:${hcport} (${CONTROL_PLANE}, none): 503"

server_pod "$ns" hc-2 "$WORKER2" hc
wait_pods "$ns"
expect_check "$CONTROL_PLANE" "$worker2_ip" 200 1 "health check of ${WORKER2} once it has a ready endpoint: 200"
k -n "$ns" delete pod hc-2 --wait=true --timeout=60s >/dev/null
expect_check "$CONTROL_PLANE" "$worker2_ip" 503 0 "health check of ${WORKER2} after its endpoint is gone: 503"
expect_check "$CONTROL_PLANE" "$worker_ip" 200 1 "health check of ${WORKER} still: 200"

for node in "$CONTROL_PLANE" "$WORKER" "$WORKER2"; do
    ip=$(node_ip "$node")
    from=$WORKER
    [[ $node != "$WORKER" ]] || from=$WORKER2
    eventually 30 "/healthz of ${node}" status_is 200 "$from" "http://${ip}:10256/healthz" ||
        fail "/healthz of ${node} (${ip}:10256): $(node_status "$from" "http://${ip}:10256/healthz")"
    pass "/healthz of ${node} (${ip}:10256): 200"
done

drop_namespace "$ns"
