"""xdpctl: an eBPF/XDP packet-filter manager."""

__version__ = "0.1.0"
