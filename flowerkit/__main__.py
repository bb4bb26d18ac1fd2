import sys

from flowerkit.cli import main

sys.exit(main())
