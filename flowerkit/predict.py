"""`python -m flowerkit.predict`: the same as `flowerkit predict`.

Only an entry point: the command lives in `flowerkit.cli.predict`, and this
module is never imported, so `flowerkit.predict` stays the API function.
"""

if __name__ == "__main__":
    from flowerkit.cli import run_subcommand

    run_subcommand("predict")
