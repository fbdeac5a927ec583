#!/usr/bin/env bash
# Quickstart: installs what is needed, builds skiff, starts `skiff server` on the embedded SQLite
# store, loads the demo from manifests/, and shows it through the Kubernetes API. The server keeps
# running in the background; `scripts/quickstart.sh stop` stops it.
#
# Today the server is the API server with the controller manager and the scheduler; no node runs
# containers yet (issue 5), so the demo is a page stored as a ConfigMap, and the hints below show how
# to watch a Deployment roll out on hollow nodes. The full demo (web pods behind a Service) comes with
# the kubelet and proxy, whose node side will run inside network namespaces this script creates, so
# trying skiff never rewires the host.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${SKIFF_DATA_DIR:-$PWD/.skiff}"
PORT="${SKIFF_PORT:-6443}"
PIDFILE="$DATA_DIR/server.pid"

if [ "${1:-}" = "stop" ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")" && echo "stopped skiff server (pid $(cat "$PIDFILE"))"
  fi
  rm -f "$PIDFILE"
  exit 0
fi

bash scripts/setup.sh
cargo build --release -p skiff

mkdir -p "$DATA_DIR"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "skiff server already running (pid $(cat "$PIDFILE"))"
else
  nohup ./target/release/skiff server --data-dir "$DATA_DIR" --bind-address 127.0.0.1 \
    --https-listen-port "$PORT" >"$DATA_DIR/server.log" 2>&1 &
  echo $! >"$PIDFILE"
fi

CA="$DATA_DIR/server/tls/server-ca.crt"
for _ in $(seq 1 100); do
  curl -sf --cacert "$CA" "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --cacert "$CA" "https://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DATA_DIR/server.log"; exit 1; }
TOKEN="$(cat "$DATA_DIR/server/tls/admin.token")"
api() { curl -sS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" "$@"; }
URL="https://127.0.0.1:$PORT"

export KUBECONFIG="$DATA_DIR/kubeconfig.yaml"
echo
if command -v kubectl >/dev/null; then
  echo "== kubectl apply -f manifests/demo-page.json"
  kubectl apply -f manifests/demo-page.json
  echo "== kubectl get configmaps,services,namespaces"
  kubectl get configmaps,services,namespaces
else
  echo "== the demo page, stored as a ConfigMap (manifests/demo-page.json; kubectl not found, using curl)"
  api -X PUT "$URL/api/v1/namespaces/default/configmaps/demo-page" -d @manifests/demo-page.json -o /dev/null -w '%{http_code}\n' |
    grep -q '^200$' || api -X POST "$URL/api/v1/namespaces/default/configmaps" -d @manifests/demo-page.json -o /dev/null
  api "$URL/api/v1/namespaces/default/configmaps/demo-page"
  echo
fi
echo
cat <<MSG
skiff server is running (pid $(cat "$PIDFILE")), data in $DATA_DIR, log in $DATA_DIR/server.log.
Try:
  export KUBECONFIG=$DATA_DIR/kubeconfig.yaml
  kubectl get configmaps -w                                   # then change one from another shell:
  kubectl patch configmap demo-page -p '{"data":{"extra":"1"}}'
  kubectl explain deployment.spec.strategy
  ./target/release/skiff agent --hollow-nodes 3 --kubeconfig \$KUBECONFIG &   # nodes that run nothing
  kubectl create deployment web --image=busybox --replicas=6 --dry-run=client -o yaml | kubectl apply -f -
  kubectl rollout status deployment/web; kubectl get pods -o wide; kubectl describe deployment web
  kubectl get --raw /metrics | grep apiserver_request_total
  sqlite3 $DATA_DIR/server/db/state.db 'select revision, key from log'      # the store underneath
Stop it with: scripts/quickstart.sh stop
MSG
