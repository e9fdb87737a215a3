"""Transform service: one raw object in, typed Hive-partitioned Parquet tables and quarantined rows out.

The pure core (parse, validate, partition, parquet, core) makes no AWS call, so it is tested and
benchmarked on local bytes; the Lambda handler only moves bytes and events around it.
"""
