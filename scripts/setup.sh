#!/usr/bin/env bash
# xdpctl's one set-up script, used by the README, .ci/run and vagrant/.
#
#   scripts/setup.sh demo    set up, then run the demo on a built-in veth lab
#   scripts/setup.sh test    set up, then run the whole test suite (unit, kernel,
#                            and the kernel matrix: scripts/matrix.sh)
#   scripts/setup.sh setup   set up only
#
# Set-up installs what the system needs (BCC's Python bindings, kernel headers
# or the distribution's fallback, bpftool, xdp-tools, iproute2) and a virtual
# environment in .venv that can see BCC. It is idempotent. It runs as root, or
# as a user with sudo (then only the steps that need root use sudo).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
VENV=$REPO/.venv
XDPCTL=$VENV/bin/xdpctl

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        # Bytecode written as root into the user's checkout would be root's.
        sudo env PYTHONDONTWRITEBYTECODE=1 "$@"
    else
        die "this step needs root: run as root, or install sudo"
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
available() { [ -n "$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]; }

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
}

# The headers package for this kernel, or the distribution's fallback. XDP
# programs need only the stable UAPI headers, so another release's do.
headers_package() {
    local release fallback
    release=$(uname -r)
    if [ -f "/lib/modules/$release/build/include/linux/kconfig.h" ] || [ -f /sys/kernel/kheaders.tar.xz ]; then
        return 0  # exact headers (or the kernel's own) are there already
    fi
    if [ "${ID:-}" = ubuntu ]; then
        fallback=linux-headers-generic
    else
        fallback=linux-headers-$(dpkg --print-architecture)
    fi
    if installed "$fallback"; then
        echo "$fallback"
        return 0
    fi
    apt_update_once
    if available "linux-headers-$release"; then
        echo "linux-headers-$release"
    else
        echo "$fallback"
    fi
}

# Debian's prometheus package enables and starts its own server, listening on
# every address (:9090). The tests need only the binary, and start their own
# on loopback; so the server this set-up installed is stopped and disabled.
quiet_prometheus() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then  # sysvinit: the package's init script
        as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null 2>&1 && as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    note "prometheus: installed for the tests; its own server is stopped and disabled (the tests start theirs on loopback)"
}

install_system() {
    [ -r /etc/os-release ] || die "cannot tell the distribution (/etc/os-release is missing)"
    # shellcheck disable=SC1091
    . /etc/os-release
    case " ${ID:-} ${ID_LIKE:-} " in
        *" debian "* | *" ubuntu "*) ;;
        *) die "this script sets up Debian and Ubuntu; on ${PRETTY_NAME:-this system} install BCC's Python bindings, kernel headers and bpftool by hand (docs/install.md)" ;;
    esac

    local want=(python3-bpfcc python3-venv iproute2 util-linux ca-certificates)
    # prometheus: the exporter's kernel test has a real Prometheus server scrape it,
    # which the test starts on loopback itself.
    # tshark: the trace's kernel tests read its pcapng back with it (its setuid
    # dumpcap is not wanted: preseeded off before the install).
    local optional=(bpftool xdp-tools prometheus tshark)
    local headers
    headers=$(headers_package)
    [ -n "$headers" ] && want+=("$headers")

    local missing=()
    for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
    for p in "${optional[@]}"; do
        installed "$p" && continue
        apt_update_once
        if available "$p"; then missing+=("$p"); else note "$p is not packaged here; the tests that use it will say so"; fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_update_once
        case " ${missing[*]} " in
            *" tshark "*) echo "wireshark-common wireshark-common/install-setuid boolean false" |
                as_root debconf-set-selections ;;
        esac
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        case " ${missing[*]} " in
            *" prometheus "*) quiet_prometheus ;;
        esac
    fi

    local release
    release=$(uname -r)
    if [ -f "/lib/modules/$release/build/include/linux/kconfig.h" ]; then
        note "kernel headers: exact, for $release"
    elif [ -f /sys/kernel/kheaders.tar.xz ]; then
        note "kernel headers: from the kernel itself (/sys/kernel/kheaders.tar.xz)"
    elif [ -n "$headers" ] && [ "$headers" != "linux-headers-$release" ]; then
        note "kernel headers: none are packaged for $release; using $headers as the fallback"
        note "(xdpctl compiles XDP programs against them: XDP needs only the stable UAPI headers)"
    fi
}

make_venv() {
    [ -x /usr/bin/python3 ] || die "/usr/bin/python3 is missing"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV (with the system's site packages, where BCC lives)"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
    fi
    local stamp
    stamp="$VENV/.xdpctl-installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        say "installing xdpctl and its test tools into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
        rm -f "$VENV"/.xdpctl-installed-*
        touch "$stamp"
    fi
    "$VENV/bin/python" -c "import bcc" 2>/dev/null \
        || die "BCC is not importable from $VENV; is python3-bpfcc installed for /usr/bin/python3?"
    note "xdpctl is at $XDPCTL"
}

setup() {
    install_system
    make_venv
}

run() {
    printf '\n\033[1m$ %s\033[0m\n' "$*"
    as_root "$@"
}

demo() {
    local lab=demo iface=xl-demo
    say "demo: a veth lab, --drop-non-ip, a mixed frame set, the counters"
    if as_root "$XDPCTL" lab list --json | grep -q "\"name\": \"$lab\""; then
        as_root "$XDPCTL" lab down "$lab" >/dev/null  # left by an interrupted demo
    fi
    trap 'as_root "$XDPCTL" lab down "$lab" >/dev/null 2>&1 || true' EXIT
    run "$XDPCTL" lab up "$lab"
    run "$XDPCTL" attach "$iface" --drop-non-ip
    run "$XDPCTL" gen --lab "$lab" --profile mix --count 2100
    run "$XDPCTL" stats "$iface"
    run "$XDPCTL" status
    run "$XDPCTL" detach "$iface"
    run "$XDPCTL" lab down "$lab"
    trap - EXIT
    say "demo done: compare what gen sent with what stats counted, class by class"
    note "(with --drop-non-ip, arp and other (LLDP, 802.3) land under drop, every IP class under pass)"
    say "selftest: the same checks done for you, every counter compared with what it must be"
    run "$XDPCTL" selftest
}

# Unit tests need no privileges, and prove it: as root, they run as `nobody`
# when the checkout is readable to it. Kernel tests then run as root, and must
# run: XDPCTL_REQUIRE_KERNEL_TESTS=1 turns a missing requirement into a failure.
run_tests() {
    local py=$VENV/bin/python common=(-p no:cacheprovider -q -rs)
    say "unit tests (no privileges)"
    if [ "$(id -u)" -ne 0 ]; then
        "$py" -m pytest "${common[@]}" tests/unit
    elif setpriv --reuid=65534 --regid=65534 --clear-groups -- test -r "$REPO/pyproject.toml" -a -x "$py" 2>/dev/null; then
        setpriv --reuid=65534 --regid=65534 --clear-groups -- env HOME=/tmp PYTHONDONTWRITEBYTECODE=1 \
            "$py" -m pytest "${common[@]}" tests/unit
    else
        note "the checkout is not readable to nobody; running the unit tests as root"
        "$py" -m pytest "${common[@]}" tests/unit
    fi
    say "kernel tests (root: real XDP programs on veths in namespaces)"
    # Into the machine's compile cache, which the matrix below reads: its host
    # checks and its guests then load what these tests compiled.
    as_root env XDPCTL_REQUIRE_KERNEL_TESTS=1 XDPCTL_CACHE_DIR=/var/cache/xdpctl \
        "$py" -m pytest "${common[@]}" --durations=15 tests/kernel
    # The kernels users run: every variant of the program, the kernel tests
    # marked `matrix` and selftest, on this kernel and in VMs booted with
    # Debian 12's 6.1 and 6.12 (scripts/vm.sh installs what it needs).
    say "kernel matrix (this kernel, then Debian 12's 6.1 and 6.12 in VMs)"
    "$REPO/scripts/matrix.sh"
}

case "${1:-setup}" in
    setup) setup ;;
    demo) setup; demo ;;
    test) setup; run_tests ;;
    *) die "usage: scripts/setup.sh [setup|demo|test]" ;;
esac
