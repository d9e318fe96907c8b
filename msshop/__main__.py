from msshop.cli import main

main()
