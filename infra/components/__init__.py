"""Reusable ComponentResources: a secure bucket and a queue-driven function."""
