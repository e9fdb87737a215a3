"""The embedded local platform: moto server + the same Pulumi program + in-process functions."""
