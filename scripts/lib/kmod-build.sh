# Builds airlock's out-of-tree helper modules (scripts/initramfs/modules/*.c) against the
# cached kernel, from Debian's linux-headers packages downloaded and unpacked into the kernel
# cache (never installed). Source after lib/common.sh.
# shellcheck shell=bash

# ensure_headers KDIR VER: unpacks linux-headers-VER (+ -common, + linux-kbuild-X) into
# KDIR/headers once; prints the kbuild directory to pass to `make -C`.
ensure_headers() {
  local kdir="$1" ver="$2" hdir="$1/headers" work pkgs kbuild
  local build="$hdir/usr/src/linux-headers-$ver"
  if [ ! -f "$hdir/.complete" ]; then
    need_cmd apt-get apt-cache dpkg
    kbuild="$(apt-cache depends "linux-headers-$ver" 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-kbuild-[0-9.]*\)$/\1/p' | head -n1)"
    [ -n "$kbuild" ] || die "cannot resolve linux-kbuild for linux-headers-$ver (apt-get update?)"
    pkgs=("linux-headers-$ver" "linux-headers-${ver%-amd64}-common" "$kbuild")
    work="$(mktemp -d "$kdir/.headers.XXXXXX")"
    log "downloading ${pkgs[*]}"
    (cd "$work" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "${pkgs[@]}" >/dev/null) ||
      { rm -rf "$work"; die "apt-get download ${pkgs[*]} failed"; }
    local deb
    for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root" || die "dpkg -x $deb failed"; done
    # The arch Makefile includes the common tree by absolute path: point it at our copy.
    sed -i "s#^include /usr/src/#include $hdir/usr/src/#" \
      "$work/root/usr/src/linux-headers-$ver/Makefile"
    rm -rf "$hdir"
    mv -T "$work/root" "$hdir"
    rm -rf "$work"
    touch "$hdir/.complete"
  fi
  [ -f "$build/Makefile" ] || die "headers unpacked but $build/Makefile is missing"
  echo "$build"
}

# build_helper_module KDIR VER NAME: builds scripts/initramfs/modules/NAME.c into
# KDIR/extra/NAME.ko (debug info stripped) unless it is up to date; prints the .ko path.
# Call it in a subshell ($(...)): it holds the kernel cache lock until that subshell ends.
build_helper_module() {
  local kdir="$1" ver="$2" name="$3"
  local src="$AIRLOCK_SCRIPTS_DIR/initramfs/modules/$name.c"
  local out="$kdir/extra/$name.ko" hash build work
  [ -f "$src" ] || die "no module source $src"
  exec 8>"$(dirname "$kdir")/.lock"
  flock 8
  hash="$(sha256sum "$src" | cut -d' ' -f1)"
  if [ -f "$out" ] && [ "$(cat "$out.src-sha256" 2>/dev/null)" = "$hash" ]; then
    echo "$out"
    return 0
  fi
  need_cmd make gcc strip
  build="$(ensure_headers "$kdir" "$ver")"
  work="$(mktemp -d "$kdir/.kmod.XXXXXX")"
  cp "$src" "$work/"
  echo "obj-m := $name.o" >"$work/Kbuild"
  # Map the temp and cache paths away so the .ko (its build-id) is the same in every cache.
  if ! make -s -C "$build" M="$work" \
    KCFLAGS="-ffile-prefix-map=$work=/airlock-kmod -ffile-prefix-map=$kdir/headers=" \
    modules >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    rm -rf "$work"
    die "building $name.ko failed"
  fi
  mkdir -p "$kdir/extra"
  strip --strip-debug -o "$out.tmp" "$work/$name.ko"
  mv -f "$out.tmp" "$out"
  echo "$hash" >"$out.src-sha256"
  rm -rf "$work"
  log "built $name.ko for $ver"
  echo "$out"
}
