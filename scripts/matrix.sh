#!/usr/bin/env bash
# The kernel matrix: the checks that prove xdpctl's datapath on each kernel it
# supports, run on this machine's kernel and, through scripts/vm.sh, in VMs
# booted with Debian 12's 6.1 and 6.12. It prints a table, kernel by check,
# with each guest's wall time, and exits non-zero on any failure.
#
#   scripts/matrix.sh [KERNEL...]     KERNEL: 6.1, 6.12 (the default: both)
#   scripts/matrix.sh --host-only     this kernel alone
#
# The checks (docs/testing.md says why these), one column each in the table:
#   the kernel tests marked `matrix`, one column per test file: variants
#              (every variant of xdpctl/datapath/variants.py loads), prog_run
#              and rules_prog_run (classification and the rule engine through
#              BPF_PROG_TEST_RUN), attach_stats and rules (real frames through
#              real programs on veths: counters, a replace, a program swap),
#              and each datapath feature's own
#   selftest   `xdpctl selftest`: lab, attach, traffic, every counter checked
#
# The host runs them first, into the compile cache (/var/cache/xdpctl); a
# guest sees that cache read-only, so it verifies and loads each program
# without compiling it (a BCC compile takes ~150 s in an emulated guest).
# Run as root or as a user with sudo, after scripts/setup.sh setup.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=$REPO/.venv/bin/python
export XDPCTL_CACHE_DIR=/var/cache/xdpctl
GUEST_TIMEOUT=${XDPCTL_MATRIX_GUEST_TIMEOUT:-2400}

# --- one kernel's checks (on the host, or inside a guest) ------------------

run_check() {
    local name=$1 start rc
    shift
    start=$(date +%s)
    printf '\n==> matrix check %s on %s\n' "$name" "$(uname -r)"
    if "$@"; then rc=0; else rc=$?; fi
    printf 'xdpctl-matrix: %s %s %s %ss\n' "$(uname -r)" "$name" "$([ "$rc" -eq 0 ] && echo ok || echo "FAIL($rc)")" \
        "$(( $(date +%s) - start ))"
}

# One pytest run (a guest pays Python's start-up and the collection once),
# a line per test as it ends and the slowest tests at the end (a guest's
# line of dots shows only when full: minutes), then one result line per
# test file, from pytest's own JUnit report: a file with any test failed or
# in error fails, with the count.
kernel_tests() {
    local xml rc=0
    xml=$(mktemp -t xdpctl-matrix-XXXXXX.xml)
    printf '\n==> matrix kernel tests (-m matrix) on %s\n' "$(uname -r)"
    "$PY" -m pytest -p no:cacheprovider -v -rs -s --durations=12 -m matrix --junitxml="$xml" tests/kernel || rc=$?
    "$PY" - "$xml" "$(uname -r)" "$rc" <<'PY'
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

path, release, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = defaultdict(lambda: [0, 0, 0.0])  # tests, failed, seconds
try:
    cases = ET.parse(path).getroot().iter("testcase")
except (OSError, ET.ParseError):
    cases = []
for case in cases:
    name = case.get("classname", "").split(".")[-1].removeprefix("test_")
    f = files[name]
    f[0] += 1
    f[1] += any(c.tag in ("failure", "error") for c in case)
    f[2] += float(case.get("time", 0))
if rc and not any(failed for _, failed, _ in files.values()):
    print(f"xdpctl-matrix: {release} pytest FAIL({rc}) 0s")  # no test failed, yet pytest did
for name, (n, failed, took) in sorted(files.items()):
    cell = f"FAIL({failed}/{n})" if failed else "ok"
    print(f"xdpctl-matrix: {release} {name} {cell} {took:.0f}s")
PY
    rm -f "$xml"
}

checks() {
    export XDPCTL_REQUIRE_KERNEL_TESTS=1
    kernel_tests
    run_check selftest "$PY" -m xdpctl selftest
}

if [ "${1:-}" = "--checks" ]; then  # what vm.sh runs in a guest (and the host runs as itself)
    checks
    exit 0
fi

# --- the matrix --------------------------------------------------------------

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo env PYTHONDONTWRITEBYTECODE=1 "$@"; fi
}

kernels=("$@")
if [ "${1:-}" = "--host-only" ]; then
    kernels=()
elif [ "${#kernels[@]}" -eq 0 ]; then
    kernels=(6.1 6.12)
fi
log=$(mktemp -t xdpctl-matrix.XXXXXX)
trap 'rm -f "$log" "$log.guest"' EXIT
declare -A wall

printf '==> kernel matrix: %s (host) and %s\n' "$(uname -r)" "${kernels[*]:-no VM}"
start=$(date +%s)
as_root env XDPCTL_CACHE_DIR="$XDPCTL_CACHE_DIR" "$0" --checks 2>&1 | tee -a "$log"
wall[host]=$(( $(date +%s) - start ))
for k in "${kernels[@]}"; do
    start=$(date +%s)
    : >"$log.guest"
    # As root, as the host's checks: the compile cache is root's (0700), and
    # qemu must open it to show it to the guest.
    as_root scripts/vm.sh --timeout "$GUEST_TIMEOUT" "$k" -- env XDPCTL_CACHE_DIR="$XDPCTL_CACHE_DIR" \
        scripts/matrix.sh --checks 2>&1 | tee "$log.guest" || true
    cat "$log.guest" >>"$log"
    # The guest's wall time from boot to exit, as vm.sh measured it (not the
    # wait for another VM on the machine); else from here.
    wall[$k]=$(grep -E '^vm.sh: .*(exit code [0-9]+|timed out) after [0-9]+s' "$log.guest" | grep -oE '[0-9]+s' | tail -n 1 | tr -d s)
    [ -n "${wall[$k]}" ] || wall[$k]=$(( $(date +%s) - start ))
done

# The table: one row per kernel, one column per check the host ran; a check
# that printed no result in a guest (it timed out, or died) counts as failed.
printf '\n==> kernel matrix\n'
mapfile -t CHECKS < <(awk -v r="$(uname -r)" '$1 == "xdpctl-matrix:" && $2 == r {print $3}' "$log" | awk '!seen[$0]++')
[ "${#CHECKS[@]}" -gt 0 ] || CHECKS=(kernel-tests)
printf '%-26s' kernel
for c in "${CHECKS[@]}"; do printf ' %-16s' "$c"; done
printf ' %s\n' "wall"
failed=0
release_of() { awk '/^vm.sh: booting /{print $3}' "$log" | sed -n "$1p"; }
releases=("$(uname -r)")
i=1
for k in "${kernels[@]}"; do
    releases+=("$(release_of "$i" || true)")
    i=$((i + 1))
done
names=(host "${kernels[@]}")
for idx in "${!releases[@]}"; do
    rel=${releases[$idx]}
    printf '%-26s' "${rel:-${names[$idx]} (did not boot)}"
    for c in "${CHECKS[@]}"; do
        cell=$(awk -v r="$rel" -v c="$c" '$1 == "xdpctl-matrix:" && $2 == r && $3 == c {print $4 " " $5}' "$log" | tail -n 1)
        [ -n "$cell" ] && [ -n "$rel" ] || cell="FAIL(none)"
        case $cell in ok*) ;; *) failed=1 ;; esac
        printf ' %-16s' "$cell"
    done
    printf ' %ss\n' "${wall[${names[$idx]}]}"
done
exit "$failed"
