"use strict";
// The web view of a twinmesh agent (served at /ui/app.js; see docs/ui.md).
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"})[c]);
const ms = (v) => v == null ? "–" : v >= 10000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms";
const num = (v, d) => v == null ? "–" : Number(v).toFixed(d);
let selected = null;
let twin = null;

function renderTwin(t) {
  twin = t;
  $("agent").textContent = t.agent;
  $("summary").textContent = t.summary;
  $("epoch").textContent = t.partition_epoch;
  const byCluster = new Map();
  for (const n of t.nodes) { if (!byCluster.has(n.cluster)) byCluster.set(n.cluster, []); byCluster.get(n.cluster).push(n); }
  let h = "";
  for (const [c, ns] of [...byCluster].sort()) {
    const down = ns.filter((n) => n.status !== "Ready").length;
    h += `<tr class="cluster"><td colspan="10">${esc(c)} <span class="mute">${ns.length} nodes${down ? `, <span class="bad">${down} not ready</span>` : ""}</span></td></tr>`;
    for (const n of ns) {
      const status = n.status === "Ready" && n.owner_state !== "alive" ? `Ready, agent ${n.owner_state}` : n.status;
      h += `<tr class="${esc(n.owner_state !== "alive" ? "NotReady" : n.status)}" data-node="${esc(n.name)}"><td>${esc(n.name)}</td><td>${esc(n.arch)}</td><td class="fmt" title="${esc([].concat(n.formats).join(", "))}">${esc([].concat(n.formats).map((f) => f.replace("qemu-", "~")).join(" "))}</td>` +
        `<td class="st">${esc(status)}</td><td><span class="bar" data-w="${Math.round(Math.min(1, Math.max(0, n.load)) * 40)}"></span> ${Math.round(n.load * 100)}%</td>` +
        `<td class="num">${num(n.cpu_pct, 0)}</td><td class="num">${num(n.temperature_c, 0)}</td><td class="num">${ms(n.backlog_ms)}</td>` +
        `<td class="num">${num(n.resiliency, 2)}</td><td>${n.agent ? esc(n.agent) : "<span class=mute>unpublished</span>"}</td></tr>`;
    }
  }
  $("nodes").innerHTML = h;
  // Widths through the CSSOM: the Content-Security-Policy allows no
  // style attributes in markup.
  for (const b of $("nodes").querySelectorAll(".bar[data-w]")) b.style.width = `${b.dataset.w}px`;
  $("fabric-count").textContent = `${t.nodes.length} nodes in ${byCluster.size} clusters`;
  $("peers").innerHTML = t.peers.map((p) => `<tr class="${esc(p.state)}" data-peer="${esc(p.peer)}"><td>${esc(p.peer)}</td><td class="st">${esc(p.state)}</td>` +
    `<td class="mute">${esc(p.reason)}</td><td class="num">${p.rtt_ms == null ? "–" : num(p.rtt_ms, 1) + " ms"}</td>` +
    `<td>${p.in_sync == null ? "<span class=mute>not checked</span>" : p.in_sync ? "<span class=ok>same</span>" : "<span class=bad>differs</span>"}</td></tr>`).join("");
  const checked = t.peers.filter((p) => p.state === "alive" && p.in_sync != null);
  const same = checked.filter((p) => p.in_sync).length;
  $("converged").textContent = checked.length ? `${same} of ${checked.length} alive peers hold the same twin` : "";
  // Gossip rates from successive snapshots.
  const prev = renderTwin.prev;
  if (prev && t.now_ms > prev.now_ms) {
    const dt = (t.now_ms - prev.now_ms) / 1000;
    $("gossip").textContent = `gossip ${((t.gossip_in - prev.gossip_in) / dt).toFixed(1)} frames/s in, ${((t.gossip_out - prev.gossip_out) / dt).toFixed(1)} out`;
  } else {
    $("gossip").textContent = `gossip ${t.gossip_in} frames in, ${t.gossip_out} out`;
  }
  renderTwin.prev = { now_ms: t.now_ms, gossip_in: t.gossip_in, gossip_out: t.gossip_out };
  const fs = t.failures.slice().sort((a, b) => b.at_ms - a.at_ms);
  $("failures").innerHTML = fs.slice(0, 200).map((f) => `<tr class="${f.active ? "Down" : ""}"><td>${esc(f.node)}</td><td>${esc(f.kind)}</td>` +
    `<td>${new Date(f.at_ms).toLocaleTimeString()}</td><td>${ms(f.duration_ms)}</td><td class="mute">${esc(f.reporter)}</td></tr>`).join("");
  $("failures-count").textContent = `${t.failures.filter((f) => f.active).length} active, ${t.failures.length} known`;
  // For benchmarks: when the first twin was drawn (ms after navigation).
  if (window.twinmeshFirstRender == null) window.twinmeshFirstRender = performance.now();
}

function renderJobs(jobs) {
  // The row that has the keyboard's focus keeps it across a redraw.
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("#jobs tr.job");
  const keep = focused ? focused.dataset.job : null;
  $("jobs").innerHTML = jobs.map((j) => {
    const err = j.error_pct == null ? "–" : `<span class="${Math.abs(j.error_pct) <= 10 ? "ok" : "bad"}">${j.error_pct > 0 ? "+" : ""}${num(j.error_pct, 1)}%</span>`;
    return `<tr class="job ${esc(j.state)}${j.id === selected ? " sel" : ""}" data-job="${esc(j.id)}" tabindex="0"><td>${esc(j.id)}${j.dry_run ? " <span class=mute>(dry)</span>" : ""}</td>` +
      `<td class="st">${esc(j.state)}</td><td>${esc(j.policy)}</td><td>${esc(j.planner)}</td><td>${esc((j.clusters || []).join(", "))}</td>` +
      `<td class="num">${ms(j.predicted_ms)}</td><td class="num">${ms(j.observed_ms)}</td><td class="num">${err}</td><td class="num">${j.actions || ""}</td></tr>`;
  }).join("");
  $("jobs-count").textContent = `${jobs.length} recent`;
  if (keep) { const tr = [...$("jobs").querySelectorAll("tr.job")].find((r) => r.dataset.job === keep); if (tr) tr.focus(); }
  if (selected && jobs.some((j) => j.id === selected)) showJob(selected, false);
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts));
  const text = await r.text();
  let body; try { body = JSON.parse(text); } catch { body = { error: text }; }
  return { status: r.status, body };
}

function gantt(rec) {
  const pred = rec.plan ? rec.plan.predicted.stages : [];
  const obs = rec.observations || [];
  const c = rec.committed;
  const win = c ? c.windows : [];
  const stages = pred.map((s) => s.stage);
  for (const o of obs) if (!stages.includes(o.stage)) stages.push(o.stage);
  const done = obs.length ? Math.max(...obs.map((o) => o.finish_ms)) : null;
  const end = Math.max(1, ...pred.map((s) => s.finish_ms), ...obs.map((o) => o.finish_ms), ...win.map((w) => w.end_ms), c ? c.p90_ms : 0, rec.plan?.predicted.deadline_ms ?? 0);
  const W = 640, L = 90, row = 26, rows = stages.length + (c ? 1 : 0), H = rows * row + 24;
  const x = (t) => L + (W - L - 10) * t / end;
  const w = (a, b) => Math.max(1, x(b) - x(a));
  let g = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="reserved, predicted and observed stage times">`;
  stages.forEach((id, i) => {
    const y = 4 + i * row;
    g += `<text x="0" y="${y + 14}">${esc(id)}</text>`;
    // The window the stage's owner reserved when the job started.
    for (const r of win.filter((r) => r.stage === id)) g += `<rect class="resv" data-stage="${esc(id)}" x="${x(r.start_ms)}" y="${y - 1}" width="${w(r.start_ms, r.end_ms)}" height="23" fill="none" stroke="var(--mute)" stroke-dasharray="3 2"><title>reserved on ${esc(r.node)} ${ms(r.start_ms)} → ${ms(r.end_ms)}</title></rect>`;
    const p = pred.find((s) => s.stage === id);
    if (p) g += `<rect class="pred" data-stage="${esc(id)}" x="${x(p.start_ms)}" y="${y}" width="${w(p.start_ms, p.finish_ms)}" height="10" fill="var(--pred)"><title>predicted ${ms(p.start_ms)} → ${ms(p.finish_ms)}</title></rect>`;
    for (const o of obs.filter((s) => s.stage === id)) {
      const moved = win.some((r) => r.stage === id && r.node !== o.node);
      g += `<rect class="obs${moved ? " moved" : ""}" data-stage="${esc(id)}" x="${x(o.start_ms)}" y="${y + 11}" width="${w(o.start_ms, o.finish_ms)}" height="10" fill="var(--obs)"${moved ? ` stroke="var(--bad)"` : ""}><title>observed ${ms(o.start_ms)} → ${ms(o.finish_ms)} on ${esc(o.node)}${moved ? " (not where it was reserved: failed over or moved)" : ""}</title></rect>`;
    }
  });
  if (c) {
    // The committed prediction: median (p50) to 90th percentile, and
    // when the job really finished.
    const y = 4 + stages.length * row;
    g += `<text x="0" y="${y + 14}">finish</text>`;
    g += `<rect class="band" x="${x(c.p50_ms)}" y="${y + 2}" width="${w(c.p50_ms, c.p90_ms)}" height="14" fill="var(--band)"><title>p50 ${ms(c.p50_ms)} – p90 ${ms(c.p90_ms)}</title></rect>`;
    g += `<line class="p50" x1="${x(c.p50_ms)}" x2="${x(c.p50_ms)}" y1="${y}" y2="${y + 18}" stroke="var(--fg)"><title>p50 ${ms(c.p50_ms)}</title></line>`;
    if (done !== null) g += `<line class="done" x1="${x(done)}" x2="${x(done)}" y1="${y - 2}" y2="${y + 20}" stroke="var(--obs)" stroke-width="3"><title>finished ${ms(done)}${done > c.p90_ms ? " (after p90)" : ""}</title></line>`;
  }
  const dl = rec.plan?.predicted.deadline_ms;
  if (dl) g += `<line x1="${x(dl)}" x2="${x(dl)}" y1="0" y2="${H - 18}" stroke="var(--bad)" stroke-dasharray="3 3"><title>deadline ${ms(dl)}</title></line>`;
  g += `<text x="${L}" y="${H - 4}">0</text><text x="${W - 10}" y="${H - 4}" text-anchor="end">${ms(end)}${dl ? " (deadline)" : ""}</text></svg>`;
  return g;
}

async function showJob(id, scroll = true) {
  selected = id;
  for (const tr of document.querySelectorAll("tr.job")) tr.classList.toggle("sel", tr.dataset.job === id);
  const { status, body } = await api(`/v1/jobs/${encodeURIComponent(id)}`);
  if (status !== 200) return;
  renderJob(body);
  if (scroll) $("job").scrollIntoView({ block: "nearest" });
}

function renderJob(rec) {
  $("job").hidden = false;
  $("job-id").textContent = rec.id;
  const reason = rec.route ? (typeof rec.route.reason === "string" ? rec.route.reason : Object.keys(rec.route.reason)[0]) : "";
  $("job-state").textContent = `${rec.state} · planned by ${rec.planner}${reason ? ` (route: ${reason.replace("_", " ")})` : ""} · submitted to ${rec.submitted_to}`;
  $("timeline").innerHTML = gantt(rec);
  const v = rec.verification;
  const band = rec.committed ? ` (p90 ${ms(rec.committed.p90_ms)})` : "";
  $("job-verdict").textContent = v ? `latency ${ms(v.latency.predicted)} predicted${band}, ${ms(v.latency.observed)} observed (${(v.latency.rel_error * 100).toFixed(1)}%), ${v.accepted ? "verified" : "outside the threshold"}` : (rec.committed ? `committed: p50 ${ms(rec.committed.p50_ms)}, p90 ${ms(rec.committed.p90_ms)}` : "");
  const pl = rec.plan ? rec.plan.placements : [];
  $("placements").innerHTML = pl.map((p, i) => { const s = rec.plan.shadow[i];
    return `<tr><td>${esc(p.stage)}</td><td>${esc(p.node)}</td><td>${esc(p.cluster)}</td><td>${esc(p.format)}</td><td class="mute">${s ? esc(s.node) : "–"}</td></tr>`; }).join("");
  const notes = [...(rec.plan?.notes || []), ...(rec.notes || [])];
  if (rec.error) notes.unshift("error: " + rec.error);
  $("job-notes").innerHTML = notes.map((n) => `<li class="${n.startsWith("preemptive") ? "ok" : n.startsWith("error") ? "bad" : ""}">${esc(n)}</li>`).join("");
}

$("jobs").addEventListener("click", (e) => { const tr = e.target.closest("tr.job"); if (tr) showJob(tr.dataset.job); });
// The keyboard opens a row as a click does: Tab to it, Enter or Space.
$("jobs").addEventListener("keydown", (e) => {
  if (e.key !== "Enter" && e.key !== " ") return;
  const tr = e.target.closest("tr.job");
  if (tr) { e.preventDefault(); showJob(tr.dataset.job); }
});

function showError(body) {
  $("field-error").textContent = body.error ? (body.field ? `${body.field}: ` : "") + body.error : "";
  $("field-error").dataset.field = body.field || "";
}

$("submit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("submit-result").textContent = "submitting…";
  const q = `?policy=${encodeURIComponent($("policy").value)}${$("dry").checked ? "&dry_run=true" : ""}`;
  const { status, body } = await api("/v1/jobs" + q, { method: "POST", body: $("doc").value, headers: { "content-type": "application/yaml" } });
  if (status >= 400) { showError(body); $("submit-result").textContent = `refused (${status})`; return; }
  showError({});
  const j = body.job || {};
  $("submit-result").innerHTML = `${status === 202 ? "accepted" : "already known"}: <a href="#" id="submitted-job">${esc(j.id)}</a> (${esc(j.state)}, planner ${esc(j.planner)})`;
  $("submitted-job").addEventListener("click", (ev) => { ev.preventDefault(); showJob(j.id); });
  if (j.dry_run) { selected = null; renderJob(j); } else if (j.id) showJob(j.id);
});

$("compare-btn").addEventListener("click", async () => {
  const rows = [];
  for (const p of ["baseline", "greedy", "resilient", "cvar"]) {
    const { status, body } = await api(`/v1/jobs?policy=${p}&dry_run=true`, { method: "POST", body: $("doc").value });
    if (status >= 400) { showError(body); return; }
    showError({});
    const plan = body.job && body.job.plan;
    if (!plan) continue;
    const pr = plan.predicted;
    rows.push(`<tr data-policy="${p}"><td>${p}</td><td class="num">${ms(pr.latency_ms)}</td><td class="num">${(pr.risk * 100).toFixed(1)}%</td><td class="num">${num(pr.energy_j, 0)} J</td>` +
      `<td class="${pr.meets_deadline ? "ok" : "bad"}">${pr.meets_deadline ? "yes" : "no"}</td><td>${esc(plan.placements.map((x) => x.node).join(" → "))}</td></tr>`);
  }
  $("compare").hidden = false;
  $("compare").querySelector("tbody").innerHTML = rows.join("");
});

function connect() {
  const es = new EventSource("/v1/events");
  es.addEventListener("open", () => { $("live").textContent = "live"; $("live").classList.add("on"); });
  es.addEventListener("twin", (e) => renderTwin(JSON.parse(e.data)));
  es.addEventListener("jobs", (e) => renderJobs(JSON.parse(e.data)));
  es.addEventListener("error", () => { $("live").textContent = "reconnecting…"; $("live").classList.remove("on"); });
}
connect();
