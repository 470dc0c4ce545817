#!/usr/bin/env bash
# internalTrafficPolicy: Local: a backend on each worker; a client on each worker only ever
# reaches the backend of its own node, as does the host network of a worker; from the control
# plane, which has no backend, the ClusterIP does not answer.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../lib.sh"

ns=e2e-itp-local
fresh_namespace "$ns"
server_pod "$ns" local-1 "$WORKER" local
server_pod "$ns" local-2 "$WORKER2" local
client_pod "$ns" client-1 "$WORKER"
client_pod "$ns" client-2 "$WORKER2"
client_pod "$ns" client-cp "$CONTROL_PLANE"
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: local
  namespace: ${ns}
spec:
  internalTrafficPolicy: Local
  selector:
    app: local
  ports:
  - name: http
    port: 80
    targetPort: 8080
YAML
wait_pods "$ns"

cip=$(svc_field "$ns" local .spec.clusterIP)
expect_only "pod on ${WORKER} -> ClusterIP (iTP Local)" local-1 \
    pod_curl "$ns" client-1 "http://${cip}/hostname"
expect_only "pod on ${WORKER2} -> ClusterIP (iTP Local)" local-2 \
    pod_curl "$ns" client-2 "http://${cip}/hostname"
expect_only "host network of ${WORKER} -> ClusterIP (iTP Local)" local-1 \
    node_curl "$WORKER" "http://${cip}/hostname"
expect_no_answer "pod on ${CONTROL_PLANE} (no local endpoint) -> ClusterIP (iTP Local)" \
    pod_curl "$ns" client-cp "http://${cip}/hostname"

drop_namespace "$ns"
