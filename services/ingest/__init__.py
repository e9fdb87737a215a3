"""Ingest: copy every landing object, untouched, to the raw bucket and announce it on the bus."""
