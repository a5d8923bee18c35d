#!/usr/bin/env bash
# A git repository of Debian's linux-source-6.12, configured with the test
# kernels' config and already built, for the bisect-run test: a copy of the
# build tree of scripts/build-test-kernels.sh (objects and timestamps kept, so
# the first bisect step builds incrementally) with the patched files put back
# to pristine, committed once as the tag bzemu-base.
#
# Output: ${BZEMU_CACHE:-$HOME/.cache/bzemu}/bisect/<key>/linux; the last line
# printed is BISECT_REPO=<path>. Reused as long as the key (source version,
# config fragment, this script) matches.
set -Eeuo pipefail
die() {
	echo "make-bisect-repo: error: $*" >&2
	exit 1
}
exec </dev/null
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BZEMU_CACHE:-${HOME:-/tmp}/.cache/bzemu}

bash "$REPO_ROOT/scripts/build-test-kernels.sh" >/dev/null || die "building the test kernels failed"
SRC_VERSION=$(dpkg-query -W -f='${Version}' linux-source-6.12)
TREE="$CACHE/build/linux-$SRC_VERSION"
[ -f "$TREE/.bzemu/unpacked" ] || die "no build tree at $TREE"
KEY=$( { echo "$SRC_VERSION"; cat "$REPO_ROOT/kernels/tiny-sev.config" "$0"; } | sha256sum | cut -c1-12)
DEST="$CACHE/bisect/$KEY"
REPO="$DEST/linux"

if [ ! -f "$DEST/ready" ]; then
	mkdir -p "$CACHE/bisect"
	# The build tree is shared with build-test-kernels.sh: copy it under its lock.
	exec 9>"$CACHE/build/.lock"
	flock -w 7200 9 || die "timed out waiting for $CACHE/build/.lock"
	t0=$(date +%s)
	rm -rf "$DEST"
	mkdir -p "$DEST"
	cp -a "$TREE" "$REPO.tmp"
	exec 9>&-
	# Put every file a test patch touched back to pristine (new mtime: make rebuilds what used them).
	(cd "$REPO.tmp/.bzemu/pristine" && find . -type f -print0) |
		while IFS= read -r -d '' f; do cp "$REPO.tmp/.bzemu/pristine/$f" "$REPO.tmp/$f"; done
	rm -rf "$REPO.tmp/.bzemu"
	# Debian's top-level .gitignore ignores the whole tree (its packaging repository holds only debian/).
	sed -i '/^# Debian packaging/,$d' "$REPO.tmp/.gitignore"
	(
		cd "$REPO.tmp"
		git init -q
		git config user.name "bzemu test"
		git config user.email "bzemu@localhost"
		git config gc.auto 0
		git add -A
		GIT_AUTHOR_DATE="2025-01-01T00:00:00Z" GIT_COMMITTER_DATE="2025-01-01T00:00:00Z" \
			git commit -q -m "Debian linux-source $SRC_VERSION"
		git tag bzemu-base
	) >&2 || die "git init of the copied tree failed"
	mv "$REPO.tmp" "$REPO"
	touch "$DEST/ready"
	echo "make-bisect-repo: made $REPO in $(($(date +%s) - t0)) s" >&2
fi
echo "BISECT_REPO=$REPO"
