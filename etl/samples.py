"""Deterministic sample data: `customers` as CSV and `orders` as JSON Lines, optionally hostile.

Seeded `random.Random`, standard library only (importable without pyarrow, no faker), so the same
call gives the same bytes everywhere: tests, the demo and the shipped files under samples/.
Hostile rows replace ordinary ones at seeded positions and are listed with their line number and
kind, so tests know exactly which lines must end in quarantine and why.

    python -m etl.samples customers --rows 200 --hostile 6 --out samples/customers/customers-0001.csv
    python -m etl.samples orders --rows 500 --hostile 10 --files 3 --out /tmp/orders
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

FIRST_NAMES = (
    "Anna", "Ben", "Chloé", "David", "Elif", "Fatima", "Giulia", "Hiroshi", "Ingrid", "José", "Kofi", "Lena",
    "Łukasz", "Mia", "Noah", "Olga", "Pedro", "Quentin", "Rosa", "Søren", "Tariq", "Uma", "Viktor", "Wei",
    "Xavier", "Yara", "Zoë",
)  # fmt: skip
LAST_NAMES = (
    "Andersen", "Becker", "Costa", "Dubois", "Eriksson", "Fischer", "García", "Hoffmann", "Ivanova", "Jansen",
    "Kowalski", "López", "Müller", "Nakamura", "O'Brien", "Petrov", "Rossi", "Schmidt", "Tanaka", "Ünal",
    "van Dijk", "Weber", "Smith, Jr.", 'Lee "Lucky"',
)  # fmt: skip
#: country code, phone prefix, digits after the prefix, e-mail domains
COUNTRIES = (
    ("DE", "+49", 10, ("web.de", "gmx.de", "example.de")),
    ("FR", "+33", 9, ("orange.fr", "example.fr")),
    ("ES", "+34", 9, ("example.es", "telefonica.es")),
    ("IT", "+39", 10, ("libero.it", "example.it")),
    ("NL", "+31", 9, ("ziggo.nl", "example.nl")),
    ("PL", "+48", 9, ("wp.pl", "example.pl")),
    ("SE", "+46", 9, ("telia.se", "example.se")),
    ("US", "+1", 10, ("gmail.com", "example.com")),
    ("GB", "+44", 10, ("example.co.uk", "btinternet.com")),
    ("JP", "+81", 10, ("example.jp", "docomo.ne.jp")),
)
STATUSES = ("placed", "paid", "shipped", "cancelled")
CUSTOMER_COLUMNS = ("customer_id", "name", "email", "phone", "country", "signup_date")
FIRST_DAY, LAST_DAY = date(2021, 1, 1), date(2025, 12, 31)

#: kinds of hostile rows, used in turn
CSV_HOSTILE = (
    "bad_int",
    "empty_required",
    "bad_date",
    "impossible_date",
    "too_few_columns",
    "too_many_columns",
    "bad_date_format",
)
JSONL_HOSTILE = (
    "invalid_json",
    "not_object",
    "too_many_decimals",
    "not_a_number",
    "null_required",
    "missing_required",
    "impossible_date",
    "nested_value",
    "duplicate_key",
    "int_overflow",
)


@dataclass
class Sample:
    """One generated file: its text and the hostile rows it holds as {line number: kind}."""

    text: str
    rows: int
    hostile: dict[int, str] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return self.text.encode("utf-8")


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ł", "l").replace("Ł", "L").replace("ø", "o"))
    return "".join(ch for ch in folded if ch.isascii() and (ch.isalnum() or ch == " ")).strip()


def _day(rng: random.Random) -> date:
    return FIRST_DAY + timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days + 1))


def customer(rng: random.Random, customer_id: int) -> dict[str, str]:
    """One plausible customer; e-mail and phone are sometimes missing (they are nullable)."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    country, prefix, digits, domains = rng.choice(COUNTRIES)
    local = f"{_ascii(first)}.{_ascii(last).replace(' ', '')}".lower()
    email = "" if rng.random() < 0.05 else f"{local}{rng.randrange(100)}@{rng.choice(domains)}"
    phone = "" if rng.random() < 0.1 else prefix + "".join(str(rng.randrange(10)) for _ in range(digits))
    return {
        "customer_id": str(customer_id),
        "name": f"{first} {last}",
        "email": email,
        "phone": phone,
        "country": country,
        "signup_date": _day(rng).isoformat(),
    }


def _hostile_customer(rng: random.Random, kind: str, customer_id: int) -> list[str]:
    row = customer(rng, customer_id)
    values = [row[c] for c in CUSTOMER_COLUMNS]
    if kind == "bad_int":
        values[0] = f"C-{customer_id}"
    elif kind == "empty_required":
        values[4] = ""
    elif kind == "bad_date":
        values[5] = "not-a-date"
    elif kind == "impossible_date":
        values[5] = rng.choice(("2023-02-29", "2024-02-30", "2022-04-31", "2021-13-01"))
    elif kind == "too_few_columns":
        values = values[:4]
    elif kind == "too_many_columns":
        values = [*values, "surplus"]
    elif kind == "bad_date_format":
        d = date.fromisoformat(values[5])
        values[5] = f"{d.day:02d}/{d.month:02d}/{d.year}"
    else:
        raise ValueError(f"unknown hostile CSV kind {kind!r}")
    return values


def _hostile_lines(rng: random.Random, rows: int, hostile: int) -> dict[int, int]:
    """{data row index: position in the kind cycle} for `hostile` distinct seeded rows."""
    if not 0 <= hostile <= rows:
        raise ValueError(f"hostile rows ({hostile}) must be between 0 and rows ({rows})")
    picked = sorted(rng.sample(range(rows), hostile))
    return {row: i for i, row in enumerate(picked)}


def customers_csv(rows: int, *, seed: int = 0, start_id: int = 1, hostile: int = 0, crlf: bool = False) -> Sample:
    """A customers CSV with header; `hostile` rows cycle through CSV_HOSTILE kinds."""
    rng = random.Random(f"customers/{seed}")
    bad = _hostile_lines(random.Random(f"customers/{seed}/hostile"), rows, hostile)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(CUSTOMER_COLUMNS)
    sample = Sample("", rows)
    for i in range(rows):
        customer_id = start_id + i
        if i in bad:
            kind = CSV_HOSTILE[bad[i] % len(CSV_HOSTILE)]
            writer.writerow(_hostile_customer(rng, kind, customer_id))
            sample.hostile[i + 2] = kind
        else:
            row = customer(rng, customer_id)
            writer.writerow([row[c] for c in CUSTOMER_COLUMNS])
    sample.text = out.getvalue()
    return sample


def order(rng: random.Random, order_id: int, customers: int) -> dict[str, object]:
    """One plausible order; the amount is exact cents (kept as a JSON number with two decimals)."""
    return {
        "order_id": order_id,
        "customer_id": rng.randrange(1, customers + 1),
        "amount": f"{rng.randrange(100, 250_000) / 100:.2f}",
        "status": rng.choice(STATUSES),
        "order_date": _day(rng).isoformat(),
    }


def _order_line(o: dict[str, object], *, amount_raw: bool = True) -> str:
    parts = []
    for key, value in o.items():
        text = str(value) if key == "amount" and amount_raw and isinstance(value, str) else json.dumps(value)
        parts.append(f"{json.dumps(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


def _hostile_order(rng: random.Random, kind: str, order_id: int, customers: int) -> str:
    o = order(rng, order_id, customers)
    if kind == "invalid_json":
        return _order_line(o)[:-7]
    if kind == "not_object":
        return json.dumps([o["order_id"], o["customer_id"]])
    if kind == "too_many_decimals":
        o["amount"] = f"{rng.randrange(100, 99_999)}.{rng.randrange(10, 100)}{rng.randrange(1, 10)}"
    elif kind == "not_a_number":
        return _order_line({**o, "amount": "twelve"}, amount_raw=False)
    elif kind == "null_required":
        o["status"] = None
    elif kind == "missing_required":
        del o["order_date"]
    elif kind == "impossible_date":
        o["order_date"] = rng.choice(("2023-02-29", "2024-02-30", "2022-06-31"))
    elif kind == "nested_value":
        return _order_line({**o, "amount": {"value": o["amount"], "currency": "EUR"}}, amount_raw=False)
    elif kind == "duplicate_key":
        return _order_line(o)[:-1] + f', "order_id": {order_id + 1}}}'
    elif kind == "int_overflow":
        o["customer_id"] = 10**20
    else:
        raise ValueError(f"unknown hostile JSON Lines kind {kind!r}")
    return _order_line(o)


def orders_jsonl(rows: int, *, seed: int = 0, start_id: int = 1, customers: int = 1000, hostile: int = 0) -> Sample:
    """Orders as JSON Lines (one object per line); `hostile` rows cycle through JSONL_HOSTILE kinds."""
    rng = random.Random(f"orders/{seed}")
    bad = _hostile_lines(random.Random(f"orders/{seed}/hostile"), rows, hostile)
    lines, sample = [], Sample("", rows)
    for i in range(rows):
        order_id = start_id + i
        if i in bad:
            kind = JSONL_HOSTILE[bad[i] % len(JSONL_HOSTILE)]
            lines.append(_hostile_order(rng, kind, order_id, customers))
            sample.hostile[i + 1] = kind
        else:
            lines.append(_order_line(order(rng, order_id, customers)))
    sample.text = "\n".join(lines) + "\n"
    return sample


def generate(dataset: str, rows: int, *, seed: int = 0, start_id: int = 1, hostile: int = 0) -> Sample:
    if dataset == "customers":
        return customers_csv(rows, seed=seed, start_id=start_id, hostile=hostile)
    if dataset == "orders":
        return orders_jsonl(rows, seed=seed, start_id=start_id, hostile=hostile)
    raise ValueError(f"no sample generator for dataset {dataset!r} (customers, orders)")


def write_files(dataset: str, out: Path, *, rows: int, files: int = 1, seed: int = 0, hostile: int = 0) -> list[Path]:
    """`files` files of `rows` rows each under the folder `out` (ids continue across files)."""
    suffix = "csv" if dataset == "customers" else "jsonl"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n in range(files):
        sample = generate(dataset, rows, seed=seed + n, start_id=1 + n * rows, hostile=hostile)
        path = out / f"{dataset}-{n + 1:04d}.{suffix}"
        path.write_bytes(sample.data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write deterministic sample data (customers CSV, orders JSONL).")
    parser.add_argument("dataset", choices=("customers", "orders"))
    parser.add_argument("--rows", type=int, default=200, help="data rows per file")
    parser.add_argument("--hostile", type=int, default=0, help="hostile rows per file")
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="a file (one file) or a folder")
    args = parser.parse_args(argv)
    if args.files == 1 and args.out.suffix:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        sample = generate(args.dataset, args.rows, seed=args.seed, hostile=args.hostile)
        args.out.write_bytes(sample.data)
        print(f"{args.out}: {args.rows} rows, hostile lines {sorted(sample.hostile)}")
        return
    for path in write_files(
        args.dataset, args.out, rows=args.rows, files=args.files, seed=args.seed, hostile=args.hostile
    ):
        print(path)


if __name__ == "__main__":
    main()
