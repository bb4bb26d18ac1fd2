"""`python -m flowerkit.predict`: the same as `flowerkit predict`.

Only an entry point: the command lives in `flowerkit.cli.predict`; importing it leaves
`flowerkit.predict` the API function (see `flowerkit._Package`).
"""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("predict")
