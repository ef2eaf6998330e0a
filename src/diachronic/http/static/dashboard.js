// The diachronic dashboard: polls GET /api/workflows every second and renders each workflow; the controls POST
// to /api/workflows/{name}/controls/{control} after a confirmation. Plain JavaScript, no dependencies.
// Everything the server sends is put in the page as text (textContent), never as HTML.
"use strict";

(() => {
  const POLL_MS = 1000;
  const STALE_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";

  const PHASES = {
    idle: ["Idle", "○"],
    preparing: ["Preparing", "…"],
    awaiting_continue: ["Waiting for continue (dark deploy)", "‖"],
    rolling_out: ["Rolling out", "▶"],
    migrating: ["Migrating", "⇄"],
    completed: ["Completed", "✔"],
    failed: ["Failed", "✖"],
    cancelled: ["Cancelled", "■"],
    aborted: ["Aborted", "↩"],
    stopped: ["Stopped by a human edit", "✋"],
    duplicate: ["Duplicate: already live", "="],
  };

  const CONTROLS = [
    ["continue", "Continue", "Start the rollout of the dark-deployed version: new starts move to it on the schedule."],
    ["pause", "Pause", "Hold the rollout at its current percentage until it is resumed."],
    ["resume", "Resume", "Carry on with the paused rollout on its schedule."],
    ["promote", "Promote", "Route 100 % of new starts to the new version now."],
    ["abort", "Abort", "Route new starts back to the previous version and stop the migration."],
    ["rollback", "Roll back", "Route 100 % of new starts back to the previous version at once and stop the migration; moved workflows stay."],
    ["cancel", "Cancel", "Stop the automation; the flags stay as they are now."],
  ];

  const $ = (id) => document.getElementById(id);
  const main = $("workflows");
  const tokenForm = $("token-form");
  const tokenInput = $("token");
  const dialog = $("confirm");
  const cards = new Map(); // workflow name -> {article, details, result, json}
  let timer = null;
  let polling = false;
  let pollAgain = false;
  let lastOk = null;

  // ------------------------------------------------------------------------------------------ DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function time(value) {
    const d = value instanceof Date ? value : new Date(value);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
    const h = Math.floor(m / 60);
    return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  }

  const percent = (value) => `${Number.isInteger(value) ? value : value.toFixed(1)} %`;

  function phaseBadge(phase, paused) {
    const [label, symbol] = PHASES[phase] || [phase, "?"];
    return el(
      "span",
      { class: `phase phase-${phase}`, "data-field": "phase", "data-phase": phase },
      el("span", { "aria-hidden": "true", text: symbol }),
      ` ${label}${paused ? " (paused)" : ""}`,
    );
  }

  // ------------------------------------------------------------------------------------------ sections

  function section(title, ...content) {
    return el("section", { class: "part" }, el("h3", { text: title }), ...content);
  }

  function nextStepIndex(status) {
    const current = status.rolloutPercent ?? 0;
    return status.steps.findIndex((step) => step.percent > current);
  }

  function deployment(status) {
    const from = status.fromVersion ? status.fromVersion.versionId : "(initial: no previous version)";
    const to = status.toVersion ? status.toVersion.versionId : "—";
    const rows = [
      ["Phase", phaseBadge(status.phase, status.paused)],
      ["From → to", el("span", { "data-field": "versions" }, `${from} → ${to}`)],
    ];
    if (status.rolloutPercent !== null) {
      rows.push([
        "New starts on the new version",
        el("span", { "data-field": "rollout-percent", "data-value": status.rolloutPercent }, percent(status.rolloutPercent)),
      ]);
    }
    if (status.nextStepAt) {
      const next = status.steps[nextStepIndex(status)];
      const seconds = (new Date(status.nextStepAt) - Date.now()) / 1000;
      const what = next ? `${percent(next.percent)} at ` : "at ";
      const when = seconds < 0.5 ? "due now" : `in ${duration(seconds)}`;
      rows.push(["Next step", el("span", { "data-field": "next-step" }, `${what}${time(status.nextStepAt)} (${when})`)]);
    }
    if (status.nonMigratory) rows.push(["Old workflows", "finish on the old version (non-migratory)"]);
    const list = el("dl", { class: "facts" }, rows.map(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
    const parts = [list];
    if (status.steps.length) {
      const next = nextStepIndex(status);
      const active = ["rolling_out", "awaiting_continue", "preparing"].includes(status.phase);
      const items = status.steps.map((step, i) => {
        let state = "to come";
        if (status.rolloutPercent !== null && step.percent <= status.rolloutPercent) state = "done";
        else if (i === next && active) state = "next";
        return el(
          "li",
          { class: `step step-${state.replace(" ", "-")}`, "aria-current": state === "next" ? "step" : null },
          `${percent(step.percent)} after ${duration(step.waitS)} `,
          el("span", { class: "state", text: `(${state})` }),
        );
      });
      parts.push(el("p", { class: "label", id: null, text: "Schedule" }), el("ol", { class: "schedule" }, items));
    }
    return section("Current deployment", ...parts);
  }

  function plannedPoints(status) {
    if (status.phase !== "rolling_out" || status.paused || !status.nextStepAt) return [];
    const first = nextStepIndex(status);
    if (first < 0) return [];
    let t = new Date(status.nextStepAt).getTime();
    const points = [[t, status.steps[first].percent]];
    for (const step of status.steps.slice(first + 1)) {
      t += step.waitS * 1000;
      points.push([t, step.percent]);
    }
    return points;
  }

  function chart(status, name) {
    const history = (status.rolloutHistory || []).map(([at, p]) => [new Date(at).getTime(), p]);
    if (!history.length) return section("Rollout over time", el("p", { text: "No rollout yet." }));
    const planned = plannedPoints(status);
    const now = Date.now();
    const live = status.phase === "rolling_out";
    const t0 = history[0][0];
    const lastHistory = history[history.length - 1][0];
    let t1 = Math.max(lastHistory, live ? now : lastHistory, ...planned.map(([t]) => t));
    if (t1 - t0 < 1000) t1 = t0 + 1000;
    const W = 640, H = 200, L = 48, R = 14, T = 12, B = 30;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (p) => T + ((100 - p) / 100) * (H - T - B);
    const id = `chart-${name}`;
    const described = history.map(([t, p]) => `${percent(p)} at ${time(new Date(t))}`).join(", ");
    const future = planned.map(([t, p]) => `${percent(p)} at ${time(new Date(t))}`).join(", ");
    const root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-desc`,
    });
    root.append(
      svg("title", { id: `${id}-title`, text: `Rollout percentage of ${name} over time` }),
      svg("desc", { id: `${id}-desc`, text: `Applied: ${described}.${future ? ` Planned: ${future}.` : ""}` }),
    );
    for (const p of [0, 25, 50, 75, 100]) {
      root.append(
        svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid" }),
        svg("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end", class: "tick", text: `${p} %` }),
      );
    }
    root.append(
      svg("text", { x: L, y: H - 8, class: "tick", text: time(new Date(t0)) }),
      svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "tick", text: time(new Date(t1)) }),
    );
    let d = `M ${x(history[0][0])} ${y(history[0][1])}`;
    for (const [t, p] of history.slice(1)) d += ` H ${x(t)} V ${y(p)}`;
    const end = live ? Math.min(Math.max(now, lastHistory), t1) : lastHistory;
    d += ` H ${x(end)}`;
    root.append(svg("path", { d, class: "applied" }));
    if (planned.length) {
      const current = history[history.length - 1][1];
      let pd = `M ${x(end)} ${y(current)}`;
      for (const [t, p] of planned) pd += ` H ${x(t)} V ${y(p)}`;
      root.append(svg("path", { d: pd, class: "planned" }));
    }
    for (const [t, p] of history) {
      root.append(svg("circle", { cx: x(t), cy: y(p), r: 3.5, class: "point" }, svg("title", { text: `${percent(p)} at ${time(new Date(t))}` })));
    }
    const legend = el(
      "figcaption",
      {},
      "Share of new starts routed to the new version. Solid line with dots: applied; dashed line: planned.",
    );
    return section("Rollout over time", el("figure", {}, root, legend));
  }

  // The canary cohort (deploy --migrate-canary, docs/gates.md): the cohort moves, soaks, then the rest.
  function canaryText(c) {
    if (c.phase === "cohort") return `Canary cohort ${c.signalled}/${c.target === null ? "?" : c.target} signalled; the rest waits for its soak`;
    if (c.phase === "soak" && c.soakUntil) return `Canary soak until ${new Date(c.soakUntil).toISOString().slice(11, 19)} UTC: the cohort runs on the new version, the rest waits`;
    return "Canary rest: the cohort passed its soak, the rest moves";
  }

  function migration(status) {
    const m = status.migration;
    if (!m) {
      const text = status.nonMigratory
        ? "Non-migratory: old workflows finish on the old version; its worker is retired once none runs."
        : "No migration running.";
      return section("Migration", el("p", { text }));
    }
    const onOld = m.onOldQueue;
    const id = `migration-${status.workflowName}`;
    const items = [
      el("li", {}, el("strong", { text: String(m.eligible) }), " eligible: on the old queue, and the flag now routes them to the new version"),
      el("li", {}, el("strong", { text: String(m.signalled) }), " signalled to move"),
      el("li", {}, el("strong", { text: onOld === null ? "?" : String(onOld) }), " still on the old queue"),
    ];
    if (m.canary) items.push(el("li", { "data-field": "canary", text: canaryText(m.canary) }));
    if (m.sweeping) items.push(el("li", {}, `Sweeping the old queue (${m.sweeping}): `, el("strong", { text: String(m.sweptRows) }), " read so far"));
    else if (m.pacing) items.push(el("li", { "data-field": "pacing", text: `Next look at the old queue: ${m.pacing}` }));
    let bar;
    let summary;
    if (onOld === null) {
      bar = el("progress", { id, "data-field": "migration" });
      summary = " counting…";
    } else {
      const total = m.signalled + onOld;
      bar = el("progress", { id, max: Math.max(total, 1), value: total ? m.signalled : 1, "data-field": "migration", "data-value": m.signalled });
      summary = ` ${m.signalled} signalled, ${onOld} on the old queue`;
    }
    const label = el("label", { for: id, text: "Old workflows moved to the new version" });
    return section("Migration", el("p", { class: "bar" }, label, el("br"), bar, summary), el("ul", { class: "numbers" }, items));
  }

  function versions(status) {
    if (status.versionsError) return section("Versions", el("p", { class: "problem", text: `⚠ The flag store could not be read: ${status.versionsError}` }));
    if (!status.versions.length) return section("Versions", el("p", { text: "No version flag yet." }));
    const to = status.toVersion && status.toVersion.flagName;
    const from = status.fromVersion && status.fromVersion.flagName;
    const head = el("tr", {}, ["Seq", "Version", "Task queue", "New starts", "Test starts (isTest)", "“All other traffic”", "State"].map((h) => el("th", { scope: "col", text: h })));
    const rows = status.versions.map((v) => {
      const state = [v.archived ? "archived" : v.enabled ? "live" : "disabled"];
      if (v.flagName === to) state.push("new");
      if (v.flagName === from) state.push("previous");
      const share = (value, field) =>
        el("td", { "data-field": field, "data-value": value }, el("meter", { min: 0, max: 100, value, "aria-hidden": "true" }), ` ${percent(value)}`);
      return el(
        "tr",
        { "data-version": v.versionId, class: v.archived ? "archived" : null },
        el("td", { text: String(v.seqId) }),
        el("th", { scope: "row", text: v.versionId }),
        el("td", {}, el("code", { text: v.taskQueue })),
        share(v.sharePercent, "share"),
        el("td", { "data-field": "test-share" }, `${percent(v.testSharePercent)}${v.darkDeploy && v.testSharePercent > 0 ? " (dark deploy strategy)" : ""}`),
        el("td", { text: v.generalPercent === null ? "—" : percent(v.generalPercent) }),
        el("td", { "data-field": "state", text: state.join(", ") }),
      );
    });
    const table = el(
      "table",
      {},
      el("caption", { text: `Versions of ${status.workflowName}, newest first, and the share of new starts each receives` }),
      el("thead", {}, head),
      el("tbody", {}, rows),
    );
    const notes = [];
    if (status.routing) {
      notes.push(status.routing.method === "exact"
        ? "Shares computed from the flags' percentages: the newest version that takes an id wins."
        : "Shares measured by evaluating the flags over a fixed sample of ids (the flags were edited by hand).");
      if (status.routing.unroutedPercent > 0) {
        notes.push(`⚠ ${percent(status.routing.unroutedPercent)} of new starts match no version: they would fail (TaskQueueNotFound).`);
      }
    }
    const parts = [el("div", { class: "scroll" }, table), notes.map((n) => el("p", { class: "note", text: n }))];
    return el("section", { class: "part wide" }, el("h3", { text: "Versions" }), ...parts);
  }

  function queue(status) {
    if (!status.queued.length) return section("Queued deployments", el("p", { text: "Nothing queued." }));
    const items = status.queued.map((e) => {
      const kind = [e.isDarkDeploy ? "dark deploy" : null, e.isNonMigratory ? "non-migratory" : null].filter(Boolean);
      return el("li", { "data-version": e.versionId }, el("strong", { text: e.versionId }), ` (${e.sha.slice(0, 7)}, ${e.environment}, ${time(e.eventTime)})${kind.length ? ` — ${kind.join(", ")}` : ""}`);
    });
    return section("Queued deployments", el("ol", { "data-field": "queue" }, items));
  }

  // The gates (docs/gates.md): readiness, the gate workflow's runs, the health numbers of the last step, a breach.
  function gates(status) {
    const g = status.gates;
    if (!g) return null;
    const parts = [];
    if (g.stage === "waiting_for_workers" && g.waitingFor) parts.push(el("p", { "data-field": "gate-stage", text: `⏳ ${g.waitingFor}` }));
    else if (g.stage) parts.push(el("p", { "data-field": "gate-stage", text: g.stage.replace(/_/g, " ") }));
    for (const run of g.gateRuns || []) {
      const state = run.passed === null ? "running" : run.passed ? "passed" : "failed";
      parts.push(el("p", { "data-field": "gate-run", text: `gate before step ${run.stepIndex + 1}: ${state}${run.detail ? ` (${run.detail})` : ""}` }));
    }
    const last = (g.health || [])[g.health.length - 1];
    if (last) {
      const failures = (v) => v.failed + v.timedOut + v.terminated;
      const stuck = last.new.taskProblems ? `, ${last.new.taskProblems} stuck` : "";
      parts.push(el("p", { "data-field": "health", text: `health at ${last.percent ?? "?"} %: new ${failures(last.new)}/${last.new.closed} failed${stuck}; previous ${failures(last.old)}/${last.old.closed}` }));
    }
    if (g.breach) parts.push(el("p", { class: "problem", "data-field": "breach" }, el("strong", { text: "⚠ " }), `${g.breach.rule}: ${g.breach.detail}`));
    return parts.length ? section("Gates", ...parts) : null;
  }

  function lastError(status) {
    const stale = Date.now() - new Date(status.readAt).getTime() > STALE_MS;
    const parts = [];
    if (status.lastError) parts.push(el("p", { class: "problem", "data-field": "last-error" }, el("strong", { text: "⚠ " }), status.lastError));
    else parts.push(el("p", { "data-field": "last-error", text: "None." }));
    if (stale) parts.push(el("p", { class: "problem", text: `⚠ Status as of ${time(status.readAt)}: the CI is slow to answer.` }));
    return section("Last error", ...parts);
  }

  function freezeText(f) {
    const who = f.scope === "*" ? "Every workflow" : f.scope;
    const origin = f.source === "window" ? " (recurring window)" : "";
    return `${who} frozen until ${new Date(f.until).toLocaleString()}${origin}: ${f.reason}`;
  }

  function frozen(name, freezes) {
    const mine = freezes.filter((f) => f.scope === name || f.scope === "*");
    if (!mine.length) return null;
    const last = mine.reduce((a, b) => (new Date(a.until) >= new Date(b.until) ? a : b));
    return el("p", { class: "frozen", "data-field": "frozen" }, el("strong", { text: "❄ " }), freezeText(last));
  }

  function recent(status) {
    if (!status.recent.length) return null;
    const rows = status.recent.slice().reverse().map((r) =>
      el("li", {}, `${r.fromVersion ? r.fromVersion.versionId : "(initial)"} → ${r.toVersion ? r.toVersion.versionId : r.request.event.versionId}: ${(PHASES[r.phase] || [r.phase])[0]}${r.finishedAt ? ` at ${time(r.finishedAt)}` : ""}${r.end && (r.end.reason || r.end.detail) ? ` — ${r.end.reason ? `${r.end.reason}: ` : ""}${r.end.detail || ""}` : ""}`),
    );
    return el("details", { class: "recent" }, el("summary", { text: "Earlier deployments" }), el("ul", {}, rows));
  }

  // ------------------------------------------------------------------------------------------ controls

  function ask(name, control, label, text) {
    $("confirm-title").textContent = `${label}: ${name}?`;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = label;
    $("confirm-reason").value = "";
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm" ? $("confirm-reason").value : null), { once: true });
      dialog.showModal();
      $("confirm-no").focus();
    });
  }

  function show(result, outcome, text) {
    result.dataset.outcome = outcome;
    result.textContent = text;
  }

  async function steer(name, control, label, text, result) {
    show(result, "asking", "");
    const reason = await ask(name, control, label, text);
    if (reason === null) {
      show(result, "kept", `${label}: not sent.`);
      return;
    }
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (tokenInput.value) headers.Authorization = `Bearer ${tokenInput.value}`;
    show(result, "sending", `${label}: sending…`);
    let response;
    try {
      response = await fetch(`/api/workflows/${encodeURIComponent(name)}/controls/${control}`, {
        method: "POST",
        headers,
        body: JSON.stringify(reason ? { reason } : {}),
        cache: "no-store",
      });
    } catch (error) {
      show(result, "error", `✖ ${label} not sent: the server cannot be reached.`);
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) show(result, "ok", `✔ ${label} accepted: ${body.message}`);
    else if (response.status === 401) {
      show(result, "unauthorized", `✖ ${label} not allowed: enter the right control token (DIACHRONIC_SIGNALER_TOKEN) above.`);
      tokenForm.hidden = false;
    } else if (response.status === 422) show(result, "refused", `✖ ${label} refused: ${body.message}`);
    else show(result, "error", `✖ ${label} failed (${response.status}): ${body.message || response.statusText}`);
    poll();
  }

  function controls(name) {
    const result = el("p", { class: "control-result", role: "status", "aria-live": "polite", "data-field": "control-result" });
    const buttons = CONTROLS.map(([control, label, text]) => {
      const button = el("button", { type: "button", "data-control": control, title: text, text: label });
      button.addEventListener("click", () => steer(name, control, label, text, result));
      return button;
    });
    return el(
      "section",
      { class: "part controls", "aria-labelledby": `controls-${name}` },
      el("h3", { id: `controls-${name}`, text: "Controls" }),
      el("p", { class: "help", text: "Each asks for confirmation first. The CI refuses a control that does not fit the deployment's phase and says why." }),
      el("div", { class: "buttons", role: "group", "aria-label": `Controls of ${name}` }, buttons),
      result,
    );
  }

  // ------------------------------------------------------------------------------------------ rendering

  function card(name) {
    let entry = cards.get(name);
    if (entry) return entry;
    const details = el("div", { class: "details" });
    const article = el(
      "article",
      { class: "workflow", id: `wf-${name}`, "data-workflow": name, "aria-labelledby": `title-${name}` },
      el("h2", { id: `title-${name}` }, el("span", { class: "name", text: name }), el("span", { class: "badge" })),
      details,
      controls(name),
    );
    entry = { article, details, json: "" };
    cards.set(name, entry);
    return entry;
  }

  function render(data) {
    if (data.controlsNeedToken) tokenForm.hidden = false;
    const seen = new Set();
    let previous = $("empty");
    for (const status of data.workflows) {
      const entry = card(status.workflowName);
      seen.add(status.workflowName);
      if (previous.nextElementSibling !== entry.article) previous.after(entry.article);
      previous = entry.article;
      const cold = frozen(status.workflowName, data.freezes);
      const json = JSON.stringify([status, cold && cold.textContent]);
      if (json === entry.json) continue;
      entry.json = json;
      entry.article.querySelector(".badge").replaceChildren(phaseBadge(status.phase, status.paused));
      entry.article.dataset.phase = status.phase;
      const content = [
        cold,
        deployment(status),
        chart(status, status.workflowName),
        migration(status),
        gates(status),
        el("div", {}, lastError(status), queue(status)),
        versions(status),
        recent(status),
      ];
      entry.details.replaceChildren(...content.filter(Boolean));
    }
    for (const [name, entry] of cards) {
      if (!seen.has(name)) {
        entry.article.remove();
        cards.delete(name);
      }
    }
    $("empty").hidden = data.workflows.length > 0 || data.unavailable.length > 0;
    const unavailable = $("unavailable");
    unavailable.hidden = data.unavailable.length === 0;
    $("unavailable-list").replaceChildren(
      ...data.unavailable.map((u) => el("li", { "data-workflow": u.workflowName }, el("strong", { text: u.workflowName }), `: ${u.message}`)),
    );
    main.append(unavailable);
    const problem = data.freezesError ? [el("li", { class: "problem", text: `⚠ Freezes cannot be read now: ${data.freezesError}` })] : [];
    $("freezes").hidden = data.freezes.length === 0 && problem.length === 0;
    $("freeze-list").replaceChildren(...problem, ...data.freezes.map((f) => el("li", { "data-scope": f.scope, text: freezeText(f) })));
  }

  function setConnection(problem) {
    const connection = $("connection");
    if (problem) {
      const since = lastOk ? ` Last update ${time(lastOk)}.` : "";
      const text = `⚠ Cannot read the status: ${problem} Retrying every second.${since}`;
      if (connection.textContent !== text) connection.textContent = text;
      connection.className = "problem";
    } else {
      lastOk = new Date();
      $("updated").textContent = `Updated ${time(lastOk)} (every second)`;
      if (connection.textContent) connection.textContent = "";
      connection.className = "";
    }
  }

  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(timer);
    try {
      const response = await fetch("/api/workflows", { cache: "no-store", headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body) throw new Error(body && body.message ? `${body.message}.` : `the server answered ${response.status}.`);
      render(body);
      setConnection(null);
    } catch (error) {
      setConnection(error instanceof TypeError ? "the server cannot be reached." : error.message);
    } finally {
      polling = false;
      if (pollAgain) {
        pollAgain = false;
        poll();
      } else {
        timer = setTimeout(poll, POLL_MS);
      }
    }
  }

  tokenForm.addEventListener("submit", (event) => event.preventDefault());
  poll();
})();
