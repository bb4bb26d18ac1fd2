"""`python -m flowerkit.export`: the same as `flowerkit export`.

Only an entry point: the command lives in `flowerkit.cli.export`; importing it leaves
`flowerkit.export` the API function (see `flowerkit._Package`).
"""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("export")
