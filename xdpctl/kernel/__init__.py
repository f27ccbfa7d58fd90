"""The kernel's doors: the only modules that talk to BCC (compiler), libbpf
(libbpf, through ctypes), netlink (netlink, through pyroute2) and bpffs
(bpffs), and that read the process's capabilities (privileges).

Owns: compiling and loading a BuildRequest, map and pin I/O, links and XDP
attachment flags, namespaces and veths, kernel headers.
May use: the standard library, bcc/pyroute2 (each in its one module), and
xdpctl.errors and xdpctl.validate. Nothing else of xdpctl.
"""
