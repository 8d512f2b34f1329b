from bloodcli.cli import main

main()
