"""What xdpctl owns and changes on the machine, and how it changes it.

Owns: the state directory on bpffs and its lock (state), ownership of an
interface's program (target), deploying options and rules (deploy), the
operations attach, detach, rule add/del (ruleops), apply/export (apply),
settling a killed change (recovery), removing leftovers (clean) and the
systemd unit (service). Every change here is all or nothing.
May use: xdpctl.rules, xdpctl.datapath, xdpctl.kernel, and the top level.
"""
