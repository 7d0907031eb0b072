"""`python -m pageperfect.cli`."""

from pageperfect.cli.app import main

main()
