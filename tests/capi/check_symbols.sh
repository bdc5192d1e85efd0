#!/bin/sh
# Compares the dynamic symbols libairlock.so exports with the committed list, so that ABI changes
# are deliberate: update capi/abi/exported-symbols.txt in the same commit as the header.
#   check_symbols.sh LIBRARY EXPECTED_LIST
set -eu
lib=$1
expected=$2
actual=$(mktemp)
trap 'rm -f "$actual"' EXIT
nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort -u > "$actual"
if ! diff -u "$expected" "$actual"; then
  echo "exported symbols of $lib differ from $expected (diff above: - committed, + built)" >&2
  exit 1
fi
if grep -v -e '^airlock_' -e '^AIRLOCK_0$' "$actual"; then
  echo "non-airlock_ symbols exported (above)" >&2
  exit 1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\].*/\1/p')
if [ "$soname" != "libairlock.so.0" ]; then
  echo "SONAME is '$soname', expected libairlock.so.0" >&2
  exit 1
fi
echo "$(wc -l < "$actual") exported symbols match; SONAME $soname"
