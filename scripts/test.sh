#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need on a
# fresh machine, then runs vet, a generated-code check and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go modules"
go mod download

if [ -x scripts/install-mailpit.sh ]; then
	echo "== mailpit (real SMTP server for mail tests)"
	MAILPIT_BIN="$(scripts/install-mailpit.sh)"
	export MAILPIT_BIN
fi

echo "== gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== generated code is up to date"
if git rev-parse --git-dir >/dev/null 2>&1; then
	go generate ./...
	if ! git diff --quiet -- graph; then
		echo "go generate changed graph/: commit the regenerated code"; git diff --stat -- graph; exit 1
	fi
fi

echo "== go test"
go test -count=1 -timeout 12m ./...
