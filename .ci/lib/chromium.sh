#!/usr/bin/env bash
# Debian's Chromium for the console's browser tests (idempotent).
#
#   bash .ci/lib/chromium.sh          # install chromium if needed, print its path
#   source .ci/lib/chromium.sh; ci_chromium_ensure   # also exports CHRONICLE_TEST_CHROMIUM
#
# The tests in console/ drive it headless through chromedp. Without a
# browser they skip, except with CI=true, where they fail: a CI run cannot
# pass by skipping them.

_CI_CHROMIUM_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=.ci/lib/docker.sh
. "$_CI_CHROMIUM_LIB_DIR/docker.sh" # ci_log, ci_apt_install (does not start docker)

ci_chromium_ensure() {
	local bin
	bin="$(command -v chromium || true)"
	if [ -z "$bin" ]; then
		ci_apt_install chromium fonts-dejavu-core || return 1
		bin="$(command -v chromium || true)"
	fi
	if [ -z "$bin" ]; then
		ci_log "chromium still missing after installing it"
		return 1
	fi
	CHRONICLE_TEST_CHROMIUM="$bin"
	export CHRONICLE_TEST_CHROMIUM
	ci_log "chromium: $("$bin" --version 2>/dev/null | head -n1)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	ci_chromium_ensure
	printf '%s\n' "$CHRONICLE_TEST_CHROMIUM"
fi
