"""In-memory stand-ins shared by tests (not collected: no test_ modules here)."""
