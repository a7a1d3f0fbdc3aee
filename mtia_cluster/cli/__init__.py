"""Command-line interface: thin click commands that parse, load config, call one function."""
