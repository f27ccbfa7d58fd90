from xdpctl.cli import main

main()
