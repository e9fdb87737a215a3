"""The Glue side of bench/cost_bench.py: the platform's transform, compaction and erasure as Spark jobs.

    python bench/glue_jobs.py FEEDS_DIR WORK_DIR SUBJECT,SUBJECT,… [--batch-only]   → one JSON line of seconds per job

Spark runs `local[2]` with zstd Parquet; the JVM and code generation are warmed up before timing, as a
Glue job's billed time starts with a running driver. Prints seconds for: one batch transform of every
feed, one transform per feed (what an event-driven Glue trigger would run), compaction of the
per-feed output into one sorted file per partition, and the rewrite without the subjects
(`--batch-only`: the batch transform alone, the job that matters at volume).
"""

from __future__ import annotations

import glob
import json
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

PARTITIONS = ("order_year", "order_month")
SCHEMA = T.StructType([
    T.StructField("order_id", T.LongType(), False),
    T.StructField("customer_id", T.LongType(), False),
    T.StructField("amount", T.DecimalType(12, 2), False),
    T.StructField("status", T.StringType(), False),
    T.StructField("order_date", T.DateType(), False),
])


def main(src: str, work: str, subjects: list[int], batch_only: bool = False) -> dict[str, object]:
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.parquet.compression.codec", "zstd").config("spark.sql.shuffle.partitions", "2")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(10).write.mode("overwrite").parquet(work + "/warm-up")

    def transform(paths: list[str], out: str) -> float:
        t = time.perf_counter()
        df = spark.read.schema(SCHEMA).option("mode", "PERMISSIVE").json(paths)
        (df.withColumn("order_year", F.year("order_date")).withColumn("order_month", F.month("order_date"))
           .write.mode("append").partitionBy(*PARTITIONS).parquet(out))
        return time.perf_counter() - t

    files = sorted(glob.glob(src + "/*.jsonl"))
    batch = transform(files, work + "/batch")
    if batch_only:
        spark.stop()
        return {"batch": batch}
    per_object = [transform([f], work + "/small") for f in files]
    t = time.perf_counter()
    (spark.read.parquet(work + "/small").repartition(*PARTITIONS).sortWithinPartitions("order_date", "order_id")
       .write.mode("overwrite").partitionBy(*PARTITIONS).parquet(work + "/compacted"))
    compact = time.perf_counter() - t
    t = time.perf_counter()
    (spark.read.parquet(work + "/compacted").where(~F.col("customer_id").isin(subjects))
       .write.mode("overwrite").partitionBy(*PARTITIONS).parquet(work + "/erased"))
    erase = time.perf_counter() - t
    spark.stop()
    return {"batch": batch, "per_object": per_object, "compact": compact, "erase": erase}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")],
                          batch_only="--batch-only" in sys.argv[4:])))
