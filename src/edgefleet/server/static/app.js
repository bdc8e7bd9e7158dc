/* edgefleet operator console: plain JS, no build step, no third-party code.
 *
 * Everything the page shows comes from the API (/api/v1) with the operator's bearer token;
 * every value is inserted as text (never as HTML). Views: fleet (workers, steering, the
 * standing concurrency layers), queues (depth, caps, throughput chart), jobs (recent jobs,
 * logs, submit) and audit (control changes). Data refreshes on a timer while the tab is
 * visible.
 *
 * The token's role (GET /whoami) decides what is shown: a viewer reads, an operator also
 * steers workers and submits or cancels jobs, an admin also revokes and removes workers.
 * Controls a role may not use carry data-needs="operator|admin" and are hidden by the
 * stylesheet (body[data-role]); the server refuses them all the same.
 */
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "edgefleet.ui.token";
  const MAX_CONCURRENCY = 1024;
  const REFRESH_MS = { fleet: 1500, queues: 3000, jobs: 2500, audit: 4000 };
  const VIEWS = ["fleet", "queues", "jobs", "audit"];
  const WORKER_STATES = [
    "starting", "idle", "running", "maintenance_pending", "maintenance",
    "shutdown_pending", "stopped", "unknown", "offline", "revoked",
  ];
  const ONLINE_STATES = new Set([
    "starting", "idle", "running", "maintenance_pending", "maintenance", "shutdown_pending",
  ]);
  const REMOVABLE_STATES = new Set(["offline", "stopped", "revoked"]);
  const JOB_STATES = ["queued", "running", "success", "failed", "cancelled"];
  const JOB_FINISHED = new Set(["success", "failed", "cancelled"]);
  /** Operator roles, each allowed what the ones before it are (a worker has none of them). */
  const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };

  // --- DOM helpers ----------------------------------------------------------------------

  const $ = (selector, root = document) => root.querySelector(selector);

  /** Build an element; attrs: class, text, dataset, on<event>, or plain attributes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** Replace a cell's content only when its key changed, so refreshes don't flicker. */
  function setCell(td, key, build) {
    if (td.dataset.k === key) return;
    td.dataset.k = key;
    td.replaceChildren(...[build()].flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  }

  function showError(el, error) {
    if (!el) return;
    if (!error) {
      el.hidden = true;
      el.replaceChildren();
      return;
    }
    const status = error.status ? `${error.status} ${error.code || ""}`.trim() : null;
    el.replaceChildren(
      h("span", { class: "err-icon", "aria-hidden": "true", text: "!" }),
      h("span", { class: "err-text", text: error.message || String(error) }),
      ...(status ? [h("span", { class: "err-code", text: status })] : []),
    );
    el.hidden = false;
  }

  // --- time -------------------------------------------------------------------------------

  let skewMs = 0; // server clock minus ours, from the Date header
  const now = () => Date.now() + skewMs;

  function noteServerDate(response, sentAt) {
    const header = response.headers.get("Date");
    const server = header ? Date.parse(header) : NaN;
    if (Number.isNaN(server)) return;
    const skew = server + 500 - (sentAt + Date.now()) / 2; // the header has 1 s resolution
    skewMs = Math.abs(skew) > 1500 ? skew : 0;
  }

  function parseTime(value) {
    if (!value) return null;
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t;
  }

  function span(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function ago(value) {
    const t = parseTime(value);
    if (t === null) return "—";
    const seconds = (now() - t) / 1000;
    if (seconds < -2) return `in ${span(-seconds)}`;
    if (seconds < 2) return "just now";
    return `${span(seconds)} ago`;
  }

  const pad = (n, w = 2) => String(n).padStart(w, "0");

  function stamp(value) {
    const t = parseTime(value);
    if (t === null) return "—";
    const d = new Date(t);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  /** A moment as a wall-clock time: "14:05" today, "2026-12-01 14:05" on another day. */
  function clock(value) {
    const t = parseTime(value);
    if (t === null) return "—";
    const d = new Date(t);
    const today = new Date(now());
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return d.toDateString() === today.toDateString() ? hm : `${stamp(value).slice(0, 10)} ${hm}`;
  }

  const DURATION_UNITS = { "": 1, s: 1, m: 60, h: 3600, d: 86400 };

  /** Seconds from 90, 90s, 30m, 1.5h, 1d or parts such as 1h30m (as the CLI's --for reads
   * them). */
  function parseDuration(text) {
    const plain = text.trim().toLowerCase();
    const single = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/.exec(plain);
    if (single) return Number(single[1]) * DURATION_UNITS[single[2]];
    const parts = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(plain);
    if (!plain || !parts || !parts.slice(1).some(Boolean)) {
      throw new Error(`bad duration "${text.trim()}": use e.g. 30s, 15m, 2h, 1h30m or 1d`);
    }
    const units = [86400, 3600, 60, 1];
    return units.reduce((sum, unit, i) => sum + Number(parts[i + 1] || 0) * unit, 0);
  }

  /** The ``until`` of a "for" box: None when empty, else now plus the duration (ISO, UTC). */
  function untilOf(input) {
    const text = input.value.trim();
    if (!text) return undefined;
    const seconds = parseDuration(text);
    if (!(seconds > 0)) throw new Error("The duration must be more than 0 seconds.");
    return new Date(now() + seconds * 1000).toISOString();
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))}ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${pad(Math.floor(seconds % 60))}s`;
    return `${Math.floor(seconds / 3600)}h ${pad(Math.floor((seconds % 3600) / 60))}m`;
  }

  // --- API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, detail) {
      super(describeDetail(detail) || `request failed (HTTP ${status})`);
      this.status = status;
      this.code = code;
      this.detail = detail;
    }
  }

  /** Turn an error body's detail (a string, or FastAPI's list of validation errors) into text. */
  function describeDetail(detail) {
    if (detail === null || detail === undefined) return "";
    if (Array.isArray(detail)) {
      return detail.map((e) => {
        if (!e || typeof e !== "object") return String(e);
        const loc = (e.loc || []).filter((p, i) => !(i === 0 && ["body", "query", "path"].includes(p)));
        return (loc.length ? `${loc.join(".")}: ` : "") + (e.msg || JSON.stringify(e));
      }).join("; ");
    }
    return typeof detail === "string" ? detail : JSON.stringify(detail);
  }

  async function api(method, path, body, { token } = {}) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${token || session.token}` };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const sentAt = Date.now();
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (error) {
      throw new ApiError(0, "network", `cannot reach the edgefleet server (${error.message})`);
    }
    noteServerDate(response, sentAt);
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (!response.ok) {
      const isBody = data && typeof data === "object" && "detail" in data;
      const error = new ApiError(
        response.status,
        (isBody && data.error) || `http_${response.status}`,
        isBody ? data.detail : (data || response.statusText),
      );
      if (response.status === 401 && !token) signOut(`You were signed out: ${error.message}`);
      throw error;
    }
    return data;
  }

  const enc = encodeURIComponent;

  // --- session ----------------------------------------------------------------------------

  const session = { token: null, claims: null, name: null, role: null, expiryTimer: null };

  /** Whether the signed-in token's role includes ``role``. */
  const may = (role) => session.role in ROLE_RANK && ROLE_RANK[session.role] >= ROLE_RANK[role];

  const WORKER_REFUSAL = "This is a worker's credential: it can act only as its own worker, never "
    + "in the console. Sign in with an operator token (edgefleet token create) or edgefleet ui-token.";
  const JOIN_REFUSAL = "This is a join token: it is good only for enrolling a new worker. Sign in "
    + "with an operator token (edgefleet token create) or edgefleet ui-token.";

  /** What the token itself says before the server is asked: refuses the kinds that can never
   * sign in, and reads a JWT's claims (for its expiry). An operator token (efo_) is opaque. */
  function readToken(token) {
    if (token.startsWith("efw_")) throw new Error(WORKER_REFUSAL);
    if (token.startsWith("efj_")) throw new Error(JOIN_REFUSAL);
    if (token.startsWith("efo_")) return {};
    const parts = token.split(".");
    if (parts.length !== 3) {
      throw new Error("That is not a token: paste an operator token (efo_…) or the line printed by edgefleet ui-token.");
    }
    let claims;
    try {
      const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
      claims = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new Error("Cannot read the token's payload; copy the whole line printed by edgefleet ui-token.");
    }
    if (claims.role === "worker") throw new Error(WORKER_REFUSAL);
    if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) {
      throw new Error(`This token expired at ${stamp(new Date(claims.exp * 1000).toISOString())}; create a new one.`);
    }
    return claims;
  }

  async function signIn(token, { quiet = false } = {}) {
    const claims = readToken(token);
    const me = await api("GET", "/whoami", undefined, { token }); // the server has the last word
    if (!(me.role in ROLE_RANK)) throw new Error(me.role === "worker" ? WORKER_REFUSAL : `Unknown role ${me.role}.`);
    resetViews();
    Object.assign(session, { token, claims, name: me.name, role: me.role });
    sessionStorage.setItem(TOKEN_KEY, token);
    clearTimeout(session.expiryTimer);
    if (typeof claims.exp === "number") {
      const ms = claims.exp * 1000 - Date.now();
      session.expiryTimer = setTimeout(() => signOut("Your token expired. Sign in with a new one."), Math.min(ms, 2 ** 31 - 1));
    }
    $("#user-name").textContent = me.name;
    const role = $("#user-role");
    role.textContent = me.role;
    role.dataset.role = me.role;
    role.title = `${ROLE_HELP[me.role]} (${me.source === "secret" ? "token signed with the shared secret" : "operator token"})`;
    document.body.dataset.role = me.role;
    $("#signin").hidden = true;
    $("#app").hidden = false;
    if (!quiet) toast("ok", `Signed in as ${me.name} (${me.role})`);
    route();
    refreshNow();
  }

  const ROLE_HELP = {
    viewer: "Viewer: reads the fleet, jobs and audit log; changes nothing",
    operator: "Operator: steers workers, submits and cancels jobs",
    admin: "Admin: everything, including revoking and removing workers",
  };

  /** Forget what a previous session showed: the next token may see less (or more). */
  function resetViews() {
    fleet.selected.clear();
    $("#fleet-rows").replaceChildren();
    $("#jobs-rows").replaceChildren();
    $("#queues-rows").replaceChildren();
    Object.assign(features, { loaded: false, cancel: null });
    Object.assign(layers, { at: 0, schedules: true });
  }

  function signOut(message) {
    Object.assign(session, { token: null, claims: null, name: null, role: null });
    delete document.body.dataset.role;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(session.expiryTimer);
    clearTimeout(poller.timer);
    closeDrawer(false);
    const dialog = $("#dialog");
    if (dialog.open) dialog.close();
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#signin-token").value = "";
    showError($("#signin-error"), message ? { message } : null);
    $("#signin-token").focus();
  }

  function renderExpiry() {
    const el = $("#user-exp");
    if (!session.claims || typeof session.claims.exp !== "number") {
      el.textContent = "";
      return;
    }
    const left = session.claims.exp - Date.now() / 1000;
    el.textContent = `token ${span(left)} left`;
    el.classList.toggle("soon", left < 900);
    el.title = `Token expires ${stamp(new Date(session.claims.exp * 1000).toISOString())}`;
  }

  // --- toasts and dialogs -------------------------------------------------------------

  function toast(kind, title, lines = []) {
    const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
      h("div", { class: "toast-title", text: title }),
      lines.slice(0, 6).map((line) => h("div", { class: "toast-line", text: line })),
      lines.length > 6 ? h("div", { class: "toast-line muted", text: `… and ${lines.length - 6} more` }) : null,
    );
    el.addEventListener("click", () => el.remove());
    const box = $("#toasts");
    box.append(el);
    while (box.childElementCount > 4) box.firstElementChild.remove();
    setTimeout(() => el.classList.add("leaving"), kind === "error" ? 9000 : 4500);
    setTimeout(() => el.remove(), kind === "error" ? 9400 : 4900);
  }

  /** A modal question; resolves to {value} on confirm or null on cancel. */
  function ask({ title, message, confirmLabel = "Confirm", danger = false, field = null, list = null }) {
    const dialog = $("#dialog");
    return new Promise((resolve) => {
      let result = null;
      const input = field
        ? h(field.multiline ? "textarea" : "input", {
          id: "dialog-input", class: "block", rows: field.multiline ? 3 : null,
          placeholder: field.placeholder || "", maxlength: field.maxlength || null, spellcheck: "false",
        })
        : null;
      if (input) input.value = field.value || "";
      const error = h("div", { class: "field-error", role: "alert", hidden: true });
      const confirm = h("button", {
        type: "button", id: "dialog-confirm", class: `btn ${danger ? "danger" : "primary"}`, text: confirmLabel,
        onclick: () => {
          if (input && field.required && !input.value.trim()) {
            showError(error, { message: field.requiredMessage || "This field is required." });
            input.focus();
            return;
          }
          result = { value: input ? input.value.trim() : null };
          dialog.close();
        },
      });
      const cancel = h("button", {
        type: "button", id: "dialog-cancel", class: "btn ghost", text: "Cancel", onclick: () => dialog.close(),
      });
      dialog.replaceChildren(
        h("div", { class: "dialog-body" },
          h("h2", { text: title }),
          message ? h("p", { text: message }) : null,
          list && list.length ? h("ul", { class: "dialog-list" }, list.map((item) => h("li", { class: "mono", text: item }))) : null,
          input ? h("label", { for: "dialog-input", text: field.label }) : null,
          input,
          error,
        ),
        h("div", { class: "dialog-actions" }, cancel, confirm),
      );
      dialog.addEventListener("close", () => resolve(result), { once: true });
      if (input) {
        input.addEventListener("keydown", (event) => {
          if (event.key === "Enter" && (!field.multiline || event.ctrlKey || event.metaKey)) {
            event.preventDefault();
            confirm.click();
          }
        });
      }
      dialog.showModal();
      (input || (danger ? cancel : confirm)).focus();
    });
  }

  // --- change sets --------------------------------------------------------------------

  const awaitingAck = new Map(); // hostname -> desired version the operator is waiting for

  function fmtValue(value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) return value.length ? value.join(", ") : "(none)";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function reportChanges(label, changeSet) {
    const changes = (changeSet && changeSet.changes) || [];
    if (!changes.length) {
      toast("info", `${label}: nothing to change`, ["The workers already have this desired state."]);
      return;
    }
    for (const [host, version] of Object.entries(changeSet.versions || {})) {
      // A revocation is the server's alone: the worker has nothing to acknowledge.
      if (changes.some((c) => c.hostname === host && c.field !== "revoked")) awaitingAck.set(host, version);
    }
    const byHost = new Map();
    for (const c of changes) {
      const entry = byHost.get(c.hostname) || { version: c.desired_version, parts: [] };
      entry.version = Math.max(entry.version, c.desired_version);
      if (c.field !== "concurrency_source" || !changes.some((o) => o.hostname === c.hostname && o.field === "concurrency")) {
        entry.parts.push(`${c.field} ${fmtValue(c.old)} → ${fmtValue(c.new)}`);
      }
      byHost.set(c.hostname, entry);
    }
    toast("ok", label, [...byHost].map(([host, e]) => `${host} v${e.version}: ${e.parts.join(", ")}`));
  }

  function noteAcks(workers) {
    const acked = [];
    for (const w of workers) {
      const version = awaitingAck.get(w.hostname);
      if (version === undefined) continue;
      if (w.applied_version >= version) {
        awaitingAck.delete(w.hostname);
        acked.push(`${w.hostname} v${version}`);
      } else if (!ONLINE_STATES.has(w.state)) {
        awaitingAck.delete(w.hostname); // it will apply the change when it is back
      }
    }
    if (acked.length === 1) toast("info", `Acknowledged by ${acked[0]}`);
    else if (acked.length) toast("info", `Acknowledged by ${acked.length} workers`, acked);
  }

  /** Run a control request from a button: disable it meanwhile, show errors next to it. */
  async function act(button, errorEl, label, request) {
    if (button) button.disabled = true;
    showError(errorEl, null);
    try {
      const result = await request();
      if (result && Array.isArray(result.changes)) reportChanges(label, result);
      else toast("ok", label);
      refreshNow();
      return true;
    } catch (error) {
      showError(errorEl, error);
      if (!errorEl) toast("error", `${label} failed`, [error.message]);
      return false;
    } finally {
      if (button) button.disabled = false;
    }
  }

  /** Which layer set a worker's concurrency, in words. */
  function sourceTitle(w) {
    if (w.concurrency_source === "operator") return "set by an operator";
    if (w.concurrency_source === "schedule") return `schedule ${w.concurrency_schedule || ""}`.trim();
    if (w.concurrency_source === "label-rule") return `label rule ${w.concurrency_rule}`;
    if (w.concurrency_source === "fleet-default") return "the fleet default";
    return "the worker's own flag";
  }

  /** The layer's short name for the fleet table: operator, rule site=a, schedule night, … */
  function sourceWord(w) {
    if (w.concurrency_source === "label-rule") return `rule ${w.concurrency_rule}`;
    if (w.concurrency_source === "schedule") return `schedule ${w.concurrency_schedule || ""}`.trim();
    if (w.concurrency_source === "fleet-default") return "fleet default";
    return w.concurrency_source;
  }

  /** When an operator's value ends by itself: "until 14:05 (in 58m)", or null. */
  function untilText(w) {
    return w.concurrency_until ? `until ${clock(w.concurrency_until)} (${ago(w.concurrency_until)})` : null;
  }

  /** Parse a concurrency input: a whole number is sent as is; the server validates the range. */
  function concurrencyValue(input) {
    const text = input.value.trim();
    if (!text) return { error: `Enter a concurrency from 1 to ${MAX_CONCURRENCY}.` };
    const value = Number(text);
    if (!Number.isFinite(value)) return { error: `"${text}" is not a number.` };
    return { value };
  }

  // --- badges ---------------------------------------------------------------------------

  const label = (state) => String(state || "unknown").replace(/_/g, " ");

  function stateBadge(state, kind = "worker") {
    const known = kind === "worker" ? WORKER_STATES.includes(state) : JOB_STATES.includes(state);
    const cls = known ? `s-${state}` : "s-other";
    return h("span", { class: `badge ${cls}`, dataset: { state: state || "" } }, h("i"), label(state));
  }

  const chip = (text, cls = "") => h("span", { class: `chip ${cls}`.trim(), text });

  // --- fleet ------------------------------------------------------------------------------

  const fleet = {
    workers: [],
    byHost: new Map(),
    selected: new Set(),
    loaded: false,
  };

  function globToRegExp(glob) {
    let re = "";
    for (let i = 0; i < glob.length; i++) {
      const c = glob[i];
      if (c === "*") re += ".*";
      else if (c === "?") re += ".";
      else if (c === "[" && glob.indexOf("]", i + 2) > i) {
        const end = glob.indexOf("]", i + 2);
        let body = glob.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (body.startsWith("!")) body = `^${body.slice(1)}`;
        re += `[${body}]`;
        i = end;
      } else re += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }
    try { return new RegExp(`^${re}$`, "i"); } catch { return /$^/; }
  }

  /** The filter box: space-separated terms, all must match. */
  function workerMatcher(text) {
    const terms = text.trim().split(/\s+/).filter(Boolean).map((term) => {
      const lower = term.toLowerCase();
      if (lower.startsWith("state:")) {
        const want = lower.slice(6);
        return (w) => w.state.startsWith(want);
      }
      if (lower.startsWith("queue:") || lower.startsWith("q:")) {
        const want = lower.slice(lower.indexOf(":") + 1);
        return (w) => w.queues.some((q) => q.toLowerCase() === want);
      }
      if (term.includes("=")) {
        const [key, value] = [term.slice(0, term.indexOf("=")), term.slice(term.indexOf("=") + 1)];
        return (w) => (w.labels || {})[key] === value;
      }
      if (/[*?[]/.test(term)) {
        const re = globToRegExp(term);
        return (w) => re.test(w.hostname);
      }
      return (w) => w.hostname.toLowerCase().includes(lower);
    });
    const state = $("#fleet-state").value;
    const pendingOnly = $("#fleet-pending").checked;
    return (w) => (!state || w.state === state || (state === "@online" && ONLINE_STATES.has(w.state)))
      && (!pendingOnly || !w.converged)
      && terms.every((match) => match(w));
  }

  async function refreshFleet() {
    const workers = await api("GET", "/workers");
    fleet.workers = workers;
    fleet.byHost = new Map(workers.map((w) => [w.hostname, w]));
    fleet.loaded = true;
    for (const host of [...fleet.selected]) if (!fleet.byHost.has(host)) fleet.selected.delete(host);
    noteAcks(workers);
    renderFleet();
    if (drawer.kind === "worker") updateWorkerPanel();
    if (Date.now() - layers.at > LAYERS_EVERY_MS) {
      layers.at = Date.now();
      refreshLayers().catch(() => {});
    }
  }

  // --- standing concurrency layers: label rules, the fleet default, schedules -------------
  // Anyone reads them; an operator sets and removes them (the forms and the Remove buttons
  // carry data-needs="operator"). Each change is the API's, audited as the CLI's is.

  const LAYERS_EVERY_MS = 5000;
  const layers = { at: 0, schedules: true };

  async function refreshLayers() {
    try {
      const rules = await api("GET", "/concurrency-rules");
      renderRules(rules);
      showError($("#layers-error"), null);
    } catch (error) {
      showError($("#layers-error"), error);
    }
    if (!layers.schedules) return;
    try {
      renderSchedules(await api("GET", "/schedules"));
    } catch (error) {
      if (error.status === 404 || error.status === 405) layers.schedules = false; // a server without schedules
      else showError($("#layers-error"), error);
    }
  }

  function renderRules(rules) {
    const sorted = [...rules].sort((a, b) => (a.source === b.source ? a.rule.localeCompare(b.rule) : a.source === "fleet-default" ? 1 : -1));
    setCell($("#rules-rows"), JSON.stringify(sorted), () => sorted.map((r) => h("tr", { dataset: { rule: r.rule } },
      h("td", {}, h("span", { class: `src ${r.source}`, text: r.source === "fleet-default" ? "fleet default" : "label rule" })),
      h("td", { class: "mono", text: r.source === "fleet-default" ? "every worker" : r.rule }),
      h("td", { class: "num", dataset: { field: "concurrency" }, text: r.concurrency }),
      h("td", { class: "ellipsis", title: r.set_by, text: r.set_by }),
      h("td", { class: "rel", title: stamp(r.set_at), text: ago(r.set_at) }),
      h("td", { dataset: { needs: "operator" } }, removeRuleButton(r)))));
    $("#rules-empty").hidden = rules.length > 0;
    $("#rules-table").hidden = rules.length === 0;
  }

  function renderSchedules(schedules) {
    $("#schedules").hidden = false;
    const windowText = (s) => (s.active
      ? `open until ${clock(s.window_end)} (${ago(s.window_end)})`
      : s.next_start ? `next ${clock(s.next_start)} (${ago(s.next_start)})` : "—");
    setCell($("#schedules-rows"), JSON.stringify(schedules) + schedules.map(windowText).join(), () => schedules.map((s) => h("tr", { dataset: { schedule: s.name } },
      h("td", { class: "mono", text: s.name }),
      h("td", { class: "mono", text: s.all ? "every worker" : Object.entries(s.selector || {}).map(([k, v]) => `${k}=${v}`).join(",") }),
      h("td", { class: "mono", text: `${s.cron} (${s.timezone}) for ${duration(s.duration_seconds)}` }),
      h("td", { class: "num", text: s.concurrency }),
      h("td", { class: s.active ? "info-text" : "", text: windowText(s) }),
      h("td", { dataset: { needs: "operator" } }, removeScheduleButton(s)))));
    $("#schedules-empty").hidden = schedules.length > 0;
    $("#schedules-table").hidden = schedules.length === 0;
  }

  /** Run a change to a layer as ``act`` does; the tables below the fleet reload at once. */
  function changeLayer(button, errorEl, label, request) {
    return act(button, errorEl, label, async () => {
      const result = await request();
      layers.at = 0;
      return result.changes.changes.length ? result.changes : null;
    });
  }

  /** ``site=a,env=prod`` -> labels; an empty box sends none, and the server says so. */
  function selectorLabels(text) {
    const labels = {};
    for (const item of text.split(",").map((part) => part.trim()).filter(Boolean)) {
      const at = item.indexOf("=");
      if (at < 1) throw new Error(`bad selector: '${item}' is not KEY=VALUE`);
      labels[item.slice(0, at).trim()] = item.slice(at + 1).trim();
    }
    return labels;
  }

  const selectorText = (selector) => Object.entries(selector || {}).map(([k, v]) => `${k}=${v}`).join(",");

  function removeRuleButton(r) {
    const isDefault = r.source === "fleet-default";
    const name = isDefault ? "the fleet default" : `rule ${r.rule}`;
    const button = h("button", {
      type: "button", class: "btn small ghost rule-remove", text: "Remove", "aria-label": `Remove ${name}`,
      title: "The workers it decides for fall to the next layer down",
    });
    const query = isDefault ? "default=true" : `selector=${enc(selectorText(r.selector))}`;
    button.addEventListener("click", () => changeLayer(button, $("#rule-error"), `Removed ${name}`,
      () => api("DELETE", `/concurrency-rules?${query}`)));
    return button;
  }

  function removeScheduleButton(s) {
    const button = h("button", {
      type: "button", class: "btn small ghost schedule-remove", text: "Remove", "aria-label": `Remove schedule ${s.name}`,
      title: "The workers its open window decides for fall to the next layer down",
    });
    button.addEventListener("click", () => changeLayer(button, $("#schedule-error"), `Removed schedule ${s.name}`,
      () => api("DELETE", `/schedules/${enc(s.name)}`)));
    return button;
  }

  function submitRule() {
    const errorEl = $("#rule-error");
    const isDefault = $("#rule-kind").value === "default";
    const parsed = concurrencyValue($("#rule-value"));
    if (parsed.error) return showError(errorEl, { message: parsed.error });
    let body;
    try {
      const which = isDefault ? { default: true } : { selector: selectorLabels($("#rule-selector").value) };
      body = { ...which, concurrency: parsed.value };
    } catch (error) {
      return showError(errorEl, error);
    }
    const name = isDefault ? "Fleet default" : `Rule ${selectorText(body.selector)}`;
    changeLayer($("#rule-set"), errorEl, `${name}: set to ${parsed.value}`, () => api("PUT", "/concurrency-rules", body))
      .then((ok) => { if (ok) $("#rule-selector").value = $("#rule-value").value = ""; });
  }

  /** The body of POST /schedules from the form; throws on what only the page reads (--for). */
  function scheduleBody() {
    const parsed = concurrencyValue($("#schedule-value"));
    if (parsed.error) throw new Error(parsed.error);
    const text = $("#schedule-for").value.trim();
    if (!text) throw new Error("Enter how long each window stays open, e.g. 8h.");
    const seconds = parseDuration(text);
    if (!Number.isInteger(seconds)) throw new Error(`bad duration "${text}": give whole seconds`);
    const workers = $("#schedule-kind").value === "all"
      ? { all: true } : { selector: selectorLabels($("#schedule-selector").value) };
    const name = $("#schedule-name").value.trim();
    return {
      ...(name ? { name } : {}), ...workers, cron: $("#schedule-cron").value.trim(),
      timezone: $("#schedule-timezone").value.trim() || "UTC", duration_seconds: seconds, concurrency: parsed.value,
    };
  }

  function submitSchedule() {
    const errorEl = $("#schedule-error");
    let body;
    try {
      body = scheduleBody();
    } catch (error) {
      return showError(errorEl, error);
    }
    changeLayer($("#schedule-add"), errorEl, body.name ? `Schedule ${body.name} added` : "Schedule added", () => api("POST", "/schedules", body))
      .then((ok) => {
        if (ok) for (const id of ["name", "selector", "cron", "for", "value"]) $(`#schedule-${id}`).value = "";
      });
  }

  function wireLayers() {
    const onSubmit = (id, submit) => $(id).addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    onSubmit("#rule-form", submitRule);
    onSubmit("#schedule-form", submitSchedule);
    const toggle = (kind, box) => { $(box).disabled = $(box).hidden = $(kind).value !== "selector"; };
    $("#rule-kind").addEventListener("change", () => toggle("#rule-kind", "#rule-selector"));
    $("#schedule-kind").addEventListener("change", () => toggle("#schedule-kind", "#schedule-selector"));
  }

  function renderStats() {
    const ws = fleet.workers;
    const count = (pred) => ws.filter(pred).length;
    const slots = ws.filter((w) => ONLINE_STATES.has(w.state)).reduce((n, w) => n + (w.applied_concurrency ?? w.concurrency), 0);
    const running = ws.reduce((n, w) => n + (w.jobs_running || 0), 0);
    const stats = [
      { key: "", label: "Workers", value: ws.length },
      { key: "@online", label: "Online", value: count((w) => ONLINE_STATES.has(w.state)), cls: "ok" },
      { key: "running", label: "Busy", value: count((w) => w.state === "running"), cls: "info" },
      { key: null, label: "Jobs running", value: `${running} / ${slots}`, cls: "info", title: "running jobs / applied slots on online workers" },
      { key: "maintenance", label: "Maintenance", value: count((w) => w.state.startsWith("maintenance")), cls: "warn" },
      { key: "offline", label: "Offline / unknown", value: count((w) => w.state === "offline" || w.state === "unknown"), cls: "bad" },
      { key: "@pending", label: "Not converged", value: count((w) => !w.converged), cls: "warn" },
    ];
    const revoked = count((w) => w.state === "revoked");
    if (revoked) stats.push({ key: "revoked", label: "Revoked", value: revoked, cls: "bad" });
    const box = $("#fleet-stats");
    const keyOf = JSON.stringify(stats.map((s) => s.value)) + $("#fleet-state").value + $("#fleet-pending").checked;
    setCell(box, keyOf, () => stats.map((s) => {
      const active = s.key === "@pending" ? $("#fleet-pending").checked : s.key !== null && s.key !== "" && $("#fleet-state").value === s.key;
      return h("button", {
        type: "button", class: `stat ${s.cls || ""} ${active ? "active" : ""} ${s.value === 0 ? "zero" : ""}`,
        title: s.title || (s.key === null ? null : `Show ${s.label.toLowerCase()}`), disabled: s.key === null,
        onclick: () => {
          if (s.key === "@pending") $("#fleet-pending").checked = !$("#fleet-pending").checked;
          else {
            const select = $("#fleet-state");
            select.value = select.value === s.key ? "" : s.key;
          }
          renderFleet();
        },
      }, h("span", { class: "stat-value", text: s.value }), h("span", { class: "stat-label", text: s.label }));
    }));
  }

  const FLEET_COLUMNS = ["sel", "host", "state", "conc", "sync", "running", "queues", "labels", "maint", "heartbeat", "acked", "actions"];

  function newFleetRow(hostname) {
    const tr = h("tr", { dataset: { hostname } });
    for (const col of FLEET_COLUMNS) tr.append(h("td", { dataset: col === "sel" ? { col, needs: "operator" } : { col } }));
    const box = h("input", {
      type: "checkbox", "aria-label": `Select ${hostname}`,
      onchange: (event) => {
        if (event.target.checked) fleet.selected.add(hostname);
        else fleet.selected.delete(hostname);
        renderSelection();
      },
    });
    tr.children[0].append(box);
    const verb = may("operator") ? "Manage" : "Details";
    tr.children[11].append(h("button", {
      type: "button", class: "btn small ghost manage", text: verb, "aria-label": `${verb} ${hostname}`,
      onclick: () => openWorker(hostname),
    }));
    tr.addEventListener("dblclick", (event) => {
      if (!event.target.closest("button,input,a")) openWorker(hostname);
    });
    return tr;
  }

  function updateFleetRow(tr, w) {
    const cells = Object.fromEntries([...tr.children].map((td) => [td.dataset.col, td]));
    tr.classList.toggle("pending", !w.converged);
    tr.classList.toggle("dim", w.state === "offline" || w.state === "stopped" || w.state === "revoked");
    tr.classList.toggle("revoked", w.state === "revoked");
    tr.classList.toggle("selected", fleet.selected.has(w.hostname));
    tr.classList.toggle("open", drawer.kind === "worker" && drawer.host === w.hostname);
    cells.sel.firstChild.checked = fleet.selected.has(w.hostname);

    const up = w.started_at && ONLINE_STATES.has(w.state) ? `up ${span((now() - parseTime(w.started_at)) / 1000)}` : null;
    setCell(cells.host, `${w.hostname}|${w.pid}|${up}`, () => [
      h("button", { type: "button", class: "link host mono", text: w.hostname, onclick: () => openWorker(w.hostname) }),
      h("div", { class: "sub", text: [w.pid ? `pid ${w.pid}` : null, up].filter(Boolean).join(" · ") || "\u00a0" }),
    ]);
    setCell(cells.state, w.state, () => stateBadge(w.state));

    const applied = w.applied_concurrency;
    const until = untilText(w);
    setCell(cells.conc, `${w.concurrency}|${sourceWord(w)}|${until}|${applied}|${w.flag_concurrency}`, () => [
      h("div", { class: "conc" },
        h("span", { class: "num big", dataset: { field: "desired" }, text: w.concurrency }),
        h("span", { class: `src ${w.concurrency_source}`, dataset: { field: "source" }, text: sourceWord(w), title: sourceTitle(w) })),
      until ? h("div", {
        class: "sub until", dataset: { field: "until" }, text: until,
        title: `Ends by itself at ${stamp(w.concurrency_until)}; the worker then runs at the layer below`,
      }) : null,
      h("div", { class: `sub ${applied !== null && applied !== w.concurrency ? "warn-text" : ""}` },
        "applied ", h("b", { dataset: { field: "applied" }, text: applied ?? "—" }), ` · flag ${w.flag_concurrency}`),
    ]);

    setCell(cells.sync, `${w.converged}|${w.desired_version}|${w.applied_version}`, () => (w.converged
      ? h("span", { class: "sync ok", dataset: { converged: "true" }, title: `Acknowledged desired version ${w.desired_version}` }, "✓ ", h("span", { text: `v${w.desired_version}` }))
      : h("span", { class: "sync pending", dataset: { converged: "false" }, title: `Desired version ${w.desired_version}; the worker acknowledged ${w.applied_version}` }, "⟳ ", h("span", { text: `v${w.applied_version} → v${w.desired_version}` }))));

    const cap = applied ?? w.concurrency;
    setCell(cells.running, `${w.jobs_running}|${cap}`, () => {
      const bar = h("i");
      bar.style.width = `${Math.min(100, cap ? (100 * w.jobs_running) / cap : 0)}%`;
      return [h("span", { class: "num", text: `${w.jobs_running} / ${cap}` }), h("span", { class: "meter" }, bar)];
    });
    setCell(cells.queues, w.queues.join(","), () => h("div", { class: "chips" }, w.queues.map((q) => chip(q, "queue"))));
    const labels = Object.entries(w.labels || {});
    setCell(cells.labels, JSON.stringify(labels), () => (labels.length
      ? h("div", { class: "chips" }, labels.map(([k, v]) => chip(`${k}=${v}`, "label")))
      : h("span", { class: "muted", text: "—" })));
    setCell(cells.maint, w.maintenance_comment ?? "", () => (w.maintenance_comment
      ? h("span", { class: "comment", title: w.maintenance_comment, text: w.maintenance_comment })
      : h("span", { class: "muted", text: "—" })));
    const hb = ago(w.last_heartbeat);
    setCell(cells.heartbeat, `${hb}|${w.state}`, () => h("span", {
      class: `rel ${w.state === "offline" || w.state === "unknown" ? "bad-text" : ""}`,
      title: stamp(w.last_heartbeat), text: hb,
    }));
    const acked = ago(w.applied_at);
    setCell(cells.acked, `${acked}|${w.applied_version}`, () => h("span", {
      class: "rel", title: w.applied_at ? `v${w.applied_version} acknowledged ${stamp(w.applied_at)}` : "nothing acknowledged yet", text: acked,
    }));
  }

  function renderFleet() {
    if (!fleet.loaded) return;
    renderStats();
    const match = workerMatcher($("#fleet-filter").value);
    const rows = fleet.workers.filter(match);
    const tbody = $("#fleet-rows");
    const existing = new Map([...tbody.children].map((tr) => [tr.dataset.hostname, tr]));
    let previous = null;
    for (const w of rows) {
      const tr = existing.get(w.hostname) || newFleetRow(w.hostname);
      existing.delete(w.hostname);
      updateFleetRow(tr, w);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== tr) tbody.insertBefore(tr, wanted);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
    const empty = $("#fleet-empty");
    empty.hidden = rows.length > 0;
    empty.textContent = fleet.workers.length
      ? "No worker matches the filter."
      : "No workers yet. Start one with: edgefleet worker --edge-hostname NAME --queues default";
    $("#fleet-shown").textContent = rows.length === fleet.workers.length
      ? `${rows.length} worker${rows.length === 1 ? "" : "s"}`
      : `${rows.length} of ${fleet.workers.length} workers`;
    $("#nav-fleet-count").textContent = fleet.workers.length;
    renderSelection(rows);
  }

  function renderSelection(rows) {
    const shown = rows || fleet.workers.filter(workerMatcher($("#fleet-filter").value));
    const all = $("#fleet-select-all");
    const selectedShown = shown.filter((w) => fleet.selected.has(w.hostname)).length;
    all.checked = shown.length > 0 && selectedShown === shown.length;
    all.indeterminate = selectedShown > 0 && selectedShown < shown.length;
    for (const tr of $("#fleet-rows").children) tr.classList.toggle("selected", fleet.selected.has(tr.dataset.hostname));
    const n = fleet.selected.size;
    $("#bulk").hidden = n === 0;
    $("#bulk-count").textContent = `${n} selected`;
    const removable = [...fleet.selected].filter((host) => REMOVABLE_STATES.has(fleet.byHost.get(host)?.state));
    $("#bulk-remove").disabled = removable.length === 0;
    $("#bulk-remove").title = removable.length ? `Remove ${removable.length} offline/stopped/revoked worker(s)` : "Only offline, stopped or revoked workers can be removed";
  }

  // Bulk actions: one request per selected worker, each a normal audited change.

  async function bulk(button, label, request, hosts = [...fleet.selected]) {
    const errorEl = $("#bulk-error");
    showError(errorEl, null);
    if (!hosts.length) return;
    button.disabled = true;
    try {
      const results = await Promise.allSettled(hosts.map((host) => request(host)));
      const changes = [];
      const versions = {};
      const failures = new Map(); // message -> hosts
      results.forEach((result, i) => {
        if (result.status === "fulfilled") {
          if (result.value && result.value.changes) {
            changes.push(...result.value.changes);
            Object.assign(versions, result.value.versions || {});
          }
        } else {
          const message = result.reason.message || String(result.reason);
          failures.set(message, [...(failures.get(message) || []), hosts[i]]);
        }
      });
      if (failures.size) {
        const first = results.find((r) => r.status === "rejected").reason;
        const text = [...failures].map(([message, hs]) => `${hs.length === hosts.length ? "" : `${hs.join(", ")}: `}${message}`).join(" · ");
        showError(errorEl, { message: text, status: first.status, code: first.code });
      }
      const ok = hosts.length - [...failures.values()].reduce((n, hs) => n + hs.length, 0);
      if (ok) reportChanges(`${label} (${ok} worker${ok === 1 ? "" : "s"})`, { changes, versions });
      refreshNow();
    } finally {
      button.disabled = false;
    }
  }

  function wireBulk() {
    const post = (action, extra) => (host) => api("POST", `/workers/actions/${action}`, { edge_hostname: host, ...extra });
    $("#bulk-set").addEventListener("click", (event) => {
      const parsed = concurrencyValue($("#bulk-concurrency"));
      if (parsed.error) return showError($("#bulk-error"), { message: parsed.error });
      let until;
      try {
        until = untilOf($("#bulk-for"));
      } catch (error) {
        return showError($("#bulk-error"), error);
      }
      const label = `Concurrency set to ${parsed.value}${until ? ` until ${clock(until)}` : ""}`;
      bulk(event.currentTarget, label, post("set-concurrency", { concurrency: parsed.value, until }));
    });
    $("#bulk-concurrency").addEventListener("keydown", (event) => { if (event.key === "Enter") $("#bulk-set").click(); });
    $("#bulk-reset").addEventListener("click", (event) => bulk(event.currentTarget, "Concurrency handed back to the flag", post("set-concurrency", { reset: true })));
    const queue = () => {
      const name = $("#bulk-queue").value.trim();
      if (!name) showError($("#bulk-error"), { message: "Enter a queue name." });
      return name;
    };
    $("#bulk-add-queue").addEventListener("click", (event) => {
      const name = queue();
      if (name) bulk(event.currentTarget, `Queue ${name} added`, post("add-queues", { queues: [name] }));
    });
    $("#bulk-remove-queue").addEventListener("click", (event) => {
      const name = queue();
      if (name) bulk(event.currentTarget, `Queue ${name} removed`, post("remove-queues", { queues: [name] }));
    });
    $("#bulk-maint").addEventListener("click", async (event) => {
      const button = event.currentTarget;
      const hosts = [...fleet.selected];
      const answer = await ask({
        title: `Request maintenance on ${hosts.length} worker${hosts.length === 1 ? "" : "s"}?`,
        message: "They stop taking new jobs; running jobs finish. The comment is shown in the fleet view and kept in the audit log.",
        list: hosts, confirmLabel: "Request maintenance",
        field: { label: "Comment", multiline: true, required: true, maxlength: 1024, placeholder: "e.g. kernel update, back at 14:00", requiredMessage: "Say why: the comment is required." },
      });
      if (answer) bulk(button, "Maintenance requested", post("request-maintenance", { comments: answer.value }), hosts);
    });
    $("#bulk-exit-maint").addEventListener("click", (event) => bulk(event.currentTarget, "Maintenance ended", post("exit-maintenance", {})));
    $("#bulk-shutdown").addEventListener("click", async (event) => {
      const button = event.currentTarget;
      const hosts = [...fleet.selected];
      const answer = await ask({
        title: `Shut down ${hosts.length} worker${hosts.length === 1 ? "" : "s"}?`,
        message: "Each worker stops taking jobs, lets its running jobs finish and then exits. It stays down until someone starts it again on its machine.",
        list: hosts, confirmLabel: "Shut down", danger: true,
      });
      if (answer) bulk(button, "Shutdown requested", post("shutdown", {}), hosts);
    });
    $("#bulk-remove").addEventListener("click", async (event) => {
      const button = event.currentTarget;
      const hosts = [...fleet.selected].filter((host) => REMOVABLE_STATES.has(fleet.byHost.get(host)?.state));
      const answer = await ask({
        title: `Remove ${hosts.length} worker${hosts.length === 1 ? "" : "s"}?`,
        message: "Forget these offline or stopped workers. A removed worker that comes back registers again from scratch.",
        list: hosts, confirmLabel: "Remove", danger: true,
      });
      if (answer) {
        await bulk(button, "Removed", (host) => api("DELETE", `/workers/${enc(host)}`), hosts);
        for (const host of hosts) fleet.selected.delete(host);
      }
    });
    $("#bulk-clear").addEventListener("click", () => {
      fleet.selected.clear();
      showError($("#bulk-error"), null);
      renderFleet();
    });
    $("#fleet-select-all").addEventListener("change", (event) => {
      const shown = fleet.workers.filter(workerMatcher($("#fleet-filter").value));
      for (const w of shown) {
        if (event.target.checked) fleet.selected.add(w.hostname);
        else fleet.selected.delete(w.hostname);
      }
      renderFleet();
    });
  }

  // --- drawer (worker details and controls; job details and log) -------------------------

  const drawer = { kind: null, host: null, jobId: null, els: null, logTimer: null, auditAt: 0 };

  function closeDrawer(updateHash = true) {
    const el = $("#drawer");
    el.hidden = true;
    el.replaceChildren();
    document.body.classList.remove("drawer-open");
    clearTimeout(drawer.logTimer);
    const wasView = drawer.kind === "job" ? "jobs" : "fleet";
    Object.assign(drawer, { kind: null, host: null, jobId: null, els: null });
    for (const tr of document.querySelectorAll("tr.open")) tr.classList.remove("open");
    if (updateHash && /^#\/(fleet|jobs)\/./.test(location.hash)) history.replaceState(null, "", `#/${wasView}`);
  }

  const openWorker = (host) => { location.hash = `#/fleet/${enc(host)}`; };
  const openJob = (id) => { location.hash = `#/jobs/${id}`; };

  function drawerHead(eyebrow, title, badgeSlot) {
    return h("div", { class: "drawer-head" },
      h("div", { class: "drawer-title" },
        h("div", { class: "eyebrow", text: eyebrow }),
        h("h2", { class: "mono", text: title })),
      badgeSlot,
      h("button", { type: "button", class: "btn ghost icon", "aria-label": "Close", title: "Close (Esc)", text: "✕", onclick: () => closeDrawer() }));
  }

  function section(title, ...children) {
    return h("section", { class: "panel" }, h("h3", { text: title }), children);
  }

  function buildWorkerPanel(host) {
    const els = {};
    els.badge = h("span", { class: "head-badge" });
    els.facts = h("dl", { class: "facts" });
    els.concHint = h("p", { class: "hint" });
    els.conc = h("input", { id: "w-concurrency", type: "number", min: 1, max: MAX_CONCURRENCY, step: 1, class: "num", "aria-label": "Concurrency" });
    els.concError = h("div", { id: "w-concurrency-error", class: "field-error", role: "alert", hidden: true });
    els.concFor = h("input", {
      id: "w-concurrency-for", type: "text", class: "dur", spellcheck: "false", placeholder: "for (e.g. 30m)",
      "aria-label": "For how long (empty: until reset)", title: "Optional: 30s, 15m, 2h or 1d; the value then ends by itself",
    });
    els.concSet = h("button", { type: "button", id: "w-concurrency-set", class: "btn primary", text: "Set" });
    els.concReset = h("button", { type: "button", id: "w-concurrency-reset", class: "btn" });
    els.queues = h("div", { class: "chips editable", id: "w-queues" });
    els.queueInput = h("input", { id: "w-queue", type: "text", placeholder: "queue name", spellcheck: "false", "aria-label": "Queue name" });
    els.queueAdd = h("button", { type: "button", id: "w-queue-add", class: "btn", text: "Add queue" });
    els.queueReset = h("button", { type: "button", id: "w-queue-reset", class: "btn ghost", text: "Reset to flag", title: "Hand the queues back to the worker's --queues flag" });
    els.queueError = h("div", { id: "w-queue-error", class: "field-error", role: "alert", hidden: true });
    els.maintStatus = h("p", { class: "hint", id: "w-maint-status" });
    els.maintComment = h("textarea", { id: "w-maint-comment", rows: 2, maxlength: 1024, placeholder: "Why? (shown in the fleet view, kept in the audit log)", "aria-label": "Maintenance comment" });
    els.maintEnter = h("button", { type: "button", id: "w-maint-enter", class: "btn warn", text: "Request maintenance" });
    els.maintUpdate = h("button", { type: "button", id: "w-maint-update", class: "btn", text: "Update comment" });
    els.maintExit = h("button", { type: "button", id: "w-maint-exit", class: "btn primary", text: "Exit maintenance" });
    els.maintError = h("div", { id: "w-maint-error", class: "field-error", role: "alert", hidden: true });
    els.shutdown = h("button", { type: "button", id: "w-shutdown", class: "btn danger", text: "Shut down…" });
    els.remove = h("button", { type: "button", id: "w-remove", class: "btn danger-outline", text: "Remove…" });
    els.removeHint = h("span", { class: "hint inline" });
    els.revoke = h("button", { type: "button", id: "w-revoke", class: "btn danger", text: "Revoke…" });
    els.revokeHint = h("span", { class: "hint inline" });
    els.dangerError = h("div", { id: "w-danger-error", class: "field-error", role: "alert", hidden: true });
    els.audit = h("div", { class: "mini-audit", id: "w-audit" }, h("span", { class: "muted", text: "Loading…" }));

    const worker = () => fleet.byHost.get(host);
    const path = `/workers/${enc(host)}`;

    const setConc = () => {
      const parsed = concurrencyValue(els.conc);
      if (parsed.error) return showError(els.concError, { message: parsed.error });
      let until;
      try {
        until = untilOf(els.concFor);
      } catch (error) {
        return showError(els.concError, error);
      }
      act(els.concSet, els.concError, `${host}: concurrency set to ${parsed.value}${until ? ` until ${clock(until)}` : ""}`,
        () => api("PUT", `${path}/concurrency`, { concurrency: parsed.value, until }))
        .then((ok) => {
          if (!ok) return;
          delete els.conc.dataset.dirty;
          els.concFor.value = "";
        });
    };
    els.concSet.addEventListener("click", setConc);
    els.conc.addEventListener("keydown", (event) => { if (event.key === "Enter") setConc(); });
    els.concFor.addEventListener("keydown", (event) => { if (event.key === "Enter") setConc(); });
    els.conc.addEventListener("input", () => { els.conc.dataset.dirty = "1"; });
    els.concReset.addEventListener("click", () => act(els.concReset, els.concError, `${host}: concurrency handed back to the flag`,
      () => api("DELETE", `${path}/concurrency`)).then((ok) => { if (ok) delete els.conc.dataset.dirty; }));

    const addQueue = () => {
      const name = els.queueInput.value.trim();
      if (!name) return showError(els.queueError, { message: "Enter a queue name." });
      act(els.queueAdd, els.queueError, `${host}: queue ${name} added`,
        () => api("POST", "/workers/actions/add-queues", { edge_hostname: host, queues: [name] }))
        .then((ok) => { if (ok) els.queueInput.value = ""; });
    };
    els.queueAdd.addEventListener("click", addQueue);
    els.queueInput.addEventListener("keydown", (event) => { if (event.key === "Enter") addQueue(); });
    els.queueReset.addEventListener("click", () => act(els.queueReset, els.queueError, `${host}: queues handed back to the flag`,
      () => api("POST", "/workers/actions/reset-queues", { edge_hostname: host })));
    els.removeQueue = (name, button) => act(button, els.queueError, `${host}: queue ${name} removed`,
      () => api("POST", "/workers/actions/remove-queues", { edge_hostname: host, queues: [name] }));

    const comment = () => {
      const text = els.maintComment.value.trim();
      if (!text) showError(els.maintError, { message: "Add a comment: say why the worker goes into maintenance." });
      return text;
    };
    els.maintEnter.addEventListener("click", () => {
      const text = comment();
      if (text) act(els.maintEnter, els.maintError, `${host}: maintenance requested`,
        () => api("POST", "/workers/actions/request-maintenance", { edge_hostname: host, comments: text }))
        .then((ok) => { if (ok) delete els.maintComment.dataset.dirty; });
    });
    els.maintUpdate.addEventListener("click", () => {
      const text = comment();
      if (text) act(els.maintUpdate, els.maintError, `${host}: maintenance comment updated`,
        () => api("POST", "/workers/actions/update-maintenance-comment", { edge_hostname: host, comments: text }))
        .then((ok) => { if (ok) delete els.maintComment.dataset.dirty; });
    });
    els.maintExit.addEventListener("click", () => act(els.maintExit, els.maintError, `${host}: maintenance ended`,
      () => api("POST", "/workers/actions/exit-maintenance", { edge_hostname: host }))
      .then((ok) => { if (ok) { els.maintComment.value = ""; delete els.maintComment.dataset.dirty; } }));
    els.maintComment.addEventListener("input", () => { els.maintComment.dataset.dirty = "1"; });

    els.shutdown.addEventListener("click", async () => {
      const w = worker();
      const answer = await ask({
        title: `Shut down ${host}?`,
        message: `The worker stops taking jobs, lets its ${w ? w.jobs_running : 0} running job(s) finish and then exits. It stays down until someone starts it again on its machine.`,
        confirmLabel: "Shut down", danger: true,
      });
      if (answer) act(els.shutdown, els.dangerError, `${host}: shutdown requested`,
        () => api("POST", "/workers/actions/shutdown", { edge_hostname: host }));
    });
    els.remove.addEventListener("click", async () => {
      const answer = await ask({
        title: `Remove ${host}?`,
        message: "Forget this worker. If it comes back it registers again from scratch.",
        confirmLabel: "Remove", danger: true,
      });
      if (answer && await act(els.remove, els.dangerError, `${host} removed`, () => api("DELETE", path))) closeDrawer();
    });
    els.revoke.addEventListener("click", async () => {
      const w = worker();
      const answer = await ask({
        title: `Revoke ${host}?`,
        message: `Its credential stops working with its next request, and its ${w ? w.jobs_running : 0} running job(s) are retried elsewhere or failed. It can come back only when enrolled again with a new join token.`,
        confirmLabel: "Revoke", danger: true,
      });
      if (answer) act(els.revoke, els.dangerError, `${host}: revoked`,
        () => api("POST", "/workers/actions/revoke", { edge_hostname: host }));
    });

    const panel = [
      drawerHead("Worker", host, els.badge),
      h("div", { class: "drawer-body" },
        els.facts,
        section("Concurrency", els.concHint,
          h("div", { class: "row", dataset: { needs: "operator" } }, els.conc, els.concFor, els.concSet, els.concReset), els.concError),
        section("Queues", els.queues,
          h("div", { class: "row", dataset: { needs: "operator" } }, els.queueInput, els.queueAdd, els.queueReset), els.queueError),
        section("Maintenance", els.maintStatus,
          h("div", { dataset: { needs: "operator" } }, els.maintComment,
            h("div", { class: "row" }, els.maintEnter, els.maintUpdate, els.maintExit)), els.maintError),
        h("section", { class: "panel danger-zone", dataset: { needs: "operator" } }, h("h3", { text: "Danger zone" }),
          h("div", { class: "row" }, els.shutdown, h("span", { class: "hint inline", text: "Drain running jobs, then stop the worker process." })),
          h("div", { class: "row", dataset: { needs: "admin" } }, els.revoke, els.revokeHint),
          h("div", { class: "row", dataset: { needs: "admin" } }, els.remove, els.removeHint), els.dangerError),
        section("Recent changes", els.audit)),
    ];
    return { els, panel };
  }

  function fact(label, value, title) {
    return [h("dt", { text: label }), h("dd", { title: title || null }, value)];
  }

  function updateWorkerPanel() {
    const { els } = drawer;
    const w = fleet.byHost.get(drawer.host);
    if (!els) return;
    if (!w) {
      setCell(els.facts, "gone", () => h("div", { class: "gone", text: "This worker is not in the fleet (anymore)." }));
      for (const b of drawer.root.querySelectorAll("button:not([aria-label=Close]), input, textarea")) b.disabled = true;
      return;
    }
    setCell(els.badge, w.state, () => stateBadge(w.state));
    const hb = ago(w.last_heartbeat);
    const acked = ago(w.applied_at);
    setCell(els.facts, JSON.stringify([w, hb, acked]), () => [
      fact("State", stateBadge(w.state)),
      fact("Sync", w.converged
        ? h("span", { class: "sync ok", text: `✓ converged at v${w.desired_version}` })
        : h("span", { class: "sync pending", text: `⟳ desired v${w.desired_version}, acknowledged v${w.applied_version}` })),
      fact("Concurrency", `${w.concurrency} (${sourceTitle(w)}${w.concurrency_until ? `, ${untilText(w)}` : ""}) · applied ${w.applied_concurrency ?? "—"} · flag ${w.flag_concurrency}`),
      fact("Running", `${w.jobs_running} job${w.jobs_running === 1 ? "" : "s"}`),
      fact("Labels", Object.keys(w.labels || {}).length ? h("div", { class: "chips" }, Object.entries(w.labels).map(([k, v]) => chip(`${k}=${v}`, "label"))) : "—"),
      fact("Heartbeat", hb, stamp(w.last_heartbeat)),
      fact("Acknowledged", acked, w.applied_at ? stamp(w.applied_at) : null),
      fact("Started", w.started_at ? `${ago(w.started_at)}` : "—", stamp(w.started_at)),
      fact("Process", `${w.pid ? `pid ${w.pid}` : "—"}${w.instance_id ? ` · instance ${w.instance_id.slice(0, 12)}` : ""}`, w.instance_id),
    ]);

    const until = untilText(w);
    setCell(els.concHint, `${w.concurrency}|${sourceTitle(w)}|${until}|${w.applied_concurrency}|${w.flag_concurrency}`, () => [
      "Desired ", h("b", { text: w.concurrency }),
      ` (${sourceTitle(w)}${until ? `, ${until}` : ""})`,
      " · applied ", h("b", { text: w.applied_concurrency ?? "—" }),
      ` · range 1–${MAX_CONCURRENCY}`,
    ]);
    if (!els.conc.dataset.dirty && document.activeElement !== els.conc) els.conc.value = w.concurrency;
    els.concReset.textContent = `Reset to flag (${w.flag_concurrency})`;
    els.concReset.disabled = w.concurrency_source === "flag";

    setCell(els.queues, w.queues.join(","), () => w.queues.map((q) => {
      const x = h("button", { type: "button", class: "chip-x", "aria-label": `Remove queue ${q}`, title: `Remove queue ${q}`, text: "×", dataset: { needs: "operator" } });
      x.addEventListener("click", () => els.removeQueue(q, x));
      return h("span", { class: "chip queue", dataset: { queue: q } }, q, x);
    }));

    const inMaintenance = w.maintenance_comment !== null || w.state.startsWith("maintenance");
    const status = w.state === "maintenance_pending"
      ? "Entering maintenance: waiting for running jobs to finish."
      : w.state === "maintenance" ? "In maintenance: takes no jobs."
        : inMaintenance ? "Maintenance requested; the worker has not confirmed it yet." : "Not in maintenance.";
    setCell(els.maintStatus, `${status}|${w.maintenance_comment}`, () => [
      h("span", { class: `dotted ${inMaintenance ? "warn-text" : ""}`, text: status }),
      w.maintenance_comment ? h("span", { class: "comment block", text: `“${w.maintenance_comment}”` }) : null,
    ]);
    els.maintEnter.hidden = inMaintenance;
    els.maintUpdate.hidden = !inMaintenance;
    els.maintExit.hidden = !inMaintenance;
    if (!els.maintComment.dataset.dirty && document.activeElement !== els.maintComment && inMaintenance) {
      els.maintComment.value = w.maintenance_comment || "";
    }

    const removable = REMOVABLE_STATES.has(w.state);
    els.remove.disabled = !removable;
    els.shutdown.disabled = ["stopped", "offline", "shutdown_pending", "revoked"].includes(w.state);
    els.removeHint.textContent = removable
      ? "Forget this worker (it is not running)."
      : "Only an offline, stopped or revoked worker can be removed.";
    const revoked = w.state === "revoked";
    els.revoke.disabled = revoked;
    els.revokeHint.textContent = revoked
      ? "Revoked: it comes back only when enrolled with a new join token."
      : "Its credential stops working at once; its running jobs are retried or failed.";

    if (Date.now() - drawer.auditAt > 4000) {
      drawer.auditAt = Date.now();
      refreshWorkerAudit(w.hostname).catch(() => {});
    }
  }

  async function refreshWorkerAudit(host) {
    const since = new Date(now() - 7 * 86400 * 1000).toISOString();
    const recent = await api("GET", `/audit?edge_hostname=${enc(host)}&since=${enc(since)}&limit=8`);
    if (drawer.kind !== "worker" || drawer.host !== host) return;
    setCell(drawer.els.audit, JSON.stringify(recent.map((e) => e.id)) + ago(recent[0]?.at), () => (recent.length
      ? h("table", { class: "grid compact" }, h("tbody", {}, recent.map((e) => h("tr", {},
        h("td", { class: "rel", title: stamp(e.at), text: ago(e.at) }),
        h("td", { class: "mono", text: e.field }),
        h("td", {}, changeCell(e)),
        h("td", { class: "muted ellipsis", title: e.actor, text: e.actor })))))
      : h("span", { class: "muted", text: "No changes in the last 7 days." })));
  }

  function showWorkerDrawer(host) {
    if (drawer.kind === "worker" && drawer.host === host) return;
    closeDrawer(false);
    const { els, panel } = buildWorkerPanel(host);
    const root = $("#drawer");
    root.replaceChildren(...panel);
    root.hidden = false;
    document.body.classList.add("drawer-open");
    Object.assign(drawer, { kind: "worker", host, els, root, auditAt: 0 });
    renderFleet();
    updateWorkerPanel();
  }

  // --- jobs -------------------------------------------------------------------------------

  const jobs = { rows: [], seenStates: new Set(JOB_STATES) };

  /** The newest `n` jobs (the API lists newest first). */
  async function fetchRecentJobs(n, state) {
    const params = new URLSearchParams({ limit: String(n) });
    if (state) params.set("state", state);
    return api("GET", `/jobs?${params}`);
  }

  function quoteArg(arg) {
    return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${String(arg).replace(/'/g, "'\"'\"'")}'`;
  }
  const commandText = (command) => (Array.isArray(command) ? command.map(quoteArg).join(" ") : fmtValue(command));

  function jobDuration(job) {
    const start = parseTime(job.started_at);
    if (start === null) return null;
    const end = parseTime(job.finished_at) ?? now();
    return (end - start) / 1000;
  }

  async function refreshJobs() {
    const state = $("#jobs-state").value;
    const n = Number($("#jobs-limit").value) || 250;
    try {
      const rows = await fetchRecentJobs(n, state);
      jobs.rows = [...rows].sort((a, b) => b.id - a.id);
      showError($("#jobs-error"), null);
    } catch (error) {
      if (error.status === 0) throw error;
      showError($("#jobs-error"), error);
      jobs.rows = [];
    }
    for (const job of jobs.rows) jobs.seenStates.add(job.state);
    syncJobStateOptions();
    renderJobs();
  }

  function syncJobStateOptions() {
    const select = $("#jobs-state");
    const have = new Set([...select.options].map((o) => o.value));
    for (const state of jobs.seenStates) {
      if (!have.has(state)) select.append(h("option", { value: state, text: label(state) }));
    }
  }

  function renderJobs() {
    const text = $("#jobs-filter").value.trim().toLowerCase();
    const rows = jobs.rows.filter((job) => !text || text.split(/\s+/).every((term) => (
      (term.startsWith("#") && String(job.id) === term.slice(1))
      || commandText(job.command).toLowerCase().includes(term)
      || String(job.queue || "").toLowerCase().includes(term)
      || String(job.worker || "").toLowerCase().includes(term)
      || String(job.state || "").toLowerCase() === term)));
    const tbody = $("#jobs-rows");
    const existing = new Map([...tbody.children].map((tr) => [tr.dataset.id, tr]));
    let previous = null;
    for (const job of rows) {
      const id = String(job.id);
      let tr = existing.get(id);
      if (!tr) {
        tr = h("tr", { class: "clickable", dataset: { id } });
        for (const col of ["id", "state", "queue", "command", "worker", "attempt", "exit", "queued", "duration", "finished", "reason"]) {
          tr.append(h("td", { dataset: { col } }));
        }
        tr.addEventListener("click", (event) => { if (!event.target.closest("a,button")) openJob(job.id); });
      }
      existing.delete(id);
      const c = Object.fromEntries([...tr.children].map((td) => [td.dataset.col, td]));
      tr.classList.toggle("open", drawer.kind === "job" && drawer.jobId === job.id);
      setCell(c.id, id, () => h("span", { class: "num mono", text: `#${id}` }));
      const cancelling = job.cancel_requested && !job.finished_at;
      setCell(c.state, `${job.state}|${cancelling}`, () => [stateBadge(job.state, "job"),
        cancelling ? h("span", { class: "sub", text: "cancel requested" }) : null]);
      setCell(c.queue, job.queue, () => chip(job.queue || "—", "queue"));
      const cmd = commandText(job.command);
      setCell(c.command, cmd, () => h("code", { class: "cmdline", title: cmd, text: cmd }));
      setCell(c.worker, job.worker || "", () => (job.worker
        ? h("a", { class: "mono", href: `#/fleet/${enc(job.worker)}`, text: job.worker })
        : h("span", { class: "muted", text: "—" })));
      const tries = job.max_attempts > 1 ? `${job.attempt}/${job.max_attempts}` : String(job.attempt ?? "—");
      setCell(c.attempt, tries, () => h("span", { class: "num", text: tries }));
      setCell(c.exit, String(job.exit_code), () => h("span", {
        class: `num mono ${job.exit_code ? "bad-text" : ""}`, text: job.exit_code ?? "—",
      }));
      const queued = ago(job.queued_at);
      setCell(c.queued, queued, () => h("span", { class: "rel", title: stamp(job.queued_at), text: queued }));
      const dur = duration(jobDuration(job));
      setCell(c.duration, `${dur}|${job.finished_at}`, () => h("span", {
        class: `num ${job.started_at && !job.finished_at ? "info-text" : ""}`, text: dur,
      }));
      const fin = job.finished_at ? ago(job.finished_at) : "—";
      setCell(c.finished, fin, () => h("span", { class: "rel", title: stamp(job.finished_at), text: fin }));
      const why = job.reason || job.waiting_reason || "";
      setCell(c.reason, why, () => (why
        ? h("span", { class: job.reason ? "comment plain" : "comment", title: why, text: why })
        : h("span", { class: "muted", text: "—" })));
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== tr) tbody.insertBefore(tr, wanted);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
    const empty = $("#jobs-empty");
    empty.hidden = rows.length > 0;
    empty.textContent = jobs.rows.length ? "No job matches the filter." : "No jobs yet. Submit one with: edgefleet submit -- echo hello";
    $("#jobs-shown").textContent = `${rows.length} job${rows.length === 1 ? "" : "s"} shown`;
  }

  /** Split a command line into arguments as a shell would split words: whitespace separates,
   * '…' and "…" quote, a backslash escapes the next character. Nothing else is interpreted. */
  function splitCommand(text) {
    const args = [];
    let word = null;
    let quote = null;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quote) {
        if (c === quote) quote = null;
        else if (c === "\\" && quote === '"' && i + 1 < text.length) word += text[++i];
        else word += c;
      } else if (/\s/.test(c)) {
        if (word !== null) args.push(word);
        word = null;
      } else if (c === "'" || c === '"') {
        quote = c;
        word = word ?? "";
      } else if (c === "\\" && i + 1 < text.length) {
        word = (word ?? "") + text[++i];
      } else {
        word = (word ?? "") + c;
      }
    }
    if (quote) throw new Error(`Unclosed ${quote} in the command.`);
    if (word !== null) args.push(word);
    return args;
  }

  function wireSubmit() {
    $("#submit-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const errorEl = $("#submit-error");
      let command;
      try {
        command = splitCommand($("#submit-command").value.trim());
      } catch (error) {
        return showError(errorEl, error);
      }
      if (!command.length) return showError(errorEl, { message: "Enter the command to run." });
      const queue = $("#submit-queue").value.trim() || "default";
      const button = $("#submit-job");
      button.disabled = true;
      showError(errorEl, null);
      try {
        const created = await api("POST", "/jobs", { command, queue });
        $("#submit-command").value = "";
        toast("ok", `Job #${created.id} submitted to ${queue}`, [commandText(command)]);
        refreshNow();
      } catch (error) {
        showError(errorEl, error);
      } finally {
        button.disabled = false;
      }
    });
  }

  /** Fields the job panel shows in its own way; any other field is listed generically. */
  const JOB_FIELDS = new Set([
    "id", "state", "queue", "priority", "attempt", "max_attempts", "worker", "exit_code", "reason",
    "waiting_reason", "queued_at", "started_at", "finished_at", "command", "history", "env", "secret_env_keys", "cwd",
    "slots", "timeout", "not_before", "cancel_requested", "retry_delay", "log_truncated",
  ]);

  /** Optional server features, discovered from /openapi.json (e.g. a job cancel endpoint). */
  const features = { loaded: false, cancel: null };

  async function discoverFeatures() {
    if (features.loaded) return features;
    features.loaded = true;
    try {
      // The API's map is for token holders (a viewer's token is enough).
      const headers = { Authorization: `Bearer ${session.token}` };
      const response = await fetch("/openapi.json", { cache: "no-store", headers });
      const spec = await response.json();
      for (const [path, ops] of Object.entries(spec.paths || {})) {
        const match = /^\/api\/v1\/jobs\/\{[^}]+\}\/cancel$/.test(path) && ops.post;
        if (!match) continue;
        const ref = ops.post.requestBody?.content?.["application/json"]?.schema?.$ref;
        const schema = ref ? spec.components?.schemas?.[ref.split("/").pop()] : null;
        features.cancel = {
          path: (id) => path.replace(/\{[^}]+\}/, String(id)).replace(/^\/api\/v1/, ""),
          body: Boolean(ops.post.requestBody),
          reasonField: schema?.properties ? ["reason", "comment", "comments"].find((f) => f in schema.properties) : null,
          reasonRequired: Boolean(schema?.required?.length),
        };
      }
    } catch {
      // An older server or no OpenAPI: the optional controls stay hidden.
    }
    return features;
  }

  function buildJobPanel(id) {
    const els = {};
    els.badge = h("span", { class: "head-badge" });
    els.facts = h("dl", { class: "facts" });
    els.actions = h("div", { class: "row", hidden: true });
    els.actionError = h("div", { class: "field-error", role: "alert", hidden: true });
    els.history = h("section", { class: "panel", hidden: true });
    els.log = h("pre", { class: "log", id: "job-log", tabindex: 0 });
    els.logMeta = h("span", { class: "muted small" });
    els.follow = h("input", { type: "checkbox", checked: true });
    els.wrap = h("input", { type: "checkbox" });
    els.wrap.addEventListener("change", () => els.log.classList.toggle("wrap", els.wrap.checked));
    els.error = h("div", { class: "field-error", role: "alert", hidden: true });
    const panel = [
      drawerHead("Job", `#${id}`, els.badge),
      h("div", { class: "drawer-body" },
        els.facts,
        h("div", {}, els.actions, els.actionError),
        h("section", { class: "panel log-panel" },
          h("div", { class: "log-head" }, h("h3", { text: "Log" }), els.logMeta, h("div", { class: "spacer" }),
            h("label", { class: "check" }, els.wrap, " Wrap"),
            h("label", { class: "check" }, els.follow, " Follow")),
          els.error, els.log),
        els.history),
    ];
    return { els, panel, log: { text: "", cursor: null } };
  }

  function renderJobFacts(job) {
    const extra = Object.keys(job).filter((k) => !JOB_FIELDS.has(k));
    const attempts = (job.max_attempts ? `${job.attempt ?? 0} of ${job.max_attempts}` : String(job.attempt ?? "—"))
      + (job.max_attempts > 1 && typeof job.retry_delay === "number" ? ` · first retry after ${duration(job.retry_delay)}, doubling` : "");
    const env = job.env && typeof job.env === "object" ? Object.entries(job.env) : [];
    // The server sends only the names of secret variables, never their values.
    const secretNames = Array.isArray(job.secret_env_keys) ? job.secret_env_keys : [];
    return [
      fact("State", [stateBadge(job.state, "job"), job.cancel_requested && !job.finished_at ? h("span", { class: "chip", text: "cancel requested" }) : null]),
      fact("Command", h("code", { class: "cmdline wrap", text: commandText(job.command) })),
      fact("Queue", `${job.queue}${job.priority ? ` · priority ${job.priority}` : ""}${job.slots && job.slots !== 1 ? ` · ${job.slots} slots` : ""}`),
      fact("Worker", job.worker ? h("a", { class: "mono", href: `#/fleet/${enc(job.worker)}`, text: job.worker }) : "—"),
      fact("Attempt", attempts),
      fact("Exit code", job.exit_code ?? "—"),
      fact("Queued", `${stamp(job.queued_at)} (${ago(job.queued_at)})`),
      job.not_before && !job.started_at ? fact("Due", `${stamp(job.not_before)} (${ago(job.not_before)})`) : null,
      fact("Started", stamp(job.started_at)),
      fact("Finished", job.finished_at ? `${stamp(job.finished_at)} · took ${duration(jobDuration(job))}` : "—"),
      job.timeout ? fact("Timeout", duration(job.timeout)) : null,
      job.cwd ? fact("Directory", h("code", { text: job.cwd })) : null,
      env.length ? fact("Environment", h("div", { class: "chips" }, env.map(([k, v]) => chip(`${k}=${v}`, "label")))) : null,
      secretNames.length ? fact("Secret environment", h("div", { class: "chips" }, secretNames.map((k) => chip(`${k} (secret)`, "label")))) : null,
      job.reason ? fact("Reason", job.reason) : null,
      job.waiting_reason ? fact("Waiting", h("span", { class: "warn-text", text: job.waiting_reason })) : null,
      extra.map((k) => fact(label(k), fmtValue(job[k]))),
    ];
  }

  function renderJobHistory(els, job) {
    const history = Array.isArray(job.history) ? job.history : null;
    els.history.hidden = !history || !history.length;
    if (!history) return;
    setCell(els.history, JSON.stringify(history) + ago(history[history.length - 1]?.at), () => [
      h("h3", { text: `History (${history.length})` }),
      h("ol", { class: "timeline" }, [...history].reverse().map((e) => h("li", {},
        h("div", { class: "tl-head" },
          e.state ? stateBadge(e.state, "job") : null,
          h("span", { class: "mono tl-event", text: e.event ?? "" }),
          h("span", { class: "spacer" }),
          h("span", { class: "rel", title: stamp(e.at), text: ago(e.at) })),
        h("div", { class: "tl-detail", text: [
          e.attempt ? `attempt ${e.attempt}` : null,
          e.worker ? `on ${e.worker}` : null,
          e.exit_code !== null && e.exit_code !== undefined ? `exit ${e.exit_code}` : null,
          e.actor ? `by ${e.actor}` : null,
          e.reason,
        ].filter(Boolean).join(" · ") })))),
    ]);
  }

  function renderJobActions(els, job, id) {
    const cancel = features.cancel;
    const open = !job.finished_at && !JOB_FINISHED.has(job.state);
    els.actions.hidden = !cancel || !open || !may("operator");
    if (els.actions.hidden || els.actions.childElementCount) return;
    els.actions.append(
      h("button", {
        type: "button", id: "job-cancel", class: "btn danger-outline", text: "Cancel job…",
        onclick: async (event) => {
          const button = event.currentTarget;
          const answer = await ask({
            title: `Cancel job #${id}?`,
            message: "A queued job will not run; a running one is stopped by its worker.",
            confirmLabel: "Cancel job", danger: true,
            field: cancel.reasonField ? { label: "Reason", required: cancel.reasonRequired, maxlength: 1024, placeholder: "optional" } : null,
          });
          if (!answer) return;
          const body = cancel.body ? (cancel.reasonField && answer.value ? { [cancel.reasonField]: answer.value } : {}) : undefined;
          await act(button, els.actionError, `Job #${id}: cancel requested`, () => api("POST", cancel.path(id), body));
          refreshJobDrawer();
        },
      }),
      h("span", { class: "hint inline", text: "Queued jobs never start; running ones are stopped." }));
  }

  /** Append-only log viewing: with a server cursor only new output is fetched. */
  async function fetchJobLog(id, state) {
    const path = state.cursor ? `/jobs/${id}/logs?cursor=${enc(state.cursor)}` : `/jobs/${id}/logs`;
    const body = await api("GET", path);
    const text = body && typeof body.log === "string" ? body.log : "";
    if (body && typeof body.cursor === "string") {
      state.text = state.cursor ? state.text + text : text;
      state.cursor = body.cursor;
    } else {
      state.text = text; // no cursor support: the full log every time
    }
    return body || {};
  }

  async function refreshJobDrawer() {
    if (drawer.kind !== "job") return;
    clearTimeout(drawer.logTimer);
    const id = drawer.jobId;
    const { els, log } = drawer;
    try {
      const [job, logBody] = await Promise.all([api("GET", `/jobs/${id}`), fetchJobLog(id, log), discoverFeatures()]);
      if (drawer.kind !== "job" || drawer.jobId !== id) return;
      showError(els.error, null);
      setCell(els.badge, job.state, () => stateBadge(job.state, "job"));
      setCell(els.facts, JSON.stringify(job) + ago(job.queued_at), () => renderJobFacts(job));
      renderJobActions(els, job, id);
      renderJobHistory(els, job);
      const text = log.text;
      if (els.log.dataset.len !== String(text.length) || els.log.dataset.tail !== text.slice(-64)) {
        els.log.dataset.len = String(text.length);
        els.log.dataset.tail = text.slice(-64);
        els.log.textContent = text || "(no output yet)";
        els.log.classList.toggle("empty-log", !text);
        if (els.follow.checked) els.log.scrollTop = els.log.scrollHeight;
      }
      const finished = logBody.finished === true || Boolean(job.finished_at) || JOB_FINISHED.has(job.state);
      const lines = text ? text.split("\n").length - (text.endsWith("\n") ? 1 : 0) : 0;
      els.logMeta.textContent = `${lines} line${lines === 1 ? "" : "s"} · ${(text.length / 1024).toFixed(1)} KiB`
        + `${job.log_truncated ? " · truncated" : ""}${finished ? "" : " · live"}`;
      if (!finished) drawer.logTimer = setTimeout(refreshJobDrawer, 1500);
    } catch (error) {
      if (drawer.kind === "job" && drawer.jobId === id) {
        showError(els.error, error);
        if (error.status !== 404) drawer.logTimer = setTimeout(refreshJobDrawer, 4000);
      }
    }
  }

  function showJobDrawer(id) {
    if (drawer.kind === "job" && drawer.jobId === id) return;
    closeDrawer(false);
    const { els, panel, log } = buildJobPanel(id);
    const root = $("#drawer");
    root.replaceChildren(...panel);
    root.hidden = false;
    document.body.classList.add("drawer-open");
    Object.assign(drawer, { kind: "job", jobId: id, els, root, log });
    refreshJobDrawer();
    renderJobs();
  }

  // --- audit ------------------------------------------------------------------------------

  const audit = { entries: [], ids: new Set(), range: null };
  const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, all: null };
  const AUDIT_PAGE = 2000;
  const AUDIT_KEEP = 5000;

  /** Entries newer than the newest one held, read newest first and paged back with
   * `before` until a page reaches what is held (or the range's start). `entries` stays
   * oldest first. */
  async function fetchNewAudit(range) {
    const since = RANGES[range] ? new Date(now() - RANGES[range] * 1000).toISOString() : null;
    const held = audit.entries.length ? audit.entries[audit.entries.length - 1].id : 0;
    const fresh = [];
    let before = null;
    for (let page = 0; page < 20 && fresh.length < AUDIT_KEEP; page++) {
      const params = new URLSearchParams({ limit: String(AUDIT_PAGE) });
      if (since) params.set("since", since);
      if (before !== null) params.set("before", String(before));
      const batch = await api("GET", `/audit?${params}`);
      for (const entry of batch) {
        if (audit.ids.has(entry.id)) continue;
        audit.ids.add(entry.id);
        fresh.push(entry);
      }
      if (batch.length < AUDIT_PAGE || batch[batch.length - 1].id <= held) break;
      before = batch[batch.length - 1].id;
    }
    return fresh.reverse();
  }

  async function refreshAudit() {
    const range = $("#audit-range").value;
    if (audit.range !== range) Object.assign(audit, { entries: [], ids: new Set(), range });
    try {
      const fresh = await fetchNewAudit(range);
      if (fresh.length) audit.entries = audit.entries.concat(fresh).sort((a, b) => a.id - b.id);
      showError($("#audit-error"), null);
    } catch (error) {
      if (error.status === 0) throw error;
      showError($("#audit-error"), error);
    }
    if (audit.entries.length > AUDIT_KEEP) {
      audit.entries = audit.entries.slice(-AUDIT_KEEP);
      audit.ids = new Set(audit.entries.map((e) => e.id));
    }
    renderAudit();
  }

  function changeCell(e) {
    const removed = e.field === "worker" && e.new === "removed";
    return h("span", { class: "change" },
      h("span", { class: "old", text: fmtValue(e.old) }),
      h("span", { class: "arrow", text: "→" }),
      h("span", { class: `new ${removed ? "bad-text" : ""}`, text: fmtValue(e.new) }));
  }

  function renderAudit() {
    const text = $("#audit-filter").value.trim().toLowerCase();
    const cutoff = RANGES[audit.range] ? now() - RANGES[audit.range] * 1000 : null;
    const rows = audit.entries
      .filter((e) => cutoff === null || (parseTime(e.at) ?? 0) >= cutoff)
      .filter((e) => !text || text.split(/\s+/).every((term) => [e.actor, e.target, e.field, e.comment, fmtValue(e.old), fmtValue(e.new)]
        .some((v) => String(v ?? "").toLowerCase().includes(term))))
      .slice(-1000)
      .reverse();
    const tbody = $("#audit-rows");
    const key = JSON.stringify([rows.length, rows[0]?.id, rows[rows.length - 1]?.id, ago(rows[0]?.at)]);
    setCell(tbody, key, () => rows.map((e) => h("tr", { dataset: { id: e.id } },
      h("td", { dataset: { col: "time" } }, h("span", { class: "mono small", text: stamp(e.at) }), h("span", { class: "rel muted", text: ` · ${ago(e.at)}` })),
      h("td", { dataset: { col: "actor" }, class: "ellipsis", title: e.actor, text: e.actor }),
      h("td", { dataset: { col: "target" } }, h("a", {
        class: "mono", href: e.target.startsWith("queue:") ? "#/queues" : `#/fleet/${enc(e.target)}`, text: e.target,
      })),
      h("td", { dataset: { col: "field" }, class: "mono", text: e.field }),
      h("td", { dataset: { col: "change" } }, changeCell(e)),
      h("td", { dataset: { col: "comment" }, class: "comment-cell", title: e.comment || "", text: e.comment || "" }))));
    const empty = $("#audit-empty");
    empty.hidden = rows.length > 0;
    empty.textContent = audit.entries.length ? "No entry matches the filter." : "No control changes in this time range.";
    $("#audit-shown").textContent = `${rows.length} change${rows.length === 1 ? "" : "s"}${rows.length === 1000 ? " (newest 1000)" : ""}`;
  }

  // --- queues ---------------------------------------------------------------------------

  const THROUGHPUT_MINUTES = 60;
  const queuesView = { rows: [], throughput: null };

  async function refreshQueues() {
    try {
      const [rows, throughput] = await Promise.all([
        api("GET", "/queues"), api("GET", `/queues/throughput?minutes=${THROUGHPUT_MINUTES}`),
      ]);
      Object.assign(queuesView, { rows, throughput });
      showError($("#queues-error"), null);
    } catch (error) {
      if (error.status === 0) throw error;
      showError($("#queues-error"), error);
    }
    renderQueues();
  }

  /** The queues listed, with any that only finished jobs in the chart's hour. */
  function queueRows() {
    const rows = new Map(queuesView.rows.map((q) => [q.queue, q]));
    for (const t of queuesView.throughput?.queues || []) {
      if (!rows.has(t.queue)) rows.set(t.queue, { queue: t.queue, queued: 0, running: 0, cap: null, oldest_queued_at: null });
    }
    return [...rows.values()].sort((a, b) => a.queue.localeCompare(b.queue));
  }

  function hourTotals(queue) {
    const t = (queuesView.throughput?.queues || []).find((q) => q.queue === queue);
    const sum = (xs) => (xs || []).reduce((n, x) => n + x, 0);
    return t ? { ok: sum(t.success), failed: sum(t.failed) } : { ok: 0, failed: 0 };
  }

  function renderQueues() {
    renderChart();
    const rows = queueRows();
    const tbody = $("#queues-rows");
    const existing = new Map([...tbody.children].map((tr) => [tr.dataset.queue, tr]));
    let previous = null;
    for (const q of rows) {
      const tr = existing.get(q.queue) || newQueueRow(q.queue);
      existing.delete(q.queue);
      updateQueueRow(tr, q);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== tr) tbody.insertBefore(tr, wanted);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
    const empty = $("#queues-empty");
    empty.hidden = rows.length > 0;
    empty.textContent = "No queues yet: a queue appears when a worker serves it, a job is queued on it or it gets a cap.";
  }

  function renderChart() {
    const view = queuesView.throughput;
    if (!view) return;
    const key = JSON.stringify(view);
    const box = $("#queues-chart");
    setCell(box, key, () => window.EdgefleetChart.throughput(view));
    setCell($("#queues-legend"), key, () => (view.queues.length
      ? view.queues.map((q) => {
        const { ok, failed } = hourTotals(q.queue);
        return h("span", { class: "legend-item", dataset: { queue: q.queue } },
          h("i", { class: `swatch ${window.EdgefleetChart.colourOf(q.queue)}` }),
          h("span", { class: "mono", text: q.queue }),
          h("span", { class: "muted", text: ` ${ok} ok${failed ? `, ${failed} failed` : ""}` }));
      }).concat(h("span", { class: "legend-item" }, h("i", { class: "swatch failed" }), h("span", { class: "muted", text: "failed" })))
      : h("span", { class: "muted", text: "No job finished in the last hour." })));
  }

  function newQueueRow(queue) {
    const tr = h("tr", { dataset: { queue } });
    for (const col of ["queue", "cap", "running", "queued", "oldest", "hour", "edit"]) {
      tr.append(h("td", { dataset: col === "edit" ? { col, needs: "operator" } : { col } }));
    }
    const input = h("input", {
      type: "number", min: 1, step: 1, class: "num cap-input", placeholder: "cap", "aria-label": `Cap of queue ${queue}`,
      oninput: () => { input.dataset.dirty = "1"; },
    });
    const error = h("div", { class: "field-error cap-error", role: "alert", hidden: true });
    const set = h("button", { type: "button", class: "btn small cap-set", text: "Set", "aria-label": `Set the cap of ${queue}` });
    const reset = h("button", {
      type: "button", class: "btn small ghost cap-reset", text: "Lift cap", "aria-label": `Lift the cap of ${queue}`,
      title: "No cap: as many of its jobs run as workers take",
    });
    const done = (ok) => { if (ok) delete input.dataset.dirty; };
    const setCap = () => {
      const text = input.value.trim();
      if (!/^\d+$/.test(text)) return showError(error, { message: "Enter a cap: a whole number, 1 or more." });
      capQueue(set, error, queue, { concurrency: Number(text) }).then(done);
    };
    set.addEventListener("click", setCap);
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") setCap(); });
    reset.addEventListener("click", () => capQueue(reset, error, queue, { reset: true }).then(done));
    tr.lastChild.append(h("div", { class: "row tight" }, input, set, reset), error);
    return tr;
  }

  function capQueue(button, errorEl, queue, body) {
    const label = body.reset ? `Queue ${queue}: cap lifted` : `Queue ${queue}: capped at ${body.concurrency}`;
    return act(button, errorEl, label, () => api("PUT", `/queues/${enc(queue)}`, body));
  }

  function updateQueueRow(tr, q) {
    const c = Object.fromEntries([...tr.children].map((td) => [td.dataset.col, td]));
    setCell(c.queue, q.queue, () => chip(q.queue, "queue"));
    setCell(c.cap, String(q.cap), () => (q.cap === null
      ? h("span", { class: "muted", dataset: { field: "cap" }, title: "uncapped", text: "—" })
      : h("span", { class: "num big", dataset: { field: "cap" }, text: q.cap })));
    setCell(c.running, `${q.running}|${q.cap}`, () => {
      const full = q.cap !== null && q.running >= q.cap;
      const parts = [h("span", { class: `num ${full ? "warn-text" : ""}`, dataset: { field: "running" }, text: q.cap === null ? q.running : `${q.running} / ${q.cap}` })];
      if (q.cap !== null) {
        const bar = h("i");
        bar.style.width = `${Math.min(100, (100 * q.running) / q.cap)}%`;
        parts.push(h("span", { class: "meter" }, bar));
      }
      return parts;
    });
    setCell(c.queued, String(q.queued), () => h("span", { class: "num", dataset: { field: "queued" }, text: q.queued }));
    const waited = q.oldest_queued_at ? span((now() - parseTime(q.oldest_queued_at)) / 1000) : "—";
    setCell(c.oldest, waited, () => h("span", { class: "rel", title: q.oldest_queued_at ? `queued ${stamp(q.oldest_queued_at)}` : "nothing waits", text: waited }));
    const { ok, failed } = hourTotals(q.queue);
    setCell(c.hour, `${ok}|${failed}`, () => [
      h("span", { class: "num", dataset: { field: "ok" }, text: `${ok} ok` }),
      failed ? h("span", { class: "num bad-text", text: ` · ${failed} failed` }) : null,
    ]);
    const input = c.edit.querySelector(".cap-input");
    if (!input.dataset.dirty && document.activeElement !== input) input.value = q.cap ?? "";
    c.edit.querySelector(".cap-reset").disabled = q.cap === null;
  }

  function wireQueues() {
    $("#cap-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const errorEl = $("#cap-error");
      const queue = $("#cap-queue").value.trim();
      const text = $("#cap-value").value.trim();
      if (!queue) return showError(errorEl, { message: "Enter the queue to cap." });
      if (!/^\d+$/.test(text)) return showError(errorEl, { message: "Enter a cap: a whole number, 1 or more." });
      capQueue($("#cap-set"), errorEl, queue, { concurrency: Number(text) }).then((ok) => {
        if (ok) $("#cap-queue").value = $("#cap-value").value = "";
      });
    });
  }

  // --- routing and polling ------------------------------------------------------------

  let currentView = "fleet";
  const poller = { timer: null, busy: false, again: false, lastOk: 0, failing: false };

  function route() {
    if (!session.token) return;
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    const view = VIEWS.includes(parts[0]) ? parts[0] : "fleet";
    const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : "";
    const changed = view !== currentView;
    currentView = view;
    for (const name of VIEWS) $(`#view-${name}`).hidden = name !== view;
    for (const a of document.querySelectorAll(".tabs a")) a.classList.toggle("active", a.dataset.view === view);
    if (view === "fleet" && arg) showWorkerDrawer(arg);
    else if (view === "jobs" && /^\d+$/.test(arg)) showJobDrawer(Number(arg));
    else if (drawer.kind) closeDrawer(false);
    if (changed) refreshNow();
  }

  function setLive(ok, error) {
    const live = $("#live");
    live.classList.toggle("down", !ok);
    if (ok) {
      poller.lastOk = Date.now();
      $("#live-text").textContent = "Live";
      live.title = `Auto-refresh every ${REFRESH_MS[currentView] / 1000}s; last update ${stamp(new Date().toISOString())}`;
    } else {
      $("#live-text").textContent = "Disconnected — retrying";
      live.title = error ? error.message : "";
    }
  }

  async function poll() {
    clearTimeout(poller.timer);
    if (!session.token) return;
    if (poller.busy) {
      poller.again = true;
      return;
    }
    poller.busy = true;
    try {
      if (!document.hidden) {
        if (currentView === "fleet") await refreshFleet();
        else if (currentView === "queues") await refreshQueues();
        else if (currentView === "jobs") await refreshJobs();
        else await refreshAudit();
        setLive(true);
      }
    } catch (error) {
      if (session.token) setLive(false, error);
    } finally {
      poller.busy = false;
      renderExpiry();
    }
    if (!session.token) return;
    if (poller.again) {
      poller.again = false;
      poll();
      return;
    }
    poller.timer = setTimeout(poll, REFRESH_MS[currentView] || 2000);
  }

  const refreshNow = () => { poll(); };

  // --- start --------------------------------------------------------------------------

  function wire() {
    const stateSelect = $("#fleet-state");
    stateSelect.append(h("option", { value: "@online", text: "Online (any live state)" }));
    for (const state of WORKER_STATES) stateSelect.append(h("option", { value: state, text: label(state) }));
    for (const state of JOB_STATES) $("#jobs-state").append(h("option", { value: state, text: label(state) }));

    $("#signin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = $("#signin-token").value.trim().replace(/^Bearer\s+/i, "");
      const button = $("#signin-submit");
      showError($("#signin-error"), null);
      if (!token) return showError($("#signin-error"), { message: "Paste the token printed by edgefleet ui-token." });
      button.disabled = true;
      button.textContent = "Signing in…";
      try {
        await signIn(token);
      } catch (error) {
        showError($("#signin-error"), error.status === 401 ? { message: `The server refused this token: ${error.message}` } : error);
      } finally {
        button.disabled = false;
        button.textContent = "Sign in";
      }
    });
    $("#signin-token").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("#signin-form").requestSubmit();
      }
    });
    $("#signout").addEventListener("click", () => signOut(null));

    $("#fleet-filter").addEventListener("input", renderFleet);
    $("#fleet-state").addEventListener("change", renderFleet);
    $("#fleet-pending").addEventListener("change", renderFleet);
    $("#jobs-filter").addEventListener("input", renderJobs);
    $("#jobs-state").addEventListener("change", refreshNow);
    $("#jobs-limit").addEventListener("change", refreshNow);
    $("#audit-filter").addEventListener("input", renderAudit);
    $("#audit-range").addEventListener("change", refreshNow);
    wireBulk();
    wireSubmit();
    wireQueues();
    wireLayers();

    window.addEventListener("hashchange", route);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshNow(); });
    document.addEventListener("keydown", (event) => {
      if ($("#dialog").open || !session.token) return;
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || "");
      if (event.key === "/" && !typing) {
        event.preventDefault();
        $(`#${currentView}-filter`)?.focus();
      } else if (event.key === "Escape" && drawer.kind) {
        closeDrawer();
      }
    });
  }

  async function start() {
    wire();
    fetch(`${API}/health`).then((r) => r.json()).then((info) => {
      document.title = `edgefleet ${info.version || ""}`.trim();
      $(".topbar .brand").title = `edgefleet ${info.version} · API ${info.api}`;
    }).catch(() => {});
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      try {
        await signIn(saved, { quiet: true });
        return;
      } catch (error) {
        signOut(error.status === 0 ? `Cannot reach the server: ${error.message}` : `Please sign in again: ${error.message}`);
        return;
      }
    }
    signOut(null);
  }

  start();
})();
