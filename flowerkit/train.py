"""`python -m flowerkit.train`: the same as `flowerkit train`.

Only an entry point: the command lives in `flowerkit.cli.train`; importing it leaves
`flowerkit.train` the API function (see `flowerkit._Package`).
"""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("train")
