"""The `pageperfect` command line: a root app (pageperfect.cli.app) over one sub-app per command group.

`pageperfect` (the entry point, `pageperfect.cli:main`) and `python -m pageperfect.cli` run it.
"""


def main() -> None:
    from pageperfect.cli.app import main as run

    run()
