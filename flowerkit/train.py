"""`python -m flowerkit.train`: the same as `flowerkit train`."""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("train")
