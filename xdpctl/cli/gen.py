"""xdpctl gen"""

from __future__ import annotations

import sys

import click

from .params import IFACE, NETNS, json_option


@click.command()
@click.option("--lab", "lab_name", metavar="NAME", help="Send from lab NAME's peer to its host end.")
@click.option("--netns", type=NETNS, metavar="NS", help="Without --lab: the namespace to send from.")
@click.option("--iface", type=IFACE, help="Without --lab: the interface to send on.")
@click.option("--profile", type=click.Choice(["mix", "ip", "non-ip", "syn-flood", "udp-flood", "icmp-flood"]),
              default="mix", show_default=True, help="What to send.")
@click.option("--pcap", type=click.Path(), metavar="FILE", help="Replay the frames of a capture instead.")
@click.option("--count", type=int, help="Frames to send (default 1000 unless --duration).")
@click.option("--duration", type=float, metavar="S", help="Stop after S seconds.")
@click.option("--rate", type=float, metavar="FPS", help="Pace the sending at FPS frames per second.")
@click.option("--src", "src_cidr", metavar="CIDR", help="Spread source addresses over CIDR (floods).")
@click.option("--dst", "dsts", multiple=True, metavar="IP", help="Destination address (one per family).")
@click.option("--src-mac", metavar="MAC")
@click.option("--dst-mac", metavar="MAC")
@click.option("--sport", type=click.IntRange(1, 65535), default=40000, show_default=True)
@click.option("--dport", type=click.IntRange(1, 65535), default=9, show_default=True)
@click.option("--vlan", "vlans", type=int, multiple=True, metavar="ID", help="VLAN tag; twice for QinQ.")
@click.option("--size", type=int, metavar="BYTES", help="Pad frames to BYTES.")
@json_option
@click.pass_obj
def command(app, lab_name, netns, iface, profile, pcap, count, duration, rate, src_cidr, dsts, src_mac,
            dst_mac, sport, dport, vlans, size, as_json):
    """Send test traffic built with scapy, in bulk, and report what was sent
    per protocol class (compare it with `xdpctl stats`)."""
    from ..traffic.generate import GenRequest, generate, validate
    from ..kernel.privileges import require_raw_send

    req = GenRequest(profile=profile, count=count, duration=duration, rate=rate, src_cidr=src_cidr,
                     vlans=tuple(vlans), size=size, pcap=pcap)
    validate(req)
    require_raw_send("sending raw frames", netns=bool(lab_name or netns or app.netns))
    target = _target(lab_name, netns, app.netns, iface, dsts, src_mac, dst_mac, sport, dport)
    show_progress = not as_json and sys.stdout.isatty()
    if show_progress:
        from .render import progress

        with progress(req.count, req.duration) as advance:
            report = generate(target, req, advance)
    else:
        report = generate(target, req)
    if as_json:
        from .output import emit_json

        emit_json(report)
    else:
        from .render import print_sent

        print_sent(report)


def _target(lab_name, netns, root_netns, iface, dsts, src_mac, dst_mac, sport, dport):
    from ..traffic.endpoints import Endpoints
    from ..errors import BadInput
    from ..traffic.generate import Target, parse_cidr

    if lab_name:
        if netns or iface:
            raise BadInput("--lab already names where to send from; drop --netns/--iface")
        if dsts or src_mac or dst_mac:
            raise BadInput("--lab already names the addresses (`xdpctl lab list`); drop --dst/--src-mac/--dst-mac")
        from ..traffic import lab as labs

        lab = labs.find(lab_name)
        ep = lab.endpoints(sport=sport, dport=dport)
        return Target(lab.peer_if, lab.netns, ep, lab.host_if)
    if not iface:
        raise BadInput("say where to send from: --lab NAME, or --iface IF (with --netns NS if it is in one)")
    # `xdpctl --netns NS gen --iface IF` means the same as `gen --netns NS`
    netns = netns if netns is not None else root_netns
    from ..kernel.netlink import Netlink

    with Netlink(namespace=netns) as nl:
        link = nl.link(iface)
        mac = nl.mac_address(link.ifindex)
    dst4, dst6 = "192.0.2.2", "2001:db8::2"
    for d in dsts:
        net = parse_cidr(d, "--dst")
        if net.num_addresses != 1:
            raise BadInput(f"--dst takes one address, not the network {d}")
        if net.version == 4:
            dst4 = str(net.network_address)
        else:
            dst6 = str(net.network_address)
    ep = Endpoints(src_mac or mac, dst_mac or "ff:ff:ff:ff:ff:ff", "192.0.2.1", dst4, "2001:db8::1", dst6,
                   sport, dport)
    return Target(iface, netns, ep, f"{iface} (peer)")
