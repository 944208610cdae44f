#!/usr/bin/env bash
# Shared by the k3d scripts: the pools, paths and prerequisite checks.
# shellcheck disable=SC2034  # variables are used by the scripts that source this

set -euo pipefail

K3D_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$K3D_DIR/.." && pwd)"
POOLS=(dc-core prosumer-mining campus-lab gamer-pc phone-pan-1 phone-pan-2 edge-microdc)
NETWORK=twinmesh
IMAGE="${TWINMESH_IMAGE:-twinmesh:dev}"
SECRETS="$REPO/deploy/secrets"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need CMD HINT: fail with HINT unless CMD is on the PATH.
need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed: $2"
}

need_docker() {
  need docker "install Docker (https://docs.docker.com/engine/install/)"
  docker info >/dev/null 2>&1 || die "Docker is installed but its engine is not running (or this user may not use it)"
}

need_k3d() { need k3d "install k3d v5 (https://k3d.io/#installation)"; }
need_kubectl() { need kubectl "install kubectl 1.27+ (it includes kustomize)"; }
need_curl() { need curl "install curl"; }

ctx() { printf 'k3d-%s' "$1"; }

# The address of a cluster's server node on the shared Docker network.
server_ip() {
  docker inspect -f "{{ (index .NetworkSettings.Networks \"$NETWORK\").IPAddress }}" "k3d-$1-server-0"
}
