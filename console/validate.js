// The API's intake rules, checked before sending (services/erasure/intake.py + subjects.py are the
// authority: the API checks again). Messages name fields and positions, never an id's value.

const INT = /^[+-]?\d+$/;
const RANGES = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
};

export function idProblem(raw, maxChars) {
  const s = raw.trim();
  if (!s) return "is empty";
  if (s.length > maxChars) return `is longer than ${maxChars} characters`;
  if (/[\u0000-\u001f\u007f]/.test(s)) return "contains control characters";
  return null;
}

export function fitsType(raw, type) {
  const s = raw.trim();
  if (type in RANGES) {
    if (!INT.test(s)) return false;
    const v = BigInt(s);
    const [lo, hi] = RANGES[type];
    return v >= lo && v <= hi;
  }
  return type === "string";
}

// Ids as typed or pasted: one per line, or separated by commas or semicolons.
export function parseIds(text) {
  return text.split(/[\r\n,;]+/).map((s) => s.trim()).filter((s) => s.length > 0);
}

function cells(line) {
  const out = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { out.push(cur); cur = ""; }
    else cur += ch;
  }
  out.push(cur);
  return out.map((c) => c.trim());
}

// A CSV upload: the column named like a subject id (subject_id, id, or a contract's subject column),
// else the first column; a header row is recognised by such a name.
export function parseCsv(text, subjectColumns = []) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  if (!lines.length) return [];
  const header = cells(lines[0]).map((c) => c.toLowerCase());
  const names = ["subject_id", "subject_ids", "id", ...subjectColumns.map((c) => c.toLowerCase())];
  const col = header.findIndex((h) => names.includes(h));
  const rows = col >= 0 ? lines.slice(1) : lines;
  const at = col >= 0 ? col : 0;
  return rows.map((l) => cells(l)[at] || "").filter((s) => s.length > 0);
}

// {errors: [...], body} for the form's values; body is what POST /erasure-requests takes.
export function validate(values, catalog) {
  const { limits } = catalog;
  const errors = [];
  const ids = values.subjectIds;
  if (ids.length === 0) errors.push("subject_ids: add at least one subject id");
  if (ids.length > limits.maxSubjects) errors.push(`subject_ids: at most ${limits.maxSubjects} per request (split it)`);
  if (values.datasets.length === 0) errors.push("datasets: choose at least one dataset");
  const scope = catalog.datasets.filter((d) => values.datasets.includes(d.name));
  const columns = scope.flatMap((d) => d.subjectColumns.map((c) => ({ ...c, dataset: d.name })));
  ids.forEach((id, i) => {
    const why = idProblem(id, limits.maxIdChars);
    if (why) errors.push(`subject_ids[${i}] ${why}`);
    else if (columns.length && !columns.some((c) => fitsType(id, c.type))) {
      const kinds = columns.map((c) => `${c.dataset}.${c.name} (${c.type})`).join(", ");
      errors.push(`subject_ids[${i}] is not a valid value of any subject column in scope: ${kinds}`);
    }
  });
  const reason = values.reason.trim();
  if (!reason) errors.push("reason: say why (e.g. GDPR art. 17 request)");
  if (reason.length > limits.maxReason) errors.push(`reason: at most ${limits.maxReason} characters`);
  const ticket = values.ticket.trim();
  if (ticket.length > limits.maxTicket) errors.push(`ticket: at most ${limits.maxTicket} characters`);
  const requestedBy = values.requestedBy.trim();
  if (requestedBy.length > limits.maxRequestedBy) errors.push(`requested_by: at most ${limits.maxRequestedBy} characters`);
  const body = { subject_ids: ids, datasets: values.datasets, reason, client_request_id: values.clientRequestId };
  if (ticket) body.ticket = ticket;
  if (requestedBy) body.requested_by = requestedBy;
  if (values.deadline) {
    const at = Date.parse(`${values.deadline}T23:59:59Z`);
    const latest = Date.now() + catalog.deadlineDays * 86400_000;
    if (Number.isNaN(at) || at <= Date.now()) errors.push("deadline: choose a date after today");
    else if (at > latest) errors.push(`deadline: at most ${catalog.deadlineDays} days from today (the platform's limit)`);
    else body.deadline = Math.floor(at / 1000);
  }
  return { errors, body };
}
