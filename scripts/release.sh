#!/bin/sh
# Builds the release binaries into OUTDIR (default: ./release):
# filtermail-x86_64 and filtermail-aarch64, the names the relay's deployer
# downloads, and SHA256SUMS beside them. Static (CGO_ENABLED=0, no ELF
# interpreter), -trimpath, no build ID and no VCS stamp of the go command:
# the version (the VERSION file) and the commit are stamped with -X, so two
# builds of the same commit with the same Go give the same bytes, wherever
# the source is. A working tree with changes is stamped COMMIT-dirty.
set -eu
cd "$(dirname "$0")/.."
out=${1:-release}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(cat VERSION)
commit=${FILTERMAIL_COMMIT:-$(git rev-parse HEAD)}
if [ -z "${FILTERMAIL_COMMIT:-}" ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	commit="$commit-dirty"
fi
ldflags="-s -w -buildid= -X main.buildVersion=$version -X main.buildCommit=$commit"

for arch in x86_64:amd64 aarch64:arm64; do
	name=filtermail-${arch%%:*}
	CGO_ENABLED=0 GOOS=linux GOARCH=${arch##*:} GOFLAGS= \
		go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/$name" ./cmd/filtermail
done
(cd "$out" && sha256sum filtermail-x86_64 filtermail-aarch64 > SHA256SUMS)
echo "filtermail $version (commit $commit) in $out:"
cat "$out/SHA256SUMS"
