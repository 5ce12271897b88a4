#!/usr/bin/env bash
# Builds the three images of build/Dockerfile with whichever container engine is installed:
# docker (buildx), podman, nerdctl or buildah, tried in that order unless ENGINE names one.
#   REGISTRY   image repository prefix           (default docker.io/t9kpublic)
#   VERSION    tag                               (default: the VERSION file; never "latest")
#   PLATFORMS  comma-separated target platforms  (default: this machine's, linux/<arch>)
#   PUSH=1     push the (multi-platform) images instead of keeping them locally
# Example of a release: PLATFORMS=linux/amd64,linux/arm64 PUSH=1 REGISTRY=ghcr.io/me make images
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${REGISTRY:-docker.io/t9kpublic}
VERSION=${VERSION:-$(cat VERSION)}
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
PLATFORMS=${PLATFORMS:-linux/$arch}
PUSH=${PUSH:-}
if [ -z "$VERSION" ] || [ "$VERSION" = latest ]; then
  echo "images: VERSION must be a version (from the VERSION file), not '${VERSION}'" >&2; exit 2
fi

ENGINE=${ENGINE:-}
if [ -z "$ENGINE" ]; then
  for e in docker podman nerdctl buildah; do
    if command -v "$e" >/dev/null 2>&1; then ENGINE=$e; break; fi
  done
fi
if [ -z "$ENGINE" ]; then
  cat >&2 <<MSG
images: no container engine found (looked for docker, podman, nerdctl, buildah).
Install one of them, or build elsewhere from build/Dockerfile, e.g.
  docker buildx build --platform linux/amd64,linux/arm64 -f build/Dockerfile --target t9k-scheduler \\
    -t ${REGISTRY}/t9k-scheduler:${VERSION} --push .
'make cross' checks that every binary builds for both architectures without an engine.
MSG
  exit 1
fi
multi=false; [[ "$PLATFORMS" == *,* ]] && multi=true
if $multi && [ -z "$PUSH" ] && [ "$ENGINE" = docker ]; then
  echo "images: docker keeps only single-platform images locally; set PUSH=1 for PLATFORMS=$PLATFORMS" >&2; exit 2
fi

for target in t9k-scheduler t9k-controllers t9k-device-agent; do
  tag="${REGISTRY}/${target}:${VERSION}"
  echo ">> ${ENGINE}: ${tag} (${PLATFORMS})"
  case "$ENGINE" in
    docker)
      out=--load; [ -n "$PUSH" ] && out=--push
      docker buildx build --platform "$PLATFORMS" -f build/Dockerfile --target "$target" \
        --build-arg VERSION="$VERSION" -t "$tag" $out . ;;
    podman|buildah)
      "$ENGINE" manifest rm "$tag" >/dev/null 2>&1 || true
      "$ENGINE" build --platform "$PLATFORMS" -f build/Dockerfile --target "$target" \
        --build-arg VERSION="$VERSION" --manifest "$tag" .
      if [ -n "$PUSH" ]; then "$ENGINE" manifest push --all "$tag" "docker://$tag"; fi ;;
    nerdctl)
      nerdctl build --platform "$PLATFORMS" -f build/Dockerfile --target "$target" \
        --build-arg VERSION="$VERSION" -t "$tag" .
      if [ -n "$PUSH" ]; then nerdctl push --all-platforms "$tag"; fi ;;
    *) echo "images: unknown ENGINE $ENGINE" >&2; exit 2 ;;
  esac
done
