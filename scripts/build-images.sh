#!/usr/bin/env bash
# Builds the skep images on a machine with no image registry:
#   skep-base:bookworm   a Debian bookworm rootfs made with debootstrap and
#                        imported (built once; kept unless --rebuild-base)
#   skep:dev             the controller   (Dockerfile target controller-prebuilt)
#   skep-worker:dev      the OCR worker   (Dockerfile target worker-prebuilt)
# The binaries are compiled on this machine (`cargo build --release`) and
# copied in, so the host must be Debian bookworm too (the same libtesseract5).
#
# With a registry, build the same Dockerfile the ordinary way instead:
#   docker build --target worker -t skep-worker:dev .
#   docker build --target controller -t skep:dev .
#
# Usage: scripts/build-images.sh [--rebuild-base] [--tag TAG]
set -euo pipefail
cd "$(dirname "$0")/.."

tag=dev
rebuild_base=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild-base) rebuild_base=1 ;;
    --tag) tag="$2"; shift ;;
    *) echo "usage: $0 [--rebuild-base] [--tag TAG]" >&2; exit 2 ;;
  esac
  shift
done

base=skep-base:bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "$rebuild_base" = 1 ] || ! docker image inspect "$base" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap >&2
  fi
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap bookworm into $rootfs" >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  # The image's apt must reach the same mirror; nothing else is configured.
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "imported $base" >&2
fi

# NB: the same package set as tests/swarm/e2e.sh builds, so both resolve the
# same features and the second build reuses every dependency.
cargo build --release --locked -p skep -p skep-worker -p skep-testkit

# NB: the classic builder builds every stage up to the target, in file
# order; the prebuilt targets come first so neither needs the Rust image.
for target in worker controller; do
  image="skep-worker:$tag"
  [ "$target" = controller ] && image="skep:$tag"
  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$base" --target "$target-prebuilt" -t "$image" . >/dev/null
  echo "built $image" >&2
done
