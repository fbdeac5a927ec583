#!/usr/bin/env bash
# Installs what building and testing skiff needs from Debian, skipping what is already there.
# Sourced by quickstart.sh and test.sh; safe to run again.
set -euo pipefail

PACKAGES=(
  protobuf-compiler libprotobuf-dev   # etcd-client compiles etcd's protos (needs the well-known types too)
  etcd-server                         # the etcd backend's tests and benchmark start a real etcd
  sqlite3                             # to look inside the embedded store (not needed to build)
  curl ca-certificates                # the quickstart talks to the server with curl
  runc                                # the node runs pod sandboxes and containers with it
  containernetworking-plugins         # CNI plugins the kubelet executes: bridge, host-local, loopback, portmap
  iptables                            # the bridge (ipMasq) and portmap plugins write NAT rules with it; the proxy too
  nftables                            # the proxy's nftables mode (nft -f)
  busybox-static                      # node tests build a container rootfs from its one static binary; the kubelet's port-forward runs its nc
  docker-registry skopeo apache2-utils # image pull tests: a registry on loopback, pushes to it, htpasswd
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi
