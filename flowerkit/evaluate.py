"""`python -m flowerkit.evaluate`: the same as `flowerkit evaluate`.

Only an entry point: the command lives in `flowerkit.cli.evaluate`, and this
module is never imported, so `flowerkit.evaluate` stays the API function.
"""

if __name__ == "__main__":
    from flowerkit.cli import run_subcommand

    run_subcommand("evaluate")
