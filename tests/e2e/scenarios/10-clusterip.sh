#!/usr/bin/env bash
# ClusterIP: a Service with a backend on each worker answers from both backends, by its DNS name
# (CoreDNS through its own ClusterIP) and by address, from a pod and from the host network of
# every node; a Service without endpoints rejects connections at once (no timeout). On a
# dual-stack cluster, the IPv6 ClusterIP answers too.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/../lib.sh"

ns=e2e-clusterip
fresh_namespace "$ns"
server_pod "$ns" echo-1 "$WORKER" echo
server_pod "$ns" echo-2 "$WORKER2" echo
client_pod "$ns" client "$WORKER"
family_policy=SingleStack
if [[ $E2E_IP_FAMILY == dual ]]; then
    family_policy=RequireDualStack
fi
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: ${ns}
spec:
  ipFamilyPolicy: ${family_policy}
  selector:
    app: echo
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: empty
  namespace: ${ns}
spec:
  selector:
    app: nothing-has-this-label
  ports:
  - name: http
    port: 80
    targetPort: 8080
YAML
wait_pods "$ns"

cip=$(svc_field "$ns" echo .spec.clusterIP)
expect_backends "pod -> ClusterIP by name" echo-1,echo-2 \
    pod_curl "$ns" client "http://echo.${ns}.svc.cluster.local/hostname"
expect_backends "pod -> ClusterIP ${cip}" echo-1,echo-2 \
    pod_curl "$ns" client "http://${cip}/hostname"
for node in "$CONTROL_PLANE" "$WORKER" "$WORKER2"; do
    expect_backends "host network of ${node} -> ClusterIP ${cip}" echo-1,echo-2 \
        node_curl "$node" "http://${cip}/hostname"
done

if [[ $E2E_IP_FAMILY == dual ]]; then
    cip6=$(svc_field "$ns" echo '.spec.clusterIPs[1]')
    [[ $cip6 == *:* ]] || fail "the dual-stack Service has no IPv6 ClusterIP: '$cip6'"
    expect_backends "pod -> IPv6 ClusterIP ${cip6}" echo-1,echo-2 \
        pod_curl "$ns" client "http://[${cip6}]/hostname"
    expect_backends "host network of ${WORKER} -> IPv6 ClusterIP ${cip6}" echo-1,echo-2 \
        node_curl "$WORKER" "http://[${cip6}]/hostname"
fi

# No endpoints: rejected (curl exit 7, "couldn't connect"), not dropped (exit 28, a timeout).
empty=$(svc_field "$ns" empty .spec.clusterIP)
rejected() {
    local rc=0
    k -n "$ns" exec client -- curl -s --max-time 4 "http://${empty}/" >/dev/null 2>&1 || rc=$?
    [[ $rc == 7 ]]
}
eventually 20 "a connection to the endpoint-less ${empty} to be rejected" rejected ||
    fail "pod -> ClusterIP without endpoints: not rejected (curl should fail at once with exit 7)"
pass "pod -> ClusterIP without endpoints: rejected"

drop_namespace "$ns"
