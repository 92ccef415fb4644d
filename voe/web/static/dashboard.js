// The voe master's dashboard: polls the JSON API and draws it. No library, no build step.
// Every text from the server goes through textContent (never innerHTML): job errors hold
// whatever an airline answered.
"use strict";

const FAST_MS = 2000;        // status, master, dead letters
const SLOW_MS = 15000;       // delivery audit (it reads the whole ledger), price history
const WINDOW_S = 300;        // throughput chart: the last five minutes
const RATE_S = 6;            // a worker's jobs/s: over the refreshes of the last six seconds
const DEAD_PAGE = 10;        // dead letters listed per page
const SINK_SILENT_S = 10;    // a sink unheard for longer, with results unstored, is shown as silent
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457"];

const $ = (id) => document.getElementById(id);
let paused = false;
// worker -> its [time, finished] samples of the last RATE_S seconds (one a refresh), for jobs/s
let workerSamples = new Map();
let deadOffset = 0;                // the first dead letter of the page shown

function token() { return sessionStorage.getItem("voe-token") || ""; }

async function api(path, method = "GET") {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const answer = await fetch(path, { method, headers, cache: "no-store" });
  const body = await answer.json().catch(() => ({ error: answer.statusText }));
  if (answer.status === 401) {
    $("token-form").hidden = false;
  }
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}

function say(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function svgNode(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function minutes(seconds) {
  const words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
  const count = Math.round(seconds / 60);
  return `${words[count] || count} minute${count === 1 ? "" : "s"}`;
}

function ago(seconds) {
  if (seconds < 1) return "now";
  return seconds < 90 ? `${Math.round(seconds)} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function span(seconds) {
  return seconds < 90 ? `${Math.max(0, Math.round(seconds))} s` : `${Math.round(seconds / 60)} min`;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// A number the master publishes, or null while it does not (an older master).
function live(master, key) {
  return master && typeof master[key] === "number" ? master[key] : null;
}

// Status: cycle, counts, progress, workers, yield ----------------------------------------

function showStatus(status) {
  const jobs = status.jobs;
  for (const state of ["pending", "leased", "done", "failed"]) {
    $("jobs-" + state).textContent = jobs[state];
  }
  $("fares").textContent = status.cycle ? status.cycle.fares : 0;
  $("fares-all").textContent = status.fares;
  const total = jobs.pending + jobs.leased + jobs.done + jobs.failed;
  $("cycle-number").textContent = status.cycle ? status.cycle.number : "–";
  $("cycle-plan").textContent = status.cycle ? "plan " + status.cycle.plan : "no cycle yet";
  showPlanChanged(status.cycle);
  const percent = (count) => (total ? (100 * count) / total : 0);
  $("progress-done").style.width = percent(jobs.done) + "%";
  $("progress-failed").style.width = percent(jobs.failed) + "%";
  const finished = jobs.done + jobs.failed;
  $("progress-text").textContent = `${finished} of ${total} jobs finished ` +
    `(${Math.floor(percent(finished))}%)` +
    (status.cycle && status.cycle.finished_at ? ", cycle finished" : "");
  document.querySelector(".progress").setAttribute("aria-valuenow", Math.floor(percent(finished)));
  showWorkers(status.workers);
  showOutbox(status.outbox);
  showYield(status.yield);
}

// The plan the running master follows (from /api/master): `voe status` compares the open
// cycle with the plan its settings name (VOE_PLAN), which need not be the master's
// (`voe master --plan FILE`), so a change is only shown for the master's own plan.
let masterPlan = null;
let changedCycle = null;

function showPlanChanged(cycle) {
  changedCycle = cycle;
  const line = $("plan-changed");
  const changed = cycle && cycle.plan_changed;
  line.hidden = !(changed && changed.plan === masterPlan);
  if (line.hidden) return;
  line.textContent = (changed.jobs_kept ?
    `The plan changed since cycle ${cycle.number} started: it finishes with the ` +
    `${changed.jobs_kept} jobs it holds, and the next cycle follows plan ${changed.plan} ` +
    `(${changed.plan_jobs} jobs).` :
    `The plan changed before cycle ${cycle.number} held any job: it ends empty and a cycle ` +
    `of plan ${changed.plan} (${changed.plan_jobs} jobs) follows.`) +
    " To keep the old plan, restore its file and restart the master.";
}

// A worker's jobs/s: jobs it finished since the oldest sample of the last RATE_S seconds
// (so a rate shows from the second refresh on, and an idle worker soon reads 0.0).
function workerRate(worker, now, seen) {
  const samples = (workerSamples.get(worker.worker) || [])
    .filter((sample) => now - sample[0] <= RATE_S && sample[1] <= worker.finished);
  samples.push([now, worker.finished]);
  seen.set(worker.worker, samples);
  const [time, finished] = samples[0];
  return now > time ? ((worker.finished - finished) / (now - time)).toFixed(1) : "";
}

// One route of a worker's identities: "127.0.0.2:3128: 1 blocked, 2 retired, 9 jobs".
function identityText(route) {
  return `${route.route}: ${route.blocks || 0} blocked, ${route.retired || 0} retired, ` +
    `${route.jobs || 0} jobs`;
}

function showWorkers(workers) {
  const body = $("workers").tBodies[0];
  body.replaceChildren();
  const now = Date.now() / 1000;
  const seen = new Map();
  for (const worker of workers) {
    const row = body.insertRow();
    row.dataset.worker = worker.worker;
    const rate = workerRate(worker, now, seen);
    cell(row, worker.worker);
    cell(row, worker.address || "unknown", worker.address ? "" : "muted");
    cell(row, worker.concurrency);
    cell(row, worker.prefetch);
    cell(row, worker.held);
    cell(row, worker.max_held);
    cell(row, worker.finished);
    cell(row, worker.errors, worker.errors ? "alert" : "");
    cell(row, rate);
    cell(row, ago(now - worker.last_seen));
    const routes = worker.identities || [];
    const blocks = routes.reduce((sum, route) => sum + (route.blocks || 0), 0);
    cell(row, routes.length ? routes.map(identityText).join("; ") : "none",
         blocks ? "alert" : (routes.length ? "" : "muted"));
  }
  workerSamples = seen;
  $("worker-count").textContent = `${workers.length} connected`;
}

function showOutbox(outbox) {
  const body = $("outbox").tBodies[0];
  body.replaceChildren();
  const names = Object.keys(outbox.destinations);
  for (const name of names) {
    const found = outbox.destinations[name];
    const row = body.insertRow();
    row.dataset.destination = name;
    cell(row, name + (found.configured ? "" : " (not configured here)"));
    cell(row, found.backlog);
    cell(row, found.retrying);
    cell(row, found.dead, found.dead ? "alert" : "");
  }
  if (!names.length) {
    cell(body.insertRow(), "no publisher configured (VOE_AMQP_URL, VOE_NATS_URL, VOE_WEBHOOK_URLS)",
      "muted").colSpan = 4;
  }
  $("outbox-count").textContent = `${outbox.dead_letters} dead letter(s)`;
  $("outbox-retry").disabled = outbox.dead_letters === 0;
}

function showYield(yields) {
  const body = $("yield").tBodies[0];
  body.replaceChildren();
  for (const found of yields) {
    const row = body.insertRow();
    cell(row, found.backend);
    cell(row, found.cycle);
    cell(row, found.pages);
    cell(row, found.fares_per_page);
    cell(row, found.previous_fares_per_page === null ? "" :
      `${found.previous_fares_per_page} (cycle ${found.previous_cycle})`);
    cell(row, found.dropped ? "DROPPED: did the airline change its pages?" : "", found.dropped ? "drop" : "");
  }
}

// Stuck states, jobs waiting to retry and the sink's health ---------------------------------
// From `voe status` (the ledger: overdue leases, cycles that cannot finish, retries) and the
// master's live state (unstored results and their limit, the sink's heartbeat), whose keys
// an older master does not publish: then only what the ledger says is shown.

// A job's state as the jobs tables show it: a pending job whose retry is not due yet says when.
function jobState(job, now) {
  const dueIn = typeof job.due_in === "number" ? job.due_in :
    (job.not_before ? job.not_before - now : 0);
  return job.state === "pending" && dueIn > 0 ? `waiting to retry (in ${span(dueIn)})` : job.state;
}

function showRetries(status, master) {
  const count = live(master, "waiting_to_retry") ?? status.waiting_to_retry ?? 0;
  const retries = status.retries || [];
  const line = $("retry-line");
  line.hidden = count === 0;
  line.textContent = count ? `${plural(count, "pending job")} waiting to retry` +
    (retries.length ? `, the next in ${span(retries[0].due_in)}` : "") : "";
  const table = $("retries");
  table.hidden = count === 0 || !retries.length;
  const body = table.tBodies[0];
  body.replaceChildren();
  const now = Date.now() / 1000;
  for (const job of count ? retries : []) {
    const row = body.insertRow();
    row.dataset.jobId = job.job_id;
    cell(row, job.job_id).title = job.job_id;
    cell(row, job.attempt);
    cell(row, jobState(job, now));
    cell(row, job.error, "error").title = job.error || "";
  }
}

// Measured staleness of a continuous scheduler (audits: stored searches re-searched at
// random): from the live master, else the ledger as `voe status` reads it; none in cycles.
function showFreshness(status, master) {
  const found = (master && master.freshness) || status.freshness;
  const line = $("freshness-line");
  line.hidden = !found;
  if (!found) return;
  if (!found.audits) {
    line.textContent = "Freshness: no audit yet";
    return;
  }
  const bands = found.by_age.filter((band) => band.audits)
    .map((band) => `${band.age} ${(band.still_correct * 100).toFixed(0)}% of ${band.audits}`);
  line.textContent = `Freshness: ${(found.still_correct * 100).toFixed(1)}% of ` +
    `${plural(found.audits, "audit")} still correct; estimated stale share of the store ` +
    `${(found.estimated_stale * 100).toFixed(1)}% (by age: ${bands.join(", ")})`;
}

// The sink's line: what it says it waits for, or how long it has been silent while results
// wait to be stored ("" when all is well, or the master does not say).
function sinkAlert(master) {
  const sink = master && master.sink;
  if (!sink) return "";
  const unstored = live(master, "unstored");
  const limit = live(master, "unstored_limit");
  const stops = limit === null || unstored === null ? "" : unstored >= limit ?
    `; leasing has stopped at ${plural(limit, "unstored result")}` :
    `; leasing stops at ${plural(limit, "unstored result")} (${unstored} now)`;
  if (sink.waiting) return `The sink is waiting for ${sink.waiting}${stops}`;
  if (!unstored) return "";
  const silent = sink.silent_seconds;
  if (silent === null || silent === undefined) {
    return `The sink has not answered since the master started${stops}`;
  }
  return silent > SINK_SILENT_S ? `The sink has not answered for ${span(silent)}${stops}` : "";
}

function showSink(master) {
  const unstored = live(master, "unstored");
  const limit = live(master, "unstored_limit");
  const sink = master && master.sink;
  for (const node of document.querySelectorAll("#sink-panel .live")) {
    node.hidden = unstored === null;
  }
  if (unstored === null) return;
  $("sink-unstored").textContent = limit === null ? `${unstored}` :
    `${unstored} of ${limit}` + (unstored >= limit ? " (leasing stopped)" : "");
  $("sink-unstored").className = "live" + (limit !== null && unstored >= limit ? " alert" : "");
  const silent = sink ? sink.silent_seconds : undefined;
  $("sink-heard").textContent = silent === null ? "never" :
    typeof silent === "number" ? ago(silent) : "–";
}

function showAlerts(status, master) {
  const lines = [];
  const sink = sinkAlert(master);
  if (sink) lines.push(["sink", sink]);
  // The master's own count is of finished jobs it holds for the sink; without it, the
  // ledger's count (leases long past their deadline, or taken while the clock was ahead).
  const held = live(master, "overdue_leases");
  const overdue = held ?? status.overdue_leases.count;
  if (overdue) {
    lines.push(["overdue", `${plural(overdue, "lease")} overdue: ` + (held === null ?
      "past the deadline and not taken back" :
      "past the deadline, held until the sink stores their results")]);
  }
  for (const cycle of status.stuck_cycles || []) {
    lines.push(["stuck", `Cycle ${cycle.cycle} cannot finish: ${cycle.reason}`]);
  }
  for (const hint of status.hints || []) lines.push(["hint", hint]);
  const said = JSON.stringify(lines);
  if (said === $("alerts").dataset.said) return;  // unchanged: not read out again
  $("alerts").dataset.said = said;
  $("alerts").replaceChildren(...lines.map(([kind, text]) => {
    const line = document.createElement("p");
    line.dataset.kind = kind;
    if (kind === "hint") line.className = "hint";
    line.textContent = text;
    return line;
  }));
}

function showHealth(status, master) {
  showRetries(status, master);
  showFreshness(status, master);
  showSink(master);
  showAlerts(status, master);
}

// Master: paused or not, throughput from its counter samples ------------------------------

function showMaster(master) {
  paused = master.paused;
  masterPlan = master.plan;
  showPlanChanged(changedCycle);
  const state = $("master-state");
  state.textContent = master.paused ? "leasing paused" : "leasing";
  state.className = "badge " + (master.paused ? "paused" : "running");
  $("pause").textContent = master.paused ? "Resume leasing" : "Pause leasing";
  $("pause").disabled = false;
  $("start-cycle").disabled = master.cycles.length > 0;
  $("start-cycle").title = master.cycles.length ? `cycle ${master.cycles.join(", ")} is running` : "";
  $("sink-store").textContent = master.store;
  drawThroughput(master.samples);
}

function drawThroughput(samples) {
  const svg = $("throughput");
  svg.replaceChildren();
  const now = Date.now() / 1000;
  const recent = samples.filter((sample) => sample[0] >= now - WINDOW_S - 1);
  const rates = [];
  for (let i = 1; i < recent.length; i++) {
    const span = recent[i][0] - recent[i - 1][0];
    if (span <= 0) continue;
    rates.push([recent[i][0], (recent[i][1] - recent[i - 1][1]) / span,
      (recent[i][2] - recent[i - 1][2]) / span]);
  }
  const top = Math.max(1, ...rates.map((rate) => rate[1]), ...rates.map((rate) => rate[2]));
  const x = (time) => 600 - ((now - time) / WINDOW_S) * 600;
  const y = (value) => 150 - (value / top) * 140;
  svgNode("line", { x1: 0, y1: 150, x2: 600, y2: 150, class: "axis" }, svg);
  svgNode("text", { x: 4, y: 14 }, svg).textContent = `${top.toFixed(1)}/s`;
  for (const [index, name] of [[1, "done"], [2, "failed"]]) {
    const points = rates.map((rate) => `${x(rate[0]).toFixed(1)},${y(rate[index]).toFixed(1)}`);
    if (points.length) svgNode("polyline", { points: points.join(" "), class: name }, svg);
  }
  const last = rates.slice(-5);
  const average = last.length ? last.reduce((sum, rate) => sum + rate[1], 0) / last.length : 0;
  $("throughput-now").textContent = `${average.toFixed(1)} jobs/s now`;
}

// Dead letters, with Retry -----------------------------------------------------------------

function deadLettersPath() {
  return `/api/jobs?state=failed&limit=${DEAD_PAGE}&offset=${deadOffset}`;
}

async function loadDeadLetters() {
  try {
    showDeadLetters(await api(deadLettersPath()));
  } catch (error) {
    say("dead letters: " + error.message);
  }
}

function pageDeadLetters(step) {
  deadOffset = Math.max(0, deadOffset + step * DEAD_PAGE);
  $("dead-previous").disabled = $("dead-next").disabled = true;
  loadDeadLetters();
}

function showDeadLetters(page) {
  if (page.offset !== deadOffset) return;  // a page asked for before the last click
  if (!page.jobs.length && page.total && deadOffset) {  // retried away: show the last page
    deadOffset = Math.floor((page.total - 1) / DEAD_PAGE) * DEAD_PAGE;
    loadDeadLetters();
    return;
  }
  const body = $("dead-letters").tBodies[0];
  body.replaceChildren();
  for (const job of page.jobs) {
    const row = body.insertRow();
    row.dataset.cycle = job.cycle;
    row.dataset.jobId = job.job_id;
    cell(row, job.cycle);
    cell(row, job.job_id).title = job.job_id;
    cell(row, job.attempt);
    cell(row, job.worker).title = job.worker || "";
    cell(row, job.error, "error").title = job.error || "";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "retry";
    button.textContent = "Retry";
    button.addEventListener("click", () => retry(job, button));
    cell(row, "").appendChild(button);
  }
  $("dead-count").textContent = `${page.total}`;
  $("dead-range").textContent = page.total ?
    `${page.offset + 1}–${page.offset + page.jobs.length} of ${page.total}` : "none";
  $("dead-previous").disabled = page.offset === 0;
  $("dead-next").disabled = page.offset + page.jobs.length >= page.total;
  $("retry-all").disabled = page.total === 0;
  $("retry-all").textContent = page.total ? `Retry all ${page.total}` : "Retry all";
}

async function retry(job, button) {
  button.disabled = true;
  const path = `/api/jobs/${job.cycle}/${encodeURIComponent(job.job_id)}/retry`;
  try {
    await api(path, "POST");
    say(`job ${job.job_id} (cycle ${job.cycle}) sent back to pending`);
  } catch (error) {
    say(`retry of ${job.job_id} refused: ${error.message}`);
  }
  refresh();
}

// Audit (with the sink's lag), price history -------------------------------------------------

function showAudit(audit) {
  // Delivery only: overdue leases and cycles that cannot finish (also in `voe check`'s ok)
  // are the alerts above the panels.
  const delivered = audit.totals.lost === 0 && audit.totals.duplicated === 0;
  const badge = $("audit-ok");
  badge.textContent = delivered ? "OK" : "FAILED";
  badge.className = "badge " + (delivered ? "ok" : "bad");
  for (const kind of ["lost", "not_done", "duplicated", "failed"]) {
    $("audit-" + kind).textContent = audit.totals[kind];
  }
  const latest = audit.cycles[audit.cycles.length - 1];
  $("sink-stored").textContent = latest ? `${latest.stored} in cycle ${latest.cycle}` : "0";
  $("sink-lag").textContent = latest ? `${latest.counts.not_done} result(s)` : "0";
}

async function loadRoutes() {
  const { routes } = await api("/api/routes");
  const select = $("route");
  if (select.options.length === routes.length) return;
  const chosen = select.value;
  select.replaceChildren(...routes.map((route) => new Option(route, route)));
  if (routes.includes(chosen)) select.value = chosen;
}

function drawPrices(history) {
  const svg = $("prices");
  svg.replaceChildren();
  const rows = history.prices;
  if (!rows.length) {
    svgNode("text", { x: 10, y: 24 }, svg).textContent = "no fares stored for this route yet";
    $("prices-legend").textContent = "";
    return;
  }
  const dates = [...new Set(rows.map((row) => row.date))].sort();
  const values = rows.map((row) => Number(row.price));
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const x = (date) => 30 + (dates.length > 1 ? (dates.indexOf(date) / (dates.length - 1)) * 550 : 275);
  const y = (price) => 180 - ((price - low) / span) * 160;
  svgNode("text", { x: 2, y: 16 }, svg).textContent = high.toFixed(0);
  svgNode("text", { x: 2, y: 194 }, svg).textContent = low.toFixed(0);
  const cycles = [...new Set(rows.map((row) => row.cycle))].sort((a, b) => a - b);
  const legend = [];
  cycles.forEach((cycle, index) => {
    const color = COLORS[index % COLORS.length];
    const mine = rows.filter((row) => row.cycle === cycle);
    const points = mine.map((row) => `${x(row.date).toFixed(1)},${y(Number(row.price)).toFixed(1)}`);
    svgNode("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 2 }, svg);
    for (const row of mine) {
      const dot = svgNode("circle", { cx: x(row.date), cy: y(Number(row.price)), r: row.drop ? 4 : 2.5,
        fill: row.drop ? "#c62828" : color }, svg);
      svgNode("title", {}, dot).textContent = `${row.date} cycle ${row.cycle}: ${row.price} ${row.currency}` +
        (row.drop ? ` (DROP from ${row.previous})` : "");
    }
    legend.push(`cycle ${cycle}`);
  });
  const drops = rows.filter((row) => row.drop).length;
  $("prices-legend").textContent = `${dates[0]} to ${dates[dates.length - 1]}; ` +
    legend.join(", ") + (drops ? `; ${drops} drop(s) since the cycle before (red)` : "");
}

async function refreshPrices() {
  await loadRoutes();
  const route = $("route").value;
  if (route) drawPrices(await api("/api/prices?route=" + encodeURIComponent(route)));
}

// Polling --------------------------------------------------------------------------------

async function refresh() {
  try {
    const [status, master, dead] = await Promise.all([
      api("/api/status"), api("/api/master"), api(deadLettersPath())]);
    showMaster(master);
    showStatus(status);
    showHealth(status, master);
    showDeadLetters(dead);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("updated").textContent = "cannot reach the master: " + error.message;
  }
}

async function refreshSlow() {
  try {
    showAudit(await api("/api/check"));
    await refreshPrices();
  } catch (error) {
    say("audit or prices: " + error.message);
  }
}

async function act(path, what) {
  try {
    const answer = await api(path, "POST");
    say(what(answer));
  } catch (error) {
    say(error.message);
  }
  refresh();
}

$("pause").addEventListener("click", () =>
  act(paused ? "/api/resume" : "/api/pause",
    (answer) => (answer.paused ? "leasing paused" : "leasing resumed")));
$("start-cycle").addEventListener("click", () =>
  act("/api/cycles", (answer) => `cycle ${answer.cycle} started (${answer.total} jobs)`));
$("retry-all").addEventListener("click", () =>
  act("/api/retry", (answer) => `${answer.retried} failed job(s) sent back to pending`));
$("outbox-retry").addEventListener("click", () =>
  act("/api/outbox/retry", (answer) => `${answer.retried} dead letter(s) sent back to the ` +
    "sink's publishers (a running sink delivers them)"));
$("dead-previous").addEventListener("click", () => pageDeadLetters(-1));
$("dead-next").addEventListener("click", () => pageDeadLetters(1));
$("route").addEventListener("change", () => refreshPrices().catch((error) => say(error.message)));
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("voe-token", $("token").value);
  $("token-form").hidden = true;
  refresh();
  refreshSlow();
});

$("throughput-window").textContent = minutes(WINDOW_S);
$("throughput").setAttribute("aria-label", `jobs finished per second over the last ${minutes(WINDOW_S)}`);
refresh();
refreshSlow();
// A hidden tab stops asking (the audit in particular is not free for the master's machine).
setInterval(() => document.hidden || refresh(), FAST_MS);
setInterval(() => document.hidden || refreshSlow(), SLOW_MS);
