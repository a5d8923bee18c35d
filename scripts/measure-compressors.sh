#!/usr/bin/env bash
# Measure what bzemu's decompressor runs cost for every payload format the kernel
# supports (gzip, bzip2, lzma, xz, lzo, lz4, zstd): the data behind the default
# instruction budget (src/kernel/budget.ts).
#
# usage: scripts/measure-compressors.sh [--classes tiny,zeros,code,base64,random] [--debian]
#                                       [--no-run | --table] [format...]
#        (no format: all seven)
#
# - Runs scripts/build-test-kernels.sh first (it unpacks and configures Debian's
#   linux-source-6.12 with kernels/tiny-sev.config; cached after the first time).
# - Copies that build tree once to ${BZEMU_CACHE:-~/.cache/bzemu}/build/compressors-<ver>
#   (the original tree and the self-built test kernels are not touched) and builds, in
#   the copy, one bzImage per format: only CONFIG_KERNEL_<FORMAT> changes, so a variant
#   after the first rebuilds little more than arch/x86/boot/compressed (10-70 s).
# - Five classes of payload per format (variant <class>-<format>); --classes picks some:
#     tiny    the tiny test kernel itself: 19 MB decompressed, 76 % of it zeros (alignment
#             padding), which every decompressor produces cheaply;
#     zeros   tiny + 32 MB of zero bytes: the cheapest output there is, per payload byte
#             the dearest;
#     code    tiny + an uncompressed built-in initramfs holding Debian's 6.12 vmlinux
#             (fetched with scripts/fetch-debian-kernels.sh, decompressed with the tree's
#             scripts/extract-vmlinux): mostly real kernel code and data, 78 MB;
#     base64  tiny + 12 MB of base64 text of pseudo-random bytes: compressible to 77 %,
#             all literals, the worst case of the LZMA decoders (xz, lzma);
#     random  tiny + 12 MB of pseudo-random bytes: incompressible, the worst case of the
#             entropy decoders (bzip2, lzma).
#   code, base64 and random stand for what a real kernel may carry (its own code, tables
#   and text, a built-in compressed initramfs or firmware); the default budget must cover
#   every class with its margin.
# - Outputs: ${cache}/kernels/compressors/<key>/<variant>/{bzImage,vmlinux,build.json}
#   where <key> hashes the source version, the config fragment and RECIPE below (bump it
#   when the build steps or the blobs change); complete variants are reused (code-* only
#   while Debian's 6.12 kernel is the same build).
# - Then boots every variant with bzemu (node dist/bundle/main.js; built with npm run build if
#   missing) to extract_kernel and to kernel-entry with --budget 1e11 --json, merges the
#   counts into results.json next to the variants, and prints a table of all of them:
#   instructions, instructions per decompressed byte, bzemu's own run time (elapsedMs) and
#   MIPS, and the default budget bzemu would pick (`bzemu info`) with its margin over the
#   measured count.
#   --debian also measures the Debian kernels of kernels/debian.json (fetched with
#   scripts/fetch-debian-kernels.sh). --no-run only builds; --table only prints the table
#   again from results.json (after a change of the default budget, say).
#
# The machine's cores may be shared: make runs with nice and -j${BZEMU_JOBS:-2}; the
# boots run one at a time.
#
# Environment: BZEMU_CACHE (cache root), BZEMU_JOBS (make -j, default 2),
#   BZEMU_BIN (the bzemu entry script, default <repo>/dist/bundle/main.js),
#   BZEMU_MEASURE_BUDGET (default 1e11).
set -Eeuo pipefail
exec </dev/null

die() { echo "measure-compressors: error: $*" >&2; exit 1; }
trap 'rc=$?; echo "measure-compressors: error: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO_ROOT/scripts/measure-compressors.sh"
FRAGMENT="$REPO_ROOT/kernels/tiny-sev.config"
CACHE=${BZEMU_CACHE:-${HOME:-/tmp}/.cache/bzemu}
JOBS=${BZEMU_JOBS:-2}
BZEMU=${BZEMU_BIN:-$REPO_ROOT/dist/bundle/main.js}
BUDGET=${BZEMU_MEASURE_BUDGET:-1e11}
ALL_FORMATS=(gzip bzip2 lzma xz lzo lz4 zstd)
ALL_CLASSES=(tiny zeros code base64 random)
RECIPE=2

classes=("${ALL_CLASSES[@]}") run=1 table_only=0 debian=0 formats=()
while (($#)); do
	a=$1
	shift
	case "$a" in
	-h | --help) sed -n '2,/^set -E/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	--classes)
		(($#)) || die "--classes needs a list"
		IFS=, read -r -a classes <<<"$1"
		shift
		for c in "${classes[@]}"; do [[ " ${ALL_CLASSES[*]} " == *" $c "* ]] || die "unknown class $c (one of ${ALL_CLASSES[*]})"; done
		;;
	--no-run) run=0 ;;
	--table) table_only=1 ;;
	--debian) debian=1 ;;
	-*) die "unknown option $a (try --help)" ;;
	*) [[ " ${ALL_FORMATS[*]} " == *" $a "* ]] || die "unknown format $a (one of ${ALL_FORMATS[*]})"; formats+=("$a") ;;
	esac
done
((${#formats[@]})) || formats=("${ALL_FORMATS[@]}")

# Host compressors the kernel build calls (scripts/Makefile.lib), by Debian package.
declare -A TOOL_PKG=([gzip]=gzip [bzip2]=bzip2 [lzma]=xz-utils [xz]=xz-utils [lzop]=lzop [lz4]=lz4 [zstd]=zstd [cpio]=cpio [base64]=coreutils [python3]=python3)
missing=()
for t in "${!TOOL_PKG[@]}"; do command -v "$t" >/dev/null || missing+=("${TOOL_PKG[$t]}"); done
if ((${#missing[@]})); then
	echo "measure-compressors: installing ${missing[*]}" >&2
	SUDO=()
	[ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		{ "${SUDO[@]}" apt-get update -qq >&2 && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; } ||
		die "cannot install ${missing[*]}"
fi

# ------------------------------------------------------------ the tree ----
echo "measure-compressors: scripts/build-test-kernels.sh (configured source tree)" >&2
BZEMU_JOBS=$JOBS nice bash "$REPO_ROOT/scripts/build-test-kernels.sh" >&2
SRC_VERSION=$(dpkg-query -W -f='${Version}' linux-source-6.12)
BUILD_ROOT="$CACHE/build"
ORIG="$BUILD_ROOT/linux-$SRC_VERSION"
TREE="$BUILD_ROOT/compressors-$SRC_VERSION"
[ -f "$ORIG/.config" ] || die "$ORIG has no .config (build-test-kernels.sh did not configure it?)"

exec 8>"$BUILD_ROOT/.compressors.lock"
flock -w 7200 8 || die "timed out waiting for $BUILD_ROOT/.compressors.lock"
if [ ! -f "$TREE/.bzemu-compressors" ]; then
	t0=$SECONDS
	rm -rf "$TREE.tmp"
	# Under build-test-kernels.sh's lock: the copy must not see a half-built tree.
	(
		flock -w 7200 9 || exit 1
		cp -a --reflink=auto "$ORIG" "$TREE.tmp"
	) 9>"$BUILD_ROOT/.lock" || die "cannot copy $ORIG"
	echo "$SRC_VERSION" >"$TREE.tmp/.bzemu-compressors"
	mv -T "$TREE.tmp" "$TREE"
	echo "measure-compressors: copied the build tree in $((SECONDS - t0)) s -> $TREE" >&2
fi

# --------------------------------------------------------------- blobs ----
# One cpio per class but tiny, used as the built-in initramfs (CONFIG_INITRAMFS_SOURCE).
BLOBS="$BUILD_ROOT/compressors-blobs"
mkdir -p "$BLOBS"
need_class() { [[ " ${classes[*]} " == *" $1 "* ]]; }
make_cpio() { # make_cpio <class>: $BLOBS/<class>/root/* -> $BLOBS/<class>.cpio
	(cd "$BLOBS/$1/root" && ls | cpio --quiet -o -H newc --reproducible >"$BLOBS/$1.cpio.tmp")
	mv "$BLOBS/$1.cpio.tmp" "$BLOBS/$1.cpio"
}
debian_sha=none
if need_class code; then
	vmlinuz=$(bash "$REPO_ROOT/scripts/fetch-debian-kernels.sh" debian-6.12 | sed -n 's/^KERNEL debian-6.12 //p')
	[ -n "$vmlinuz" ] || die "cannot fetch debian-6.12"
	debian_sha=$(sha256sum <"$vmlinuz" | cut -c1-64)
	if [ "$(cat "$BLOBS/code/source.sha256" 2>/dev/null || true)" != "$debian_sha" ] || [ ! -s "$BLOBS/code.cpio" ]; then
		rm -rf "$BLOBS/code" && mkdir -p "$BLOBS/code/root"
		"$TREE/scripts/extract-vmlinux" "$vmlinuz" >"$BLOBS/code/root/vmlinux" || die "extract-vmlinux $vmlinuz failed"
		make_cpio code
		echo "$debian_sha" >"$BLOBS/code/source.sha256"
	fi
fi
# Python's seeded Mersenne Twister: the same bytes on every machine.
random_bytes() { python3 -c 'import random, sys; random.seed(int(sys.argv[1])); sys.stdout.buffer.write(random.randbytes(int(sys.argv[2])))' "$@"; }
if need_class random && [ ! -s "$BLOBS/random.cpio" ]; then
	rm -rf "$BLOBS/random" && mkdir -p "$BLOBS/random/root"
	random_bytes 1 12000000 >"$BLOBS/random/root/random.bin"
	make_cpio random
fi
if need_class zeros && [ ! -s "$BLOBS/zeros.cpio" ]; then
	rm -rf "$BLOBS/zeros" && mkdir -p "$BLOBS/zeros/root"
	head -c 32000000 /dev/zero >"$BLOBS/zeros/root/zeros.bin"
	make_cpio zeros
fi
if need_class base64 && [ ! -s "$BLOBS/base64.cpio" ]; then
	rm -rf "$BLOBS/base64" && mkdir -p "$BLOBS/base64/root"
	random_bytes 2 9000000 | base64 -w 76 >"$BLOBS/base64/root/base64.txt"
	make_cpio base64
fi

KEY=$(
	{
		printf 'source %s\n' "$SRC_VERSION"
		cat "$FRAGMENT"
		printf 'recipe %s\n' "$RECIPE"
	} | sha256sum | cut -c1-12
)
OUT="$CACHE/kernels/compressors/$KEY"
mkdir -p "$OUT" "$BUILD_ROOT/logs"

export KBUILD_BUILD_USER=bzemu KBUILD_BUILD_HOST=bzemu KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970"
export LOCALVERSION=

# configure <format> <class>: only the compressor (and the built-in initramfs) change.
configure() {
	local fmt=$1 class=$2 f args=() up
	for f in "${ALL_FORMATS[@]}"; do args+=(-d "KERNEL_${f^^}"); done
	up=${fmt^^}
	args+=(-e "KERNEL_$up")
	if [ "$class" != tiny ]; then
		args+=(-e BLK_DEV_INITRD --set-str INITRAMFS_SOURCE "$BLOBS/$class.cpio" -e INITRAMFS_COMPRESSION_NONE)
		for f in "${ALL_FORMATS[@]}"; do args+=(-d "RD_${f^^}"); done
	else
		args+=(-d BLK_DEV_INITRD --set-str INITRAMFS_SOURCE "")
	fi
	(cd "$TREE" && scripts/config --file .config "${args[@]}" && make -s olddefconfig) >>"$BUILD_ROOT/logs/compressors-config.log" 2>&1 ||
		die "configuring $fmt failed (see $BUILD_ROOT/logs/compressors-config.log)"
	grep -qx "CONFIG_KERNEL_$up=y" "$TREE/.config" || die "CONFIG_KERNEL_$up=y did not stick"
	if [ "$class" != tiny ]; then
		grep -qx 'CONFIG_BLK_DEV_INITRD=y' "$TREE/.config" || die "CONFIG_BLK_DEV_INITRD=y did not stick"
		grep -qx 'CONFIG_INITRAMFS_COMPRESSION_NONE=y' "$TREE/.config" || die "CONFIG_INITRAMFS_COMPRESSION_NONE=y did not stick"
	fi
	return 0
}

build_variant() {
	local fmt=$1 class=$2 v=$2-$1 log t0 secs tmp blob=none
	[ "$class" != code ] || blob=$debian_sha
	if [ -f "$OUT/$v/build.json" ] && grep -q "\"blob\":\"$blob\"" "$OUT/$v/build.json"; then
		echo "$v: cached -> $OUT/$v" >&2
		return 0
	fi
	configure "$fmt" "$class"
	log="$BUILD_ROOT/logs/compressors-$KEY-$v.log"
	t0=$SECONDS
	if ! nice make -C "$TREE" -j"$JOBS" bzImage >"$log" 2>&1; then
		tail -n 30 "$log" >&2 || true
		die "$v: make bzImage failed, full log: $log"
	fi
	secs=$((SECONDS - t0))
	tmp="$OUT/.tmp-$v.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	cp "$TREE/arch/x86/boot/bzImage" "$TREE/arch/x86/boot/compressed/vmlinux" "$tmp/"
	printf '{"variant":"%s","format":"%s","class":"%s","blob":"%s","debianSource":"%s","key":"%s","buildSeconds":%s}\n' \
		"$v" "$fmt" "$class" "$blob" "$SRC_VERSION" "$KEY" "$secs" >"$tmp/build.json"
	rm -rf "${OUT:?}/$v"
	mv -T "$tmp" "$OUT/$v"
	echo "$v: built in ${secs}s -> $OUT/$v" >&2
}

variants=()
for class in "${classes[@]}"; do
	for fmt in "${formats[@]}"; do
		build_variant "$fmt" "$class"
		variants+=("$class-$fmt")
	done
done
flock -u 8
((run)) || { echo "KERNELS_DIR=$OUT"; exit 0; }

# ----------------------------------------------------------- measuring ----
if [ ! -f "$BZEMU" ]; then
	(cd "$REPO_ROOT" && npm run build --silent) || die "cannot build bzemu"
fi
results="$OUT/results.json"
# name <TAB> bzImage of every kernel to measure.
kernels=()
for v in "${variants[@]}"; do kernels+=("$v"$'\t'"$OUT/$v/bzImage"); done
if ((debian)); then
	while read -r _ id path; do kernels+=("$id"$'\t'"$path"); done < <(bash "$REPO_ROOT/scripts/fetch-debian-kernels.sh" | grep '^KERNEL ')
fi
if ((table_only)); then
	[ -f "$results" ] || die "no $results yet: run without --table first"
else
	echo "[" >"$results.tmp"
	first=1
	for entry in "${kernels[@]}"; do
		IFS=$'\t' read -r v k <<<"$entry"
		for until in extract_kernel kernel-entry; do
			echo "$v: bzemu boot --until $until" >&2
			json=$(node "$BZEMU" boot "$k" --until "$until" --budget "$BUDGET" --json) || true
			((first)) || echo "," >>"$results.tmp"
			first=0
			node --input-type=commonjs -e '
				const [v, k, until, text] = process.argv.slice(1);
				const j = JSON.parse(text);
				process.stdout.write(JSON.stringify({ variant: v, kernel: k, until, verdict: j.verdict, instructions: j.instructions,
					elapsedMs: j.elapsedMs, outputLength: j.output ? j.output.length : null }));
			' "$v" "$k" "$until" "$json" >>"$results.tmp"
		done
	done
	echo "]" >>"$results.tmp"
	# Merged into what earlier runs measured (a run of some classes keeps the others' rows).
	node --input-type=commonjs -e '
		const fs = require("fs");
		const [file, classes] = process.argv.slice(1);
		const fresh = JSON.parse(fs.readFileSync(file + ".tmp", "utf8"));
		const old = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : [];
		const key = (r) => r.variant + " " + r.until;
		const merged = new Map(old.map((r) => [key(r), r]));
		for (const r of fresh) merged.set(key(r), r);
		const order = classes.split(" ");
		const rank = (v) => { const i = order.indexOf(v.split("-")[0]); return i < 0 ? order.length : i; };
		const rows = [...merged.values()].sort((a, b) => rank(a.variant) - rank(b.variant));
		fs.writeFileSync(file, JSON.stringify(rows, null, 1) + "\n");
		fs.unlinkSync(file + ".tmp");
	' "$results" "${ALL_CLASSES[*]}"
fi

node --input-type=commonjs - "$results" "$BZEMU" <<'JS'
const fs = require('fs'), { execFileSync } = require('child_process');
const [file, bzemu] = process.argv.slice(2);
const rows = JSON.parse(fs.readFileSync(file, 'utf8'));
const byVariant = new Map();
for (const r of rows) {
  if (!byVariant.has(r.variant)) byVariant.set(r.variant, {});
  byVariant.get(r.variant)[r.until] = r;
}
const M = (n) => (n / 1e6).toFixed(n < 1e8 ? 1 : 0) + ' M';
const lines = [
  '| variant | format | payload | decompressed | to extract_kernel | to kernel-entry | per byte | bzemu time | MIPS | default budget | margin |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
];
for (const [v, r] of byVariant) {
  const info = execFileSync('node', [bzemu, 'info', (r['kernel-entry'] ?? r['extract_kernel']).kernel], { encoding: 'utf8' });
  const field = (name) => (new RegExp(`^${name} +(.*)$`, 'm').exec(info) || [])[1] || '';
  const payload = /^(\w+), (\d+)/.exec(field('payload')) || [];
  const size = Number(/^(\d+)/.exec(field('decompressed size'))?.[1]);
  const ek = r['extract_kernel'], ke = r['kernel-entry'];
  const ok = (x) => x && x.verdict === 'reached';
  const dflt = Number(/kernel-entry (\d+)/.exec(field('default budget'))?.[1]);
  lines.push(`| ${v} | ${payload[1] ?? '?'} | ${(Number(payload[2]) / 1e6).toFixed(2)} MB | ${(size / 1e6).toFixed(2)} MB | ` +
    `${ok(ek) ? ek.instructions : ek?.verdict} | ${ok(ke) ? M(ke.instructions) : ke?.verdict} | ` +
    `${ok(ke) ? (ke.instructions / size).toFixed(2) : '-'} | ${ke ? (ke.elapsedMs / 1000).toFixed(1) + ' s' : '-'} | ` +
    `${ok(ke) ? (ke.instructions / ke.elapsedMs / 1000).toFixed(1) : '-'} | ${Number.isFinite(dflt) ? M(dflt) : '-'} | ` +
    `${ok(ke) && Number.isFinite(dflt) ? (dflt / ke.instructions).toFixed(1) + 'x' : '-'} |`);
}
console.log(lines.join('\n'));
JS
echo "RESULTS=$results"
