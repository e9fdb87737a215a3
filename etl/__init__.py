"""`etl`: the command-line tool — local platform, loading, status, and (later) deploy and query."""
