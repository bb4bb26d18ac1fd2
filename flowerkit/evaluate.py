"""`python -m flowerkit.evaluate`: the same as `flowerkit evaluate`."""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("evaluate")
