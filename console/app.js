// The compliance console: sign in, file erasure requests, follow them live, prove them.
// Plain ES modules, no framework and no third-party code. Every value shown comes from the API (or
// Cognito's token) and is put into the page as text, never as HTML. Subject ids exist only in the
// form's fields until they are sent in the request body; they never reach the URL, storage or logs.

import { Api, ApiError, SignInNeeded } from "./api.js";
import { Auth } from "./auth.js";
import { renderCertificate, verificationSummary } from "./certificate.js";
import { parseCsv, parseIds, validate } from "./validate.js";

const STEPS = ["RECEIVED", "SCHEDULED", "FINDING", "ERASING", "VERIFYING", "COMPLETED"];
const FINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const CANCELLABLE = new Set(["RECEIVED", "SCHEDULED", "FINDING"]);
const POLL_MS = 1500;
const LIST_POLL_MS = 10000;
const PAGE = 50;

let config;
let catalog;
let auth;
let api;
let view = 0; // bumps on every navigation: pollers of an old view stop

// -- DOM helpers ----------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

const present = (nodes) => nodes.filter((n) => n !== null && n !== undefined && n !== false);

function show(...nodes) {
  $("main").replaceChildren(...present(nodes));
}

function toast(text, kind = "ok") {
  const t = $("toast");
  t.textContent = text;
  t.className = `show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 5000);
}

function when(ts) {
  if (ts === null || ts === undefined) return "—";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

const awaiting = (r) => Boolean(r.approval && r.approval.required && !r.approval.approved_by && r.state === "RECEIVED");

function badge(state) {
  return h("span", { class: `badge s-${state.toLowerCase()}`, "data-state": state }, state);
}

function risk(r) {
  if (FINAL.has(r.state)) return h("span", { class: "risk none" }, "—");
  const days = r.deadline_in_days;
  if (days < 0) return h("span", { class: "risk overdue" }, `overdue by ${Math.abs(days).toFixed(1)} d`);
  if (days <= config.riskDays) return h("span", { class: "risk at-risk" }, `at risk: ${days.toFixed(1)} d left`);
  return h("span", { class: "risk ok" }, `${days.toFixed(1)} d left`);
}

function problem(err) {
  const box = h("div", { class: "error", role: "alert" }, err.message);
  if (err.errors && err.errors.length) box.append(h("ul", {}, err.errors.map((e) => h("li", {}, e))));
  return box;
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function handle(err) {
  if (err instanceof SignInNeeded) {
    toast(err.message, "warn");
    go("#/sign-in");
    return null;
  }
  return problem(err);
}

// -- sign in --------------------------------------------------------------------------------------
function signInView(step = null) {
  const error = h("div");
  const submit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    error.replaceChildren();
    try {
      let next;
      if (!step) next = await auth.signIn(String(f.get("username")).trim(), String(f.get("password")));
      else if (step.challenge === "NEW_PASSWORD_REQUIRED") next = await auth.answer(step, { NEW_PASSWORD: String(f.get("new_password")) });
      else next = await auth.answer(step, { SOFTWARE_TOKEN_MFA_CODE: String(f.get("code")).trim() });
      if (next) return signInView(next);
      chrome();
      go("#/requests");
    } catch (err) {
      error.replaceChildren(problem(err));
    }
  };
  let fields;
  if (!step) {
    fields = [
      h("label", {}, "User name", h("input", { name: "username", id: "username", autocomplete: "username", required: true })),
      h("label", {}, "Password", h("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true })),
    ];
  } else if (step.challenge === "NEW_PASSWORD_REQUIRED") {
    fields = [h("p", {}, "Choose your own password (at least 12 characters, upper and lower case, a digit)."),
      h("label", {}, "New password", h("input", { name: "new_password", type: "password", autocomplete: "new-password", required: true, minlength: 12 }))];
  } else if (step.challenge === "SOFTWARE_TOKEN_MFA") {
    fields = [h("label", {}, "Code from your authenticator app", h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, pattern: "[0-9]{6}" }))];
  } else {
    fields = [h("p", { class: "error" }, `Sign-in needs a step this console does not support (${step.challenge}); ask your administrator.`)];
  }
  show(h("section", { class: "card narrow" },
    h("h2", {}, "Sign in"),
    h("p", { class: "muted" }, `Compliance console of the ${config.env} environment.`),
    h("form", { id: "sign-in", onsubmit: submit }, fields, error, h("button", { type: "submit", id: "sign-in-submit" }, step ? "Continue" : "Sign in"))));
  const first = document.querySelector("#sign-in input");
  if (first) first.focus();
}

// -- requests list --------------------------------------------------------------------------------
function listView() {
  const mine = view;
  const state = { items: [], next: null, filter: "open", ticket: "" };
  const body = h("tbody");
  const status = h("p", { class: "muted", id: "list-status" });
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(true) }, "Load older requests");
  const select = h("select", { id: "filter-state", onchange: (e) => { state.filter = e.target.value; draw(); } },
    h("option", { value: "open", selected: true }, "Open"), h("option", { value: "all" }, "All states"),
    h("option", { value: "risk" }, "At risk or overdue"), h("option", { value: "awaiting" }, "Awaiting approval"),
    [...STEPS, "FAILED", "CANCELLED"].map((s) => h("option", { value: s }, s)));
  const search = h("input", { id: "filter-ticket", type: "search", placeholder: "Search by ticket", autocomplete: "off",
    oninput: (e) => { state.ticket = e.target.value.trim().toLowerCase(); draw(); } });

  function keep(r) {
    if (state.ticket && !String(r.ticket || "").toLowerCase().includes(state.ticket)) return false;
    if (state.filter === "all") return true;
    if (state.filter === "open") return !FINAL.has(r.state);
    if (state.filter === "awaiting") return awaiting(r);
    if (state.filter === "risk") return !FINAL.has(r.state) && r.deadline_in_days <= config.riskDays;
    return r.state === state.filter;
  }

  function draw() {
    const rows = state.items.filter(keep);
    body.replaceChildren(...rows.map((r) => h("tr", { "data-id": r.id },
      h("td", {}, h("a", { href: `#/requests/${r.id}` }, r.id)),
      h("td", {}, badge(r.state), awaiting(r) ? h("small", { class: "muted" }, " awaiting approval") : null),
      h("td", {}, r.ticket || "—"),
      h("td", {}, when(r.received_at)),
      h("td", {}, when(r.deadline)),
      h("td", {}, risk(r)),
      h("td", {}, r.datasets.join(", ")),
      h("td", { class: "num" }, r.subject_count),
      h("td", { class: "num" }, r.result && r.result.rows_removed !== undefined ? r.result.rows_removed : "—"))));
    status.textContent = `${rows.length} of ${state.items.length} loaded request(s) shown` + (state.next ? " · older ones not loaded yet" : "");
    more.hidden = !state.next;
  }

  async function load(older = false) {
    try {
      if (older) {
        const page = await api.list(PAGE, state.next);
        state.items.push(...page.items);
        state.next = page.next;
      } else {
        const page = await api.list(PAGE);
        const seen = new Set(page.items.map((r) => r.id));
        const rest = state.items.filter((r) => !seen.has(r.id) && page.items.length && r.id < page.items[page.items.length - 1].id);
        state.items = [...page.items, ...rest];
        if (!rest.length) state.next = page.next;
      }
      if (mine === view) draw();
    } catch (err) {
      const box = handle(err);
      if (box && mine === view) status.replaceChildren(box);
    }
  }

  show(h("section", {},
    h("div", { class: "head" }, h("h2", {}, "Erasure requests"),
      auth.can("erasure-filers") ? h("a", { href: "#/new", class: "button", id: "new-request" }, "File a request") : null),
    h("div", { class: "filters" }, h("label", {}, "State ", select), h("label", {}, "Ticket ", search)),
    h("table", { id: "requests" }, h("thead", {}, h("tr", {},
      ["Request", "State", "Ticket", "Received", "Deadline", "Deadline risk", "Datasets", "Subjects", "Rows removed"].map((c) => h("th", {}, c)))), body),
    status, more));
  load();
  const tick = () => {
    if (mine !== view) return;
    if (document.visibilityState === "visible") load();
    setTimeout(tick, LIST_POLL_MS);
  };
  setTimeout(tick, LIST_POLL_MS);
}

// -- file a request -------------------------------------------------------------------------------
function newView() {
  if (!auth.can("erasure-filers")) {
    show(h("section", { class: "card" }, h("h2", {}, "File a request"),
      h("p", { class: "error" }, "Your account may not file requests: it needs the group erasure-filers.")));
    return;
  }
  // One idempotency key per form: submitting again (double click, retry after a network error) files nothing new.
  const clientRequestId = `console-${crypto.randomUUID()}`;
  const errors = h("div", { id: "form-errors" });
  const count = h("span", { class: "muted", id: "id-count" }, "0 ids");
  const ids = h("textarea", { id: "subject-ids", name: "subject_ids", rows: 5, autocomplete: "off", spellcheck: "false",
    placeholder: "One subject id per line (or separated by commas)", oninput: () => recount() });
  const allColumns = catalog.datasets.flatMap((d) => d.subjectColumns.map((c) => c.name));
  const csv = h("input", { type: "file", id: "subject-csv", accept: ".csv,text/csv,text/plain", onchange: async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const found = parseCsv(await file.text(), allColumns);
    ids.value = [...parseIds(ids.value), ...found].join("\n");
    e.target.value = "";
    recount();
    toast(`${found.length} id(s) read from the file (nothing was uploaded)`);
  } });
  function recount() {
    const list = parseIds(ids.value);
    const unique = new Set(list).size;
    count.textContent = `${list.length} id(s)` + (unique !== list.length ? `, ${unique} distinct` : "");
  }
  const boxes = catalog.datasets.map((d) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "datasets", value: d.name, checked: true }),
    ` ${d.name} `, h("span", { class: "muted" }, `(${d.subjectColumns.map((c) => `${c.name}: ${c.type}`).join(", ")})`)));
  const submit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const { errors: problems, body } = validate({
      subjectIds: parseIds(ids.value), datasets: f.getAll("datasets").map(String), reason: String(f.get("reason")),
      ticket: String(f.get("ticket")), requestedBy: String(f.get("requested_by")), deadline: String(f.get("deadline") || ""),
      clientRequestId,
    }, { ...catalog, deadlineDays: config.deadlineDays });
    if (problems.length) {
      errors.replaceChildren(problem({ message: "Please fix these before filing:", errors: problems }));
      return;
    }
    errors.replaceChildren();
    const button = ev.submitter || $("file-submit");
    button.disabled = true;
    try {
      const r = await api.file(body);
      if (f.get("start_now") && !r.duplicate && r.state === "RECEIVED") await api.startRun();
      ids.value = ""; // the ids leave the page once filed
      toast(r.duplicate ? `Already filed as ${r.id} (nothing new was filed)` : `Filed ${r.id}`);
      location.hash = `#/requests/${r.id}`;
    } catch (err) {
      const box = handle(err);
      if (box) errors.replaceChildren(box);
    } finally {
      button.disabled = false;
    }
  };
  show(h("section", { class: "card" },
    h("h2", {}, "File an erasure request"),
    h("form", { id: "file-form", onsubmit: submit, autocomplete: "off", novalidate: true },
      h("fieldset", {}, h("legend", {}, "Data subjects"), ids,
        h("div", { class: "row" }, count, h("label", { class: "file" }, "or read ids from a CSV file ", csv))),
      h("fieldset", {}, h("legend", {}, "Datasets"), boxes),
      h("label", {}, "Reason", h("input", { name: "reason", id: "reason", required: true, maxlength: catalog.limits.maxReason, placeholder: "e.g. GDPR art. 17 request" })),
      h("div", { class: "row" },
        h("label", {}, "Ticket", h("input", { name: "ticket", id: "ticket", maxlength: catalog.limits.maxTicket, placeholder: "e.g. PRIV-1234" })),
        h("label", {}, "Requested by", h("input", { name: "requested_by", id: "requested-by", maxlength: catalog.limits.maxRequestedBy, placeholder: auth.user().name })),
        h("label", {}, "Deadline", h("input", { name: "deadline", id: "deadline", type: "date" }),
          h("small", { class: "muted" }, `default and latest: ${config.deadlineDays} days after filing`))),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "start_now", id: "start-now" }), " Start erasing now (otherwise the next batch picks it up)"),
      errors,
      h("button", { type: "submit", id: "file-submit" }, "File request"))));
  ids.focus();
}

// -- one request ----------------------------------------------------------------------------------
function stepper(r) {
  const at = STEPS.indexOf(r.state);
  return h("ol", { class: "steps" }, STEPS.map((s, i) => h("li", {
    class: r.state === s ? "current" : (at > i || r.state === "COMPLETED" ? "done" : ""),
  }, s)));
}

function progressBlock(r) {
  const p = r.progress;
  if (FINAL.has(r.state)) {
    const res = r.result || {};
    return h("div", { id: "progress", class: "progress-box" },
      h("p", {}, r.state === "CANCELLED" ? "Cancelled before anything was erased." :
        `${res.rows_removed ?? 0} row(s) removed, ${res.files_rewritten ?? 0} file(s) rewritten; verified: ${res.verified ? "yes" : "no"}.`));
  }
  if (awaiting(r)) {
    return h("div", { id: "progress", class: "progress-box" },
      h("p", {}, "Waiting for approval by someone other than its filer (group erasure-approvers); no run takes it before."));
  }
  if (!p) return h("div", { id: "progress", class: "progress-box" }, h("p", { class: "muted" }, "Waiting for a run to pick it up."));
  const pct = p.tasks_total ? Math.round((100 * p.tasks_done) / p.tasks_total) : 0;
  return h("div", { id: "progress", class: "progress-box" },
    h("p", {}, `Run ${p.run_id}, attempt ${p.attempt}: ${p.phase}`, p.tasks_total ? ` — ${p.tasks_done} of ${p.tasks_total} task(s)` : ""),
    h("progress", { max: 100, value: pct }));
}

function detailView(id) {
  const mine = view;
  const box = h("section", { id: "request", "data-id": id }, h("p", { class: "muted" }, "Loading…"));
  show(box);
  const cert = h("div", { id: "certificate-box" });
  let certShown = false;

  async function cancel() {
    if (!confirm(`Cancel ${id}? Nothing will be erased for it.`)) return;
    try {
      await api.cancel(id);
      toast(`Cancelled ${id}`);
      refresh();
    } catch (err) {
      const b = handle(err);
      if (b) box.prepend(b);
    }
  }

  function draw(r) {
    const facts = [["Received", when(r.received_at)], ["Deadline", h("span", {}, when(r.deadline), " ", FINAL.has(r.state) ? "" : risk(r))],
      ["Reason", r.reason], ["Ticket", r.ticket || "—"], ["Requested by", r.requested_by],
      ["Filed through", r.caller || r.source], ["Datasets", r.datasets.join(", ")],
      ["Subjects", `${r.subject_count} (kept only as salted hashes)`]];
    if (r.approval && r.approval.approved_by) facts.push(["Approved by", `${r.approval.approved_by} at ${when(r.approval.approved_at)}`]);
    const me = `cognito:${auth.user().name}`;
    const actions = h("div", { class: "actions" });
    if (awaiting(r) && auth.can("erasure-approvers")) {
      actions.append(r.caller === me
        ? h("span", { class: "muted" }, "You filed this request: someone else must approve it.")
        : h("button", { type: "button", id: "approve", onclick: approve }, "Approve"));
    }
    if (r.state === "RECEIVED" && !awaiting(r) && auth.can("erasure-filers")) {
      actions.append(h("button", { type: "button", class: "secondary", id: "start-run", onclick: startRun }, "Start erasing now"));
    }
    if (CANCELLABLE.has(r.state) && auth.can("erasure-filers")) {
      actions.append(h("button", { type: "button", class: "danger", id: "cancel", onclick: cancel }, "Cancel request"));
    }
    if ((r.state === "COMPLETED" || r.state === "FAILED") && auth.can("erasure-readers")) {
      actions.append(
        h("button", { type: "button", id: "download-json", onclick: () => save("json") }, "Download certificate (JSON)"),
        h("button", { type: "button", class: "secondary", id: "download-md", onclick: () => save("md") }, "Download (Markdown)"),
        h("a", { class: "button secondary", id: "printable", href: `#/requests/${r.id}/certificate` }, "Printable certificate"));
      if (!certShown) {
        certShown = true;
        api.certificate(r.id).then((c) => { if (mine === view) cert.replaceChildren(verificationSummary(c, h)); })
          .catch((err) => { const b = handle(err); if (b && mine === view) cert.replaceChildren(b); });
      }
    }
    box.replaceChildren(...present([
      h("div", { class: "head" }, h("h2", {}, r.id), badge(r.state)),
      stepper(r), progressBlock(r),
      r.error ? h("div", { class: "error" }, r.error) : null,
      h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      actions, cert,
      h("h3", {}, "Timeline"),
      h("ol", { class: "timeline", id: "timeline" }, r.history.map((e) => h("li", {},
        h("time", {}, when(e.at)), " ", badge(e.state), e.note ? ` ${e.note}` : "")))]));
  }

  async function startRun() {
    try {
      const r = await api.startRun();
      toast(`A run starts now with ${r.pending} pending request(s)`);
      refresh();
    } catch (err) {
      const b = handle(err);
      if (b) box.prepend(b);
    }
  }

  async function approve() {
    try {
      await api.approve(id);
      toast(`Approved ${id}`);
      refresh();
    } catch (err) {
      const b = handle(err);
      if (b) box.prepend(b);
    }
  }

  async function save(format) {
    try {
      const data = await api.certificate(id, format);
      if (format === "json") download(`${id}-certificate.json`, JSON.stringify(data, null, 2) + "\n", "application/json");
      else download(`${id}-certificate.md`, data, "text/markdown");
    } catch (err) {
      const b = handle(err);
      if (b) box.prepend(b);
    }
  }

  async function refresh() {
    try {
      const r = await api.get(id);
      if (mine !== view) return null;
      draw(r);
      return r;
    } catch (err) {
      const b = handle(err);
      if (b && mine === view) box.replaceChildren(b);
      return null;
    }
  }

  // Live progress by polling the request (see docs/design/console.md): every 1.5 s while visible.
  const tick = async () => {
    if (mine !== view) return;
    const r = document.visibilityState === "visible" ? await refresh() : { state: "" };
    if (r && FINAL.has(r.state)) return;
    setTimeout(tick, POLL_MS);
  };
  tick();
}

async function certificateView(id) {
  const mine = view;
  show(h("p", { class: "muted" }, "Loading the certificate…"));
  try {
    const c = await api.certificate(id);
    if (mine !== view) return;
    show(h("div", { class: "no-print actions" },
      h("a", { href: `#/requests/${id}`, class: "button secondary" }, "Back"),
      h("button", { type: "button", id: "print", onclick: () => window.print() }, "Print or save as PDF")),
    renderCertificate(c, h));
  } catch (err) {
    const b = handle(err);
    if (b) show(b);
  }
}

// -- routing --------------------------------------------------------------------------------------
function chrome() {
  const user = auth.user();
  $("nav").hidden = !user;
  $("who").hidden = !user;
  $("user").textContent = user ? `${user.name} · ${user.groups.join(", ") || "no groups"}` : "";
  $("nav-new").hidden = !(user && auth.can("erasure-filers"));
}

/** Show `hash` exactly once: a changed hash routes through `hashchange`, an unchanged one routes here
 * (routing both ways drew the view twice, and what was typed into the first form was lost). */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  view += 1;
  const hash = location.hash || "#/requests";
  chrome();
  if (!auth.user()) return signInView();
  let m;
  if ((m = hash.match(/^#\/requests\/(er-[0-9]{14}-[0-9a-f]{10})\/certificate$/))) return certificateView(m[1]);
  if ((m = hash.match(/^#\/requests\/(er-[0-9]{14}-[0-9a-f]{10})$/))) return detailView(m[1]);
  if (hash === "#/new") return newView();
  if (hash === "#/sign-in") { location.hash = "#/requests"; return undefined; }
  return listView();
}

async function main() {
  try {
    [config, catalog] = await Promise.all(["config.json", "datasets.json"].map((f) =>
      fetch(f, { cache: "no-store" }).then((r) => { if (!r.ok) throw new Error(`${f}: ${r.status}`); return r.json(); })));
  } catch (err) {
    show(problem(new ApiError(0, `The console is not configured (${err.message}); redeploy the erasure stack.`)));
    return;
  }
  $("env").textContent = config.env;
  auth = new Auth(config);
  api = new Api(config.apiBase, auth);
  auth.onSignedOut = () => chrome();
  $("sign-out").addEventListener("click", async () => { await auth.signOut(); go("#/sign-in"); });
  window.addEventListener("hashchange", route);
  route();
}

main();
