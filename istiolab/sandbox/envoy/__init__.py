"""Running Envoy: its bootstrap, the files it reads its configuration from, its admin API."""
