"""`python -m flowerkit.serve`: the same as `flowerkit serve`."""

from flowerkit.cli import run_subcommand

run_subcommand("serve")
