#!/usr/bin/env bash
# A standalone nats-server with JetStream for CI, on 127.0.0.1:24222.
#
#   bash .ci/lib/nats.sh start    # prints the URL on stdout (logs go to stderr)
#   bash .ci/lib/nats.sh stop
#   bash .ci/lib/nats.sh status   # exit 0 when it accepts connections
#   source .ci/lib/nats.sh; ci_nats_start   # also sets CI_NATS_URL
#
# The binary is built with `go install github.com/nats-io/nats-server/v2@v2.15.3`
# into $CI_NATS_ROOT/bin (reused when it is already that version). The server
# listens on loopback only, stores JetStream data in $CI_NATS_ROOT/store (wiped
# at each start) and logs to $CI_NATS_ROOT/nats.log. Idempotent: a server of
# ours still running from an earlier run is stopped first; stop removes the
# store.

# Below Linux's ephemeral range (32768-60999): a port inside it may be held
# by an outgoing connection that got it as its local port, and the server
# then cannot bind it (seen with 54222: "bind: address already in use"
# while nothing listened there).
CI_NATS_PORT="${CI_NATS_PORT:-24222}"
CI_NATS_ROOT="${CI_NATS_ROOT:-/tmp/chronicle-ci-nats}"
CI_NATS_VERSION=v2.15.3
CI_NATS_URL="nats://127.0.0.1:$CI_NATS_PORT"

_ci_nats_log() { printf '[ci %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

_ci_nats_bin() { printf '%s/bin/nats-server' "$CI_NATS_ROOT"; }

# _ci_nats_up: the port accepts TCP connections.
_ci_nats_up() { (exec 3<>"/dev/tcp/127.0.0.1/$CI_NATS_PORT") 2>/dev/null; }

ci_nats_install() {
	local bin
	bin="$(_ci_nats_bin)"
	if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "${CI_NATS_VERSION#v}"; then
		return 0
	fi
	_ci_nats_log "building nats-server $CI_NATS_VERSION (go install)"
	mkdir -p "$CI_NATS_ROOT/bin"
	GOBIN="$CI_NATS_ROOT/bin" go install "github.com/nats-io/nats-server/v2@$CI_NATS_VERSION" >&2
}

ci_nats_stop() {
	local pidfile="$CI_NATS_ROOT/nats.pid" pid
	if [ -f "$pidfile" ]; then
		pid="$(cat "$pidfile")"
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$pidfile"
	fi
	rm -rf "$CI_NATS_ROOT/store"
}

ci_nats_start() {
	ci_nats_install || return 1
	ci_nats_stop
	if _ci_nats_up; then
		_ci_nats_log "port $CI_NATS_PORT is taken by another process"
		return 1
	fi
	mkdir -p "$CI_NATS_ROOT/store"
	"$(_ci_nats_bin)" -a 127.0.0.1 -p "$CI_NATS_PORT" -js -sd "$CI_NATS_ROOT/store" \
		-l "$CI_NATS_ROOT/nats.log" -P "$CI_NATS_ROOT/nats.pid" </dev/null >/dev/null 2>&1 &
	for _ in $(seq 100); do
		if _ci_nats_up; then
			_ci_nats_log "nats-server ready: $CI_NATS_URL"
			return 0
		fi
		sleep 0.1
	done
	_ci_nats_log "nats-server did not start; its log:"
	tail -20 "$CI_NATS_ROOT/nats.log" >&2 || true
	return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	case "${1:-}" in
	start) ci_nats_start && printf '%s\n' "$CI_NATS_URL" ;;
	stop) ci_nats_stop ;;
	status) _ci_nats_up ;;
	*)
		echo "usage: $0 start|stop|status" >&2
		exit 2
		;;
	esac
fi
