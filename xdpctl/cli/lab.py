"""xdpctl lab up|list|down"""

from __future__ import annotations

import click

from .params import json_option


@click.group()
def command():
    """A veth lab to try filters on: the host end takes the XDP program,
    the peer (in the lab's own namespace) sends the frames."""


@command.command("up")
@click.argument("name", default="lab")
@json_option
def up(name, as_json):
    """Make lab NAME (default: lab) and print its interface and addresses."""
    from ..traffic import lab as labs
    from ..kernel.privileges import require_namespaces

    require_namespaces("making a lab (namespaces and a veth pair)")
    lab = labs.up(name)
    if as_json:
        from .output import emit_json

        emit_json(lab.as_dict())
        return
    click.echo(f"lab {lab.name}: attach to {lab.host_if} "
               f"({lab.host4}, {lab.host6}, {lab.host_mac})")
    click.echo(f"  peer {lab.peer_if} in netns {lab.netns} ({lab.peer4}, {lab.peer6}, {lab.peer_mac})")
    click.echo(f"  try: xdpctl attach {lab.host_if} --drop-non-ip && xdpctl gen --lab {lab.name} && xdpctl stats")


@command.command("list")
@json_option
def list_(as_json):
    """List the labs on this machine."""
    from ..traffic import lab as labs

    found = [lab.as_dict() for lab in labs.labs()]
    if as_json:
        from .output import emit_json

        emit_json({"labs": found})
        return
    if not found:
        click.echo("No labs; `xdpctl lab up` makes one.")
    for lab in found:
        click.echo(f"{lab['name']}: {lab['interface']} ({lab['host']['ipv4']}) <-> "
                   f"{lab['peer_interface']} in {lab['netns']} ({lab['peer']['ipv4']})")


@command.command("down")
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="Remove every lab.")
def down(name, everything):
    """Remove lab NAME (default: lab), or every lab with --all, including any
    xdpctl program attached to it."""
    from ..traffic import lab as labs
    from ..errors import BadInput
    from ..kernel.privileges import require_namespaces

    require_namespaces("removing a lab")
    if name and everything:
        raise BadInput("give a lab name or --all, not both")
    targets = labs.labs() if everything else [labs.find(name or "lab")]
    for lab in targets:
        labs.down(lab)
        click.echo(f"removed lab {lab.name}")
