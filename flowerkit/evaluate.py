"""`python -m flowerkit.evaluate`: the same as `flowerkit evaluate`.

Only an entry point: the command lives in `flowerkit.cli.evaluate`; importing it leaves
`flowerkit.evaluate` the API function (see `flowerkit._Package`).
"""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("evaluate")
