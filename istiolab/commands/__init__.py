"""One module per `istiolab` command, each with a `register(subparsers)` function."""
