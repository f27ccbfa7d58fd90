"""Checks of the machine and of xdpctl itself.

Owns: the environment and state checks (doctor), the end-to-end check on a
lab (selftest), the BPF_PROG_TEST_RUN benchmark (bench) and its xdp-filter
comparison (xdp_filter).
May use: every layer below: observe, traffic, lifecycle, rules, datapath, kernel.
"""
