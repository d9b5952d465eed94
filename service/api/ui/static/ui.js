// Redundancy Advisor web UI: plain JavaScript over the /v1 JSON API. No framework, no build step.
"use strict";

const KEY_STORE = "advisor-api-key";
const UI = document.body.dataset.ui || "/ui";
const $ = (sel) => document.querySelector(sel);
// What the server states once and the pages only read: the status set, which statuses are final, and
// the engine's defaults (service/api/ui/__init__.py renders it from service.core.status and AnalysisConfig).
const CONFIG = JSON.parse(document.getElementById("ui-config").textContent);

// ---------------------------------------------------------------- the API, with the session's key
function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const resp = await fetch(path, { method: options.method || "GET", headers, body: options.body });
  if (resp.status === 401) $("#auth-banner").hidden = false;
  if (!resp.ok) {
    let problem = null;
    try { problem = await resp.json(); } catch (e) { problem = null; }
    throw new ApiError(resp.status, problem);
  }
  if (options.blob) return resp.blob();
  if (resp.status === 204) return null;
  return resp.json();
}

function setupKeyForm() {
  const state = $("#key-state"), input = $("#api-key"), forget = $("#key-forget");
  const show = () => {
    const has = !!apiKey();
    state.textContent = has ? "key set for this session" : "";
    forget.hidden = !has;
    input.value = "";
  };
  $("#key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(KEY_STORE, input.value.trim());
    show();
    location.reload();
  });
  forget.addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); show(); location.reload(); });
  show();
}

// ---------------------------------------------------------------- formatting
const pct = (x) => (x === null || x === undefined || Number.isNaN(x)) ? "–" : `${(100 * x).toFixed(1)}%`;
const signedPts = (x) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)} pts`;
const signed = (x, digits = 4) => `${x >= 0 ? "+" : ""}${x.toFixed(digits)}`;
const when = (iso) => iso ? new Date(iso).toLocaleString() : "–";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function row(...cells) { return el("tr", {}, ...cells.map((c) => el("td", {}, c))); }

function showError(box, err) {
  box.hidden = false;
  const p = err.problem || {};
  box.textContent = (p.title ? `${p.title}: ` : "") + err.message + (p.hint ? ` — ${p.hint}` : "");
}

/** One line for a recommendation: "keep k of d neurons (fraction f, DR = …)". */
/** What the job page calls its score and its fairness groups: accuracy and classes, or for a retrieval job
 * its metric (ndcg@10 → "nDCG@10") and the deciles of queries. */
function scoreLabels(metric) {
  const names = { "ndcg@10": "nDCG@10", "recall@10": "recall@10", "map@10": "mAP@10", "top10_overlap": "top-10 overlap" };
  if (!metric || metric === "accuracy") {
    return { score: "accuracy", title: "Accuracy", gini: "Gini of per-class accuracy", worst: "worst class",
      hurt: "Classes that lose most", group: "class", subject: "random neuron subsets" };
  }
  const name = names[metric] || metric;
  return { score: name, title: name, gini: "Gini of per-query scores", worst: "worst decile of queries",
    hurt: "Query deciles that lose most", group: "query decile", subject: "random dimension subsets" };
}

function answerText(rec) {
  if (!rec.met_below_full) return `keep the full layer: no tested fraction below 1 stays within δ = ${rec.delta}`;
  return `keep ${rec.k} of ${rec.d} neurons (fraction ${rec.fraction}, DR = ${rec.dr.toFixed(3)})`;
}

function modelText(req) {
  const m = req.model || {}, ds = req.dataset || {};
  return { model: `${m.name} (${m.weights || "hub"})`, dataset: ds.spec || "", seeds: seedText(req) };
}

/** "seed 3, 2 seeds" for what differs from the engine's defaults (jobs that differ only there look alike). */
function seedText(req) {
  const d = CONFIG.defaults, parts = [];
  if (req.seed !== undefined && req.seed !== d.seed) parts.push(`seed ${req.seed}`);
  if (req.seeds !== undefined && req.seeds !== d.seeds) parts.push(`${req.seeds} seeds`);
  return parts.join(", ");
}

// ---------------------------------------------------------------- jobs list
async function jobsPage() {
  const params = new URLSearchParams(location.search);
  const filter = $("#status-filter");
  filter.value = params.get("status") || "";
  filter.addEventListener("change", () => {
    const q = filter.value ? `?status=${encodeURIComponent(filter.value)}` : "";
    location.search = q;
  });
  let token = null;
  const load = async () => {
    const q = new URLSearchParams({ page_size: "20" });
    if (filter.value) q.set("status", filter.value);
    if (token) q.set("page_token", token);
    let page;
    try { page = await api(`/v1/jobs?${q}`); } catch (err) { showError($("#list-error"), err); return; }
    const body = $("#jobs tbody");
    for (const job of page.items) {
      const mt = modelText(job.request);
      const answer = el("td", { class: "answer-cell" }, job.status === "succeeded" ? "…" : "");
      const tr = el("tr", { "data-job": job.id, "data-status": job.status },
        el("td", {}, el("a", { href: `${UI}/jobs/${job.id}` }, job.id.slice(0, 8))),
        el("td", {}, el("span", { class: `status ${job.status}` }, job.status)),
        el("td", {}, mt.model, ...(mt.seeds ? [el("span", { class: "seeds" }, ` · ${mt.seeds}`)] : [])),
        el("td", {}, mt.dataset), el("td", {}, when(job.created_at)), answer);
      body.append(tr);
      if (job.status === "succeeded") {
        api(job.links.recommendation)
          .then((rec) => { answer.textContent = `${answerText(rec)} at δ = ${rec.delta} ${rec.mode}`; })
          .catch((err) => { answer.textContent = err.message; });
      }
    }
    token = page.next_page_token;
    $("#more").hidden = !token;
    $("#jobs-empty").hidden = body.children.length > 0;
  };
  $("#more").addEventListener("click", load);
  await load();
}

// ---------------------------------------------------------------- submit form
function fieldValue(input) {
  const raw = input.value.trim();
  if (raw === "") return undefined;
  const type = input.dataset.type;
  if (type === "int") return Number(raw);
  if (type === "floats") return raw.split(/[\s,]+/).filter(Boolean).map(Number);
  return raw;
}

function formBody(form) {
  const body = {};
  for (const input of form.querySelectorAll("input[name], select[name]")) {
    const value = fieldValue(input);
    if (value === undefined) continue;
    const path = input.name.split(".");
    let node = body;
    for (const part of path.slice(0, -1)) node = node[part] = node[part] || {};
    node[path[path.length - 1]] = value;
  }
  return body;
}

/** The `.field` element for an API field like "dataset.max_train" or "fractions.2" (nearest parent); a
 * missing object ("model", "dataset") is marked at its first field ("model.name", "dataset.spec"). */
function fieldBox(form, name) {
  const parts = String(name).split(".");
  for (let n = parts.length; n > 0; n--) {
    const box = form.querySelector(`.field[data-field="${parts.slice(0, n).join(".")}"]`);
    if (box) return box;
  }
  return form.querySelector(`.field[data-field^="${parts[0]}."]`);
}

/** A file chosen in the form: upload it (POST /v1/datasets), then the job's dataset is `upload:<id>`. */
async function uploadChosenFile(body) {
  const input = $("#f-file");
  if (!input || !input.files.length) return;
  const form = new FormData();
  form.append("file", input.files[0]);
  const up = await api("/v1/datasets", { method: "POST", body: form });
  body.dataset = Object.assign(body.dataset || {}, { spec: up.spec });
}

async function submitPage() {
  const form = $("#submit-form");
  const models = {};
  try {
    const [cat, ds] = await Promise.all([api("/v1/catalog/models?limit=1000"), api("/v1/catalog/datasets")]);
    for (const m of cat.items) {
      (models[m.name] = models[m.name] || []).push(m);
      if (models[m.name].length === 1) $("#models").append(el("option", { value: m.name }));
    }
    for (const d of ds.items) {
      $("#datasets").append(el("option", { value: d.spec, label: `${d.available ? "" : "(unavailable) "}${d.detail || ""}` }));
    }
    const describe = () => {
      const opts = models[$("#f-model").value] || [];
      $("#model-detail").textContent = opts.map((m) => `${m.weights}: ${m.available ? "available" : "not available"}`
        + (m.detail ? ` (${m.detail})` : "")).join("; ");
      if (opts.length && !$("#f-weights").value) $("#f-weights").placeholder = opts[0].weights;
    };
    $("#f-model").addEventListener("change", describe);
    const hint = $("#image-size-hint");
    $("#f-dataset").addEventListener("change", () => {
      const d = ds.items.find((x) => x.spec === $("#f-dataset").value);
      $("#dataset-detail").textContent = d ? (d.detail || "") : "";
      hint.replaceChildren();
      if (d && d.suggested_image_size) {  // the server's rule: tiny images suit a small input size
        const use = el("button", { type: "button", id: "use-image-size" }, `use ${d.suggested_image_size} px`);
        use.addEventListener("click", () => { $("#f-image-size").value = String(d.suggested_image_size); });
        hint.append(`${d.spec} images are ${d.image_px} px: ${d.suggested_image_size} px suits them `
          + "(the model's own size costs more for nothing) ", use);
      }
    });
  } catch (err) { showError($("#form-error"), err); }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const e of form.querySelectorAll(".field .err")) e.textContent = "";
    for (const f of form.querySelectorAll(".field.invalid")) f.classList.remove("invalid");
    $("#form-error").hidden = true;
    const body = formBody(form);
    if (body.model && !body.model.weights) {
      const opts = models[body.model.name] || [];
      if (opts.length) body.model.weights = opts[0].weights;
    }
    $("#submit").disabled = true;
    try {
      await uploadChosenFile(body);
      const job = await api("/v1/jobs", { method: "POST", json: body });
      location.href = `${UI}/jobs/${job.id}`;
    } catch (err) {
      const errors = (err.problem && err.problem.errors) || [];
      const unplaced = [];
      for (const e of errors) {
        const box = fieldBox(form, e.field);
        if (box) { box.classList.add("invalid"); box.querySelector(".err").textContent = e.reason; }
        else unplaced.push(`${e.field}: ${e.reason}`);
      }
      if (!errors.length || unplaced.length) {
        showError($("#form-error"), err);
        if (unplaced.length) $("#form-error").textContent += ` (${unplaced.join("; ")})`;
      }
    } finally {
      $("#submit").disabled = false;
    }
  });
}

// ---------------------------------------------------------------- job page
/** The progress line from the job's own fields; the ETA is the server's `eta_s` (whole seconds), written as
 * `advisor status` writes it. */
function progressText(job) {
  const parts = [`${job.stage || job.status}`, pct(job.progress)];
  if (Number.isFinite(job.images_done) && job.images_total) parts.push(`images ${job.images_done}/${job.images_total}`);
  if (job.message) parts.push(job.message);
  if (job.status === "running" && Number.isFinite(job.eta_s)) parts.push(`ETA ${Math.round(job.eta_s)} s`);
  return parts.join(" · ");
}

async function blobUrl(path) { return URL.createObjectURL(await api(path, { blob: true })); }

function downloadLink(a, path, filename) {
  a.href = path;
  a.setAttribute("download", filename);
  a.addEventListener("click", async (ev) => {
    if (!apiKey()) return;            // auth off: a plain link works
    ev.preventDefault();              // auth on: fetch with the key, then save the blob
    const tmp = el("a", { href: await blobUrl(path), download: filename });
    document.body.append(tmp); tmp.click(); tmp.remove();
  });
}

/** Round ticks covering [lo, hi] (accuracies in 0..1): steps of 1, 2, 2.5 or 5 × 10^n percentage points,
 * four to seven of them, never outside 0..100 %. */
function niceTicks(lo, hi) {
  const span = Math.max(hi - lo, 0.01);
  const raw = span / 5, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw * 0.999);
  const first = Math.max(0, Math.floor(lo / step + 1e-9)), last = Math.min(Math.round(1 / step), Math.ceil(hi / step - 1e-9));
  const ticks = [];
  for (let i = first; i <= Math.max(last, first + 1); i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** Decimals that write every tick exactly as a percentage (25 → 0, 2.5 → 1). */
function tickDigits(ticks) {
  for (let d = 0; d < 4; d++) if (ticks.every((t) => Math.abs(Math.round(t * 100 * 10 ** d) - t * 100 * 10 ** d) < 1e-6)) return d;
  return 4;
}

/** Width of a 10 px axis label when it cannot be measured: 0.65 em a character (a sans-serif digit is ~0.64 em). */
function labelWidth(text) { return 6.5 * text.length; }

function drawCurve(svg, summary, rec) {
  const W = 560, H = 300, L = 50, R = 15, T = 15, B = 40;
  const pts = summary.filter((s) => s.kind === "random").sort((a, b) => a.fraction - b.fraction);
  svg.replaceChildren();
  if (!pts.length) return;
  const ns = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  const fx = pts.map((p) => p.fraction), acc = pts.map((p) => p.accuracy_mean);
  const lo = Math.min(...acc, rec.threshold), hi = Math.max(...acc, rec.full_accuracy);
  const yTicks = niceTicks(lo, hi);
  const y0 = yTicks[0], y1 = yTicks[yTicks.length - 1];
  const lx0 = Math.log10(Math.min(...fx)), lx1 = Math.log10(1);
  const X = (f) => L + (W - L - R) * (lx1 === lx0 ? 1 : (Math.log10(f) - lx0) / (lx1 - lx0));
  const Y = (a) => T + (H - T - B) * (1 - (a - y0) / (y1 - y0));
  mk("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#999" });
  // x labels from the right (the full layer's first); one that would touch the last placed is left out.
  let leftEdge = Infinity;
  for (const f of [...fx].sort((a, b) => b - a)) {
    const text = String(f), x = X(f);
    const node = mk("text", { x, y: H - B + 14, "font-size": 10, "text-anchor": "middle", class: "x-tick" }, text);
    const w = node.getComputedTextLength() || labelWidth(text);  // measured when laid out, else estimated
    if (x + w / 2 + 3 > leftEdge) { node.remove(); continue; }
    leftEdge = x - w / 2;
  }
  const digits = tickDigits(yTicks);
  for (const a of yTicks) {
    mk("text", { x: L - 4, y: Y(a) + 3, "font-size": 10, "text-anchor": "end", class: "y-tick" }, `${(100 * a).toFixed(digits)}%`);
  }
  mk("text", { x: (L + W - R) / 2, y: H - 6, "font-size": 11, "text-anchor": "middle" }, "fraction of neurons kept (log)");
  mk("line", { x1: L, x2: W - R, y1: Y(rec.threshold), y2: Y(rec.threshold), stroke: "#555", "stroke-dasharray": "5 4", id: "threshold-line" });
  mk("text", { x: L + 4, y: Y(rec.threshold) - 4, "font-size": 10 }, `threshold ${pct(rec.threshold)}`);
  mk("polyline", { points: pts.map((p) => `${X(p.fraction)},${Y(p.accuracy_mean)}`).join(" "), fill: "none", stroke: "#1f6fb2", "stroke-width": 2 });
  for (const p of pts) mk("circle", { cx: X(p.fraction), cy: Y(p.accuracy_mean), r: 3, fill: "#1f6fb2" });
  const fstar = mk("line", { x1: X(rec.fraction), x2: X(rec.fraction), y1: T, y2: H - B, stroke: "#c0392b", "stroke-width": 2, id: "fstar-line" });
  fstar.dataset.fraction = String(rec.fraction);
  mk("text", { x: X(rec.fraction) - 4, y: T + 12, "font-size": 11, fill: "#c0392b", "text-anchor": "end" }, `f* = ${rec.fraction}`);
}

function fillRecommendation(rec, report) {
  $("#answer").textContent = answerText(rec);
  $("#answer").dataset.fraction = String(rec.fraction);
  $("#answer").dataset.k = String(rec.k);
  const lab = scoreLabels(rec.metric);
  $("#curve-title").textContent = `${lab.title} against the fraction kept`;
  $("#curve-hint").textContent = `Seed-mean ${lab.score} of ${lab.subject} (log axis); dashed: the threshold; red: f*.`;
  $("#hurt-title").textContent = lab.hurt;
  $("#hurt-group").textContent = lab.group;
  $("#answer-detail").textContent = `${lab.score} ${pct(rec.accuracy)} against ${pct(rec.full_accuracy)} for the full `
    + `layer; threshold ${pct(rec.threshold)} (δ = ${rec.delta}, ${rec.mode}, criterion ${rec.criterion})`;
  Object.assign($("#answer-detail").dataset, {
    threshold: String(rec.threshold), delta: String(rec.delta), mode: rec.mode, criterion: rec.criterion });
  $("#answer-note").textContent = (rec.layer && report && (report.layers || []).length > 1
    ? `Layer ${rec.layer}. ` : "") + (rec.note || "");
  const v = rec.verdict;
  $("#verdict").textContent = v ? `Ship ${v.method.replace(/_/g, " ")} (k = ${v.k}): ${v.reason}`
    + (v.nested_note ? `. ${v.nested_note}.` : ".") : "";
  $("#constrained").hidden = !rec.constrained;
  $("#constrained").textContent = rec.constrained ? `Under the fairness limits: ${rec.constrained.note}` : "";
  const f = rec.fairness;
  $("#fairness tbody").replaceChildren(
    row(lab.gini, f.gini_full.toFixed(4), f.gini_at.toFixed(4), signed(f.gini_change)),
    row("coefficient of variation", f.cv_full.toFixed(4), f.cv_at.toFixed(4), signed(f.cv_change)),
    row(lab.worst, pct(f.worst_class_full), pct(f.worst_class_at), signedPts(f.worst_class_change)),
    row("best − worst", pct(f.range_full), pct(f.range_at), signedPts(f.range_change)));
  const hurt = (f.most_hurt_classes || []).slice(0, 5);
  $("#hurt tbody").replaceChildren(...hurt.map((c) =>
    row(c.class, pct(c.accuracy_full), pct(c.accuracy_at), signedPts(c.change))));
  const ci = (rec.ci_low !== null && rec.ci_low !== undefined) ? `${pct(rec.ci_low)} – ${pct(rec.ci_high)}` : "not computed (bootstrap = 0)";
  const yesNo = (b) => b === null || b === undefined ? "–" : (b ? "yes" : "no");
  $("#robustness tbody").replaceChildren(
    row(`worst seed ${lab.score} at f*`, pct(rec.worst_seed_accuracy)),
    row("holds for the worst seed", yesNo(rec.holds_worst_seed)),
    row(`bootstrap CI of the ${lab.score}`, ci),
    row("holds under the CI's lower bound", yesNo(rec.holds_ci_lower)),
    row("f* from refinement probes", yesNo(rec.refined)));
  if (report) drawCurve($("#curve"), layerSummary(report, rec.layer), rec);
}

/** The summary of the answer's layer: a sweep keeps one per layer; otherwise (or unknown) the report's own. */
function layerSummary(report, layer) {
  const x = (report.layers || []).find((l) => l.layer === layer);
  return x && x.summary && x.summary.length ? x.summary : report.summary;
}

function fillBaselines(report) {
  const rows = report.baselines || [];
  const kinds = [...new Set(rows.map((b) => b.kind))];
  if (!kinds.length) {
    $("#baselines tbody").replaceChildren(row("no baselines in this job"));
    return;
  }
  const random = new Map(report.summary.filter((s) => s.kind === "random").map((s) => [s.k, s]));
  const ks = [...new Set(rows.map((b) => b.k))].sort((a, b) => a - b);
  $("#baselines thead").replaceChildren(el("tr", {}, el("th", {}, "k"), el("th", {}, "random subset"),
    ...kinds.map((k) => el("th", {}, k.replace(/_/g, " ")))));
  $("#baselines tbody").replaceChildren(...ks.map((k) => row(String(k),
    random.has(k) ? pct(random.get(k).accuracy_mean) : "–",
    ...kinds.map((kind) => {
      const b = rows.find((x) => x.kind === kind && x.k === k);
      return b ? pct(b.accuracy_mean) : "–";
    }))));
}

function fillLayers(report) {
  const layers = report.layers || [];
  $("#layers-card").hidden = layers.length < 2;
  if (layers.length < 2) return;
  $("#layer-selection").textContent = report.layer_selection || "";
  // The picker: "" asks the answer across layers; a name pins that layer (`layer=`, δ against its own full layer).
  $("#layer").replaceChildren(el("option", { value: "" }, "best across layers"), ...layers.map((x) =>
    el("option", { value: x.layer }, `${x.layer} (d ${x.d}${x.reference ? ", reference" : ""})`)));
  $("#layer-picker").hidden = false;
  $("#layers tbody").replaceChildren(...layers.map((x) => row(
    x.layer + (x.reference ? " (reference)" : ""), String(x.d), pct(x.full_accuracy),
    x.selection_score === null || x.selection_score === undefined ? "–" : `${x.selection} ${x.selection_score.toFixed(4)}`,
    `${x.k} (${x.fraction})`, x.macs_fraction === null || x.macs_fraction === undefined ? "–" : pct(x.macs_fraction),
    x.latency_fraction === null || x.latency_fraction === undefined ? "–" : pct(x.latency_fraction))));
}

async function jobPage() {
  const id = document.body.dataset.job;
  const base = `/v1/jobs/${encodeURIComponent(id)}`;
  let report = null, plotUrl = null, jobMode = "relative", asked = 0;

  // Each change asks again; answers can arrive out of order, so only the latest question's is shown.
  const refreshRecommendation = async () => {
    const mine = ++asked;
    const delta = $("#delta-num").value;
    const q = new URLSearchParams({ delta, delta_mode: $("#mode").value, criterion: $("#criterion").value });
    if ($("#max-drop").value !== "") q.set("max_worst_class_drop", $("#max-drop").value);
    if ($("#max-gini").value !== "") q.set("max_gini_increase", $("#max-gini").value);
    if ($("#layer").value !== "") q.set("layer", $("#layer").value);
    try {
      const rec = await api(`${base}/recommendation?${q}`);
      if (mine !== asked) return;
      fillRecommendation(rec, report);
      $("#job-error").hidden = true;
      // The server's plot marks f* in the job's own δ mode; redraw it for this δ when the mode matches.
      if ($("#mode").value === jobMode) {
        const url = await blobUrl(`${base}/plot.png?delta=${encodeURIComponent(delta)}`);
        if (mine !== asked) { URL.revokeObjectURL(url); return; }
        if (plotUrl) URL.revokeObjectURL(plotUrl);
        plotUrl = url;
        $("#plot").src = url;
        $("#plot-caption").textContent = `f* marked for δ = ${delta} (${jobMode}, seed mean).`;
      } else {
        $("#plot-caption").textContent = `This plot marks f* in the job's ${jobMode} mode; the chart above follows your choice.`;
      }
    } catch (err) { if (mine === asked) showError($("#job-error"), err); }
  };

  const showResult = async (job) => {
    report = await api(`${base}/result`);
    const req = job.request;
    jobMode = req.delta_mode || "relative";
    $("#mode").value = jobMode;
    $("#criterion").value = req.criterion || "mean";
    const d0 = (req.deltas && req.deltas.length) ? req.deltas[0] : 0.01;
    $("#delta").value = String(d0);
    $("#delta-num").value = String(d0);
    fillBaselines(report);
    fillLayers(report);
    const warnings = report.warnings || [];
    $("#warnings").replaceChildren(...warnings.map((w) => el("li", {}, w)));
    $("#warnings").hidden = !warnings.length;
    downloadLink($("#dl-report"), `${base}/result`, `redundancy-${id}.json`);
    downloadLink($("#dl-png"), `${base}/plot.png`, `redundancy-${id}.png`);
    downloadLink($("#dl-svg"), `${base}/plot.svg`, `redundancy-${id}.svg`);
    if (job.links.artifact) {
      downloadLink($("#dl-artifact"), job.links.artifact, `redundancy-${id}-artifact`);
      $("#dl-artifact-item").hidden = false;
    }
    $("#result").hidden = false;
    await refreshRecommendation();
  };

  $("#delta").addEventListener("input", () => { $("#delta-num").value = $("#delta").value; });
  $("#delta").addEventListener("change", refreshRecommendation);
  $("#delta-num").addEventListener("change", () => { $("#delta").value = $("#delta-num").value; refreshRecommendation(); });
  $("#mode").addEventListener("change", refreshRecommendation);
  $("#criterion").addEventListener("change", refreshRecommendation);
  $("#max-drop").addEventListener("change", refreshRecommendation);
  $("#max-gini").addEventListener("change", refreshRecommendation);
  $("#layer").addEventListener("change", refreshRecommendation);
  $("#delta-form").addEventListener("submit", (ev) => { ev.preventDefault(); refreshRecommendation(); });

  $("#cancel").addEventListener("click", async () => {
    try { await api(`${base}/cancel`, { method: "POST" }); poll(); } catch (err) { showError($("#job-error"), err); }
  });
  $("#delete").addEventListener("click", async () => {
    if (!confirm("Delete this job and its results?")) return;
    try { await api(base, { method: "DELETE" }); location.href = `${UI}/`; } catch (err) { showError($("#job-error"), err); }
  });

  let shown = false;
  const poll = async () => {
    let job;
    try { job = await api(base); } catch (err) { showError($("#job-error"), err); return; }
    const mt = modelText(job.request);
    $("#job-status").textContent = job.status;
    $("#job-status").className = `status ${job.status}`;
    $("#job-what").textContent = `${mt.model} × ${mt.dataset}` + (mt.seeds ? ` (${mt.seeds})` : "")
      + `, submitted ${when(job.created_at)}` + (job.finished_at ? `, finished ${when(job.finished_at)}` : "");
    const done = CONFIG.finished.includes(job.status);
    $("#progress").hidden = done;
    $("#progress-bar").value = job.progress;
    $("#progress-text").textContent = done ? "" : progressText(job);
    $("#cancel").hidden = done || job.cancel_requested;
    $("#delete").hidden = !done;
    if (job.error) {
      $("#failure").hidden = false;
      $("#failure").textContent = `${job.error.code}: ${job.error.message}` + (job.error.field ? ` (field ${job.error.field})` : "");
    }
    if (job.status === "succeeded" && !shown) { shown = true; await showResult(job); }
    if (!done) setTimeout(poll, 1000);
  };
  await poll();
}

// ---------------------------------------------------------------- start
setupKeyForm();
const PAGES = { jobs: jobsPage, submit: submitPage, job: jobPage };
(PAGES[document.body.dataset.page] || (() => {}))();
