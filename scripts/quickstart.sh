#!/usr/bin/env bash
# Quickstart: installs what is needed, builds skiff, starts `skiff server` on the embedded SQLite
# store with its embedded node (the kubelet: pause sandboxes, runc containers, CNI), loads the demo
# from manifests/, runs a small web Deployment on the node and asks each pod for its page. Everything
# keeps running in the background; `scripts/quickstart.sh stop` stops it and removes what it made.
#
# The node's network (its address, the CNI bridge, pod veths, the masquerade rule) lives in a network
# namespace this script creates, `skiff-quickstart`, the way kind puts a node in a container, so
# trying skiff never rewires the host: `skiff server --node-netns` runs its node side in there and
# still answers kubectl on the host's 127.0.0.1. Pod IPs answer inside the namespace
# (`ip netns exec skiff-quickstart curl …`).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${SKIFF_DATA_DIR:-$PWD/.skiff}"
PORT="${SKIFF_PORT:-6443}"
PIDFILE="$DATA_DIR/server.pid"
NETNS=skiff-quickstart
NODE_IP=10.200.0.1 # the node's address, on the namespace's loopback: nothing outside routes to it
RUNC_ROOT="$DATA_DIR/agent/runc"

stop_pid() { # name pidfile
  if [ -f "$2" ] && kill -0 "$(cat "$2")" 2>/dev/null; then
    kill "$(cat "$2")" && echo "stopped skiff $1 (pid $(cat "$2"))"
  fi
  rm -f "$2"
}

if [ "${1:-}" = "stop" ]; then
  stop_pid agent "$DATA_DIR/agent.pid" # a quickstart of an earlier version ran the node apart
  stop_pid server "$PIDFILE"
  # A stopped kubelet leaves its containers running (as upstream's does); the quickstart removes them.
  if [ -d "$RUNC_ROOT" ]; then
    for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
      runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
    done
  fi
  # Containers' root filesystems are overlay mounts in their bundles: unmounted before removal.
  awk -v dir="$DATA_DIR/agent/pods/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
  # The pods' cgroups (the kubelet removes them when it tears a pod down; here it is stopped).
  for dir in /sys/fs/cgroup/*/skiff /sys/fs/cgroup/skiff; do
    [ -d "$dir" ] && find "$dir" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # With the namespace go the bridge and the pods' veths; the IP allocations go with them.
  ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$DATA_DIR/agent/cni" "$DATA_DIR/agent/pods" "$DATA_DIR/node"
  exit 0
fi

bash scripts/setup.sh
# Cargo's target directory (CARGO_TARGET_DIR when set, as cargo itself reads it).
TARGET="${CARGO_TARGET_DIR:-target}"
SKIFF="$TARGET/release/skiff"
cargo build --release -p skiff
# The node's static helpers (the pause process, the container shim) go next to the skiff binary; they
# are their own crate, built static (pause/Cargo.toml says why).
for bin in skiff-pause skiff-shim; do
  cargo rustc -q --release --manifest-path pause/Cargo.toml --target-dir "$TARGET" --bin "$bin" -- \
    -C target-feature=+crt-static
done

mkdir -p "$DATA_DIR"
# The node: a busybox image built from Debian's busybox-static, left in the agent's airgap directory,
# which the node imports at start (as k3s does), and the node's network namespace, with the node's
# address on its loopback.
NODE_FLAGS=(--disable-agent)
if [ "$(id -u)" -eq 0 ]; then
  # Tagged latest, which pods get with `image: busybox`; the manifests ask for IfNotPresent, so
  # the node uses it rather than pulling it from a registry.
  AIRGAP="$DATA_DIR/agent/images"
  if [ ! -f "$AIRGAP/busybox.tar" ]; then
    scripts/build-busybox-image.sh "$AIRGAP/busybox.tar" busybox:latest
  fi
  ip netns add "$NETNS" 2>/dev/null || true
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr replace "$NODE_IP/32" dev lo
  NODE_FLAGS=(--node-netns "/run/netns/$NETNS" --node-name skiff-node --node-ip "$NODE_IP")
else
  echo "(not root: the server runs without its node; pods stay Pending)"
fi
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "skiff server already running (pid $(cat "$PIDFILE"))"
else
  # Its own session (setsid): the server outlives the shell that started it, as a daemon would.
  setsid nohup "$SKIFF" server --data-dir "$DATA_DIR" --bind-address 127.0.0.1 \
    --https-listen-port "$PORT" "${NODE_FLAGS[@]}" >"$DATA_DIR/server.log" 2>&1 &
  echo $! >"$PIDFILE"
fi

CA="$DATA_DIR/server/tls/server-ca.crt"
for _ in $(seq 1 100); do
  curl -sf --cacert "$CA" "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --cacert "$CA" "https://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DATA_DIR/server.log"; exit 1; }

export KUBECONFIG="$DATA_DIR/kubeconfig.yaml"
export SKIFF_DATA_DIR="$DATA_DIR" # where `skiff get|apply|…` find the kubeconfig (KUBECONFIG names it too)

# skiff's own client verbs (kubectl's output; the real kubectl works the same way if installed).
echo
echo "== skiff apply -f manifests/demo.yaml   (a ConfigMap, a web Deployment of 3 pods, a Service)"
"$SKIFF" apply -f manifests/demo.yaml
if [ "$(id -u)" -eq 0 ]; then
  # The node imports its images before it registers.
  for _ in $(seq 1 200); do "$SKIFF" get node skiff-node >/dev/null 2>&1 && break; sleep 0.3; done
  "$SKIFF" wait --for=condition=Ready node/skiff-node --timeout=60s
  "$SKIFF" rollout status deployment/web --timeout=120s
  "$SKIFF" get pods -o wide
  "$SKIFF" get service web
  VIP="$("$SKIFF" get service web -o jsonpath='{.spec.clusterIP}')"
  echo
  echo "== the Service's ClusterIP $VIP, asked from inside the node's network namespace:"
  # The proxy programs the VIP within its 1 s minimum sync period of the endpoints becoming ready.
  for _ in $(seq 1 50); do
    ip netns exec "$NETNS" curl -s -m 1 -o /dev/null "http://$VIP/" && break
    sleep 0.2
  done
  for _ in 1 2 3 4 5 6; do
    ip netns exec "$NETNS" curl -s -m 3 "http://$VIP/" | sed 's/<[^>]*>/ /g; s/  */ /g' || echo "(no answer)"
  done
fi
echo
cat <<MSG
skiff server is running (pid $(cat "$PIDFILE")) with its node skiff-node, data in $DATA_DIR,
log in $DATA_DIR/server.log.
Try (skiff's verbs print what kubectl prints; with kubectl installed, the same commands work as kubectl …):
  export SKIFF_DATA_DIR=$DATA_DIR KUBECONFIG=$DATA_DIR/kubeconfig.yaml PATH=\$PATH:$(dirname "$SKIFF")
  skiff get pods -o wide -w                                   # then, from another shell:
  skiff scale deployment web --replicas=5
  skiff rollout restart deployment/web && skiff rollout status deployment/web
  skiff describe deployment web; skiff describe node skiff-node
  skiff exec deploy/web -- cat /www/index.html; skiff logs deploy/web
  skiff apply -f manifests/examples/crashloop.yaml            # and the other examples there
  kubectl get events -w; kubectl explain deployment.spec.strategy
  ip netns exec $NETNS curl -s http://\$(skiff get svc web -o jsonpath='{.spec.clusterIP}')/
  ip netns exec $NETNS iptables-save -t nat | grep -i web     # the Service's rules, in the node's namespace
  skiff images ls --data-dir $DATA_DIR                        # the node's image store
  runc --root $RUNC_ROOT list                                 # the containers underneath
  ip netns exec $NETNS ip addr show cni0                      # the node's pod bridge
  skiff agent --hollow-nodes 3 --kubeconfig \$KUBECONFIG &    # nodes that run nothing
  sqlite3 $DATA_DIR/server/db/state.db 'select revision, key from log'      # the store underneath
Stop it with: scripts/quickstart.sh stop
MSG
