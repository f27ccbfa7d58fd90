#!/usr/bin/env bash
# Run a command as root under another Linux kernel, in a virtme-ng VM.
#
#   scripts/vm.sh [OPTIONS] KERNEL -- COMMAND [ARG...]
#
#   KERNEL   6.1    Debian 12's default kernel (linux-image-amd64)
#            6.12   Debian 12's 6.12 LTS kernel (linux-image-6.12-amd64)
#            PATH   a vmlinuz (its modules, if any, from /lib/modules/<release>)
#
#   --timeout SECONDS  end the VM after this long (default 3600, or
#                      $XDPCTL_VM_TIMEOUT); the exit code is then 124
#   --memory SIZE      guest memory (default 4G)
#   --cpus N           guest CPUs (default 2)
#   --rodir DIR        show host directory DIR to the guest read-only (may
#                      repeat); /var/cache/xdpctl is shown when it exists
#   --overlay DIR      let the guest write under DIR (host side unchanged:
#                      writes go to a guest-only overlay); may repeat
#   --console          show the guest's boot console (slow; for debugging)
#
# Only one VM runs at a time on a machine: a second vm.sh waits for the first.
#
# Examples:
#   scripts/vm.sh 6.1 -- uname -r
#   scripts/vm.sh 6.12 -- .venv/bin/xdpctl -v attach lo
#   scripts/vm.sh --timeout 1800 6.1 -- sh -c 'cmd1; cmd2' > vm.log 2>&1
#
# The guest sees this machine's root file system read-only, with throw-away
# overlays where it writes (/etc, /usr, /var, /tmp, /home, ...; /run,
# /var/cache, /var/tmp and /var/log are empty tmpfs): the checkout and its
# .venv work as they are, and nothing the guest writes reaches the host. The
# command runs as root in the current directory, with bpffs mounted on
# /sys/fs/bpf and veth loadable (Debian's kernels load it as a module from
# /lib/modules, which the guest sees). Its exit code is vm.sh's.
#
# What it needs it installs, idempotently, as root or through sudo: qemu,
# busybox-static and the kernel's package from Debian, and virtme-ng from
# PyPI in a venv of its own ($XDPCTL_VM_HOME, default /var/lib/xdpctl-vm),
# never in the project's .venv. KVM is used where it really works (a CPU
# with vmx or svm, and /dev/kvm usable); otherwise qemu emulates the CPU
# (TCG): the guest boots in well under a minute, but everything in it runs
# about 100 times slower (a BCC compile: ~150 s).
set -euo pipefail

VM_HOME=${XDPCTL_VM_HOME:-/var/lib/xdpctl-vm}
VNG_VENV=$VM_HOME/venv
VNG_VERSION=1.42  # the version this script was written and checked against
TIMEOUT=${XDPCTL_VM_TIMEOUT:-3600}
MEMORY=4G
CPUS=2
CONSOLE=0
RODIRS=()
OVERLAYS=()

say() { printf 'vm.sh: %s\n' "$*" >&2; }
die() { printf 'vm.sh: error: %s\n' "$*" >&2; exit 125; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit "${1:-125}"; }

# The same helper as scripts/setup.sh: root as is, or a user with sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "this step needs root: run as root, or install sudo"
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

APT_UPDATED=0
apt_install() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# --- arguments -------------------------------------------------------------

while [ $# -gt 0 ]; do
    case $1 in
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --memory) MEMORY=${2:?}; shift 2 ;;
        --memory=*) MEMORY=${1#*=}; shift ;;
        --cpus) CPUS=${2:?}; shift 2 ;;
        --cpus=*) CPUS=${1#*=}; shift ;;
        --rodir) RODIRS+=("${2:?}"); shift 2 ;;
        --rodir=*) RODIRS+=("${1#*=}"); shift ;;
        --overlay) OVERLAYS+=("${2:?}"); shift 2 ;;
        --overlay=*) OVERLAYS+=("${1#*=}"); shift ;;
        --console) CONSOLE=1; shift ;;
        -h | --help) usage 0 ;;
        --) die "no KERNEL before --" ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -ge 3 ] && [ "$2" = "--" ] || usage
KERNEL=$1
shift 2
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout takes whole seconds, not '$TIMEOUT'"
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "--cpus takes a number, not '$CPUS'"

# --- what the VM needs -----------------------------------------------------

# The newest /boot/vmlinuz-<series>.* of Debian's amd64 flavour.
newest_vmlinuz() {
    local v
    v=$(ls -1 /boot/vmlinuz-"$1".*-amd64 /boot/vmlinuz-"$1".*+deb*-amd64 2>/dev/null | sort -uV | tail -n 1)
    [ -n "$v" ] && echo "$v"
}

resolve_kernel() {
    local package series
    case $KERNEL in
        6.1) package=linux-image-amd64 series=6.1 ;;
        6.12) package=linux-image-6.12-amd64 series=6.12 ;;
        */* | vmlinuz*)
            [ -r "$KERNEL" ] || die "cannot read the kernel image $KERNEL"
            VMLINUZ=$(readlink -f "$KERNEL")
            return 0 ;;
        *) die "KERNEL is 6.1, 6.12 or the path of a vmlinuz, not '$KERNEL'" ;;
    esac
    if ! VMLINUZ=$(newest_vmlinuz "$series") || ! installed "$package"; then
        apt_install "$package"
        VMLINUZ=$(newest_vmlinuz "$series") || die "$package is installed but /boot has no vmlinuz-$series.*"
    fi
    # Debian's images are world-readable; some distributions' are root's only.
    [ -r "$VMLINUZ" ] || die "$VMLINUZ is not readable to $(id -un)"
}

ensure_vng() {
    # qemu and busybox-static (virtme-ng's initramfs) from Debian; python3-venv for the venv.
    apt_install qemu-system-x86 busybox-static python3-venv
    local stamp=$VNG_VENV/.virtme-ng-$VNG_VERSION
    [ -e "$stamp" ] && [ -x "$VNG_VENV/bin/vng" ] && return 0
    say "installing virtme-ng $VNG_VERSION into $VNG_VENV"
    as_root mkdir -p "$VM_HOME"
    [ -x "$VNG_VENV/bin/python" ] || as_root /usr/bin/python3 -m venv "$VNG_VENV"
    as_root "$VNG_VENV/bin/python" -m pip install -q --disable-pip-version-check "virtme-ng==$VNG_VERSION"
    as_root touch "$stamp"
}

# KVM only where it really works: /dev/kvm can exist (and even create VMs)
# on a CPU without vmx or svm, and a guest started with KVM there hangs.
kvm_works() {
    [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    grep -qwE 'vmx|svm' /proc/cpuinfo
}

# Modules a Debian kernel's udev loads in the guest that it does not need.
NOT_NEEDED=kvm,kvm_amd,kvm_intel,crct10dif_pclmul,crc32_pclmul,crc32c_intel,ghash_clmulni_intel
NOT_NEEDED+=,polyval_clmulni,sha512_ssse3,sha256_ssse3,sha1_ssse3,aesni_intel,sr_mod,sg,ahci
NOT_NEEDED+=,iTCO_wdt,intel_pmc_bxt,psmouse,serio_raw,pcspkr,i2c_i801,lpc_ich,powernow_k8,evdev

# --- the run ---------------------------------------------------------------

resolve_kernel
ensure_vng
# One VM at a time on this machine: two emulated guests on two cores would
# each run at half speed, and both could pass their timeouts. The lock is on
# the runner's own (root-owned) directory, held until this script exits.
exec 9<"$VM_HOME"
if ! flock -n 9; then
    say "another VM is running on this machine; waiting for it to finish"
    flock 9
fi
export PATH=$VNG_VENV/bin:$PATH  # vng runs virtme-run by name

release=$(basename "$VMLINUZ")
release=${release#vmlinuz-}
accel=KVM
vng_args=(--run "$VMLINUZ" --user root --cpus "$CPUS" --memory "$MEMORY" --cwd "$PWD"
          --name "xdpctl-vm-$$"
          # Debian 12's virtiofsd does not start for virtme-ng 1.42: it would
          # wait ~4 s for it, then fall back to 9p anyway.
          --force-9p
          # udev loads drivers for every emulated device and CPU feature;
          # their probes and crypto self-tests took 20-30 s of an emulated
          # boot, and nothing run here needs them.
          --append "modprobe.blacklist=$NOT_NEEDED edd=off")
if ! kvm_works; then
    accel="TCG (no KVM: $( [ -c /dev/kvm ] && echo "the CPU has no vmx/svm, or /dev/kvm is not usable" || echo "no /dev/kvm"))"
    vng_args+=(--disable-kvm)
fi
# virtme-ng mounts an empty tmpfs on /var/cache: show the host's xdpctl cache,
# where qemu (running as this user) can open it: it is root's, mode 0700.
if [ -d /var/cache/xdpctl ]; then
    if [ -r /var/cache/xdpctl ] && [ -x /var/cache/xdpctl ]; then
        RODIRS+=(/var/cache/xdpctl)
    else
        say "note: the compile cache /var/cache/xdpctl is root's; the guest compiles what it loads (run vm.sh as root, or through sudo, to show it the cache)"
    fi
fi
for d in "${RODIRS[@]}"; do
    [ -d "$d" ] || die "--rodir $d: no such directory"
    d=$(readlink -f "$d")
    vng_args+=(--rodir "$d=$d")
done
for d in "${OVERLAYS[@]}"; do
    [ -d "$d" ] || die "--overlay $d: no such directory"
    vng_args+=(--overlay-rwdir "$(readlink -f "$d")")
done
[ "$CONSOLE" -eq 1 ] && vng_args+=(--verbose)

# Runs in the guest: bpffs, veth, then the command in this directory.
guest_script="set -u
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || { echo 'vm.sh (guest): cannot mount bpffs' >&2; exit 125; }
if [ -d /lib/modules/\$(uname -r) ]; then
    modprobe veth || echo 'vm.sh (guest): warning: cannot load the veth module' >&2
fi
cd $(printf '%q' "$PWD") || exit 125
$(printf '%q ' "$@")"
# The guest runs --exec with sh: hand bash the script as base64, which needs no quoting.
vng_args+=(--exec "exec bash -c \"\$(echo '$(printf '%s' "$guest_script" | base64 -w0)' | base64 -d)\"")

# Reap this run's qemu (named xdpctl-vm-$$) if it outlived vng.
cleanup() {
    local pid
    for pid in $(pgrep -f -- "xdpctl-vm-$$" 2>/dev/null || true); do
        [ "$pid" != "$$" ] || continue
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx -- "xdpctl-vm-$$" || continue
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# qemu opens /proc/self/fd/1 and 2 anew, truncating a file they were
# redirected to (vm.sh > log 2>&1 would lose output): give it pipes then.
pipes=()
if [ ! -t 1 ]; then exec 3>&1 1> >(cat >&3); pipes+=($!); fi
if [ ! -t 2 ]; then exec 4>&2 2> >(cat >&4); pipes+=($!); fi

say "booting $release with $CPUS CPUs and $MEMORY, $accel; timeout ${TIMEOUT}s"
start=$(date +%s)
status=0
if [ -t 0 ]; then
    # Interactive: the guest must own the terminal, so timeout cannot put it
    # in a process group of its own; the EXIT trap reaps qemu instead.
    timeout --foreground --kill-after=20 "$TIMEOUT" vng "${vng_args[@]}" || status=$?
else
    # timeout signals its whole process group (vng, virtme-run and qemu).
    timeout --kill-after=20 "$TIMEOUT" vng "${vng_args[@]}" <&0 &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM HUP
    while :; do
        wait "$child" && status=0 || status=$?
        kill -0 "$child" 2>/dev/null || break  # a trapped signal interrupted wait
    done
    trap - INT TERM HUP
fi
elapsed=$(( $(date +%s) - start ))
# 124 (or 137 after --kill-after) is timeout's, when the time is up; before
# that, it is the command's own exit code.
if { [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; } && [ "$elapsed" -ge "$TIMEOUT" ]; then
    say "timed out after ${elapsed}s (--timeout $TIMEOUT); the VM was stopped"
    status=124
else
    say "$release: exit code $status after ${elapsed}s"
fi
# Let the pipes drain before vm.sh exits.
if [ "${#pipes[@]}" -gt 0 ]; then
    [ ! -t 1 ] && exec 1>&3
    [ ! -t 2 ] && exec 2>&4
    wait "${pipes[@]}" 2>/dev/null || true
fi
exit "$status"
