"""The subcommands of the `flowerkit` console script, one module each:
`add_arguments(parser)` and `run(args) -> exit status`."""
