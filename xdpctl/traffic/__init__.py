"""Traffic: the veth lab, frames, and sending them.

Owns: labs (lab), who talks to whom (endpoints), building frames with scapy
(frames, the only module that imports it), sending them in bulk (sender),
`gen` (generate), and what the program must count for given frames (predict).
May use: xdpctl.lifecycle, xdpctl.rules, xdpctl.datapath, xdpctl.kernel.
"""
