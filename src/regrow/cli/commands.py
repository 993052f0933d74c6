"""The registry of `regrow` commands: each module of this package adds its subcommand with
`@COMMANDS.register("name")` on its `register(subparsers)` function; main.py builds the parser
from the registry. Adding a command = one module plus its import in main.py."""

from __future__ import annotations

from regrow.registry import Registry

COMMANDS: Registry = Registry("command")
