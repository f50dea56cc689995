#!/usr/bin/env bash
# Build the PostgreSQL 15 test image `chronicle-postgres:15` (idempotent).
#
#   bash .ci/lib/pg-image.sh            # build unless an up-to-date image exists
#   bash .ci/lib/pg-image.sh --force    # rebuild anyway
#   source .ci/lib/pg-image.sh; ci_pg_image_ensure
#
# No container registry is reachable, so the image is assembled from the
# PostgreSQL 15 installed on the host (Debian's postgresql-15, installed here if
# missing): its files and the shared libraries they need (found with ldd) are
# packed into rootfs.tar, and .ci/postgres-image/Dockerfile (FROM scratch) adds
# the entrypoint (.ci/postgres-image/docker-entrypoint.sh, which mimics the
# official image's). The image carries a label with a hash of its inputs (these
# scripts and the Debian package versions); a matching image is not rebuilt.
# A new image is smoke-tested (start, two "ready" log lines, password login).
# Needs a running Docker engine: .ci/lib/docker.sh.

CI_PG_IMAGE="${CI_PG_IMAGE:-chronicle-postgres:15}"
CI_PG_IMAGE_LABEL="org.chronicle-go.ci.image-hash"
CI_PG_MAJOR=15
_CI_PG_IMAGE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CI_PG_IMAGE_DIR="$(cd "$_CI_PG_IMAGE_LIB_DIR/../postgres-image" && pwd)"
# shellcheck source=.ci/lib/docker.sh
. "$_CI_PG_IMAGE_LIB_DIR/docker.sh"

# Programs copied into the image besides PostgreSQL's own. bash is /bin/sh too.
CI_PG_IMAGE_TOOLS=(
	bash cat chmod chown cp date dirname basename env false find grep gzip head id
	ln ls mkdir mv readlink rm rmdir sed setpriv sleep sort tail touch tr true
	uname wc xargs awk locale
)

ci_pg_host_install() {
	if [ -x "/usr/lib/postgresql/$CI_PG_MAJOR/bin/postgres" ] && [ -x "/usr/lib/postgresql/$CI_PG_MAJOR/bin/psql" ]; then
		return 0
	fi
	ci_apt_install "postgresql-$CI_PG_MAJOR" "postgresql-client-$CI_PG_MAJOR"
}

ci_pg_image_hash() {
	{
		cat "$CI_PG_IMAGE_DIR/Dockerfile" "$CI_PG_IMAGE_DIR/docker-entrypoint.sh" "$_CI_PG_IMAGE_LIB_DIR/pg-image.sh"
		dpkg-query -W -f '${Package}=${Version}\n' "postgresql-$CI_PG_MAJOR" libc6 bash libicu72 2>/dev/null || true
		printf '%s\n' "${CI_PG_IMAGE_TOOLS[@]}"
	} | sha256sum | cut -c1-32
}

# _ci_rootfs_copy ROOTFS FILE...: copy each file (dereferenced) to its
# canonical location (/lib -> /usr/lib and so on, like the host's merged /usr).
_ci_rootfs_copy() {
	local root="$1" f dir
	shift
	for f in "$@"; do
		dir="$(cd "$(dirname "$f")" && pwd -P)"
		mkdir -p "$root$dir"
		cp -L "$f" "$root$dir/$(basename "$f")"
	done
}

# _ci_ldd_deps FILE...: the shared libraries the files need (absolute paths).
_ci_ldd_deps() {
	local f
	for f in "$@"; do
		ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' || true
	done | sort -u
}

ci_pg_image_build_rootfs() {
	local root="$1" pgdir="/usr/lib/postgresql/$CI_PG_MAJOR" t p
	local -a bins=() elves=()
	mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,etc,tmp,root,dev,proc,sys,run,var/run/postgresql,var/lib/postgresql/data,docker-entrypoint-initdb.d}
	chmod 1777 "$root/tmp"
	# merged /usr, as on Debian 12 (binaries' ELF interpreter is /lib64/...)
	ln -s usr/bin "$root/bin"
	ln -s usr/sbin "$root/sbin"
	ln -s usr/lib "$root/lib"
	ln -s usr/lib64 "$root/lib64"

	for t in "${CI_PG_IMAGE_TOOLS[@]}"; do
		p="$(type -P "$t")" || { ci_log "tool $t not found on the host"; return 1; }
		# copy under the name asked for (awk is an alternatives symlink to mawk)
		cp -L "$p" "$root/usr/bin/$t"
		bins+=("$p")
	done
	ln -s bash "$root/usr/bin/sh"

	# PostgreSQL: the whole bin dir, the loadable modules (not the LLVM JIT,
	# which would drag in libLLVM, nor sepgsql), the share dir.
	mkdir -p "$root$pgdir/lib" "$root/usr/share/postgresql"
	cp -rL "$pgdir/bin" "$root$pgdir/bin"
	for p in "$pgdir"/lib/*.so; do
		case "$(basename "$p")" in llvmjit*.so | sepgsql.so) continue ;; esac
		cp -L "$p" "$root$pgdir/lib/"
		elves+=("$p")
	done
	cp -rL "/usr/share/postgresql/$CI_PG_MAJOR" "$root/usr/share/postgresql/$CI_PG_MAJOR"
	rm -rf "$root/usr/share/postgresql/$CI_PG_MAJOR/man"
	# glibc's C.UTF-8 locale (initdb lists locales with `locale -a`)
	if [ -d /usr/lib/locale/C.utf8 ]; then
		mkdir -p "$root/usr/lib/locale"
		cp -rL /usr/lib/locale/C.utf8 "$root/usr/lib/locale/C.utf8"
	fi
	if [ -d /usr/share/zoneinfo ]; then
		mkdir -p "$root/usr/share"
		cp -rL /usr/share/zoneinfo "$root/usr/share/zoneinfo"
		rm -rf "$root/usr/share/zoneinfo/right"
	fi

	elves+=("${bins[@]}" "$pgdir"/bin/*)
	mapfile -t libs < <(_ci_ldd_deps "${elves[@]}")
	[ "${#libs[@]}" -gt 0 ] || { ci_log "ldd found no libraries"; return 1; }
	_ci_rootfs_copy "$root" "${libs[@]}"

	cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/bash
postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
	cat >"$root/etc/group" <<'GROUP'
root:x:0:
postgres:x:999:
nogroup:x:65534:
GROUP
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
	: >"$root/etc/resolv.conf"
	printf 'chronicle-postgres\n' >"$root/etc/hostname"
	ln -s /proc/self/mounts "$root/etc/mtab"
	chown -R 999:999 "$root/var/lib/postgresql" "$root/var/run/postgresql"
	chmod 700 "$root/var/lib/postgresql/data"
	chmod 3775 "$root/var/run/postgresql"
}

# ci_pg_image_smoke IMAGE: start a container the way testcontainers does and
# check it comes up (two "ready" lines) and accepts a password login over TCP.
ci_pg_image_smoke() {
	local img="$1" name="chronicle-ci-image-smoke-$$" i n ok=0
	docker rm -f "$name" >/dev/null 2>&1 || true
	docker run -d --name "$name" -e POSTGRES_USER=smoke -e POSTGRES_PASSWORD=smoke -e POSTGRES_DB=smokedb \
		-p 127.0.0.1::5432 "$img" postgres -c fsync=off >/dev/null
	for ((i = 0; i < 120; i++)); do
		n="$(docker logs "$name" 2>&1 | grep -c 'database system is ready to accept connections' || true)"
		if [ "$n" -ge 2 ]; then ok=1; break; fi
		if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then break; fi
		sleep 0.25
	done
	if [ "$ok" = 1 ]; then
		ok=0
		# TCP + scram password inside the container, and the port-wait probe testcontainers runs
		if docker exec -e PGPASSWORD=smoke "$name" psql -h 127.0.0.1 -U smoke -d smokedb -tAc 'select 1' 2>&1 | grep -qx 1 &&
			docker exec "$name" /bin/sh -c "cat /proc/net/tcp* | awk '{print \$2}' | grep -i :1538" >/dev/null; then
			ok=1
		fi
	fi
	if [ "$ok" != 1 ]; then
		ci_log "smoke test of $img failed; container logs:"
		docker logs "$name" >&2 2>&1 || true
	fi
	docker rm -f -v "$name" >/dev/null 2>&1 || true
	[ "$ok" = 1 ]
}

ci_pg_image_ensure() {
	local force="${1:-}" hash have tmp start
	ci_docker_ensure || return 1
	ci_pg_host_install || return 1
	hash="$(ci_pg_image_hash)"
	have="$(docker image inspect -f "{{ index .Config.Labels \"$CI_PG_IMAGE_LABEL\" }}" "$CI_PG_IMAGE" 2>/dev/null || true)"
	if [ "$force" != --force ] && [ "$have" = "$hash" ]; then
		ci_log "image $CI_PG_IMAGE is up to date ($hash)"
		return 0
	fi
	start=$SECONDS
	ci_log "building image $CI_PG_IMAGE ($hash)"
	tmp="$(mktemp -d /tmp/chronicle-ci-image.XXXXXX)"
	# a separate bash process so that `set -e` holds whatever the caller does
	local rc=0
	bash "$_CI_PG_IMAGE_LIB_DIR/pg-image.sh" __build "$tmp" "$hash" || rc=$?
	rm -rf "$tmp"
	if [ "$rc" != 0 ]; then
		ci_log "image build failed"
		return 1
	fi
	ci_log "built $CI_PG_IMAGE in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$CI_PG_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
	# remove the image the tag pointed to before, if nothing uses it
	docker image prune -f --filter "label=$CI_PG_IMAGE_LABEL" >/dev/null 2>&1 || true
	ci_pg_image_smoke "$CI_PG_IMAGE" || return 1
	ci_log "image $CI_PG_IMAGE passed its smoke test"
}

# __build TMPDIR HASH (internal): assemble the context in TMPDIR and build.
_ci_pg_image_build() {
	local tmp="$1" hash="$2"
	ci_pg_image_build_rootfs "$tmp/rootfs"
	mkdir "$tmp/context"
	tar --numeric-owner -C "$tmp/rootfs" -cf "$tmp/context/rootfs.tar" .
	cp "$CI_PG_IMAGE_DIR/Dockerfile" "$CI_PG_IMAGE_DIR/docker-entrypoint.sh" "$tmp/context/"
	chmod 755 "$tmp/context/docker-entrypoint.sh"
	# the classic builder: nothing to fetch, no buildx plugin needed
	DOCKER_BUILDKIT=0 docker build -q --label "$CI_PG_IMAGE_LABEL=$hash" -t "$CI_PG_IMAGE" "$tmp/context" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	if [ "${1:-}" = __build ]; then
		_ci_pg_image_build "$2" "$3"
	else
		ci_pg_image_ensure "${1:-}"
	fi
fi
