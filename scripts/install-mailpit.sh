#!/usr/bin/env bash
# Installs the Mailpit SMTP server the mail tests and the README's examples
# use, once per version, into a cache directory that survives between runs
# (so a second run of the test command does not build it again). Idempotent.
# Prints the path of the binary on stdout; progress goes to stderr.
#
# Where it looks, in order:
#   1. $MAILPIT_BIN
#   2. mailpit on $PATH
#   3. the cache (the same one mailpittest.Binary uses and fills):
#      ${CONSENTGRAPH_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/consentgraph}/mailpit/VERSION/mailpit
# and otherwise builds it there. Mailpit is a tool of this module (go.mod's
# `tool` block), so it builds at the version go.mod pins, checked against
# go.sum, with the dependencies it shares with the server (SQLite, x/net, …)
# compiled once for both.
set -euo pipefail
cd "$(dirname "$0")/.."

MODULE="github.com/axllent/mailpit"
VERSION="$(go list -m -f '{{.Version}}' "${MODULE}")" # mailpittest.Version must agree (a test checks)

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

cache="${CONSENTGRAPH_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/consentgraph}/mailpit/${VERSION}"
target="${cache}/mailpit"

# `mailpit version` says "dev" for go-installed builds and wants the
# network; the module version recorded in the binary is reliable.
built_version() {
	go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "'"${MODULE}"'" { print $3 }'
}

if [ -x "${target}" ] && [ "$(built_version "${target}")" = "${VERSION}" ]; then
	echo "mailpit ${VERSION} cached in ${cache}" >&2
	echo "${target}"
	exit 0
fi

echo "building ${MODULE}@${VERSION} into ${cache} ..." >&2
mkdir -p "${cache}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
start=$(date +%s)
GOWORK=off go build -o "${tmp}/bin/mailpit" "${MODULE}"
got="$(built_version "${tmp}/bin/mailpit")"
if [ "${got}" != "${VERSION}" ]; then
	echo "built mailpit but it reports module version '${got}', want ${VERSION}" >&2
	exit 1
fi
# A rename within one file system: a concurrent run sees the old binary or
# the whole new one, never half of it.
cp "${tmp}/bin/mailpit" "${cache}/.mailpit.$$"
mv -f "${cache}/.mailpit.$$" "${target}"
echo "built mailpit ${VERSION} in $(($(date +%s) - start))s" >&2
echo "${target}"
