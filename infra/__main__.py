"""Pulumi entry point: `pulumi up -s <component>-<env>` runs this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main

main()
