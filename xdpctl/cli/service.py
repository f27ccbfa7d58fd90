"""xdpctl service install|uninstall|stop-hook"""

from __future__ import annotations

import click

root_option = click.option(
    "--root", metavar="DIR", default="/", show_default=True,
    help="Install under DIR (a staging tree or image), through `systemctl --root DIR`.")


@click.group()
def command():
    """xdpctl.service: apply /etc/xdpctl/xdpctl.toml at boot.

    \b
    The unit runs `xdpctl apply /etc/xdpctl/xdpctl.toml` once the network is
    configured, `systemctl reload xdpctl` applies the file again, and stopping
    it detaches only with XDPCTL_DETACH_ON_STOP=yes in /etc/default/xdpctl.
    With --exporter, xdpctl-exporter.service serves the counters to
    Prometheus too. See docs/service.md.
    """


@command.command("install")
@root_option
@click.option("--no-enable", is_flag=True, help="Write the unit, but do not enable it.")
@click.option("--xdpctl", "xdpctl", metavar="PATH",
              help="The xdpctl the unit runs (default: this one).")
@click.option("--exporter", is_flag=True,
              help="Install xdpctl-exporter.service too: the Prometheus exporter, on 127.0.0.1:9435.")
def install(root, no_enable, xdpctl, exporter):
    """Write xdpctl.service to /etc/systemd/system and enable it (and
    xdpctl-exporter.service with --exporter)."""
    from ..lifecycle import service
    from .output import note

    done = service.install(root, enable=not no_enable, xdpctl=xdpctl, exporter=exporter)
    click.echo(f"installed {done.unit_path}: runs {done.xdpctl} apply {service.CONFIG}")
    if done.env_path:
        click.echo(f"wrote {done.env_path}: XDPCTL_DETACH_ON_STOP=no (stopping leaves the filters attached)")
    if done.exporter_unit_path:
        click.echo(f"installed {done.exporter_unit_path}: runs {done.xdpctl} exporter, with the options "
                   f"{service.EXPORTER_ENV_FILE} gives")
    if done.exporter_env_path:
        click.echo(f"wrote {done.exporter_env_path}: XDPCTL_EXPORTER_LISTEN=127.0.0.1:9435 (loopback only)")
    units = ", ".join(done.units)
    if done.enabled:
        names = " ".join(u.removesuffix(".service") for u in done.units)
        now = f" (`systemctl start {names}` starts {'it' if len(done.units) == 1 else 'them'} now)" \
            if root == "/" else ""
        click.echo(f"enabled {units}: {'it starts' if len(done.units) == 1 else 'they start'} at boot{now}")
    else:
        click.echo(f"not enabled: `systemctl enable {' '.join(done.units)}` makes "
                   f"{'it' if len(done.units) == 1 else 'them'} start at boot")
    for line in done.notes:
        note(f"note: {line}")


@command.command("uninstall")
@root_option
def uninstall(root):
    """Disable and stop xdpctl.service (and xdpctl-exporter.service), and
    remove them. The configuration and the files in /etc/default stay."""
    from ..lifecycle import service

    done = service.uninstall(root)
    for path in done.removed_paths:
        click.echo(f"removed {path}")
    if not done.removed:
        click.echo(f"{done.unit_path} is not there; nothing to do")


@command.command("stop-hook")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, path_type=str))
@click.option("--detach/--keep", default=False, envvar="XDPCTL_DETACH_ON_STOP", show_envvar=True,
              help="Detach the interfaces FILE names, or leave them attached (the default).")
@click.pass_obj
def stop_hook(app, file, detach):
    """What xdpctl.service runs when it stops: detach xdpctl's programs from
    the interfaces FILE names when XDPCTL_DETACH_ON_STOP=yes, else nothing."""
    from ..lifecycle.service import stop_hook as run

    for line in run(app, file, detach):
        click.echo(line)
