"""Seeing what the filter does, without changing it.

Owns: `status` and `stats` as documents in the JSON schema (report).
Readers here take no lock and compile nothing: they read the pinned maps.
May use: xdpctl.lifecycle, xdpctl.rules, xdpctl.datapath, xdpctl.kernel.
"""
