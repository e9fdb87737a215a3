// The erasure certificate (format etl-erasure-certificate/1, services/erasure/certificate.py) as a
// verification summary and as a printable page ("Print or save as PDF" uses the browser's own PDF).

const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);

export function verificationSummary(c, h) {
  const v = c.verification;
  const rows = Object.entries(v.datasets || {}).sort().map(([name, d]) => {
    const lake = c.datasets[name] || {};
    return h("tr", {},
      h("td", {}, name),
      h("td", { class: "num" }, lake.rows_removed ?? 0),
      h("td", { class: "num" }, lake.files_rewritten ?? 0),
      h("td", { class: "num" }, sum(d.lake.rows_remaining)),
      h("td", { class: "num" }, d.lake.scan.files_considered),
      h("td", { class: "num" }, d.quarantine.rows_remaining),
      h("td", { class: "num" }, d.old_generations.length),
      h("td", { class: "num" }, d.raw.length));
  });
  return h("div", { class: "verification", id: "verification" },
    h("h3", {}, "Verification ", h("span", { class: `badge ${v.passed ? "s-completed" : "s-failed"}`, id: "verification-result" }, v.passed ? "PASSED" : "FAILED"),
      h("span", { class: "muted" }, ` at ${v.at}`)),
    h("table", {}, h("thead", {}, h("tr", {}, ["Dataset", "Rows removed", "Files rewritten", "Rows left in lake",
      "Lake files checked", "Rows left in quarantine", "Old generations left", "Raw problems"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows)),
    (v.problems || []).length ? h("ul", { class: "error" }, v.problems.map((p) => h("li", {}, p))) : null);
}

// What verification checked, copy by copy, and what is outside its reach (certificates that carry it).
function checksTable(checks, h) {
  if (!checks) return null;
  return h("section", { id: "checks" },
    h("h3", {}, "What was checked"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Dataset", "Copy", "How", "Checked", "Left"].map((t) => h("th", {}, t)))),
      h("tbody", {}, checks.checked.map((r) => h("tr", {}, h("td", {}, r.dataset), h("td", {}, r.copy), h("td", {}, r.how),
        h("td", {}, r.checked), h("td", { class: "num" }, r.left))))),
    h("p", {}, "Not checked by this service:"),
    h("ul", {}, checks.not_checked.map((n) => h("li", {}, n))),
    checks.workspace ? h("p", { class: "muted" }, `Note: ${checks.workspace}.`) : null);
}

export function renderCertificate(c, h) {
  const r = c.request;
  const copies = c.copies_purged;
  const facts = [["Received", r.received_at], ["Deadline", r.deadline], ["Reason", r.reason], ["Requested by", r.requested_by],
    ["Filed by", r.caller || r.source], ["Ticket", r.ticket || "—"], ["Datasets", r.datasets.join(", ")],
    ["Run", `${c.run.id} (${c.run.attempts} attempt(s))`], ["Issued", c.issued_at]];
  const lake = Object.entries(c.datasets).sort().map(([name, d]) => h("tr", {},
    h("td", {}, name), h("td", { class: "num" }, d.rows_removed), h("td", { class: "num" }, d.partitions.length),
    h("td", { class: "num" }, d.files_rewritten), h("td", { class: "num" }, d.files_removed),
    h("td", { class: "num" }, `${d.find.files_scanned} of ${d.find.files_considered}`)));
  return h("article", { class: "certificate", id: "certificate" },
    h("h2", {}, `Erasure certificate — ${r.id}`),
    h("p", { class: "outcome" }, "Outcome: ", h("strong", {}, c.outcome)),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h3", {}, `Subjects (${c.subjects.hashes.length}, ${c.subjects.hash}, salt ${c.subjects.salt_id})`),
    h("ul", { class: "hashes" }, c.subjects.hashes.map((x) => h("li", {}, h("code", {}, x)))),
    h("h3", {}, "Lake"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Dataset", "Rows removed", "Partitions rewritten", "Files rewritten",
      "Files removed", "Files scanned"].map((t) => h("th", {}, t)))), h("tbody", {}, lake)),
    h("h3", {}, "Other copies"),
    h("ul", {},
      h("li", {}, `Quarantine: ${copies.quarantine_rows_removed} row(s) removed from ${copies.quarantine_files.length} file(s)`),
      h("li", {}, `Raw copies: ${copies.raw_objects.length} object(s) rewritten or deleted (${copies.raw_lines_blanked} line(s) blanked), ${copies.landing_deleted} landing original(s) deleted`),
      h("li", {}, `Old lake generations: ${copies.old_generation_versions_deleted} object version(s) deleted`),
      h("li", {}, `Superseded object versions deleted: ${copies.versions_deleted}`)),
    verificationSummary(c, h),
    checksTable(c.verification.checks, h),
    h("h3", {}, "Timeline"),
    h("ol", { class: "timeline" }, c.timeline.map((e) => h("li", {}, `${e.at} ${e.state}${e.note ? ` — ${e.note}` : ""}`))),
    h("p", { class: "muted" }, `Format ${c.format}. Subjects are named only by salted hash; the JSON download is the machine-checkable original.`));
}
