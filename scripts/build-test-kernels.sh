#!/usr/bin/env bash
# Build the small self-built test kernels: good (stock Debian 6.12), regress,
# naive-fix and fix for the snp_vmpl regression, and ghcb-private (see
# kernels/README.md and the headers of kernels/patches/*.patch).
#
# - Installs its own build dependencies from Debian (only if missing).
# - Unpacks Debian's linux-source-6.12 once into
#   ${BZEMU_CACHE:-$HOME/.cache/bzemu}/build/linux-<debian-source-version>
#   and reuses that single build tree for every variant: only the files a
#   variant changes are rewritten, so a variant after the first costs an
#   incremental rebuild (mostly arch/x86/boot/compressed).
# - Outputs go to ${cache}/kernels/selfbuilt/<key>/<variant>/ where <key>
#   hashes the Debian source version, the config fragment, all patches and
#   this script; complete outputs are reused as they are.
#
# The last line printed is machine-readable: KERNELS_DIR=<path>.
# No arguments; environment: BZEMU_CACHE (cache root), BZEMU_JOBS (make -j).
set -Eeuo pipefail

die() {
	echo "build-test-kernels: error: $*" >&2
	exit 1
}
# shellcheck disable=SC2154  # rc is assigned inside the trap string
trap 'rc=$?; echo "build-test-kernels: error: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

[ $# -eq 0 ] || die "no arguments expected (set BZEMU_CACHE / BZEMU_JOBS instead)"
exec </dev/null

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO_ROOT/scripts/build-test-kernels.sh"
FRAGMENT="$REPO_ROOT/kernels/tiny-sev.config"
PATCH_DIR="$REPO_ROOT/kernels/patches"
CACHE=${BZEMU_CACHE:-${HOME:-/tmp}/.cache/bzemu}
JOBS=${BZEMU_JOBS:-$(nproc)}
SRC_PKG=linux-source-6.12
TARBALL=/usr/src/linux-source-6.12.tar.xz

VARIANTS=(good regress naive-fix fix ghcb-private)
# Patch chain of each variant (applied in order, -p1, on the pristine tree).
declare -A CHAIN=(
	[good]=""
	[regress]="regress"
	[naive-fix]="regress naive-fix"
	[fix]="regress fix"
	[ghcb-private]="ghcb-private"
)
ALL_PATCHES=(regress naive-fix fix ghcb-private)

for f in "$SELF" "$FRAGMENT"; do
	[ -f "$f" ] || die "missing $f"
done
for p in "${ALL_PATCHES[@]}"; do
	[ -f "$PATCH_DIR/$p.patch" ] || die "missing $PATCH_DIR/$p.patch"
done

now() { echo "${EPOCHREALTIME:-$(date +%s)}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- deps ----
DEPS=(linux-source-6.12 build-essential bc bison flex libelf-dev libssl-dev
	cpio zstd lz4 xz-utils dwarves kmod python3 patch binutils util-linux)
missing=()
for p in "${DEPS[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "build-test-kernels: installing: ${missing[*]}" >&2
	SUDO=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
		SUDO=(sudo -n)
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" apt-get update -qq >&2 || die "apt-get update failed"
	"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
fi
[ -f "$TARBALL" ] || die "$TARBALL not found (is $SRC_PKG installed?)"
SRC_VERSION=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
[ -n "$SRC_VERSION" ] || die "cannot determine the $SRC_PKG version"

# ----------------------------------------------------------------- key ----
KEY=$(
	{
		printf 'source %s\n' "$SRC_VERSION"
		printf 'fragment\n'; cat "$FRAGMENT"
		for p in "${ALL_PATCHES[@]}"; do
			printf 'patch %s\n' "$p"; cat "$PATCH_DIR/$p.patch"
		done
		printf 'script\n'; cat "$SELF"
	} | sha256sum | cut -c1-12
)
KERNELS_DIR="$CACHE/kernels/selfbuilt/$KEY"
BUILD_ROOT="$CACHE/build"
TREE="$BUILD_ROOT/linux-$SRC_VERSION"
STATE="$TREE/.bzemu"
mkdir -p "$BUILD_ROOT/logs"

is_done() { [ -f "$KERNELS_DIR/$1/build.json" ]; }
pending() {
	local v
	for v in "${VARIANTS[@]}"; do
		is_done "$v" || echo "$v"
	done
}

if [ -n "$(pending)" ]; then
	# One build tree, one builder at a time.
	exec 9>"$BUILD_ROOT/.lock"
	flock -w 7200 9 || die "timed out waiting for $BUILD_ROOT/.lock"
fi
todo=$(pending)

# ------------------------------------------------------- unpack (once) ----
unpack_tree() {
	[ -f "$STATE/unpacked" ] && return 0
	local t0 tmp
	t0=$(now)
	tmp="$BUILD_ROOT/.unpack.$$"
	rm -rf "$tmp" "$TREE"
	mkdir -p "$tmp"
	tar -xf "$TARBALL" -C "$tmp" --strip-components=1 ||
		die "cannot unpack $TARBALL"
	[ -f "$tmp/Makefile" ] || die "$TARBALL did not contain a kernel tree"
	mkdir -p "$tmp/.bzemu/pristine"
	echo "$SRC_VERSION" >"$tmp/.bzemu/unpacked"
	mv "$tmp" "$TREE"
	echo "source: unpacked $SRC_PKG $SRC_VERSION in $(elapsed "$t0")s -> $TREE" >&2
}

# Files touched by a patch (the "+++ b/<path>" lines).
patch_files() {
	awk '/^\+\+\+ / { p = $2; sub(/^b\//, "", p); print p }' "$1"
}

# Write "pristine + patch chain of variant $1" for every file that any patch
# touches into $STATE/stage (the tree itself is not modified). Sets FILES.
FILES=()
stage_variant() {
	local v=$1 stage="$STATE/stage" f p
	FILES=()
	for p in "${ALL_PATCHES[@]}"; do
		while IFS= read -r f; do FILES+=("$f"); done < <(patch_files "$PATCH_DIR/$p.patch")
	done
	rm -rf "$stage"
	mkdir -p "$stage"
	for f in "${FILES[@]}"; do
		[ -f "$TREE/$f" ] || die "patched file $f is not in the kernel tree"
		if [ ! -f "$STATE/pristine/$f" ]; then
			# First time this file is touched: the tree copy is still pristine.
			mkdir -p "$(dirname "$STATE/pristine/$f")"
			cp -p "$TREE/$f" "$STATE/pristine/$f"
		fi
		mkdir -p "$(dirname "$stage/$f")"
		cp "$STATE/pristine/$f" "$stage/$f"
	done
	for p in ${CHAIN[$v]}; do
		patch -d "$stage" -p1 --batch --forward --no-backup-if-mismatch --reject-file=- -s \
			<"$PATCH_DIR/$p.patch" >"$STATE/patch.log" 2>&1 ||
			die "kernels/patches/$p.patch does not apply (variant $v): $(cat "$STATE/patch.log")"
	done
}

# Fail fast (before a long build) if any variant's patch chain is broken.
check_patches() {
	local v
	for v in "${VARIANTS[@]}"; do
		stage_variant "$v"
	done
	rm -rf "$STATE/stage"
}

# Put the tree sources into the state of variant $1. Files are only
# rewritten when their content changes, so make only rebuilds what really
# differs between two consecutive variants (and a rewritten file always gets
# a new mtime, so going back to an earlier content also rebuilds).
set_variant() {
	local f
	stage_variant "$1"
	for f in "${FILES[@]}"; do
		cmp -s "$STATE/stage/$f" "$TREE/$f" || cp "$STATE/stage/$f" "$TREE/$f"
	done
	rm -rf "$STATE/stage"
}

configure_tree() {
	local want have line sym
	want=$(sha256sum <"$FRAGMENT" | cut -c1-64)
	have=$(cat "$STATE/config.sha256" 2>/dev/null || true)
	if [ "$want" != "$have" ] || [ ! -f "$TREE/.config" ]; then
		rm -f "$STATE/config.sha256"
		(
			cd "$TREE"
			make -s tinyconfig
			scripts/kconfig/merge_config.sh -m .config "$FRAGMENT"
			make -s olddefconfig
		) >"$BUILD_ROOT/logs/config.log" 2>&1 ||
			die "kernel configuration failed, see $BUILD_ROOT/logs/config.log"
	fi
	# Every setting of the fragment must have stuck.
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qxF "$line" "$TREE/.config" ||
				die "config: '$line' did not stick (have: $(grep -E "^(# )?${line%%=*}[= ]" "$TREE/.config" || echo unset))"
			;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }
			sym=${sym%% *}
			! grep -q "^$sym=" "$TREE/.config" ||
				die "config: '$line' did not stick ($(grep "^$sym=" "$TREE/.config"))"
			;;
		esac
	done <"$FRAGMENT"
	echo "$want" >"$STATE/config.sha256"
}

# Reproducible-ish build metadata; the kernel release has no "+" suffix even
# if the cache lives inside a git checkout.
export KBUILD_BUILD_USER=bzemu KBUILD_BUILD_HOST=bzemu KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970"
export LOCALVERSION=

write_outputs() {
	local v=$1 secs=$2 tmp=$3
	cp "$TREE/arch/x86/boot/bzImage" "$tmp/bzImage"
	cp "$TREE/arch/x86/boot/compressed/vmlinux" "$tmp/vmlinux"
	nm -n "$tmp/vmlinux" >"$tmp/System.map"
	objdump -t "$tmp/vmlinux" >"$tmp/.symtab"
	objdump -d --disassemble=sev_enable "$tmp/vmlinux" >"$tmp/.sev_enable.dis"
	python3 - "$tmp" "$v" "$KEY" "$SRC_VERSION" "$secs" "${CHAIN[$v]}" \
		"$(make -s -C "$TREE" kernelrelease)" <<'PY'
import hashlib, json, os, sys, time
tmp, variant, key, srcver, secs, chain, release = sys.argv[1:8]

def sha(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

nm = {}
with open(os.path.join(tmp, "System.map")) as f:
    for line in f:
        parts = line.split()
        if len(parts) == 3:
            nm.setdefault(parts[2], (int(parts[0], 16), parts[1]))
sect = {}
with open(os.path.join(tmp, ".symtab")) as f:
    for line in f:
        # "<addr> <flags> <section>\t<size> [.hidden] <name>"
        head, tab, tail = line.rstrip("\n").partition("\t")
        if tab and tail.split():
            sect.setdefault(tail.split()[-1], head.split()[-1])

def rng(a, b):
    return [nm[a][0], nm[b][0]]

bss, data = rng("_bss", "_ebss"), rng("_data", "_edata")
syms = {}
for s in ["snp_vmpl", "boot_svsm_caa_pa", "boot_svsm_caa", "ghcb_version",
          "boot_ghcb", "cpuid_table_copy", "sev_status"]:
    if s not in nm:
        continue
    addr, typ = nm[s]
    where = ("bss" if bss[0] <= addr < bss[1] else
             "data" if data[0] <= addr < data[1] else "other")
    syms[s] = {"addr": hex(addr), "nm_type": typ,
               "section": sect.get(s, "?"), "in": where}

dis = open(os.path.join(tmp, ".sev_enable.dis")).read().splitlines()
rmpadjust = sum(1 for l in dis if "f3 0f 01 fe" in l or "rmpadjust" in l)

info = {
    "variant": variant,
    "key": key,
    "debian_source_package": "linux-source-6.12",
    "debian_source_version": srcver,
    "kernel_release": release,
    "patches": chain.split(),
    "config_fragment": "kernels/tiny-sev.config",
    "compressor": "zstd",
    "build_seconds": float(secs),
    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "files": {n: {"sha256": sha(os.path.join(tmp, n)),
                  "size": os.path.getsize(os.path.join(tmp, n))}
              for n in ["bzImage", "vmlinux", "System.map"]},
    "bss": [hex(x) for x in bss],
    "data": [hex(x) for x in data],
    "symbols": syms,
    "sev_enable_rmpadjust_count": rmpadjust,
}
with open(os.path.join(tmp, "build.json"), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")
PY
	rm -f "$tmp/.symtab" "$tmp/.sev_enable.dis"
}

build_variant() {
	local v=$1 t0 log tmp secs
	t0=$(now)
	log="$BUILD_ROOT/logs/$KEY-$v.log"
	set_variant "$v"
	if ! make -C "$TREE" -j"$JOBS" bzImage >"$log" 2>&1; then
		tail -n 40 "$log" >&2 || true
		die "variant $v: make bzImage failed, full log: $log"
	fi
	secs=$(elapsed "$t0")
	tmp="$KERNELS_DIR/.tmp-$v.$$"
	rm -rf "$tmp"
	mkdir -p "$KERNELS_DIR"
	mkdir -p "$tmp"
	write_outputs "$v" "$secs" "$tmp"
	rm -rf "${KERNELS_DIR:?}/$v"
	mv "$tmp" "$KERNELS_DIR/$v"
	echo "$v: built in ${secs}s -> $KERNELS_DIR/$v"
}

if [ -n "$todo" ]; then
	rm -rf "${KERNELS_DIR:?}"/.tmp-*
	unpack_tree
	check_patches
	configure_tree
fi
for v in "${VARIANTS[@]}"; do
	if is_done "$v"; then
		secs=$(sed -n 's/^ *"build_seconds": \([0-9.]*\).*/\1/p' "$KERNELS_DIR/$v/build.json")
		echo "$v: cached (built in ${secs:-?}s) -> $KERNELS_DIR/$v"
	else
		build_variant "$v"
	fi
done
# Leave the shared tree with stock sources (the next build of "good" then
# recompiles what the last patched variant changed).
if [ -n "$todo" ]; then
	set_variant good
fi

echo "KERNELS_DIR=$KERNELS_DIR"
