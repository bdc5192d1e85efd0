#!/usr/bin/env bash
# Builds the Debian root filesystem image sandboxes boot from (read-only base; see
# src/image/README.md), with ca-certificates, curl and python3, from the machine's own apt
# configuration (its sources, its lists, its keys: no mirror is named here).
#
#   scripts/build-rootfs.sh                 # build if needed, print the paths
#   AIRLOCK_ROOTFS_EXTRA="git jq" scripts/build-rootfs.sh   # more packages
#
# How: apt's resolver, run in simulation against an empty dpkg status, picks a consistent
# package set (Debian's Essential set + the wanted packages, no recommends); `apt-get download`
# fetches exactly those versions; `dpkg -x` unpacks them into a staging tree; a few fix-ups do
# what maintainer scripts would (passwd/group, CA bundle, ld.so cache, dpkg database); then
# `mkfs.ext4 -d` turns the tree into an image. Maintainer scripts are never run.
#
# Result, under ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}/images/:
#   rootfs-<hash>.ext4       the image; <hash> covers the package list with versions and this
#                            script, so the same inputs are never built twice
#   rootfs-<hash>.packages   "name version arch" per line
#   rootfs.ext4 -> rootfs-<hash>.ext4
# Needs root (or fakeroot, used automatically) so that files in the image belong to root.
set -euo pipefail
AIRLOCK_PROG=build-rootfs
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

need_cmd apt-get apt-cache dpkg dpkg-deb mkfs.ext4 ldconfig sha256sum flock openssl

if [ "$(id -u)" != 0 ] && [ -z "${FAKEROOTKEY:-}" ]; then
  command -v fakeroot >/dev/null 2>&1 || die "run as root, or install fakeroot"
  exec fakeroot -- "$0" "$@"
fi

# usr-is-merged: satisfies init-system-helpers without usrmerge (and the perl it drags in); the
# tree is merged below.
# shellcheck disable=SC2206 # word splitting of the extra list is intended
WANTED=(ca-certificates curl python3 busybox-static usr-is-merged ${AIRLOCK_ROOTFS_EXTRA:-})
images="$AIRLOCK_CACHE/images"
debs="$AIRLOCK_CACHE/debs"
mkdir -p "$images" "$debs"
start_s=$(date +%s.%N)

# One build at a time per cache directory.
exec 9>"$images/.build.lock"
flock 9

work="$(mktemp -d "$images/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
: >"$work/empty-status"
apt_opts=(-o Dir::State::status="$work/empty-status" -o Debug::NoLocking=1
  -o APT::Install-Recommends=false -o APT::Install-Suggests=false)

# --- 1. resolve the package set ---------------------------------------------------------------
essential="$(apt-cache dumpavail | awk '/^Package:/ {p = $2} /^Essential: yes/ {print p}' | sort -u)"
[ -n "$essential" ] || die "apt-cache knows no Essential packages: run 'apt-get update' first"
# shellcheck disable=SC2086
if ! apt-get -s "${apt_opts[@]}" install $essential "${WANTED[@]}" >"$work/sim" 2>&1; then
  cat "$work/sim" >&2
  die "apt cannot resolve ${WANTED[*]} (run 'apt-get update'?)"
fi
# "Inst libc6 (2.36-9+deb12u4 Debian:12.5/stable [amd64])" -> "libc6 2.36-9+deb12u4 amd64"
sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) [^[]*\[\([a-z0-9]*\)\].*$/\1 \2 \3/p' "$work/sim" |
  sort >"$work/packages"
count=$(wc -l <"$work/packages")
[ "$count" -gt 0 ] || die "apt resolved no packages"
hash="$( (cat "$work/packages" "$0") | sha256sum | cut -c1-16)"
image="$images/rootfs-$hash.ext4"

if [ -s "$image" ]; then
  ln -sfn "rootfs-$hash.ext4" "$images/rootfs.ext4"
  log "up to date: $image ($count packages)"
  echo "image    $image"
  echo "current  $images/rootfs.ext4 -> rootfs-$hash.ext4"
  exit 0
fi

# --- 2. download exactly those versions -------------------------------------------------------
deb_file() { # name version arch -> cache path (apt escapes the epoch colon as %3a)
  echo "$debs/${1}_${2//:/%3a}_${3}.deb"
}
missing=()
while read -r name version arch; do
  [ -s "$(deb_file "$name" "$version" "$arch")" ] || missing+=("$name:$arch=$version")
done <"$work/packages"
if [ ${#missing[@]} -gt 0 ]; then
  log "downloading ${#missing[@]} packages"
  dl_opts=()
  [ "$(id -u)" = 0 ] && [ -z "${FAKEROOTKEY:-}" ] && dl_opts=(-o APT::Sandbox::User=root)
  (cd "$debs" && apt-get -q "${dl_opts[@]}" download "${missing[@]}" >"$work/download.log" 2>&1) ||
    { cat "$work/download.log" >&2; die "apt-get download failed"; }
fi

# --- 3. unpack and register -------------------------------------------------------------------
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" \
  "$root/var/lib/dpkg/alternatives"
: >"$root/var/lib/dpkg/status"
while read -r name version arch; do
  deb="$(deb_file "$name" "$version" "$arch")"
  [ -s "$deb" ] || die "missing $deb after download"
  dpkg-deb -x "$deb" "$root"
  # dpkg's database, so that dpkg -i in the guest sees what is installed and can satisfy
  # dependencies (what dpkg --unpack + configure would have recorded).
  ctrl="$work/ctrl-$name"
  dpkg-deb -e "$deb" "$ctrl"
  info_name="$name"
  if grep -q '^Multi-Arch: same' "$ctrl/control"; then info_name="$name:$arch"; fi
  awk '/^Package:/ {print; print "Status: install ok installed"; next} {print}' "$ctrl/control" \
    >>"$root/var/lib/dpkg/status"
  echo >>"$root/var/lib/dpkg/status"
  for f in md5sums conffiles; do
    if [ -f "$ctrl/$f" ]; then cp "$ctrl/$f" "$root/var/lib/dpkg/info/$info_name.$f"; fi
  done
  dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's,^\.,,' -e 's,/$,,' -e 's,^$,/.,' \
    >"$root/var/lib/dpkg/info/$info_name.list"
  rm -rf "$ctrl"
done <"$work/packages"
echo amd64 >"$root/var/lib/dpkg/arch"
# Info files of Multi-Arch: same packages are named pkg:arch; format 1 tells dpkg so.
echo 1 >"$root/var/lib/dpkg/info/format"
: >"$root/var/lib/dpkg/available"
: >"$root/var/lib/dpkg/diversions"
: >"$root/var/lib/dpkg/statoverride"

# --- 4. what the maintainer scripts would have done ------------------------------------------
cd "$root"
# Merged /usr, as bookworm expects (what debootstrap sets up before unpacking).
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -d "$d" ] && [ ! -L "$d" ]; then
    mkdir -p "usr/$d"
    cp -a "$d/." "usr/$d/"
    rm -rf "$d"
    ln -s "usr/$d" "$d"
  fi
done
# Documentation, manual pages and translations are dead weight in a sandbox (licences stay).
find usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf usr/share/man usr/share/info usr/share/lintian usr/share/locale/*/LC_MESSAGES
mkdir -p proc sys dev run tmp root home mnt etc/ssl/certs var/tmp var/log
chmod 1777 tmp var/tmp
chmod 0700 root
for f in passwd group; do
  [ -e "etc/$f" ] || cp "usr/share/base-passwd/$f.master" "etc/$f"
done
[ -e etc/shadow ] || awk -F: '{print $1 ":*:19000:0:99999:7:::"}' etc/passwd >etc/shadow
chmod 0640 etc/shadow
echo airlock >etc/hostname
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >etc/hosts
: >etc/resolv.conf # written by the guest agent at boot
# Alternatives that postinst scripts would have registered.
if [ ! -e usr/bin/awk ] && [ -e usr/bin/mawk ]; then ln -s mawk usr/bin/awk; fi
if [ ! -e usr/bin/pager ] && [ -e bin/more ]; then ln -s /bin/more usr/bin/pager; fi
# Debian's CA bundle (update-ca-certificates' work): every shipped certificate, one bundle,
# one .pem link each, and the OpenSSL hash links for CApath users (Python's ssl).
: >etc/ca-certificates.conf
: >etc/ssl/certs/ca-certificates.crt
find usr/share/ca-certificates -name '*.crt' | LC_ALL=C sort | while read -r crt; do
  rel="${crt#usr/share/ca-certificates/}"
  echo "$rel" >>etc/ca-certificates.conf
  cat "$crt" >>etc/ssl/certs/ca-certificates.crt
  # Relative, so that it resolves inside the image and in the staging tree alike.
  ln -sf "../../../$crt" "etc/ssl/certs/$(basename "$rel" .crt).pem"
done
ca_count=$(grep -c 'BEGIN CERTIFICATE' etc/ssl/certs/ca-certificates.crt || true)
[ "$ca_count" -gt 0 ] || die "no CA certificates found in the ca-certificates package"
(cd etc/ssl/certs && { openssl rehash . 2>/dev/null || c_rehash . >/dev/null; })
# The shared library cache for the image's own tree. ldconfig -r chroots, which fakeroot cannot;
# without a cache Debian's ld.so still searches the multiarch directories.
ldconfig -r "$root" 2>/dev/null || log "ldconfig -r failed (not real root?); image has no ld.so.cache"
# Byte-compile Python's standard library with the image's own interpreter: the base is read-only,
# so otherwise every sandbox recompiles (into its overlay) on first import.
if [ -z "${FAKEROOTKEY:-}" ]; then
  for py in usr/lib/python3.*/; do
    chroot "$root" /usr/bin/python3 -m compileall -q "/$py" "/usr/lib/python3/dist-packages" \
      >/dev/null 2>&1 || log "python byte-compilation failed; continuing without"
  done
fi
cd - >/dev/null

# --- 5. the image ------------------------------------------------------------------------------
used_kib=$(du -sk --apparent-size "$root" | cut -f1)
files=$(find "$root" | wc -l)
# Room for metadata plus a little slack; the base is mounted read-only, writes go to the overlay.
size_mib=$(((used_kib * 12 / 10) / 1024 + 64))
size_mib=$(((size_mib + 15) / 16 * 16))
inodes=$((files + files / 4 + 1024))
tmp_image="$images/.rootfs-$hash.ext4.tmp"
rm -f "$tmp_image"
truncate -s "${size_mib}M" "$tmp_image"
mkfs.ext4 -F -q -m 0 -b 4096 -N "$inodes" -L airlock-root -E root_owner=0:0 -d "$root" "$tmp_image" ||
  { rm -f "$tmp_image"; die "mkfs.ext4 failed"; }
cp "$work/packages" "$images/rootfs-$hash.packages"
mv "$tmp_image" "$image"
ln -sfn "rootfs-$hash.ext4" "$images/rootfs.ext4"

end_s=$(date +%s.%N)
alloc_kib=$(du -k "$image" | cut -f1)
log "built $image: $count packages, $ca_count CA certificates, ${size_mib} MiB image" \
  "(${alloc_kib} KiB allocated, $((used_kib / 1024)) MiB of files) in" \
  "$(awk -v a="$start_s" -v b="$end_s" 'BEGIN {printf "%.1f", b - a}') s"
echo "image    $image"
echo "current  $images/rootfs.ext4 -> rootfs-$hash.ext4"
