#!/usr/bin/env bash
# Fetch the Debian kernels listed in kernels/debian.json into the bzemu cache.
#
# usage: scripts/fetch-debian-kernels.sh [--with-system-map] [--offline] [id...]
#        (no id: every series of the manifest)
#
# For each series: pick the newest package of the series known to apt (running
# `apt-get update` first when the package lists are missing or stale), download it with
# `apt-get download` (apt verifies the signed hashes), extract only ./boot from it, and
# store vmlinuz-*, System.map-* and config-* in
#   ${BZEMU_CACHE:-$HOME/.cache/bzemu}/kernels/debian/<id>/<version>/
# together with fetched.json and SHA256SUMS. <id>/current (symlink) and <id>/current.json
# point at the newest version present in the cache.
#
# The System.map shipped in linux-image-* is a one-line placeholder; --with-system-map
# (or BZEMU_FETCH_SYSTEM_MAP=1) also downloads the matching linux-image-*-dbg package
# (large: about 1 GB for 6.12, 280 MB for 6.1 cloud; it is not kept) and stores its real
# System.map in place of the placeholder.
#
# If apt cannot find or download the package but the cache holds a version, that cached
# version is used with a warning (offline use). Re-running is cheap: a cached version whose
# checksums verify is not downloaded again.
#
# Output: human lines, and as the last line for each kernel:
#   KERNEL <id> <absolute path to vmlinuz>
# Warnings and apt's own output go to stderr. Exit status: 0 if every requested kernel is
# available, 1 if one is not, 2 for a usage error.
#
# Environment:
#   BZEMU_CACHE             cache root (default $HOME/.cache/bzemu)
#   BZEMU_KERNEL_MANIFEST   manifest path (default <repo>/kernels/debian.json)
#   BZEMU_APT_STALE_DAYS    refresh apt lists older than this (default 7)
#   BZEMU_APT_UPDATE        1: always run apt-get update first; 0: never run it
#   BZEMU_OFFLINE           1: do not ask apt at all, use the cache only (same as --offline)
#   BZEMU_FETCH_SYSTEM_MAP  1: same as --with-system-map
set -euo pipefail
exec </dev/null

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest=${BZEMU_KERNEL_MANIFEST:-$script_dir/../kernels/debian.json}
cache_base=${BZEMU_CACHE:-${HOME:-/root}/.cache/bzemu}
cache_root=$cache_base/kernels/debian
stale_days=${BZEMU_APT_STALE_DAYS:-7}
apt_update_mode=${BZEMU_APT_UPDATE:-auto}
offline=${BZEMU_OFFLINE:-0}
want_sysmap=${BZEMU_FETCH_SYSTEM_MAP:-0}

warn() { echo "warning: $*" >&2; }
die_usage() { echo "error: $*" >&2; exit 2; }

args=()
for a in "$@"; do
  case "$a" in
    -h|--help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0 ;;
    --with-system-map) want_sysmap=1 ;;
    --offline) offline=1 ;;
    -*) die_usage "unknown option $a (try --help)" ;;
    *) args+=("$a") ;;
  esac
done
set -- ${args[@]+"${args[@]}"}

for tool in node sha256sum; do
  command -v "$tool" >/dev/null || die_usage "$tool is required"
done
[[ -r $manifest ]] || die_usage "manifest not found: $manifest"

# id <TAB> packageRegex <TAB> lastVerifiedVersion <TAB> lastVerifiedSha256 <TAB> compression
series_tsv=$(node --input-type=commonjs -e '
  const fs = require("fs");
  const m = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const s of m.series) {
    for (const k of ["id", "packageRegex", "lastVerifiedVersion", "lastVerifiedSha256", "compression"]) {
      if (typeof s[k] !== "string" || s[k] === "" || /[\t\n]/.test(s[k])) {
        console.error(`bad manifest entry ${JSON.stringify(s.id)}: field ${k}`); process.exit(1);
      }
    }
    console.log([s.id, s.packageRegex, s.lastVerifiedVersion, s.lastVerifiedSha256, s.compression].join("\t"));
  }' "$manifest") || die_usage "cannot read manifest $manifest"

declare -A s_regex s_ver s_sha s_comp
all_ids=()
while IFS=$'\t' read -r id regex ver sha comp; do
  all_ids+=("$id"); s_regex[$id]=$regex; s_ver[$id]=$ver; s_sha[$id]=$sha; s_comp[$id]=$comp
done <<<"$series_tsv"

if (($# == 0)); then ids=("${all_ids[@]}"); else ids=("$@"); fi
for id in "${ids[@]}"; do
  [[ -n ${s_regex[$id]+x} ]] || die_usage "unknown kernel id '$id' (known: ${all_ids[*]})"
done

mkdir -p "$cache_root"
# Serialise concurrent runs (e.g. parallel test files): they share the cache and apt.
if command -v flock >/dev/null; then
  exec 9>"$cache_root/.lock"
  flock 9
fi

# Leftovers of an interrupted run (we hold the lock, so nobody else is staging).
for id in "${ids[@]}"; do rm -rf "$cache_root/$id"/.stage.* "$cache_root/$id"/current.tmp.* 2>/dev/null || true; done

work=$(mktemp -d "${TMPDIR:-/tmp}/bzemu-fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

apt_lists=/var/lib/apt/lists
apt_updated=0

apt_lists_fresh() {
  [[ -n $(find "$apt_lists" -maxdepth 1 -name '*_Packages*' -mmin "-$((stale_days * 1440))" -print -quit 2>/dev/null) ]]
}

apt_update() {
  ((apt_updated == 0)) || return 0
  apt_updated=1
  [[ $apt_update_mode != 0 ]] || return 0
  if [[ $(id -u) != 0 ]]; then
    warn "apt lists are missing or stale and apt-get update needs root; using them as they are"
    return 0
  fi
  echo "running apt-get update (package lists missing or older than $stale_days days)" >&2
  if ! apt-get update -q >"$work/apt-update.log" 2>&1; then
    warn "apt-get update failed; continuing with the lists as they are:"
    tail -n 5 "$work/apt-update.log" >&2 || true
  fi
}

# newest_package <regex> -> "name<TAB>version<TAB>debian-package-version" of the newest
# package of the series that apt has a candidate for; empty if none.
newest_package() {
  local regex=$1 name ver cand
  # "version<TAB>name", newest first; only the first one with a candidate is asked about.
  while IFS=$'\t' read -r ver name; do
    [[ -n $name ]] || continue
    cand=$(apt-cache show --no-all-versions "$name" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
    if [[ -n $cand ]]; then
      printf '%s\t%s\t%s\n' "$name" "$ver" "$cand"
      return 0
    fi
  done < <(apt-cache pkgnames linux-image- 2>/dev/null | { grep -E "$regex" || true; } |
             while IFS= read -r name; do printf '%s\t%s\n' "$(sed -E "s/$regex/\\1/" <<<"$name")" "$name"; done |
             sort -t $'\t' -k1,1 -V -r)
}

# cache_valid <dir>: fetched.json present and every file checksum verifies.
cache_valid() {
  local dir=$1
  [[ -f $dir/fetched.json && -f $dir/SHA256SUMS ]] || return 1
  compgen -G "$dir/vmlinuz-*" >/dev/null || return 1
  (cd "$dir" && sha256sum --quiet --status -c SHA256SUMS) 2>/dev/null
}

# newest_cached <id> -> version directory name of the newest valid cached version.
newest_cached() {
  local dir=$cache_root/$1 v best=""
  [[ -d $dir ]] || return 0
  while IFS= read -r v; do
    [[ -n $v && $v != current* && $v != .* ]] || continue
    cache_valid "$dir/$v" && best=$v
  done < <(ls -1 "$dir" | sort -V)
  [[ -z $best ]] || echo "$best"
}

json_field() { # json_field <file> <field>
  node --input-type=commonjs -e '
    const v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]];
    process.stdout.write(v === undefined ? "" : String(v));' "$1" "$2"
}

update_current() { # update_current <id>
  local id=$1 dir=$cache_root/$1 v
  v=$(newest_cached "$id")
  [[ -n $v ]] || return 0
  ln -sfn "$v" "$dir/current.tmp.$$" && mv -Tf "$dir/current.tmp.$$" "$dir/current"
  node --input-type=commonjs -e '
    const fs = require("fs"), path = require("path");
    const [dir, v] = process.argv.slice(1);
    const f = JSON.parse(fs.readFileSync(path.join(dir, v, "fetched.json"), "utf8"));
    const abs = (n) => (n ? path.join(dir, v, n) : null);
    const out = { ...f, dir: path.join(dir, v), vmlinuzPath: abs(f.vmlinuz),
                  systemMapPath: abs(f.systemMap), configPath: abs(f.config) };
    fs.writeFileSync(path.join(dir, "current.json.tmp"), JSON.stringify(out, null, 2) + "\n");
    fs.renameSync(path.join(dir, "current.json.tmp"), path.join(dir, "current.json"));
  ' "$dir" "$v"
}

# fetch_package <id> <name> <version> <pkgver> -> downloads into the cache; 0 on success.
fetch_package() {
  local id=$1 name=$2 ver=$3 pkgver=$4
  local tmp=$work/$id dest=$cache_root/$id/$ver stage deb f
  rm -rf "$tmp"; mkdir -p "$tmp/x"
  chmod 755 "$work" "$tmp"
  echo "$id: downloading $name=$pkgver" >&2
  if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$name=$pkgver") >"$tmp/apt.log" 2>&1; then
    tail -n 5 "$tmp/apt.log" >&2 || true
    return 1
  fi
  deb=$(compgen -G "$tmp/*.deb" | head -n 1 || true)
  [[ -n $deb ]] || { warn "$id: apt-get download produced no .deb"; return 1; }
  if ! dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/*'; then
    warn "$id: cannot extract ./boot from $(basename "$deb")"; return 1
  fi
  local vmlinuz sysmap config
  vmlinuz=$(compgen -G "$tmp/x/boot/vmlinuz-*" | head -n 1 || true)
  sysmap=$(compgen -G "$tmp/x/boot/System.map-*" | head -n 1 || true)
  config=$(compgen -G "$tmp/x/boot/config-*" | head -n 1 || true)
  [[ -n $vmlinuz ]] || { warn "$id: package has no boot/vmlinuz-*"; return 1; }

  mkdir -p "$cache_root/$id"
  stage=$(mktemp -d "$cache_root/$id/.stage.XXXXXX")
  chmod 755 "$stage"
  for f in "$vmlinuz" "$sysmap" "$config"; do
    [[ -z $f ]] || cp "$f" "$stage/"
  done
  (cd "$stage" && sha256sum -- * >SHA256SUMS)
  node --input-type=commonjs -e '
    const fs = require("fs"), path = require("path");
    const [stage, id, name, ver, pkgver, debName, debSha, vml, sm, cfg] = process.argv.slice(1);
    const sums = Object.fromEntries(fs.readFileSync(path.join(stage, "SHA256SUMS"), "utf8")
      .trim().split("\n").map((l) => { const m = /^([0-9a-f]{64}) [ *](.*)$/.exec(l); return [m[2], m[1]]; }));
    const base = (p) => (p ? path.basename(p) : null);
    const out = {
      id, package: name, version: ver, packageVersion: pkgver,
      kernelRelease: path.basename(vml).replace(/^vmlinuz-/, ""),
      vmlinuz: base(vml), systemMap: base(sm), config: base(cfg),
      sha256: sums[base(vml)], size: fs.statSync(path.join(stage, base(vml))).size,
      deb: debName, debSha256: debSha, date: new Date().toISOString(),
    };
    fs.writeFileSync(path.join(stage, "fetched.json"), JSON.stringify(out, null, 2) + "\n");
  ' "$stage" "$id" "$name" "$ver" "$pkgver" "$(basename "$deb")" \
    "$(sha256sum "$deb" | cut -d' ' -f1)" "$vmlinuz" "$sysmap" "$config"
  rm -rf "$dest"
  mv -T "$stage" "$dest"
  rm -rf "$tmp"
}

# system_map_is_placeholder <file>: the linux-image-* packages ship a one-line stub.
system_map_is_placeholder() {
  [[ ! -s $1 ]] || { (($(stat -c %s "$1") < 4096)) && grep -q 'The real System.map' "$1"; }
}

# fetch_system_map <id> <dir>: replace the placeholder System.map in <dir> with the real one
# from the matching -dbg package. 0 on success.
fetch_system_map() {
  local id=$1 dir=$2 name pkgver release dbg tmp=$work/$1-dbg deb member
  name=$(json_field "$dir/fetched.json" package)
  pkgver=$(json_field "$dir/fetched.json" packageVersion)
  release=$(json_field "$dir/fetched.json" kernelRelease)
  dbg=${name%-unsigned}-dbg
  rm -rf "$tmp"; mkdir -p "$tmp/x"; chmod 755 "$work" "$tmp"
  echo "$id: downloading $dbg=$pkgver for its System.map (large)" >&2
  if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$dbg=$pkgver") >"$tmp/apt.log" 2>&1; then
    tail -n 5 "$tmp/apt.log" >&2 || true
    rm -rf "$tmp"; return 1
  fi
  deb=$(compgen -G "$tmp/*.deb" | head -n 1 || true)
  member=./usr/lib/debug/boot/System.map-$release
  # The map is near the start of the archive: stop reading after it (dpkg-deb then
  # sees a closed pipe, so its status is not checked; the extracted file is).
  { dpkg-deb --fsys-tarfile "$deb" 2>/dev/null || true; } |
    tar -x -C "$tmp/x" --occurrence=1 "$member" 2>/dev/null || true
  if [[ ! -s $tmp/x/$member ]] || system_map_is_placeholder "$tmp/x/$member"; then
    warn "$id: $dbg has no usable $member"
    rm -rf "$tmp"; return 1
  fi
  cp "$tmp/x/$member" "$dir/System.map-$release.tmp"
  mv -f "$dir/System.map-$release.tmp" "$dir/System.map-$release"
  (cd "$dir" && sha256sum -- vmlinuz-* System.map-* config-* >SHA256SUMS.tmp && mv -f SHA256SUMS.tmp SHA256SUMS)
  node --input-type=commonjs -e '
    const fs = require("fs"), path = require("path");
    const [dir, dbg, pkgver, release] = process.argv.slice(1);
    const f = path.join(dir, "fetched.json");
    const j = JSON.parse(fs.readFileSync(f, "utf8"));
    j.systemMap = "System.map-" + release;
    j.systemMapSource = dbg + "=" + pkgver;
    fs.writeFileSync(f + ".tmp", JSON.stringify(j, null, 2) + "\n");
    fs.renameSync(f + ".tmp", f);
  ' "$dir" "$dbg" "$pkgver" "$release"
  rm -rf "$tmp"
}

failed=0
for id in "${ids[@]}"; do
  regex=${s_regex[$id]}
  cand="" status="" dir=""
  if [[ $offline != 1 ]]; then
    if [[ $apt_update_mode == 1 ]] || ! apt_lists_fresh; then apt_update; fi
    cand=$(newest_package "$regex")
    if [[ -z $cand && $apt_updated == 0 ]]; then
      apt_update
      cand=$(newest_package "$regex")
    fi
  fi

  if [[ -n $cand ]]; then
    IFS=$'\t' read -r name ver pkgver <<<"$cand"
    dir=$cache_root/$id/$ver
    if cache_valid "$dir" && [[ $(json_field "$dir/fetched.json" packageVersion) == "$pkgver" ]]; then
      status="cached"
    elif fetch_package "$id" "$name" "$ver" "$pkgver"; then
      status="fetched"
    else
      dir=""
      warn "$id: could not download $name=$pkgver"
    fi
  else
    [[ $offline == 1 ]] || warn "$id: apt knows no package matching /$regex/"
  fi

  if [[ -z $dir ]]; then
    v=$(newest_cached "$id")
    if [[ -z $v ]]; then
      echo "$id: NOT AVAILABLE (no package from apt and nothing cached in $cache_root/$id)"
      failed=1
      continue
    fi
    dir=$cache_root/$id/$v
    status="offline: using cached copy"
    [[ $offline == 1 ]] || warn "$id: using the cached version $v instead"
  fi

  if [[ $want_sysmap == 1 ]]; then
    sm=$dir/$(json_field "$dir/fetched.json" systemMap)
    if [[ $sm == "$dir/" ]] || system_map_is_placeholder "$sm"; then
      if [[ $offline == 1 ]] || ! fetch_system_map "$id" "$dir"; then
        echo "$id: WARNING: no real System.map (only the placeholder of the linux-image package)"
      fi
    fi
  fi

  update_current "$id"
  f=$dir/fetched.json
  ver=$(json_field "$f" version)
  sha=$(json_field "$f" sha256)
  vmlinuz=$dir/$(json_field "$f" vmlinuz)
  notes=()
  if [[ $ver != "${s_ver[$id]}" ]]; then
    notes+=("VERSION DIFFERS from manifest lastVerifiedVersion ${s_ver[$id]}")
  fi
  if [[ $sha != "${s_sha[$id]}" ]]; then
    notes+=("SHA256 DIFFERS from manifest lastVerifiedSha256 ${s_sha[$id]}")
  fi
  ((${#notes[@]})) || notes+=("matches manifest last verified")
  echo "$id: $(json_field "$f" package)=$(json_field "$f" packageVersion) [$status] sha256=$sha; $(IFS=';'; echo "${notes[*]}")"
  echo "KERNEL $id $vmlinuz"
done
exit "$failed"
