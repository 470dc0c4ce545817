#!/usr/bin/env bash
# NodePort (externalTrafficPolicy: Cluster): one backend, on the first worker; its NodePort
# answers on every node's address, from a pod and from the host network of another node and of
# the node itself.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../lib.sh"

ns=e2e-nodeport
fresh_namespace "$ns"
server_pod "$ns" np-1 "$WORKER" np
client_pod "$ns" client "$WORKER2"
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: np
  namespace: ${ns}
spec:
  type: NodePort
  externalTrafficPolicy: Cluster
  selector:
    app: np
  ports:
  - name: http
    port: 80
    targetPort: 8080
YAML
wait_pods "$ns"

port=$(svc_field "$ns" np '.spec.ports[0].nodePort')
for target in "$CONTROL_PLANE" "$WORKER" "$WORKER2"; do
    ip=$(node_ip "$target")
    expect_only "pod on ${WORKER2} -> NodePort ${ip}:${port} (${target})" np-1 \
        pod_curl "$ns" client "http://${ip}:${port}/hostname"
    expect_only "host network of ${CONTROL_PLANE} -> NodePort ${ip}:${port} (${target})" np-1 \
        node_curl "$CONTROL_PLANE" "http://${ip}:${port}/hostname"
done
ip=$(node_ip "$WORKER2")
expect_only "host network of ${WORKER2} -> its own NodePort ${ip}:${port}" np-1 \
    node_curl "$WORKER2" "http://${ip}:${port}/hostname"

drop_namespace "$ns"
