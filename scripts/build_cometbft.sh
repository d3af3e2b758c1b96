#!/usr/bin/env bash
# Build the CometBFT binary the network mode runs under (v0.38.26, the ABCI 2.0 line) with
# `go install` into a project-local cache folder, and print the binary's path on stdout.
# A no-op when that binary is already there. Needs Go (>= 1.22); the first build takes about
# 3 minutes and fills the Go module cache (~460 MB) and build cache (~310 MB).
#
#   scripts/build_cometbft.sh            # -> .tools/cometbft-v0.38.26/bin/cometbft
#   COMETBFT_TOOLS=DIR scripts/build_cometbft.sh
set -euo pipefail
version="v0.38.26"
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${COMETBFT_TOOLS:-$root/.tools}"
bindir="$tools/cometbft-$version/bin"
binary="$bindir/cometbft"
if [ -x "$binary" ] && [ "$("$binary" version 2>/dev/null)" = "${version#v}" ]; then
    echo "$binary"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build_cometbft.sh: Go is not installed (needed once to build cometbft $version)" >&2
    exit 1
fi
mkdir -p "$bindir"
echo "build_cometbft.sh: building cometbft $version with $(go version) (about 3 minutes)" >&2
GOBIN="$bindir" go install "github.com/cometbft/cometbft/cmd/cometbft@$version"
test "$("$binary" version)" = "${version#v}"
echo "$binary"
