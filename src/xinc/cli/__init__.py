"""Command-line interface: `xinc <command> [<sub-command>] ...`."""
