from llamapy.cli.main import main

main()
