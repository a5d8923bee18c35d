#!/usr/bin/env bash
# Install what the test suite needs from Debian when it is missing: gcc for the
# differential CPU harness, the payload decompressors for the native oracle,
# Chromium for the test that opens a run report in a real browser.
set -euo pipefail
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v zstd >/dev/null || need+=(zstd)
command -v lz4 >/dev/null || need+=(lz4)
command -v xz >/dev/null || need+=(xz-utils)
command -v flock >/dev/null || need+=(util-linux)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-prereqs: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
