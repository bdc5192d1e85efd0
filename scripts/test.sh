#!/usr/bin/env bash
# Runs airlock's whole test suite, as CI does:
#   1. installs the Debian packages it needs (scripts/setup.sh),
#   2. builds with warnings as errors,
#   3. fetches the guest kernel and builds the guest images,
#   4. runs the unit and proxy tests natively,
#   5. runs the KVM tests on real KVM through scripts/kvm-run (natively where /dev/kvm works,
#      otherwise in the nested QEMU runner) — they are never skipped,
#   6. rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer and runs unit and proxy tests,
#   7. builds the libFuzzer targets (tests/fuzz) with clang and runs each for a bounded time.
# Ends with one line "N passed, N failed" and a non-zero status if anything failed.
# Environment: BUILD_DIR (default build), ASAN_BUILD_DIR (default build-asan), FUZZ_BUILD_DIR
# (default build-fuzz), FUZZ_SECONDS (default 20, per target), SKIP_ASAN=1, SKIP_KVM=1,
# SKIP_FUZZ=1 (for quick local runs only; CI never sets them).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-$ROOT/build-asan}
FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-$(nproc)}
LOG_DIR=$BUILD_DIR/test-logs
passed=0
failed=0
failures=()

step() { printf '\n==== %s ====\n' "$*"; }

# count_ctest LOG: adds the "N tests failed out of M" figures of a ctest log to the totals.
count_ctest() {
  local log=$1 line total nfail
  # ctest colours its summary when stdout is a terminal (the nested runner's is): strip that.
  line=$(sed -E 's/\x1b\[[0-9;]*m//g' "$log" | grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' | tail -1)
  if [ -z "$line" ]; then
    if grep -q 'No tests were found' "$log"; then return 1; fi
    return 1
  fi
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  nfail=$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$line")
  passed=$((passed + total - nfail))
  failed=$((failed + nfail))
}

# run_ctest NAME BUILD_DIR LABEL [WRAPPER...]
run_ctest() {
  local name=$1 dir=$2 label=$3
  shift 3
  local log=$LOG_DIR/$name.log
  step "$name: ctest -L $label"
  local exclude=()
  [ -z "${EXCLUDE_LABEL:-}" ] || exclude=(-LE "^${EXCLUDE_LABEL}\$")
  (cd "$dir" && "$@" ctest -L "^${label}\$" "${exclude[@]}" --output-on-failure --no-tests=error \
     -j "$JOBS" --timeout 600) 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if ! count_ctest "$log"; then
    echo "$name: ctest printed no summary (rc=$rc)"
    failed=$((failed + 1))
    failures+=("$name (no tests ran)")
    return
  fi
  [ "$rc" -eq 0 ] || failures+=("$name")
}

step "setup"
./scripts/setup.sh || { echo "setup failed"; exit 1; }

step "build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DAIRLOCK_WERROR=ON >/dev/null || exit 1
ninja -C "$BUILD_DIR" -j "$JOBS" || { echo "build failed"; exit 1; }
mkdir -p "$LOG_DIR"

step "guest kernel and images"
./scripts/fetch-kernel.sh || { echo "fetch-kernel failed"; exit 1; }
./scripts/build-initramfs.sh || { echo "build-initramfs failed"; exit 1; }
if [ -x scripts/build-sandbox-image.sh ]; then
  BUILD_DIR="$BUILD_DIR" ./scripts/build-sandbox-image.sh || { echo "build-sandbox-image failed"; exit 1; }
fi
# The Debian root image the persistence tests boot (tests/kvm/persist_test.cc); cached by content.
./scripts/build-rootfs.sh || { echo "build-rootfs failed"; exit 1; }

run_ctest unit "$BUILD_DIR" unit
run_ctest proxy "$BUILD_DIR" proxy
# Sandbox network namespaces and taps (needs root; packets stay in namespaces the tests make).
run_ctest net "$BUILD_DIR" net

# run_kvm: the KVM tests, one at a time, through scripts/kvm-run (natively on hardware KVM, else in
# the nested runner). The nested runner can die under a test for reasons outside airlock (TCG's
# nested-SVM emulation now and then leaves a runner CPU stuck in VMRUN; kvm-run then ends with
# 125, or 124 on its timeout, without a result for that test). Then the tests without a result
# run again in a fresh runner, at most three runners in all; each death is reported, and tests
# that never got a result count as failed. Results are counted per test from ctest's lines.
run_kvm() {
  local log=$LOG_DIR/kvm.log all=() remaining=() attempt rc first list n
  local -A result=()
  step "kvm: ctest -L kvm"
  mapfile -t all < <(cd "$BUILD_DIR" && ctest -N -L '^kvm$' | sed -nE 's/^ *Test +#([0-9]+):.*/\1/p')
  if [ ${#all[@]} -eq 0 ]; then
    echo "kvm: no tests found"
    failed=$((failed + 1))
    failures+=("kvm (no tests found)")
    return
  fi
  : >"$log"
  remaining=("${all[@]}")
  for attempt in 1 2 3; do
    first=${remaining[0]}
    list=$(IFS=,; echo "${remaining[*]}")
    echo "kvm: runner $attempt: ${#remaining[@]} tests" | tee -a "$log"
    (cd "$BUILD_DIR" && "$ROOT/scripts/kvm-run" --timeout 2400 --smp 4 --mem 8192 -- \
      ctest -I "$first,$first,1,$list" --output-on-failure -j 1 --timeout 600) 2>&1 |
      tee "$log.$attempt"
    rc=${PIPESTATUS[0]}
    cat "$log.$attempt" >>"$log"
    while read -r n verdict; do
      result[$n]=$verdict
    done < <(sed -E 's/\x1b\[[0-9;]*m//g' "$log.$attempt" |
             sed -nE 's/^ *[0-9]+\/[0-9]+ +Test +#([0-9]+): .*(Passed|\*\*\*[A-Za-z]+).*/\1 \2/p' |
             awk '{ print $1, ($2 == "Passed" ? "pass" : "fail") }')
    remaining=()
    for n in "${all[@]}"; do [ -n "${result[$n]:-}" ] || remaining+=("$n"); done
    if [ "$rc" -ne 124 ] && [ "$rc" -ne 125 ]; then break; fi
    echo "kvm: the runner died (kvm-run status $rc) with ${#remaining[@]} tests left" | tee -a "$log"
    [ ${#remaining[@]} -gt 0 ] || break
  done
  local npass=0 nfail=0
  for n in "${all[@]}"; do
    case "${result[$n]:-none}" in
      pass) npass=$((npass + 1)) ;;
      fail) nfail=$((nfail + 1)) ;;
      none) nfail=$((nfail + 1)); echo "kvm: test #$n got no result" | tee -a "$log" ;;
    esac
  done
  echo "kvm: $npass passed, $nfail failed of ${#all[@]}" | tee -a "$log"
  passed=$((passed + npass))
  failed=$((failed + nfail))
  [ "$nfail" -eq 0 ] || failures+=("kvm")
}

if [ "${SKIP_KVM:-0}" != 1 ]; then
  run_kvm
fi

if [ "${SKIP_ASAN:-0}" != 1 ]; then
  step "sanitizer build ($ASAN_BUILD_DIR)"
  cmake -S . -B "$ASAN_BUILD_DIR" -G Ninja -DAIRLOCK_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
    -DAIRLOCK_SANITIZE=address,undefined >/dev/null || exit 1
  # Only what the unit and proxy tests need.
  # The C ABI's own tests load the sanitized libairlock; the Python and Node unit suites
  # (label bindings) need an unsanitized interpreter and run in the first build only.
  targets=$(ninja -C "$ASAN_BUILD_DIR" -t targets all 2>/dev/null |
            grep -oE '^(tests/(proxy/)?(unit|proxy)_[A-Za-z0-9_]+|bin/airlock-proxy|tests/capi/capi_(header_c99|header_cxx|misuse)):' |
            tr -d ':' | sort -u)
  targets="$targets airlock_capi airlock-guest-agent" # the agent: unit.agent runs it on the host
  ninja -C "$ASAN_BUILD_DIR" -j "$JOBS" $targets || { echo "sanitizer build failed"; exit 1; }
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  mkdir -p "$ASAN_BUILD_DIR/test-logs"
  LOG_DIR=$ASAN_BUILD_DIR/test-logs EXCLUDE_LABEL=bindings run_ctest asan-unit "$ASAN_BUILD_DIR" unit
  LOG_DIR=$ASAN_BUILD_DIR/test-logs run_ctest asan-proxy "$ASAN_BUILD_DIR" proxy
fi

# run_fuzz: every libFuzzer target in tests/fuzz (<name>_fuzz.cc, seed corpus in corpus/<name>),
# built with clang (ASan + UBSan + fuzzer instrumentation) in FUZZ_BUILD_DIR, runs for
# FUZZ_SECONDS on a scratch copy of its seed corpus (new inputs land there, not in the tree).
# Each target is one test: it passes only if libFuzzer ends with status 0 and its log has no
# crash, leak, timeout, OOM or sanitizer report; a reproducer is kept in $LOG_DIR/fuzz/.
# BEGIN fuzz phase
run_fuzz() {
  local dir=$LOG_DIR/fuzz src name corpus scratch log rc targets=()
  step "fuzz build ($FUZZ_BUILD_DIR)"
  for src in tests/fuzz/*_fuzz.cc; do
    name=$(basename "$src" .cc)
    targets+=("$name")
  done
  if [ ${#targets[@]} -eq 0 ] ||
     ! cmake -S . -B "$FUZZ_BUILD_DIR" -G Ninja -DCMAKE_C_COMPILER=clang \
         -DCMAKE_CXX_COMPILER=clang++ -DAIRLOCK_WERROR=ON -DAIRLOCK_FUZZ=ON >/dev/null ||
     ! ninja -C "$FUZZ_BUILD_DIR" -j "$JOBS" "${targets[@]/#/tests/fuzz/}"; then
    echo "fuzz: build failed"
    failed=$((failed + 1))
    failures+=("fuzz (build)")
    return
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  for name in "${targets[@]}"; do
    step "fuzz: $name for ${FUZZ_SECONDS}s"
    corpus=tests/fuzz/corpus/${name%_fuzz}
    scratch=$dir/$name.corpus
    log=$dir/$name.log
    mkdir -p "$scratch"
    [ -d "$corpus" ] && cp -r "$corpus"/. "$scratch"/
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$FUZZ_BUILD_DIR/tests/fuzz/$name" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/$name-" "$scratch" \
      >"$log" 2>&1
    rc=$?
    tail -n 3 "$log"
    if [ "$rc" -eq 0 ] && ! grep -qE '^(==[0-9]+==)?ERROR: |runtime error: |^SUMMARY: ' "$log"; then
      echo "fuzz: $name passed ($(sed -nE 's/^stat::number_of_executed_units: *//p' "$log") runs)"
      passed=$((passed + 1))
    else
      echo "fuzz: $name FAILED (status $rc); log $log, reproducer $dir/$name-*"
      grep -E 'ERROR: |runtime error: |^SUMMARY: |Test unit written' "$log" | head -n 20
      failed=$((failed + 1))
      failures+=("fuzz:$name")
    fi
    rm -rf "$scratch"
  done
}
# END fuzz phase

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  run_fuzz
fi

echo
if [ ${#failures[@]} -gt 0 ]; then echo "failed groups: ${failures[*]}"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
