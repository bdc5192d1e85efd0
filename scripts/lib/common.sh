# Shared helpers for airlock's shell scripts. Source it; it defines functions and variables only.
# shellcheck shell=bash

AIRLOCK_CACHE="${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}"
AIRLOCK_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Debian's interpreter: the first python3 on PATH may be another one.
AIRLOCK_PY=/usr/bin/python3

log() { printf '%s: %s\n' "${AIRLOCK_PROG:-airlock}" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "${AIRLOCK_PROG:-airlock}" "$*" >&2
  exit 1
}
need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found; run scripts/setup.sh"
  done
}

# Kernel cache directory for the version `current` points at (set by fetch-kernel.sh).
current_kernel_dir() {
  local d="$AIRLOCK_CACHE/kernel/current"
  [ -e "$d/vmlinuz" ] || return 1
  (cd "$d" && pwd -P)
}

# Runs as root or through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
