"""`python -m flowerkit.export`: the same as `flowerkit export`.

Only an entry point: the command lives in `flowerkit.cli.export`, and this
module is never imported, so `flowerkit.export` stays the API function.
"""

if __name__ == "__main__":
    from flowerkit.cli import run_subcommand

    run_subcommand("export")
