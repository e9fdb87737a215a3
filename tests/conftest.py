"""Shared fixtures: the repository root on sys.path and dummy AWS credentials (never real ones)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "etl-test",
}.items():
    os.environ.setdefault(_key, _value)
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_key, None)
