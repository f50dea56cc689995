#!/usr/bin/env bash
# Make sure a Docker engine is installed and running (idempotent).
#
#   bash .ci/lib/docker.sh          # install docker.io if needed, start dockerd
#   source .ci/lib/docker.sh; ci_docker_ensure
#
# - installs Debian's docker.io (dockerd, containerd, runc) when `dockerd` is
#   missing (apt-get update first, once per process);
# - starts dockerd in the background when `docker info` fails, logging to
#   $CI_DOCKERD_LOG (default /tmp/chronicle-ci-dockerd.log), and waits at most
#   $CI_DOCKER_TIMEOUT seconds (default 60) for it to answer;
# - reuses a dockerd that a previous run left running; leaves it running.
# Published container ports are bound to 127.0.0.1 only (dockerd --ip), so
# nothing a test starts is reachable from outside the machine.

CI_DOCKERD_LOG="${CI_DOCKERD_LOG:-/tmp/chronicle-ci-dockerd.log}"
CI_DOCKER_TIMEOUT="${CI_DOCKER_TIMEOUT:-60}"

ci_log() { printf '[ci %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# apt-get update at most once per process (CI_APT_UPDATED is shared with the
# other .ci scripts when they are sourced into the same shell).
ci_apt_install() {
	if [ "${CI_APT_UPDATED:-}" != 1 ]; then
		ci_log "apt-get update"
		apt-get update -qq >&2
		CI_APT_UPDATED=1
		export CI_APT_UPDATED
	fi
	ci_log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

ci_docker_install() {
	if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
		return 0
	fi
	ci_apt_install docker.io
	command -v dockerd >/dev/null 2>&1 || { ci_log "dockerd still missing after installing docker.io"; return 1; }
}

# _ci_dockerd_wait PID: wait until `docker info` answers, dockerd dies, or timeout.
_ci_dockerd_wait() {
	local pid="$1" i
	for ((i = 0; i < CI_DOCKER_TIMEOUT * 2; i++)); do
		if docker info >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.5
	done
	return 1
}

_ci_dockerd_start() {
	# A pid file left by a dockerd that is gone (the machine's processes are
	# ended between sessions) would make dockerd refuse to start if the pid
	# got reused by something else.
	local pidfile pid
	for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
		if [ -f "$pidfile" ]; then
			pid="$(cat "$pidfile" 2>/dev/null || true)"
			if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null ||
				! grep -qE 'dockerd|containerd' "/proc/$pid/comm" 2>/dev/null; then
				rm -f "$pidfile"
			fi
		fi
	done
	ci_log "starting dockerd $* (log: $CI_DOCKERD_LOG)"
	# setsid + nohup: dockerd must outlive this script and its traps.
	setsid nohup dockerd --ip=127.0.0.1 "$@" >>"$CI_DOCKERD_LOG" 2>&1 </dev/null &
	local dpid=$!
	if _ci_dockerd_wait "$dpid"; then
		return 0
	fi
	ci_log "dockerd $* did not become ready; last log lines:"
	tail -n 25 "$CI_DOCKERD_LOG" >&2 || true
	kill "$dpid" 2>/dev/null || true
	sleep 1
	return 1
}

ci_docker_ensure() {
	ci_docker_install || return 1
	if docker info >/dev/null 2>&1; then
		ci_log "docker engine already running ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
		return 0
	fi
	# Another dockerd still starting up (e.g. a parallel call)? Give it a moment.
	local existing
	existing="$(pgrep -x dockerd | head -n1 || true)"
	if [ -n "$existing" ] && [ "$(ps -o stat= -p "$existing" 2>/dev/null | cut -c1)" = Z ]; then
		existing="" # a killed dockerd not reaped yet: it holds nothing
	fi
	if [ -n "$existing" ]; then
		ci_log "dockerd (pid $existing) is running but not answering yet; waiting"
		if _ci_dockerd_wait "$existing"; then
			return 0
		fi
		ci_log "dockerd pid $existing does not answer; starting another one is unsafe"
		return 1
	fi
	if _ci_dockerd_start; then
		:
	elif _ci_dockerd_start --storage-driver=vfs --iptables=false; then
		# overlayfs or iptables unusable on this kernel: slower, but works
		ci_log "dockerd runs with the fallback flags --storage-driver=vfs --iptables=false"
	else
		ci_log "could not start dockerd"
		return 1
	fi
	ci_log "docker engine ready ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	ci_docker_ensure
fi
