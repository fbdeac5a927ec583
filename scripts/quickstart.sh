#!/usr/bin/env bash
# Quickstart: installs what is needed, builds skiff, starts `skiff server` on the embedded SQLite
# store and a real node (`skiff agent`: pause sandboxes, runc containers, CNI), loads the demo from
# manifests/, runs a small web Deployment on the node and asks each pod for its page. Everything keeps
# running in the background; `scripts/quickstart.sh stop` stops it and removes what it made.
#
# The node's network (the CNI bridge, pod veths, the masquerade rule) lives in a network namespace
# this script creates, `skiff-quickstart`, so trying skiff never rewires the host: pod IPs answer
# inside it (`ip netns exec skiff-quickstart curl …`). Services (the proxy) and cluster DNS come
# with issue 6; until then the demo talks to pods directly.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${SKIFF_DATA_DIR:-$PWD/.skiff}"
PORT="${SKIFF_PORT:-6443}"
PIDFILE="$DATA_DIR/server.pid"
AGENT_PIDFILE="$DATA_DIR/agent.pid"
NETNS=skiff-quickstart
RUNC_ROOT="$DATA_DIR/node/agent/runc"

stop_pid() { # name pidfile
  if [ -f "$2" ] && kill -0 "$(cat "$2")" 2>/dev/null; then
    kill "$(cat "$2")" && echo "stopped skiff $1 (pid $(cat "$2"))"
  fi
  rm -f "$2"
}

if [ "${1:-}" = "stop" ]; then
  stop_pid agent "$AGENT_PIDFILE"
  stop_pid server "$PIDFILE"
  # A stopped kubelet leaves its containers running (as upstream's does); the quickstart removes them.
  if [ -d "$RUNC_ROOT" ]; then
    for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
      runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
    done
  fi
  # Containers' root filesystems are overlay mounts in their bundles: unmounted before removal.
  awk -v dir="$DATA_DIR/node/agent/pods/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
  # With the namespace go the bridge and the pods' veths; the IP allocations go with them.
  ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$DATA_DIR/node/agent/cni" "$DATA_DIR/node/agent/pods"
  exit 0
fi

bash scripts/setup.sh
cargo build --release -p skiff
# The node's static helpers (the pause process, the container shim) go next to the skiff binary; they
# are their own crate, built static (pause/Cargo.toml says why).
for bin in skiff-pause skiff-shim; do
  cargo rustc -q --release --manifest-path pause/Cargo.toml --target-dir target --bin "$bin" -- \
    -C target-feature=+crt-static
done

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

# The node: a busybox image built from Debian's busybox-static (with a web root as a second layer)
# and left in the agent's airgap directory, which it imports at start (as k3s does); the node's
# network namespace; and the agent, which runs CNI inside that namespace.
NODE=0
if [ "$(id -u)" -eq 0 ]; then
  # Tagged with busybox's version: a tag other than latest is pulled only if not present.
  BUSYBOX_TAG="$( (busybox 2>&1 || true) | sed -nE '1s/^BusyBox v([0-9.]+).*/\1/p')"
  IMAGE="busybox:${BUSYBOX_TAG:-local}"
  AIRGAP="$DATA_DIR/node/agent/images"
  if [ ! -f "$AIRGAP/busybox.tar" ]; then
    WWW="$(mktemp -d)"
    mkdir -p "$WWW/www"
    echo "served by a skiff pod" >"$WWW/www/index.html"
    scripts/build-busybox-image.sh "$AIRGAP/busybox.tar" "$IMAGE" "$WWW"
    rm -rf "$WWW"
  fi
  ip netns add "$NETNS" 2>/dev/null || true
  ip -n "$NETNS" link set lo up
  if [ -f "$AGENT_PIDFILE" ] && kill -0 "$(cat "$AGENT_PIDFILE")" 2>/dev/null; then
    echo "skiff agent already running (pid $(cat "$AGENT_PIDFILE"))"
  else
    nohup ./target/release/skiff agent --kubeconfig "$KUBECONFIG" --node-name skiff-node \
      --node-ip 127.0.0.1 --data-dir "$DATA_DIR/node" \
      --node-netns "/run/netns/$NETNS" >"$DATA_DIR/agent.log" 2>&1 &
    echo $! >"$AGENT_PIDFILE"
  fi
  NODE=1
else
  echo "(not root: no node is started; pods stay Pending)"
fi
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
if [ "$NODE" = 1 ] && command -v kubectl >/dev/null; then
  echo
  echo "== a web Deployment on the node: busybox httpd in runc containers, each pod with its own IP"
  # The agent imports its images before it registers the node.
  for _ in $(seq 1 200); do kubectl get node skiff-node >/dev/null 2>&1 && break; sleep 0.3; done
  kubectl wait --for=condition=Ready node/skiff-node --timeout=60s
  kubectl create deployment web --image="$IMAGE" --replicas=3 --dry-run=client -o yaml \
    -- httpd -f -p 8080 -h /www | kubectl apply -f -
  kubectl rollout status deployment/web --timeout=120s
  kubectl get pods -o wide
  for ip in $(kubectl get pods -l app=web -o jsonpath='{.items[*].status.podIP}'); do
    printf '%s answers: ' "$ip"
    ip netns exec "$NETNS" curl -s -m 3 "http://$ip:8080/" || echo "(no answer)"
  done
fi
echo
cat <<MSG
skiff server is running (pid $(cat "$PIDFILE")), data in $DATA_DIR, log in $DATA_DIR/server.log;
the node's agent logs to $DATA_DIR/agent.log.
Try:
  export KUBECONFIG=$DATA_DIR/kubeconfig.yaml
  kubectl get configmaps -w                                   # then change one from another shell:
  kubectl patch configmap demo-page -p '{"data":{"extra":"1"}}'
  kubectl explain deployment.spec.strategy
  kubectl scale deployment web --replicas=5; kubectl get pods -o wide -w
  kubectl set image deployment/web busybox=busybox:nosuch; kubectl get pods -w   # ErrImagePull, ImagePullBackOff
  ./target/release/skiff images ls --data-dir $DATA_DIR/node                 # the node's image store
  runc --root $RUNC_ROOT list                                    # the containers underneath
  ip netns exec $NETNS ip addr show cni0                          # the node's pod bridge
  ./target/release/skiff agent --hollow-nodes 3 --kubeconfig \$KUBECONFIG &   # nodes that run nothing
  kubectl describe deployment web; kubectl describe node skiff-node
  kubectl get --raw /metrics | grep apiserver_request_total
  sqlite3 $DATA_DIR/server/db/state.db 'select revision, key from log'      # the store underneath
Stop it with: scripts/quickstart.sh stop
MSG
