"""`python -m flowerkit.train`: the same as `flowerkit train`.

Only an entry point: the command lives in `flowerkit.cli.train`, and this
module is never imported, so `flowerkit.train` stays the API function.
"""

if __name__ == "__main__":
    from flowerkit.cli import run_subcommand

    run_subcommand("train")
