"""The Pulumi program: what is deployed. `infra/__main__.py` is the entry point Pulumi runs."""
