# Helpers to assemble a busybox initramfs deterministically. Source after lib/common.sh.
# Used by build-initramfs.sh (the VMM's test initramfs) and kvm-run (the nested runner's).
# shellcheck shell=bash

AIRLOCK_BUSYBOX=/bin/busybox

# stage_busybox STAGE: /bin/busybox plus one symlink per applet, at busybox's own paths.
stage_busybox() {
  local stage="$1" applet
  [ -x "$AIRLOCK_BUSYBOX" ] || die "$AIRLOCK_BUSYBOX missing; install busybox-static (setup.sh)"
  # A dynamically linked busybox would not run in an initramfs without libc.
  if ! LC_ALL=C file -b "$AIRLOCK_BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    die "$AIRLOCK_BUSYBOX is not statically linked; install busybox-static"
  fi
  mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root}
  cp "$AIRLOCK_BUSYBOX" "$stage/bin/busybox"
  for applet in $("$AIRLOCK_BUSYBOX" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
  done
  # The kernel opens /dev/console for init before devtmpfs is mounted.
  if [ "$(id -u)" = 0 ]; then mknod -m 600 "$stage/dev/console" c 5 1; fi
}

# stage_modules STAGE MODDIR VER NAME...: copies NAME... and their dependencies, uncompressed,
# to STAGE/lib/modules/VER/<same relative path>, and writes their load order (relative paths)
# to STAGE/etc/modules.order. Built-in names are skipped.
stage_modules() {
  local stage="$1" moddir="$2" ver="$3"
  shift 3
  local order rel dst
  order="$("$AIRLOCK_PY" "$AIRLOCK_SCRIPTS_DIR/lib/moddeps.py" "$moddir" "$@")" ||
    die "could not resolve modules: $*"
  mkdir -p "$stage/etc" "$stage/lib/modules/$ver"
  : >"$stage/etc/modules.order"
  for rel in $order; do
    dst="$stage/lib/modules/$ver/${rel%.ko*}.ko"
    mkdir -p "$(dirname "$dst")"
    case "$rel" in
      *.ko) cp "$moddir/$rel" "$dst" ;;
      *.ko.xz) xz -dc "$moddir/$rel" >"$dst" ;;
      *.ko.zst) zstd -dcq "$moddir/$rel" >"$dst" ;;
      *.ko.gz) gzip -dc "$moddir/$rel" >"$dst" ;;
      *) die "unknown module file type: $rel" ;;
    esac
    echo "${rel%.ko*}.ko" >>"$stage/etc/modules.order"
  done
}

# build_cpio STAGE OUT: packs STAGE as a gzip'd newc archive, byte-for-byte reproducible
# (sorted names, owner 0:0, fixed mtimes, no device numbers of the build host, gzip -n).
build_cpio() {
  local stage="$1" out="$2"
  need_cmd cpio gzip
  find "$stage" -exec touch -h -d @0 {} +
  (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -n -9 >"$out.tmp"
  mv -f "$out.tmp" "$out"
}

# inputs_hash FILE...: one sha256 over names and contents of files (directories recursed).
inputs_hash() {
  local f
  for f in "$@"; do
    if [ -d "$f" ]; then
      (cd "$f" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    else
      sha256sum "$f"
    fi
  done | sha256sum | cut -d' ' -f1
}
