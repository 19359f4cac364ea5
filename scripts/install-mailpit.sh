#!/usr/bin/env bash
# Installs the Mailpit SMTP test server used by internal/mail/mailpittest,
# so the first test does not pay for building it. Run it in CI before
# `go test`. Idempotent. Prints the path of the binary on stdout.
#
# It looks in the same places as mailpittest.Binary, in the same order:
#   1. $MAILPIT_BIN
#   2. mailpit on $PATH
#   3. $(go env GOBIN), else $(go env GOPATH)/bin, if built from the pinned
#      module version
# and otherwise runs `go install github.com/axllent/mailpit@VERSION` from a
# temporary directory (the project's go.mod is never touched).
set -euo pipefail

VERSION="v1.27.11" # keep in sync with mailpittest.Version
MODULE="github.com/axllent/mailpit"

if [ -n "${MAILPIT_BIN:-}" ]; then
	if [ ! -x "${MAILPIT_BIN}" ]; then
		echo "MAILPIT_BIN=${MAILPIT_BIN} is not an executable file" >&2
		exit 1
	fi
	echo "using MAILPIT_BIN" >&2
	echo "${MAILPIT_BIN}"
	exit 0
fi

if on_path="$(command -v mailpit 2>/dev/null)"; then
	echo "using mailpit from PATH" >&2
	echo "${on_path}"
	exit 0
fi

gobin="$(go env GOBIN)"
if [ -z "${gobin}" ]; then
	gopath="$(go env GOPATH)"
	gobin="${gopath%%:*}/bin"
fi
target="${gobin}/mailpit"

# `mailpit version` says "dev" for go-installed builds and wants the
# network; the module version recorded in the binary is reliable.
built_version() {
	go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "'"${MODULE}"'" { print $3 }'
}

if [ -x "${target}" ] && [ "$(built_version "${target}")" = "${VERSION}" ]; then
	echo "mailpit ${VERSION} already installed" >&2
	echo "${target}"
	exit 0
fi

echo "installing ${MODULE}@${VERSION} into ${gobin} ..." >&2
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
start=$(date +%s)
(
	cd "${tmp}"
	GOBIN="${gobin}" GOFLAGS=-mod=mod GOWORK=off go install "${MODULE}@${VERSION}"
)
got="$(built_version "${target}")"
if [ "${got}" != "${VERSION}" ]; then
	echo "installed ${target} but it reports module version '${got}', want ${VERSION}" >&2
	exit 1
fi
echo "installed mailpit ${VERSION} in $(($(date +%s) - start))s" >&2
echo "${target}"
