#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need on a
# fresh machine, then runs vet, a generated-code check and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage says how long it took, so a slow one is easy to spot.
began=$(date +%s)
stage_start=${began}
stage() {
	local now
	now=$(date +%s)
	if [ -n "${stage_name:-}" ]; then echo "   (${stage_name}: $((now - stage_start))s)"; fi
	stage_name="$1"
	stage_start=${now}
	echo "== $1"
}

# Temporary files and background jobs, removed and stopped however the
# command ends.
scratch="$(mktemp -d)"
background_pids=()
cleanup() {
	if [ "${#background_pids[@]}" -gt 0 ]; then kill "${background_pids[@]}" 2>/dev/null || true; fi
	rm -rf "${scratch}"
}
trap cleanup EXIT
# await_job PID LOG WHAT: waits for a background job; on failure prints
# its log and stops the command.
await_job() {
	if ! wait "$1"; then
		cat "$2" >&2
		echo "$3 failed" >&2
		exit 1
	fi
}

stage "go modules"
go mod download

stage "test tools (headless chromium, a CJK font, node; curl, jq and python3-cryptography for the README test)"
browser_pkgs=""
# The browser tests need only headless Chromium: Debian's headless shell is
# a smaller install than the full browser and lighter to run.
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium-headless-shell}" ]; then browser_pkgs="chromium-headless-shell"; fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then browser_pkgs="$browser_pkgs nodejs npm"; fi
for tool in curl jq; do
	if ! command -v "$tool" >/dev/null; then browser_pkgs="$browser_pkgs $tool"; fi
done
# The README's export check is a Python recipe.
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then browser_pkgs="$browser_pkgs python3-cryptography"; fi
# Japanese text in the screenshots needs a CJK font (the assertions don't).
if command -v dpkg >/dev/null && ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then browser_pkgs="$browser_pkgs fonts-noto-cjk"; fi
if [ -n "$browser_pkgs" ]; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $browser_pkgs >/dev/null
fi

# The npm packages of the browser tests and GraphiQL (web/graphiql/dist,
# embedded in --dev) mostly wait on the network: they install in the
# background while gofmt, vet and the generated-code check use the CPU,
# and `go test` waits for them.
node_log="${scratch}/node.log"
(
	if [ ! -f web/e2e/node_modules/.package-lock.json ] || [ web/e2e/package-lock.json -nt web/e2e/node_modules/.package-lock.json ]; then
		(cd web/e2e && npm ci --no-audit --no-fund)
	fi
	scripts/build-graphiql.sh
) >"${node_log}" 2>&1 &
node_pid=$!
background_pids+=("${node_pid}")

stage "gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

stage "go vet"
go vet ./...

# Mailpit (the real SMTP server of the mail tests and the README test) is a
# tool of this module, built once per version into a cache that survives
# between runs. It builds after vet so that the dependencies it shares with
# the server are compiled once, in the background of the generated-code
# check, and `go test` waits for it.
mailpit_out="${scratch}/mailpit.out"
mailpit_log="${scratch}/mailpit.log"
scripts/install-mailpit.sh >"${mailpit_out}" 2>"${mailpit_log}" &
mailpit_pid=$!
background_pids+=("${mailpit_pid}")

stage "generated code is up to date"
if git rev-parse --git-dir >/dev/null 2>&1; then
	go generate ./...
	generated="graph internal/benchmarks/baregql"
	# shellcheck disable=SC2086
	if ! git diff --quiet -- $generated; then
		echo "go generate changed generated code: commit it"; git diff --stat -- $generated; exit 1
	fi
fi

stage "mailpit (real SMTP server for the mail tests)"
await_job "${mailpit_pid}" "${mailpit_log}" "scripts/install-mailpit.sh"
cat "${mailpit_log}"
MAILPIT_BIN="$(cat "${mailpit_out}")"
export MAILPIT_BIN

stage "npm packages (web/e2e) and GraphiQL (scripts/build-graphiql.sh)"
await_job "${node_pid}" "${node_log}" "npm ci in web/e2e or scripts/build-graphiql.sh"
tail -n 3 "${node_log}"

# The out-of-tree module and the fuzz stage compile on their own (a module
# of its own; fuzz instrumentation rebuilds every dependency) while much of
# `go test` waits on browsers, servers and timers: they run beside it at
# the lowest CPU priority, so they take the idle cores without slowing the
# tests, and their output follows the test output.
late_log="${scratch}/late.log"
(
	renice -n 19 -p "${BASHPID}" >/dev/null
	late_began=$(date +%s)
	echo "== out-of-tree plugin module (examples/processor-module: own go.mod, cmd.Main, plugintest.Conformance)"
	# A module of its own: the root's ./... does not include it. GOWORK=off so
	# that a go.work elsewhere cannot change what it builds against.
	(cd examples/processor-module && GOWORK=off go mod verify >/dev/null && GOWORK=off go vet ./... &&
		GOWORK=off go build ./... && GOWORK=off go test -count=1 ./...)
	echo "   (out-of-tree plugin module: $(($(date +%s) - late_began))s)"
	late_began=$(date +%s)
	echo "== fuzz (a short run of each target; seeds in testdata/fuzz)"
	# A count of inputs rather than a duration: a timed run counts the gathering
	# of baseline coverage against its time and fails with "context deadline
	# exceeded" when a busy machine makes that slow. FUZZTIME (e.g. 30s or
	# 100000x) overrides the counts.
	fuzz() { go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-$3}" -parallel "${4:-2}" "$1"; }
	fuzz ./internal/accounts FuzzNormalizeUsername 40000x
	fuzz ./internal/accounts FuzzNormalizeEmail 40000x
	fuzz ./internal/accounts FuzzCheckPassword 20000x
	fuzz ./internal/signing/jws FuzzVerify 8000x
	fuzz ./graph FuzzGraphQLRequest 20000x
	echo "   (fuzz: $(($(date +%s) - late_began))s)"
) >"${late_log}" 2>&1 &
late_pid=$!
background_pids+=("${late_pid}")

stage "go test"
# -vet=off: `go vet ./...` above has checked every package and its tests
# with all analyzers; go test's own vet pass would only repeat a subset.
# The longest packages come first (go test starts them in the order given)
# and one more package runs than there are cores: the browser tests
# (web/e2e) keep the CPU busy while the server's API tests (internal/app)
# and several others mostly wait on timers and servers.
go test -p "$(($(nproc) + 1))" -count=1 -vet=off -timeout 12m ./web/e2e ./internal/app ./...

stage "out-of-tree plugin module and fuzz (run beside go test)"
await_job "${late_pid}" "${late_log}" "the out-of-tree plugin module or a fuzz target"
cat "${late_log}"
stage "done"
echo "all stages passed in $(($(date +%s) - began))s"
