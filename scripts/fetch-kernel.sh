#!/usr/bin/env bash
# Fetches Debian's current amd64 kernel into airlock's cache without installing it on the host.
#
#   scripts/fetch-kernel.sh            # resolve, download if needed, print the paths
#   AIRLOCK_KERNEL_VERSION=6.1.0-56-amd64 scripts/fetch-kernel.sh   # pin a version
#
# Result, under ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}/kernel/<ver>/ (<ver> as `uname -r`):
#   vmlinuz    the bzImage (boot protocol 2.15, 64-bit entry)
#   vmlinux    the same kernel uncompressed (ELF64, has a PVH note) for fast direct boot
#   modules/   lib/modules/<ver> of the package, plus modules.dep made by depmod (Debian's
#              package ships none)
#   config, System.map, version (one line: <ver>)
# and the symlink kernel/current -> <ver>. Idempotent: a complete cache entry is reused.
set -euo pipefail
AIRLOCK_PROG=fetch-kernel
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

need_cmd apt-cache apt-get dpkg depmod flock xz
[ -x "$AIRLOCK_PY" ] || die "$AIRLOCK_PY not found (Debian's python3)"

kernel_root="$AIRLOCK_CACHE/kernel"
mkdir -p "$kernel_root"

resolve_version() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: linux-image-\(.*-amd64\)$/\1/p' | head -n1
}

ver="${AIRLOCK_KERNEL_VERSION:-}"
if [ -z "$ver" ]; then
  ver="$(resolve_version || true)"
  if [ -z "$ver" ]; then
    log "linux-image-amd64 not resolvable; running apt-get update"
    as_root apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed"
    ver="$(resolve_version || true)"
  fi
  if [ -z "$ver" ]; then
    # Offline with an existing cache: keep using it rather than failing.
    if dir="$(current_kernel_dir)"; then
      ver="$(cat "$dir/version")"
      log "cannot resolve linux-image-amd64; using cached $ver"
    else
      die "cannot resolve linux-image-amd64 with apt-cache (no apt lists?) and nothing is cached"
    fi
  fi
fi
case "$ver" in
  *[!A-Za-z0-9.+_-]* | "") die "unexpected kernel version '$ver'" ;;
esac
dir="$kernel_root/$ver"

print_paths() {
  echo "version  $ver"
  echo "vmlinuz  $dir/vmlinuz"
  echo "vmlinux  $dir/vmlinux"
  echo "modules  $dir/modules"
  echo "current  $kernel_root/current -> $ver"
}

set_current() {
  if [ "$(readlink "$kernel_root/current" 2>/dev/null || true)" != "$ver" ]; then
    ln -sfn "$ver" "$kernel_root/current.tmp.$$"
    mv -T "$kernel_root/current.tmp.$$" "$kernel_root/current"
  fi
}

# Several engineers (and CI jobs) may run this at once: one fetch at a time.
exec 9>"$kernel_root/.lock"
flock 9

if [ -f "$dir/.complete" ]; then
  set_current
  print_paths
  exit 0
fi

start=$(date +%s)
work="$(mktemp -d "$kernel_root/.work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

pkg="linux-image-$ver"
log "downloading $pkg"
# The sandbox user (_apt) cannot write into a root-owned temp dir; download as the caller.
(cd "$work" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "$pkg" >/dev/null) ||
  die "apt-get download $pkg failed"
deb="$(ls "$work"/*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || die "apt-get download produced no .deb for $pkg"

log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$work/root" || die "dpkg -x $deb failed"

stage="$work/out"
mkdir -p "$stage"
[ -f "$work/root/boot/vmlinuz-$ver" ] || die "package has no boot/vmlinuz-$ver"
[ -d "$work/root/lib/modules/$ver" ] || die "package has no lib/modules/$ver"
mv "$work/root/boot/vmlinuz-$ver" "$stage/vmlinuz"
cp "$work/root/boot/config-$ver" "$stage/config"
cp "$work/root/boot/System.map-$ver" "$stage/System.map"

log "generating modules.dep"
depmod -b "$work/root" "$ver" || die "depmod failed"
[ -s "$work/root/lib/modules/$ver/modules.dep" ] || die "depmod wrote no modules.dep"
mv "$work/root/lib/modules/$ver" "$stage/modules"

log "extracting uncompressed vmlinux"
"$AIRLOCK_PY" "$AIRLOCK_SCRIPTS_DIR/lib/extract-vmlinux.py" "$stage/vmlinuz" "$stage/vmlinux" ||
  die "could not extract vmlinux from the bzImage"

echo "$ver" >"$stage/version"
touch "$stage/.complete"
rm -rf "$dir"
mv -T "$stage" "$dir"
set_current
log "cached $ver in $(($(date +%s) - start)) s"
print_paths
