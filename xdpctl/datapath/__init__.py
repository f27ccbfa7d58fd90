"""The datapath: the XDP program in bpf/ and its contract with user space.

Owns: the Python mirror of bpf/xdpctl_kern_user.h (contract), which variant
to build as -D flags (program), the rule tables' shape (layout), the Python
oracle of the classifier (classify), and decoding the counters (counters).
May use: xdpctl.kernel, and the top-level errors/validate.
"""
