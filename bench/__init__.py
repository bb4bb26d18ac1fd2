"""flowerkit's benchmark suite (pytest-benchmark) and its report command."""
