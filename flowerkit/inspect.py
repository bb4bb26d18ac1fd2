"""`python -m flowerkit.inspect`: the same as `flowerkit inspect`.

Only an entry point: the command lives in `flowerkit.cli.inspect`; the checks
live in `flowerkit.inspection`.
"""

from flowerkit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("inspect")
