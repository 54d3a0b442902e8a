"""The `perfserve` command line: it parses, then imports only the command it runs."""
