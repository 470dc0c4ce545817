#!/usr/bin/env bash
# externalTrafficPolicy: Local keeps the client's address: one backend (agnhost netexec, whose
# /clientip prints the address it sees), on the first worker. Through the eTP Local NodePort of
# that worker, the backend sees the control plane's own address; the other worker has no local
# endpoint and does not answer. Through an eTP Cluster NodePort of the other worker, the
# backend sees a masqueraded address instead.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../lib.sh"

ns=e2e-etp-local
fresh_namespace "$ns"
server_pod "$ns" src-1 "$WORKER" src
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: src-local
  namespace: ${ns}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector:
    app: src
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: src-cluster
  namespace: ${ns}
spec:
  type: NodePort
  externalTrafficPolicy: Cluster
  selector:
    app: src
  ports:
  - name: http
    port: 80
    targetPort: 8080
YAML
wait_pods "$ns"

local_port=$(svc_field "$ns" src-local '.spec.ports[0].nodePort')
cluster_port=$(svc_field "$ns" src-cluster '.spec.ports[0].nodePort')
client_ip=$(node_ip "$CONTROL_PLANE")
worker_ip=$(node_ip "$WORKER")
worker2_ip=$(node_ip "$WORKER2")

# The address the backend saw ("IP:PORT" -> IP).
seen_from() {
    local out
    out=$(node_curl "$CONTROL_PLANE" "$1") || return 1
    echo "${out%:*}"
}
eventually 30 "the eTP Local NodePort of ${WORKER}" quietly seen_from "http://${worker_ip}:${local_port}/clientip" ||
    fail "host network of ${CONTROL_PLANE} -> eTP Local NodePort ${worker_ip}:${local_port}: no answer"
for i in 1 2 3; do
    source_ip=$(seen_from "http://${worker_ip}:${local_port}/clientip") || fail "request $i failed"
    [[ $source_ip == "$client_ip" ]] ||
        fail "eTP Local: the backend saw ${source_ip}, not the client's address ${client_ip}"
done
pass "eTP Local NodePort ${worker_ip}:${local_port}: the backend sees the client's address ${client_ip}"

expect_no_answer "eTP Local NodePort of ${WORKER2} (no local endpoint)" \
    node_curl "$CONTROL_PLANE" "http://${worker2_ip}:${local_port}/clientip"

eventually 30 "the eTP Cluster NodePort of ${WORKER2}" quietly seen_from "http://${worker2_ip}:${cluster_port}/clientip" ||
    fail "host network of ${CONTROL_PLANE} -> eTP Cluster NodePort ${worker2_ip}:${cluster_port}: no answer"
source_ip=$(seen_from "http://${worker2_ip}:${cluster_port}/clientip") || fail "eTP Cluster request failed"
[[ $source_ip != "$client_ip" ]] ||
    fail "eTP Cluster via another node: the backend saw the client's own address ${source_ip}; it should be masqueraded"
pass "eTP Cluster NodePort via ${WORKER2}: masqueraded (the backend sees ${source_ip})"

drop_namespace "$ns"
