// selfheal dashboard: renders what the JSON API returns and follows the live feed.
// Every piece of data goes into the page as text (textContent), never as markup.
"use strict";

const state = {
  csrf: null, role: null, services: [], busy: new Map(), outcomes: new Map(),
  // Pause length picked per service, kept across the re-renders the live feed causes.
  choices: new Map(),
};

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function iso(ms) {
  return ms ? new Date(ms).toISOString().replace(".000Z", "Z") : "";
}

// Local date and time to the second, the same form everywhere on the page.
function stamp(ms) {
  if (!ms) return "";
  const date = new Date(ms);
  const two = (number) => String(number).padStart(2, "0");
  return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) + " " +
    two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
}

function ago(ms) {
  if (!ms) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return span(seconds) + " ago";
}

function span(seconds) {
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h";
  return Math.round(seconds / 86400) + " d";
}

function time(ms, text) {
  return el("time", { datetime: iso(ms), title: iso(ms) }, text);
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401) {
    window.location.href = "login";
    throw new Error("logged out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf },
    body: JSON.stringify(body || {}),
  });
}

// Returns the colour class of a state. The state's own words are always shown next to it.
function stateClass(view) {
  if (view.paused && view.state === "paused") return "paused";
  switch (view.state) {
    case "healthy": return "ok";
    case "needs attention": case "down": return "bad";
    default: return "warn";
  }
}

function needsAttention(view) {
  return view.state === "needs attention" || view.state === "down";
}

function canAct() {
  return state.role === "admin";
}

function actionButtons(view, where) {
  const name = view.service;
  const busy = state.busy.get(name);
  const parts = [];
  if (!canAct()) return parts;
  // A restart cannot help while a blocker (broken config, full disk, taken port) remains, so
  // the banner does not urge it then.
  const blocked = (view.findings || []).some((finding) => finding.blocks_restart);
  parts.push(el("button", {
    type: "button",
    class: where === "banner" && !blocked ? "primary" : null,
    "aria-label": "Restart " + name,
    disabled: Boolean(busy),
    onclick: () => restart(name),
  }, busy === "restart" ? "Restarting…" : "Restart"));
  if (where === "table") {
    if (view.paused) {
      parts.push(el("button", {
        type: "button", "aria-label": "Resume healing of " + name, disabled: Boolean(busy),
        onclick: () => resume(name),
      }, "Resume"));
    } else {
      const select = el("select", {
        "aria-label": "Pause healing of " + name + " for",
        onchange: (event) => state.choices.set(name, event.target.value),
      },
      el("option", { value: "30m" }, "30 min"),
      el("option", { value: "2h" }, "2 h"),
      el("option", { value: "" }, "until resumed"));
      if (state.choices.has(name)) select.value = state.choices.get(name);
      parts.push(select, el("button", {
        type: "button", "aria-label": "Pause healing of " + name, disabled: Boolean(busy),
        onclick: () => pause(name, select.value),
      }, busy === "pause" ? "Pausing…" : "Pause"));
    }
  }
  const outcome = state.outcomes.get(name);
  if (outcome) {
    parts.push(el("span", { class: "outcome " + (outcome.ok ? "ok" : "bad"), role: "status" }, outcome.text));
  }
  return parts;
}

function renderBanners() {
  const holder = document.getElementById("banners");
  holder.replaceChildren();
  for (const view of state.services.filter(needsAttention)) {
    const watch = view.state === "down";
    const heading = view.service + (watch ? " is down" : " needs attention") +
      (view.verdict && view.verdict !== "down" ? ": " + view.verdict : "");
    const banner = el("div", { class: "banner" + (watch ? " down-watch" : ""), role: "alert",
      "data-service": view.service },
      el("h3", {}, heading),
      el("p", {}, "Since ", time(view.since_ms, ago(view.since_ms)),
        view.unit ? " · unit " + view.unit : "", " · ", view.mode, " mode"));
    const cause = view.findings && view.findings.length ? view.findings[0] : null;
    if (view.reason && !(cause && view.reason.includes(cause.summary))) {
      banner.append(el("p", {}, view.reason));
    }
    if (cause) {
      banner.append(el("p", { class: "cause" }, el("strong", {}, "Cause: "), cause.summary));
      const details = el("details", {}, el("summary", {}, "Evidence and next step"));
      if (cause.evidence && cause.evidence.length) details.append(el("pre", {}, cause.evidence.join("\n")));
      if (cause.next_step) details.append(el("p", {}, el("strong", {}, "Next: "), cause.next_step));
      for (const other of view.findings.slice(1)) details.append(el("p", {}, "Also: " + other.summary));
      banner.append(details);
    } else if (view.diagnosis) {
      banner.append(el("p", { class: "cause" }, el("strong", {}, "Cause: "), view.diagnosis));
    } else {
      banner.append(el("p", { class: "cause" }, "The diagnosis found no cause: no config error, " +
        "full disk, taken port or known error in the journal. The incident below lists what was seen."));
    }
    if (cause && cause.blocks_restart && canAct()) {
      banner.append(el("p", { class: "hint" }, "A restart cannot help until the cause is gone; " +
        (view.mode === "heal" ? "selfheal restarts it by itself then." : "then press Restart.")));
    }
    if (view.alert_undelivered) banner.append(el("p", {}, "Alert not delivered yet: " + view.alert_undelivered));
    banner.append(el("div", { class: "actions" }, ...actionButtons(view, "banner")));
    holder.append(banner);
  }
}

function renderTable() {
  const body = document.querySelector("#services tbody");
  body.replaceChildren();
  for (const view of state.services) {
    const stateText = view.state + (view.paused
      ? (view.paused.until_ms ? " until " + stamp(view.paused.until_ms) : " until resumed")
      : "");
    // data-label names each cell where a narrow screen shows the rows as cards.
    body.append(el("tr", { "data-service": view.service },
      el("th", { scope: "row" }, view.service),
      el("td", { "data-label": "State" }, el("span", { class: "state " + stateClass(view) }, stateText)),
      el("td", { "data-label": "Mode" }, view.mode + (view.critical ? ", critical" : "")),
      el("td", { "data-label": "Last check" },
        view.checked_ms ? time(view.checked_ms, ago(view.checked_ms)) : "not yet"),
      el("td", { "data-label": "Probe", title: view.last_probe || "" },
        view.probe_ms != null ? view.probe_ms + " ms" : "—"),
      el("td", { "data-label": "Healthy for" },
        view.state === "healthy" ? span(Math.round((Date.now() - view.since_ms) / 1000)) : "—"),
      el("td", { "data-label": "Last restart" },
        view.last_restart_ms ? time(view.last_restart_ms, ago(view.last_restart_ms)) : "none"),
      el("td", { "data-label": "Last action" }, view.last_action || "—"),
      el("td", { class: "actions" }, ...actionButtons(view, "table"))));
  }
  const filter = document.getElementById("incident-filter");
  if (filter.options.length === 1) {
    for (const view of state.services) filter.append(el("option", { value: view.service }, view.service));
  }
}

function renderSummary() {
  const count = (test) => state.services.filter(test).length;
  const attention = count(needsAttention);
  const healthy = count((view) => view.state === "healthy");
  const paused = count((view) => view.state === "paused");
  const healing = state.services.length - attention - healthy - paused;
  let text;
  if (attention) {
    text = attention + (attention === 1 ? " service needs" : " services need") + " attention.";
  } else if (healthy === state.services.length) {
    text = "All " + healthy + " services are healthy.";
  } else {
    text = healthy + " healthy" + (healing ? ", " + healing + " being healed" : "") + ".";
  }
  if (paused) text += " " + paused + " paused.";
  document.getElementById("summary").textContent = text;
}

function render() {
  renderSummary();
  renderBanners();
  renderTable();
}

async function act(name, kind, request, describe) {
  state.busy.set(name, kind);
  state.outcomes.delete(name);
  render();
  try {
    const result = await request();
    state.outcomes.set(name, describe(result));
  } catch (error) {
    state.outcomes.set(name, { ok: false, text: error.message });
  } finally {
    state.busy.delete(name);
    render();
    loadHistory();
    loadIncidents();
    loadAudit();
  }
}

function restart(name) {
  return act(name, "restart", () => post("api/v1/services/" + encodeURIComponent(name) + "/restart"),
    (outcome) => ({ ok: outcome.healthy, text: outcome.message }));
}

function pause(name, length) {
  return act(name, "pause",
    () => post("api/v1/services/" + encodeURIComponent(name) + "/pause", length ? { for: length } : {}),
    () => ({ ok: true, text: "paused" }));
}

function resume(name) {
  return act(name, "resume", () => post("api/v1/services/" + encodeURIComponent(name) + "/resume"),
    () => ({ ok: true, text: "resumed" }));
}

async function loadHistory() {
  const history = await api("api/v1/history?days=7").catch(() => null);
  if (!history) return;
  const holder = document.getElementById("charts");
  holder.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const names = ["up", "healed", "attention", "nodata"];
  const words = ["up", "healed incident", "needed attention", "no data (before selfheal ran)"];
  for (const service of history.services) {
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + service.bars.length + " 1");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", service.service + ": " + service.healed + " healed incidents and " +
      service.needed_attention + " that needed attention in 7 days");
    service.bars.forEach((level, index) => {
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", index);
      rect.setAttribute("y", 0);
      rect.setAttribute("width", 1);
      rect.setAttribute("height", 1);
      rect.setAttribute("class", names[level] || "up");
      const title = document.createElementNS(ns, "title");
      title.textContent = stamp(history.start_ms + index * history.bar_ms) + ": " + words[level];
      rect.append(title);
      svg.append(rect);
    });
    holder.append(el("div", { class: "chart" },
      el("span", {}, service.service), svg,
      el("span", { class: "counts" }, service.healed + " healed, " + service.needed_attention + " needed you")));
  }
}

async function loadIncidents() {
  const service = document.getElementById("incident-filter").value;
  const query = "api/v1/incidents?limit=50" + (service ? "&service=" + encodeURIComponent(service) : "");
  const list = await api(query).catch(() => null);
  if (!list) return;
  const body = document.querySelector("#incidents tbody");
  body.replaceChildren();
  for (const { incident, events } of list) {
    let outcome;
    if (incident.closed_ms) {
      outcome = (incident.resolution || "closed") + " after " +
        span(Math.round((incident.closed_ms - incident.opened_ms) / 1000)) +
        (incident.verdict ? " (it was: " + incident.verdict + ")" : "");
    } else {
      outcome = "open" + (incident.verdict ? ": " + incident.verdict : "");
    }
    const steps = el("details", {}, el("summary", {}, events.length + " events"),
      el("ul", {}, ...events.map((event) => el("li", {}, time(event.at_ms, stamp(event.at_ms)), " ", event.detail))));
    body.append(el("tr", {},
      el("td", {}, time(incident.opened_ms, stamp(incident.opened_ms))),
      el("td", {}, incident.service),
      el("td", {}, incident.problem),
      el("td", {}, outcome),
      el("td", {}, steps)));
  }
  if (!list.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "No incidents.")));
}

async function loadAlerts() {
  const alerts = await api("api/v1/alerts").catch(() => null);
  if (!alerts) return;
  const undelivered = document.getElementById("undelivered");
  undelivered.replaceChildren();
  for (const route of alerts.undelivered) {
    undelivered.append(el("p", { class: "error" }, "Not delivered (" + route.route + "): " + route.subject +
      (route.last_error ? ": " + route.last_error : "")));
  }
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren();
  for (const message of alerts.messages) {
    body.append(el("tr", {},
      el("td", {}, time(message.created_ms, stamp(message.created_ms))),
      el("td", {}, message.subject),
      el("td", {}, message.status + (message.last_error ? ": " + message.last_error : "")),
      el("td", {}, message.channel || "—"),
      el("td", {}, String(message.attempts))));
  }
  if (!alerts.messages.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "No alerts sent.")));
}

async function loadAudit() {
  const rows = await api("api/v1/audit").catch(() => null);
  if (!rows) return;
  const body = document.querySelector("#audit tbody");
  body.replaceChildren();
  for (const row of rows.slice(0, 50)) {
    body.append(el("tr", {},
      el("td", {}, time(row.at_ms, stamp(row.at_ms))),
      el("td", {}, row.actor), el("td", {}, row.address), el("td", {}, row.action),
      el("td", {}, row.service || "—"), el("td", {}, row.outcome)));
  }
}

function follow() {
  const feed = document.getElementById("feed");
  const source = new EventSource("api/v1/events");
  source.addEventListener("services", (event) => {
    state.services = JSON.parse(event.data);
    // A new or closed incident changes the history, the incidents and maybe the alerts.
    const signature = state.services.map((view) => view.service + ":" + view.state + ":" + view.incident).join(",");
    if (state.signature !== undefined && signature !== state.signature) {
      loadHistory();
      loadIncidents();
      loadAlerts();
      loadAudit();
    }
    state.signature = signature;
    feed.textContent = "live · updated " + new Date().toLocaleTimeString();
    feed.classList.remove("lost");
    render();
  });
  source.addEventListener("error", () => {
    feed.textContent = "connection lost, reconnecting…";
    feed.classList.add("lost");
  });
}

async function start() {
  const session = await api("api/v1/session");
  state.csrf = session.csrf_token;
  state.role = session.role;
  if (!canAct()) document.body.classList.add("read-only");
  document.getElementById("user").textContent = session.user + " (" + session.role + ")";
  document.getElementById("host").textContent = session.host || "";
  document.getElementById("incident-filter").addEventListener("change", loadIncidents);
  follow();
  loadHistory();
  loadIncidents();
  loadAlerts();
  loadAudit();
  setInterval(() => { render(); loadHistory(); loadAlerts(); loadIncidents(); loadAudit(); }, 60000);
}

document.addEventListener("DOMContentLoaded", () => {
  start().catch((error) => {
    document.getElementById("summary").textContent = "Cannot load: " + error.message;
  });
});
