"""The erasure certificate: what was erased where, how it was verified, and when — with hashes only.

One per request, JSON (machine-checkable) plus a Markdown rendering for people. It names subjects
only by their salted hash (HMAC-SHA256) and the salt's public fingerprint.
"""

from __future__ import annotations

import time
from typing import Any

from services.erasure.model import ErasureRequest

FORMAT = "etl-erasure-certificate/1"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def build(req: ErasureRequest, evidence: dict[str, Any], *, salt_id: str, issued_at: float) -> dict[str, Any]:
    """`evidence` is what the run gathered for this request (evidence.request_evidence)."""
    verified = bool(evidence["verification"]["passed"])
    return {
        "format": FORMAT,
        "request": {
            "id": req.id, "received_at": _iso(req.received_at), "deadline": _iso(req.deadline),
            "reason": req.reason, "requested_by": req.requested_by, "caller": req.caller, "ticket": req.ticket,
            "client_request_id": req.client_request_id, "source": req.source, "datasets": req.datasets,
        },
        "subjects": {"hash": "HMAC-SHA256", "salt_id": salt_id, "hashes": req.subject_hashes},
        "run": {"id": req.run_id, "attempts": evidence["attempts"]},
        "outcome": "COMPLETED" if verified else "FAILED",
        "datasets": evidence["datasets"],
        "copies_purged": evidence["copies"],
        "verification": evidence["verification"],
        "timeline": [{"at": _iso(h["at"]), "state": h["state"], **({"note": h["note"]} if h.get("note") else {})}
                     for h in req.history],
        "issued_at": _iso(issued_at),
    }


#: copies this service does not check, and why (docs/design/erasure.md, "What is out of reach")
NOT_CHECKED = (
    "raw objects without lineage (failed, rejected or in-flight objects): kept until their raw TTL",
    "Athena query results: not scanned; the results bucket expires them after etl:queryResultsDays (7 days "
    "by default)",
    "backups and the event archive: see the platform's erasure design note",
    "copies outside the platform's buckets (downloads, caches)",
)


def checks(datasets: dict[str, Any], passed: bool) -> dict[str, Any]:
    """What verification proved, copy by copy: which copies were checked, how, how many, what was left.

    Built only from the verification's own counts, so the certificate claims nothing that was not
    checked; `not_checked` names the copies outside its reach.
    """
    rows = []
    for name, d in sorted(datasets.items()):
        lake, hidden, st, q = d["lake"], d["hidden"], d["structure"], d["quarantine"]
        rows += [
            {"dataset": name, "copy": "lake, current generation of every partition that may hold a subject",
             "how": "footer statistics and bloom filters, then the subject columns' rows",
             "checked": f"{lake['scan']['files_considered']} file(s)", "left": sum(lake["rows_remaining"].values())
             + len(lake.get("unreadable", []))},
            {"dataset": name, "copy": "lake, current generation (same files)",
             "how": "fingerprints of the erased rows' other personal values, every row",
             "checked": f"{lake.get('fingerprint_files_checked', 0)} file(s)"
             if lake.get("fingerprint_files_checked") else "no personal column besides the subject column(s)",
             "left": int(lake.get("fingerprint_rows", 0))},
            {"dataset": name, "copy": "files this run wrote",
             "how": "every dictionary page decoded; footer, page and column-index statistics; bloom filters "
                    "rebuilt from the surviving rows; footer metadata",
             "checked": f"{st['files']} file(s), {st['dictionary_pages']} dictionary page(s) "
                        f"({st['dictionary_values']} values), {st['statistics_checked']} statistics, "
                        f"{st['column_indexes']} column index(es), {st['bloom_filters']} bloom filter(s)",
             "left": len(st["problems"])},
            {"dataset": name, "copy": "lake copies readers do not see: staging, old generations, old versions",
             "how": "every object version probed like the lake (and by fingerprints)",
             "checked": ", ".join(f"{n} {k}" for k, n in sorted(hidden["checked"].items())) or "none found",
             "left": sum(hidden["by_subject"].values()) + hidden["fingerprint_rows"] + len(hidden["unreadable"])},
            {"dataset": name, "copy": "old generations of the partitions this run committed",
             "how": "listing every object version", "checked": "all", "left": len(d["old_generations"])},
            {"dataset": name, "copy": "quarantine", "how": "every file's rows, subject columns and raw lines",
             "checked": f"{q.get('files_scanned', 0)} file(s)",
             "left": q["rows_remaining"] + len(q["keys_with_old_versions"]) + len(q.get("unreadable", []))},
            {"dataset": name, "copy": "raw copies and landing originals reached through lineage",
             "how": "erased lines blank, one version; landing original gone",
             "checked": f"{d.get('raw_checked', 0)} raw copy(ies), {d.get('landing_checked', 0)} landing original(s)",
             "left": len(d["raw"])},
        ]
    return {"passed": passed, "checked": rows, "not_checked": list(NOT_CHECKED),
            "workspace": "the run's workspace (object ids, line numbers, fingerprints) is deleted when the run "
                         "ends, after this certificate is written"}


def render_markdown(cert: dict[str, Any]) -> str:
    r, s, v = cert["request"], cert["subjects"], cert["verification"]
    lines = [
        f"# Erasure certificate — {r['id']}",
        "",
        f"**Outcome: {cert['outcome']}** (issued {cert['issued_at']})",
        "",
        "| | |", "|---|---|",
        f"| Received | {r['received_at']} |",
        f"| Deadline | {r['deadline']} |",
        f"| Reason | {r['reason']} |",
        f"| Requested by | {r['requested_by']} |",
        f"| Ticket | {r['ticket'] or '-'} |",
        f"| Datasets | {', '.join(r['datasets'])} |",
        f"| Run | {cert['run']['id']} ({cert['run']['attempts']} attempt(s)) |",
        "",
        f"## Subjects ({len(s['hashes'])}, {s['hash']}, salt {s['salt_id']})",
        "",
        *[f"- `{h}`" for h in s["hashes"]],
        "",
        "## Lake",
        "",
        "| dataset | rows removed | partitions rewritten | files rewritten | files removed | files scanned |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, d in sorted(cert["datasets"].items()):
        lines.append(f"| {name} | {d['rows_removed']} | {len(d['partitions'])} | {d['files_rewritten']} | "
                     f"{d['files_removed']} | {d['find']['files_scanned']} of {d['find']['files_considered']} |")
    for name, d in sorted(cert["datasets"].items()):
        for p in d["partitions"]:
            part = "/".join(f"{k}={val}" for k, val in p["partition"].items())
            lines.append("")
            lines.append(f"- `{name}/{part}` → generation {p['generation']}:")
            for f in p["files"]:
                dest = f"`{f['new_key']}` ({f['rows_out']} rows)" if f.get("new_key") else "removed (no rows left)"
                lines.append(f"  - `{f['key']}` ({f['rows_in']} rows, {f['rows_removed']} erased) → {dest}")
    c = cert["copies_purged"]
    lines += [
        "",
        "## Other copies",
        "",
        f"- quarantine: {c['quarantine_rows_removed']} row(s) removed from {len(c['quarantine_files'])} file(s)",
        f"- raw copies: {len(c['raw_objects'])} object(s) rewritten or deleted "
        f"({c['raw_lines_blanked']} line(s) blanked), {c['landing_deleted']} landing original(s) deleted",
        f"- old lake generations: {c['old_generation_versions_deleted']} object version(s) deleted",
        f"- superseded object versions deleted (quarantine, raw): {c['versions_deleted']}",
        "",
        "## Verification",
        "",
        f"**{'PASSED' if v['passed'] else 'FAILED'}** at {v['at']}",
        "",
    ]
    for name, d in sorted(v["datasets"].items()):
        lake = d["lake"]
        lines.append(f"- {name}: lake {sum(lake['rows_remaining'].values())} row(s) left "
                     f"({lake['scan']['files_considered']} file(s) under current Glue locations checked), "
                     f"quarantine {d['quarantine']['rows_remaining']} row(s) left, "
                     f"old generations left: {len(d['old_generations'])}, raw problems: {len(d['raw'])}")
    for problem in v.get("problems", []):
        lines.append(f"  - {problem}")
    if v.get("checks"):
        lines += ["", "### What was checked", "", "| dataset | copy | how | checked | left |", "|---|---|---|---|---:|"]
        lines += [f"| {c['dataset']} | {c['copy']} | {c['how']} | {c['checked']} | {c['left']} |"
                  for c in v["checks"]["checked"]]
        lines += ["", "Not checked by this service:", ""] + [f"- {n}" for n in v["checks"]["not_checked"]]
        lines += ["", f"Note: {v['checks']['workspace']}."]
    lines += ["", "## Timeline", ""]
    lines += [f"- {h['at']} {h['state']}{' — ' + h['note'] if h.get('note') else ''}" for h in cert["timeline"]]
    return "\n".join(lines) + "\n"
