"""`python -m flowerkit.backbones`: the same as `flowerkit backbones`.

Only an entry point: the command lives in `flowerkit.cli.backbones`, and this
module is never imported (the API is `flowerkit.list_backbones`).
"""

if __name__ == "__main__":
    from flowerkit.cli import run_subcommand

    run_subcommand("backbones")
