from syndicator.cli import main

main()
