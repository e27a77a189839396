// The status page: one snapshot from /api/fleet (via the first server-sent event), then deltas.
// Plain ES module; dagre lays the graph out, uPlot draws the latency chart (both served from node_modules).
import dagre from '/vendor/dagre.js';
import uPlot from '/vendor/uplot.js';

/** Beyond this many services in view, the graph shows groups (by owner or tag) instead of services. */
const GRAPH_MAX_NODES = 150;
/** Rows the table renders at once; the search narrows the rest. */
const TABLE_MAX_ROWS = 300;
/** Impact edges drawn between groups at most (the heaviest). */
const GROUP_MAX_EDGES = 60;
const SEVERITY = { unhealthy: 0, impacted: 1, degraded: 2, unknown: 3, maintenance: 4, healthy: 5 };
/** Colour is never the only cue: each status has a glyph and its word. */
const GLYPH = { healthy: '✓', degraded: '!', unhealthy: '✕', impacted: '↯', unknown: '?', maintenance: '⚙' };
const STATUSES = ['healthy', 'degraded', 'unhealthy', 'impacted', 'unknown', 'maintenance'];

const state = {
  snapshot: null,
  services: new Map(),
  selected: null,
  search: '',
  groupBy: 'owner',
  layoutKey: '',
  layout: null,
  detailTimer: 0,
  chart: null,
  painted: false,
};

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const ms = (v) => (v === undefined || v === null ? '–' : v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`);
const pct = (v) => (v === undefined || v === null ? '–' : `${v >= 99.99 && v < 100 ? v.toFixed(3) : v.toFixed(2)}%`);
function ago(t) {
  if (!t) return '–';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h ago`;
}
function dur(msv) {
  if (msv === undefined) return '–';
  const s = msv / 1000;
  if (s < 120) return `${Math.round(s)}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
const badge = (status) => `<span class="badge st-${esc(status)}" data-status="${esc(status)}">${GLYPH[status] ?? ''} ${esc(status)}</span>`;

/** Deep links into the Temporal Web UI (when the server knows its address). */
function uiLink(workflowId, runId, text) {
  const s = state.snapshot;
  if (!s?.uiUrl) return esc(text ?? workflowId);
  const ns = encodeURIComponent(s.namespace);
  const href = runId
    ? `${s.uiUrl}/namespaces/${ns}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history`
    : `${s.uiUrl}/namespaces/${ns}/workflows?query=${encodeURIComponent(`WorkflowId="${workflowId}"`)}`;
  return `<a href="${esc(href)}" target="_blank" rel="noopener noreferrer" data-workflow-link="${esc(workflowId)}">${esc(text ?? workflowId)}</a>`;
}

// ---------- data ----------

function applySnapshot(s) {
  state.snapshot = s;
  state.services = new Map(s.services.map((r) => [r.id, r]));
  scheduleRender();
}

function applyDelta(d) {
  const s = state.snapshot;
  if (!s || d.from !== s.version) return void refetch(); // missed a version: start again from the whole
  for (const r of d.services) state.services.set(r.id, r);
  for (const id of d.removed) state.services.delete(id);
  s.version = d.version;
  s.at = d.at;
  s.summary = d.summary;
  s.credentials = d.credentials;
  s.errors = d.errors;
  s.sweepIntervalMs = d.sweepIntervalMs;
  s.sweepPaused = d.sweepPaused;
  if (d.readAt !== s.readAt) markFresh(d.readAt, d.readAt);
  s.readAt = d.readAt;
  s.services = [...state.services.values()];
  if (state.selected && (d.services.some((r) => r.id === state.selected) || d.removed.includes(state.selected))) loadDetail();
  scheduleRender();
}

async function refetch() {
  const r = await fetch('/api/fleet', { cache: 'no-store' });
  if (!r.ok) return;
  const snap = await r.json();
  markFresh(snap.readAt, snap.serverNow ?? snap.at);
  applySnapshot(snap);
}

// Freshness: the browser's own clock at which the server's last good read was made, so a server
// that stops hearing from Temporal (or hangs) is seen here as old data, never as live.
let freshAt = 0;
function markFresh(readAt, serverNow) {
  freshAt = readAt ? Date.now() - Math.max(0, serverNow - readAt) : 0;
}
function checkFreshness() {
  const s = state.snapshot;
  const live = $('#live');
  if (!s || live.dataset.state === 'connecting' || live.dataset.state === 'reconnecting') return;
  const age = freshAt ? Date.now() - freshAt : Infinity;
  const stale = age > s.staleAfterMs;
  document.body.dataset.stale = String(stale);
  live.dataset.state = stale ? 'stale' : 'live';
  live.textContent = stale ? (freshAt ? `stale: no fresh read for ${Math.round(age / 1000)}s (Temporal or the workers unreachable?)` : 'stale: no health read yet') : 'live';
}
setInterval(checkFreshness, 1000);

function connect() {
  const es = new EventSource('/events');
  es.addEventListener('snapshot', (e) => {
    $('#live').dataset.state = 'live';
    $('#live').textContent = 'live';
    const snap = JSON.parse(e.data);
    markFresh(snap.readAt, snap.serverNow ?? snap.at);
    applySnapshot(snap);
    checkFreshness();
  });
  es.addEventListener('delta', (e) => applyDelta(JSON.parse(e.data)));
  es.onerror = () => {
    $('#live').dataset.state = 'reconnecting';
    $('#live').textContent = 'reconnecting…';
  };
}

// ---------- rendering ----------

let frame = 0;
function scheduleRender() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    render();
  });
}

/** Every root cause of an impacted row, comma-separated (most rows have one). */
function causes(r) {
  return (r.rootCauses ?? [r.rootCause]).join(', ');
}

function render() {
  const s = state.snapshot;
  if (!s) return;
  document.body.dataset.version = String(s.version);
  $('#updated').textContent = `updated ${new Date(s.at).toLocaleTimeString()}`;
  $('#namespace').textContent = `namespace ${s.namespace}${s.sweepIntervalMs ? ` · sweep every ${dur(s.sweepIntervalMs)}${s.sweepPaused ? ' (paused)' : ''}` : ''}`;
  renderSummary(s);
  const errs = $('#errors');
  errs.hidden = s.errors.length === 0;
  errs.textContent = s.errors.join('\n');
  const visible = filtered();
  renderGraph(visible);
  renderTable(visible);
  renderCredentials(s);
  if (!state.painted) {
    // First paint of the fleet, for bench/dashboard.bench.ts: after the frame that shows it.
    state.painted = true;
    requestAnimationFrame(() => setTimeout(() => performance.mark('fleet-painted'), 0));
  }
}

function renderSummary(s) {
  const m = s.summary;
  const cards = STATUSES.map(
    (st) => `<div class="card st-${st}" data-count="${st}" data-filter="${st}"><span class="n">${m.byStatus[st]}</span><span class="l">${GLYPH[st]} ${st}</span></div>`,
  );
  cards.unshift(`<div class="card" data-count="services" data-filter=""><span class="n">${m.services}</span><span class="l">services</span></div>`);
  cards.push(`<div class="card ${m.belowSla ? 'alert' : ''}" data-count="below-sla" data-filter="below-sla"><span class="n">${m.belowSla}</span><span class="l">below SLA (24h)</span></div>`);
  cards.push(`<div class="card ${m.openBreakers ? 'alert' : ''}" data-count="open-breakers" data-filter="breaker-open"><span class="n">${m.openBreakers}</span><span class="l">open breakers</span></div>`);
  cards.push(`<div class="card" data-count="running-rotations"><span class="n">${m.runningRotations}</span><span class="l">rotations running</span></div>`);
  cards.push(`<div class="card ${m.rotationsNeedingAttention ? 'alert' : ''}" data-count="rotations-attention"><span class="n">${m.rotationsNeedingAttention}</span><span class="l">rotations needing attention</span></div>`);
  $('#summary').innerHTML = cards.join('');
}

/** The services the search matches: words match id, owner, tags, status, root cause; `below-sla` and `breaker-open` are filters too. */
function filtered() {
  const words = state.search.toLowerCase().split(/\s+/).filter(Boolean);
  const out = [];
  for (const r of state.services.values()) {
    if (words.length) {
      const hay = `${r.id} ${r.owner ?? ''} ${r.tags.join(' ')} ${r.status} ${r.rootCause ?? ''} ${r.belowSla ? 'below-sla' : ''} ${r.breaker === 'OPEN' || r.breaker === 'FORCED_OPEN' ? 'breaker-open' : ''} group:${groupOf(r)}`.toLowerCase();
      if (!words.every((w) => hay.includes(w))) continue;
    }
    out.push(r);
  }
  out.sort((a, b) => SEVERITY[a.status] - SEVERITY[b.status] || a.id.localeCompare(b.id));
  return out;
}

function groupOf(r) {
  if (state.groupBy === 'tag') return r.tags[0] ?? '(no tag)';
  return r.owner ?? '(no owner)';
}

function renderTable(rows) {
  const html = [];
  for (const r of rows.slice(0, TABLE_MAX_ROWS)) {
    const a = r.avail['24h'];
    html.push(
      `<tr data-service-id="${esc(r.id)}" data-status="${esc(r.status)}" class="${r.id === state.selected ? 'sel' : ''}">` +
        `<td>${esc(r.id)}</td><td>${badge(r.status)}</td><td>${ago(r.since)}</td>` +
        `<td>${esc(r.rootCause && r.rootCause !== r.id ? causes(r) : r.status === 'unhealthy' ? (r.lastProbe?.failureKind ?? '') : '')}</td>` +
        `<td>${ms(r.p95)}</td><td class="${r.belowSla ? 'below' : ''}">${pct(a)}${r.sla !== undefined ? ` / ${r.sla}%` : ''}${r.belowSla ? ' ▼ below' : ''}</td>` +
        `<td>${esc(r.breaker ?? '–')}</td></tr>`,
    );
  }
  $('#services tbody').innerHTML = html.join('');
  $('#table-note').textContent = rows.length > TABLE_MAX_ROWS ? `showing ${TABLE_MAX_ROWS} of ${rows.length} matching services (worst first): refine the search` : `${rows.length} services`;
}

// ---------- graph ----------

function worst(statuses) {
  let w = 'healthy';
  for (const s of statuses) if (SEVERITY[s] < SEVERITY[w]) w = s;
  return w;
}

/** Nodes and edges for the services in view, or for their groups when there are too many. */
function graphModel(rows) {
  if (rows.length <= GRAPH_MAX_NODES) {
    const ids = new Set(rows.map((r) => r.id));
    const nodes = rows.map((r) => ({ id: r.id, label: r.id, status: r.status, sub: r.status === 'impacted' && r.rootCause ? `${GLYPH.impacted} impacted by ${causes(r)}` : `${GLYPH[r.status]} ${r.status}`, kind: 'service' }));
    const edges = [];
    for (const r of rows) for (const d of r.dependsOn) if (ids.has(d)) edges.push({ from: r.id, to: d, bad: r.status === 'impacted' && ((r.rootCauses ?? [r.rootCause]).includes(d) || state.services.get(d)?.status !== 'healthy') });
    return { nodes, edges, grouped: false };
  }
  const groups = new Map();
  const groupById = new Map();
  for (const r of rows) {
    const g = groupOf(r);
    groupById.set(r.id, g);
    let e = groups.get(g);
    if (!e) groups.set(g, (e = { n: 0, counts: {} }));
    e.n++;
    e.counts[r.status] = (e.counts[r.status] ?? 0) + 1;
  }
  const nodes = [...groups].map(([g, e]) => {
    const status = worst(Object.keys(e.counts));
    const bad = STATUSES.filter((s) => s !== 'healthy' && e.counts[s]).map((s) => `${e.counts[s]} ${GLYPH[s]}`).join(' ');
    return { id: `group:${g}`, label: `${g} (${e.n})`, status, sub: bad ? `${bad} · worst ${status}` : `${GLYPH.healthy} all healthy`, kind: 'group', group: g };
  });
  // Between groups only the edges along which a failure spreads (an impacted service to its root cause's
  // group), the GROUP_MAX_EDGES that carry the most impacted services: every dependency between 50 teams
  // would be a dense, unreadable graph that dagre takes seconds to lay out.
  const weight = new Map();
  for (const r of rows) {
    if (r.status !== 'impacted' || !r.rootCause) continue;
    const a = groupById.get(r.id);
    const b = groupById.get(r.rootCause);
    if (b === undefined || b === a) continue;
    const k = `group:${a}\u0000group:${b}`;
    weight.set(k, (weight.get(k) ?? 0) + 1);
  }
  const ranked = [...weight].sort((x, y) => y[1] - x[1]);
  const edges = ranked.slice(0, GROUP_MAX_EDGES).map(([k, n]) => {
    const [from, to] = k.split('\u0000');
    return { from, to, bad: true, n };
  });
  const hiddenEdges = ranked.length - edges.length;
  return { nodes, edges, grouped: true, hiddenEdges };
}

function layout(model) {
  const key = model.nodes.map((n) => `${n.id}|${n.label}`).join(',') + '#' + model.edges.map((e) => `${e.from}>${e.to}`).join(',');
  if (key === state.layoutKey) return state.layout;
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'RL', nodesep: 18, ranksep: 50, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of model.nodes) g.setNode(n.id, { width: Math.max(130, Math.max(n.label.length, n.sub.length) * 7 + 20), height: 40 });
  for (const e of model.edges) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const pos = new Map(g.nodes().map((id) => [id, g.node(id)]));
  const paths = new Map(g.edges().map((e) => [`${e.v}>${e.w}`, g.edge(e).points]));
  state.layoutKey = key;
  state.layout = { pos, paths, width: g.graph().width ?? 200, height: g.graph().height ?? 100 };
  return state.layout;
}

function renderGraph(rows) {
  const model = graphModel(rows);
  const L = layout(model);
  $('#graph-note').textContent = model.grouped
    ? `${rows.length} services in ${model.nodes.length} groups by ${state.groupBy}; arrows: impact from a root cause in another group${model.hiddenEdges ? ` (the ${GROUP_MAX_EDGES} heaviest; ${model.hiddenEdges} lighter not drawn)` : ''}. Click a group, or search, to narrow to ${GRAPH_MAX_NODES} or fewer`
    : `${rows.length} services · arrows point to dependencies`;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" role="img" aria-label="dependency graph"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#8c959f"/></marker></defs>`];
  for (const e of model.edges) {
    const pts = L.paths.get(`${e.from}>${e.to}`);
    if (!pts) continue;
    parts.push(`<path class="edge ${e.bad ? 'bad' : ''}" marker-end="url(#arrow)" data-from="${esc(e.from)}" data-to="${esc(e.to)}" d="M${pts.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join('L')}"/>`);
  }
  for (const n of model.nodes) {
    const p = L.pos.get(n.id);
    if (!p) continue;
    const w = p.width;
    const h = p.height;
    parts.push(
      `<g class="node st-${esc(n.status)} ${n.id === state.selected ? 'sel' : ''}" data-id="${esc(n.id)}" data-kind="${n.kind}" data-status="${esc(n.status)}" transform="translate(${(p.x - w / 2).toFixed(1)},${(p.y - h / 2).toFixed(1)})" tabindex="0">` +
        `<title>${esc(n.label)}: ${esc(n.sub)}</title><rect width="${w}" height="${h}" rx="6"/>` +
        `<text x="8" y="16">${esc(n.label)}</text><text class="st" x="8" y="32">${esc(n.sub)}</text></g>`,
    );
  }
  parts.push('</svg>');
  $('#graph').innerHTML = parts.join('');
  $('#legend').innerHTML = STATUSES.map((s) => badge(s)).join(' ') + ' · dashed border: impacted by a dependency; thick red arrow: the failing dependency';
}

// ---------- detail ----------

function select(id) {
  state.selected = id;
  loadDetail();
  scheduleRender();
}

async function loadDetail() {
  const id = state.selected;
  if (!id) return;
  const r = await fetch(`/api/services/${encodeURIComponent(id)}`, { cache: 'no-store' });
  if (id !== state.selected) return;
  if (!r.ok) {
    $('#detail').hidden = false;
    $('#detail').innerHTML = `<p>${esc(id)}: no longer in the fleet</p>`;
    return;
  }
  renderDetail(await r.json());
}

function renderDetail(d) {
  const s = d.service;
  const el = $('#detail');
  el.hidden = false;
  el.dataset.serviceId = s.id;
  const avail = ['1h', '24h', '7d', '30d']
    .map((w) => {
      const a = s.avail[w];
      const below = a !== undefined && s.sla !== undefined && a < s.sla;
      return `<dt>${w}</dt><dd class="${below ? 'below' : ''}" data-window="${w}">${pct(a)}${s.sla !== undefined ? ` (SLA ${s.sla}%${below ? ', below' : ''})` : ''}</dd>`;
    })
    .join('');
  const slots = d.history.results.map((p) => `<span class="${esc(p.verdict)}" title="${esc(new Date(p.at).toLocaleTimeString())}: ${esc(p.verdict)} in ${ms(p.latencyMs)}"></span>`).join('');
  const b = d.breaker;
  const transitions = b?.transitions?.length
    ? `<ul>${b.transitions.slice().reverse().map((t) => `<li>${esc(new Date(t.at).toLocaleString())}: ${esc(t.from)} → ${esc(t.to)} (${esc(t.reason)})</li>`).join('')}</ul>`
    : '<p>no transitions</p>';
  const alerts = d.alerts.length ? `<ul>${d.alerts.map((a) => `<li data-alert-source="${esc(a.source)}">${esc(a.source)}: ${esc(a.summary)}${a.since ? `, since ${ago(a.since)}` : ''}</li>`).join('')}</ul>` : '<p>none</p>';
  el.innerHTML =
    `<button class="close" type="button" aria-label="close detail">close ✕</button>` +
    `<h2>${esc(s.id)} ${badge(s.status)}</h2>` +
    `<div class="cols"><div>` +
    `<dl class="kv"><dt>since</dt><dd>${s.since ? `${esc(new Date(s.since).toLocaleString())} (${ago(s.since)})` : '–'}</dd>` +
    `<dt>root cause</dt><dd data-field="root-cause">${esc(s.rootCause ? causes(s) : '–')}</dd><dt>impacts</dt><dd>${esc(s.impacts.join(', ') || '–')}</dd>` +
    `<dt>depends on</dt><dd>${esc(s.dependsOn.join(', ') || '–')}</dd><dt>owner</dt><dd>${esc(s.owner ?? '–')}</dd><dt>tags</dt><dd>${esc(s.tags.join(', ') || '–')}</dd>` +
    `<dt>last probe</dt><dd>${s.lastProbe ? `${esc(s.lastProbe.verdict)} in ${ms(s.lastProbe.latencyMs)}${s.lastProbe.detail ? `: ${esc(s.lastProbe.detail)}` : ''} (${ago(s.lastProbe.at)})` : '–'}</dd>` +
    `<dt>credentials</dt><dd>${esc(d.credentials.join(', ') || '–')}</dd>` +
    `<dt>workflow</dt><dd>${uiLink(s.workflowId)}</dd></dl>` +
    `<h3>Availability vs SLA</h3><dl class="kv">${avail}</dl>` +
    `<h3>Recent probe results (oldest → newest)</h3><div class="uptime" data-results="${d.history.results.length}">${slots || '<em>none yet</em>'}</div>` +
    `</div><div>` +
    `<h3>Latency: p50 / p95 / p99 over 24 h, and each probe (ms)</h3><div id="chart"></div>` +
    `<dl class="kv"><dt>p50</dt><dd>${ms(s.p50)}</dd><dt>p95</dt><dd>${ms(s.p95)}</dd><dt>p99</dt><dd>${ms(s.p99)}</dd></dl>` +
    `</div><div>` +
    `<h3>Circuit breaker</h3>` +
    (b
      ? `<dl class="kv"><dt>state</dt><dd data-breaker-state="${esc(b.state)}">${esc(b.state)}${b.running ? '' : ' (not started)'}</dd><dt>failure rate</dt><dd>${b.failureRate.toFixed(1)}% of ${b.calls} calls</dd><dt>slow calls</dt><dd>${b.slowCallRate.toFixed(1)}%</dd>${b.openUntilMs ? `<dt>open until</dt><dd>${esc(new Date(b.openUntilMs).toLocaleTimeString())}</dd>` : ''}<dt>workflow</dt><dd>${uiLink(b.workflowId)}</dd></dl><h3>Recent transitions</h3>${transitions}`
      : '<p>unavailable</p>') +
    `<h3>Open alerts</h3>${alerts}</div></div>`;
  el.querySelector('.close').addEventListener('click', () => {
    state.selected = null;
    el.hidden = true;
    scheduleRender();
  });
  drawChart(d.history.latency, d.history.results, s);
}

/**
 * p50/p95/p99 (the health store's rolling 24 h figures, as each was computed, held to now) and each
 * probe's own latency, on one time axis (uPlot.join aligns the series).
 */
function drawChart(points, results, s) {
  const host = document.getElementById('chart');
  if (state.chart) {
    state.chart.destroy();
    state.chart = null;
  }
  if (!host) return;
  const figs = points.slice();
  if (s.p50 !== undefined || s.p95 !== undefined || s.p99 !== undefined) figs.push({ at: Date.now(), p50: s.p50, p95: s.p95, p99: s.p99 });
  const probes = results.filter((r) => r.verdict !== 'fail' && r.verdict !== 'inconclusive');
  if (figs.length === 0 && probes.length === 0) {
    host.innerHTML = '<em>no figures yet</em>';
    return;
  }
  const t = (xs) => xs.map((p) => p.at / 1000);
  const data = uPlot.join([
    [t(figs), figs.map((p) => p.p50 ?? null), figs.map((p) => p.p95 ?? null), figs.map((p) => p.p99 ?? null)],
    [t(probes), probes.map((p) => p.latencyMs)],
  ]);
  const step = uPlot.paths.stepped({ align: 1 });
  state.chart = new uPlot(
    {
      width: Math.min(460, host.clientWidth || 420),
      height: 200,
      spanGaps: true,
      scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 300, max + 300] : [min, max]) } },
      series: [
        {},
        { label: 'p50', stroke: '#1a7f37', width: 2, paths: step },
        { label: 'p95', stroke: '#b08800', width: 2, dash: [6, 3], paths: step },
        { label: 'p99', stroke: '#cf222e', width: 2, dash: [2, 3], paths: step },
        { label: 'probe', stroke: '#0969da', width: 0, points: { show: true, size: 5, fill: '#0969da' } },
      ],
      axes: [{}, { label: 'ms' }],
    },
    data,
    host,
  );
}

// ---------- credentials ----------

function renderCredentials(s) {
  const html = s.credentials.map((c) => {
    const r = c.rotation;
    let rot = '<p>never rotated</p>';
    if (r) {
      const consumers = (r.services ?? []).filter((x) => x.role !== 'issuer' && x.id !== c.issuer);
      const done = consumers.filter((x) => x.status === 'ok' || x.status === 'skipped').length;
      const total = Math.max(consumers.length, 1);
      const batches = (r.batches ?? []).map(
        (ids, i) => `<div class="batch" data-batch="${i}">batch ${i + 1}: ${ids.map((id) => {
          const sv = (r.services ?? []).find((x) => x.id === id);
          return `<span class="chip ${esc(sv?.status ?? 'pending')}" title="${esc(sv ? `${sv.step} ${sv.status}${sv.holds ? `, holds ${sv.holds}` : ''}${sv.error ? `: ${sv.error}` : ''}` : '')}">${esc(id)} ${esc(sv ? `${sv.step}` : '')}</span>`;
        }).join('')}</div>`,
      );
      rot =
        `<p>rotation ${uiLink(r.workflowId, r.runId)}: <strong data-rotation-status="${esc(r.status)}">${esc(r.status)}</strong>${r.phase && r.phase !== r.status ? ` · phase <span data-rotation-phase="${esc(r.phase)}">${esc(r.phase)}</span>` : ''}` +
        `${r.graceEndsAt ? ` · grace ends ${ago(r.graceEndsAt).replace(' ago', '')}` : ''}${r.cause ? ` · ${esc(r.cause)}` : ''}</p>` +
        (r.status === 'running' ? `<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="${consumers.length}" aria-valuenow="${done}"><div style="width:${((done / total) * 100).toFixed(0)}%"></div></div><p>${done}/${consumers.length} consumers done</p>` : '') +
        (batches.length ? `<div class="batches">${batches.join('')}</div>` : '');
    }
    const age = c.currentCreatedAt ? dur(Date.now() - c.currentCreatedAt) : '–';
    return (
      `<div class="cred" data-credential-id="${esc(c.id)}"><h3>${esc(c.id)}</h3>` +
      `<dl class="kv"><dt>issuer</dt><dd>${esc(c.issuer ?? '–')}</dd><dt>consumers</dt><dd>${esc(c.consumers.join(', ') || '–')}</dd>` +
      `<dt>CURRENT</dt><dd>${esc(c.current ?? '–')} (age ${age})</dd>${c.pending ? `<dt>PENDING</dt><dd>${esc(c.pending)}</dd>` : ''}${c.previous ? `<dt>PREVIOUS</dt><dd>${esc(c.previous)}</dd>` : ''}` +
      `<dt>schedule</dt><dd>${c.scheduleMs ? `every ${dur(c.scheduleMs)}${c.schedulePaused ? ' (paused)' : ''}` : 'by hand'}</dd>` +
      `<dt>next run</dt><dd>${c.nextRunAt ? esc(new Date(c.nextRunAt).toLocaleString()) : '–'}</dd></dl>${rot}</div>`
    );
  });
  $('#credentials').innerHTML = html.join('') || '<p>no credentials</p>';
}

// ---------- events ----------

$('#search').addEventListener('input', (e) => {
  state.search = e.target.value;
  scheduleRender();
});
$('#groupby').addEventListener('change', (e) => {
  state.groupBy = e.target.value;
  scheduleRender();
});
$('#services').addEventListener('click', (e) => {
  const tr = e.target.closest('tr[data-service-id]');
  if (tr) select(tr.dataset.serviceId);
});
$('#graph').addEventListener('click', (e) => {
  const g = e.target.closest('g.node');
  if (!g) return;
  if (g.dataset.kind === 'group') {
    state.search = g.dataset.id;
    $('#search').value = g.dataset.id;
    scheduleRender();
  } else select(g.dataset.id);
});
$('#summary').addEventListener('click', (e) => {
  const c = e.target.closest('.card[data-filter]');
  if (!c) return;
  state.search = c.dataset.filter;
  $('#search').value = c.dataset.filter;
  scheduleRender();
});

connect();
