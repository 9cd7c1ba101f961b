"""The `posttrain` command line: one thin Typer module per command."""
