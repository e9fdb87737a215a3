"""Compaction service: rewrites a partition's small Parquet files into few target-sized ones.

Triggered by PartitionFilesAdded (threshold), a schedule (quiet partitions, cleanup) and
`etl compact`; commits through contracts.commits so readers never see a partial partition.
See docs/design/compaction.md.
"""
