"""Subcommands of the `zoo` CLI, one module each (see `zoo.cli.COMMANDS`)."""
