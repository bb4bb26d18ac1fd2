"""`python -m flowerkit.serve`: the same as `flowerkit serve`.

It runs the console program (`python -m flowerkit serve ...`) rather than
importing `flowerkit.cli`, which sits above this package's layer."""

import runpy
import sys

sys.argv[1:1] = ["serve"]
runpy.run_module("flowerkit", run_name="__main__", alter_sys=True)
