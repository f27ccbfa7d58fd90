#!/usr/bin/env bash
# The kernel matrix: the checks that prove xdpctl's datapath on each kernel it
# supports, run on this machine's kernel and, through scripts/vm.sh, in VMs
# booted with Debian 12's 6.1 and 6.12. It prints a table, kernel by check,
# with each guest's wall time, and exits non-zero on any failure.
#
#   scripts/matrix.sh [KERNEL...]     KERNEL: 6.1, 6.12 (the default: both)
#
# The checks (docs/testing.md says why these):
#   variants   every variant of the program loads (tests/kernel/test_variants.py,
#              which walks xdpctl/datapath/variants.py)
#   datapath   the kernel tests marked `matrix`: real frames through real
#              programs on veths, exact counters, rules, replaces, each feature
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
CHECKS=(variants datapath selftest)
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

checks() {
    local pytest=("$PY" -m pytest -p no:cacheprovider -q -rs)
    export XDPCTL_REQUIRE_KERNEL_TESTS=1
    run_check variants "${pytest[@]}" -s tests/kernel/test_variants.py
    run_check datapath "${pytest[@]}" -m matrix tests/kernel
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
[ "${#kernels[@]}" -gt 0 ] || kernels=(6.1 6.12)
log=$(mktemp -t xdpctl-matrix.XXXXXX)
trap 'rm -f "$log"' EXIT
declare -A wall

printf '==> kernel matrix: %s (host) and %s\n' "$(uname -r)" "${kernels[*]}"
start=$(date +%s)
as_root env XDPCTL_CACHE_DIR="$XDPCTL_CACHE_DIR" "$0" --checks 2>&1 | tee -a "$log"
wall[host]=$(( $(date +%s) - start ))
for k in "${kernels[@]}"; do
    start=$(date +%s)
    scripts/vm.sh --timeout "$GUEST_TIMEOUT" "$k" -- env XDPCTL_CACHE_DIR="$XDPCTL_CACHE_DIR" \
        scripts/matrix.sh --checks 2>&1 | tee -a "$log" || true
    wall[$k]=$(( $(date +%s) - start ))
done

# The table: one row per kernel, one column per check; a check that printed
# no result (the guest timed out, or died) counts as failed.
printf '\n==> kernel matrix\n'
printf '%-26s' kernel
for c in "${CHECKS[@]}"; do printf ' %-14s' "$c"; done
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
        printf ' %-14s' "$cell"
    done
    printf ' %ss\n' "${wall[${names[$idx]}]}"
done
exit "$failed"
