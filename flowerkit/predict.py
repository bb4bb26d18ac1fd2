"""`python -m flowerkit.predict`: the same as `flowerkit predict`."""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("predict")
