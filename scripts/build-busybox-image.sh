#!/usr/bin/env bash
# Builds a busybox image as a docker-archive tarball (what `docker save` writes) from Debian's
# busybox-static: /bin/busybox, a symlink per applet, /etc/passwd and /etc/group, and an image config
# with Cmd ["sh"]. Nothing prebuilt is downloaded.
#
#   scripts/build-busybox-image.sh OUT.tar [NAME:TAG] [EXTRA_DIR]
#
# EXTRA_DIR, if given, becomes a second layer (its files over the first), e.g. a web root for the
# quickstart. The tarball imports with `skiff images import OUT.tar` and pushes with
# `skopeo copy docker-archive:OUT.tar docker://…`. The same inputs give the same bytes.
set -euo pipefail

OUT="${1:?usage: $0 OUT.tar [NAME:TAG] [EXTRA_DIR]}"
NAME="${2:-busybox:latest}"
EXTRA="${3:-}"
BUSYBOX="${BUSYBOX:-$(command -v busybox || true)}"
[ -x "$BUSYBOX" ] || { echo "busybox not found: apt-get install busybox-static" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/root" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list); do
  [ -e "$ROOT/bin/$applet" ] || ln -s busybox "$ROOT/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"

# A reproducible tar of a directory's contents.
layer_tar() { # dir out
  tar -C "$1" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$2" .
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$WORK/out"
layer_tar "$ROOT" "$WORK/layer1.tar"
L1="$(sha "$WORK/layer1.tar")"
mkdir -p "$WORK/out/$L1"
mv "$WORK/layer1.tar" "$WORK/out/$L1/layer.tar"
LAYERS="\"$L1/layer.tar\""
DIFF_IDS="\"sha256:$L1\""
if [ -n "$EXTRA" ]; then
  layer_tar "$EXTRA" "$WORK/layer2.tar"
  L2="$(sha "$WORK/layer2.tar")"
  mkdir -p "$WORK/out/$L2"
  mv "$WORK/layer2.tar" "$WORK/out/$L2/layer.tar"
  LAYERS="$LAYERS,\"$L2/layer.tar\""
  DIFF_IDS="$DIFF_IDS,\"sha256:$L2\""
fi

case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64) ARCH=arm64 ;;
  *) ARCH="$(uname -m)" ;;
esac
cat >"$WORK/config.json" <<JSON
{"architecture":"$ARCH","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[$DIFF_IDS]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/build-busybox-image.sh"}]}
JSON
C="$(sha "$WORK/config.json")"
mv "$WORK/config.json" "$WORK/out/$C.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' "$C" "$NAME" "$LAYERS" >"$WORK/out/manifest.json"
mkdir -p "$(dirname "$OUT")"
(cd "$WORK/out" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .) >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$OUT: $NAME (config sha256:$C)"
