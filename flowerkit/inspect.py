"""`python -m flowerkit.inspect`: the same as `flowerkit inspect`.

Only an entry point: the command lives in `flowerkit.cli.inspect`, the
checks in `flowerkit.inspection`; this module is never imported."""

if __name__ == "__main__":
    from flowerkit.cli import run_subcommand

    run_subcommand("inspect")
