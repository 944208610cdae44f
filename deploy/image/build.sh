#!/usr/bin/env bash
# Builds the multi-architecture agent image with docker buildx.
#   deploy/image/build.sh [TAG] [--push]
# Without --push the image is loaded for this machine's platform only
# (docker cannot load a multi-platform image into the local store).
set -euo pipefail
cd "$(dirname "$0")/../.."

tag="${1:-twinmesh:dev}"
push="${2:-}"
platforms="linux/amd64,linux/arm64,linux/riscv64"

if ! command -v docker >/dev/null 2>&1; then
  echo "docker is not installed: it is needed to build the image" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "no Docker engine is running (docker info failed)" >&2
  exit 1
fi
if ! docker buildx version >/dev/null 2>&1; then
  echo "docker buildx is missing: install the buildx plugin" >&2
  exit 1
fi

if [ "$push" = "--push" ]; then
  docker buildx build --platform "$platforms" -f deploy/image/Dockerfile -t "$tag" --push .
else
  docker buildx build -f deploy/image/Dockerfile -t "$tag" --load .
  echo "built $tag for this machine; use --push to build and push all of: $platforms"
fi
