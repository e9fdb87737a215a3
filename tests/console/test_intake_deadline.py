"""An earlier deadline (the console's form field): only through the API, only within the platform's deadline."""

from __future__ import annotations

import pytest

from contracts.datasets import load_datasets
from services.erasure.config import Config
from services.erasure.intake import InvalidRequest, fingerprint, parse

DATASETS = load_datasets()
NOW = 1_800_000_000.0
BASE = {"subject_ids": ["42"], "reason": "GDPR art. 17"}


def _cfg(monkeypatch: pytest.MonkeyPatch) -> Config:
    for key in ("BUS_NAME", "LAKE_BUCKET", "RAW_BUCKET", "QUARANTINE_BUCKET", "ERASURE_BUCKET", "STATE_TABLE",
                "GLUE_DATABASE"):
        monkeypatch.setenv(key, "x")
    monkeypatch.setenv("ERASURE_DEADLINE_DAYS", "30")
    return Config.from_environ()


def test_deadline_within_the_window_is_kept_and_fingerprinted(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(monkeypatch)
    body = parse({**BASE, "deadline": NOW + 86400}, DATASETS, cfg, NOW)
    assert body.deadline == NOW + 86400
    plain = parse(BASE, DATASETS, cfg, NOW)
    assert fingerprint(body, ["h"]) != fingerprint(plain, ["h"])  # another deadline is another request


@pytest.mark.parametrize(("deadline", "why"), [(NOW - 1, "must be in the future"),
                                               (NOW + 31 * 86400, "must be within 30 days")])
def test_deadline_outside_the_window_is_refused(monkeypatch: pytest.MonkeyPatch, deadline: float, why: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse({**BASE, "deadline": deadline}, DATASETS, _cfg(monkeypatch), NOW)
    assert exc.value.errors == [f"deadline: {why}" + (" (the platform's erasure deadline)" if "30" in why else "")]


def test_bus_events_cannot_carry_a_deadline() -> None:
    with pytest.raises(InvalidRequest, match="deadline: not accepted here"):
        parse({**BASE, "deadline": NOW + 86400}, DATASETS)
