// The planner's status page: one static HTML document, a stylesheet and a script, served as they are (no front-end
// build step: a few hundred lines of plain DOM code do not earn one). The script polls GET /api/state (page-model.ts)
// every second and redraws. Read-only: no forms, no writes. Everything from the store reaches the page through
// textContent or a data-* attribute, never as markup, and the Content-Security-Policy allows only these three files.

import type { Routes } from './server.ts';

export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice status</title>
<link rel="stylesheet" href="/ui/page.css">
<script src="/ui/page.js" defer></script>
</head>
<body>
<header>
  <h1>sluice</h1>
  <span id="summary">loading...</span>
  <span id="freshness" data-state="loading"></span>
</header>
<main>
  <section id="rollout"><h2>Rollout</h2><div id="rollout-body"></div></section>
  <section id="nodes"><h2>Nodes</h2><table><thead><tr>
    <th>node</th><th>role</th><th>applied</th><th>lag</th><th>heartbeat</th><th>routing</th><th>error</th>
  </tr></thead><tbody id="nodes-body"></tbody></table></section>
  <section id="pools"><h2>Slot tables</h2>
    <p class="help">Each square is a slot, coloured by its primary backend. A bar under it is the slot's second
    chance (phase 1: the incoming owner; phase 2: the previous owner, kept for its connections). A dashed outline:
    the slot waits for connections to end.</p>
    <div id="pools-body"></div></section>
  <section id="backends"><h2>Backends</h2><table><thead><tr>
    <th>load balancer</th><th>backend</th><th>host</th><th>admin</th><th>check</th><th>health</th><th>last probe</th><th>connections</th>
  </tr></thead><tbody id="backends-body"></tbody></table></section>
  <section id="second-chance"><h2>Second-chance packets</h2>
    <p class="help">Packets a host had no connection for and handed to the slot's second chance: each one would
    have broken a connection without sluice.</p>
    <table><thead><tr><th>load balancer</th><th>packets</th></tr></thead>
    <tbody id="second-chance-body"></tbody></table></section>
</main>
</body>
</html>
`;

export const PAGE_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.3em; margin: 0; }
#freshness[data-state="stale"] { color: #ffb347; }
main { padding: .5em 1.2em 2em; display: grid; gap: 1em; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .4em 1em .8em; }
#pools { grid-column: 1 / -1; }
h2 { font-size: 1.05em; margin: .4em 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .15em .6em .15em 0; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
td.bad, span.bad { color: #b00020; font-weight: 600; }
td.warn, span.warn { color: #a45a00; font-weight: 600; }
td.ok { color: #17703a; }
.help { color: #5b6475; font-size: .9em; margin: .2em 0 .6em; }
.pool { margin-bottom: 1em; }
.pool h3 { font-size: 1em; margin: .3em 0; }
.grid { display: grid; gap: 1px; grid-template-columns: repeat(64, 12px); }
.slot { width: 12px; height: 12px; box-sizing: border-box; position: relative; font-size: 8px; line-height: 9px;
  text-align: center; color: #fff; }
.slot.noowner { background: #999; }
.slot .sc { position: absolute; left: 0; right: 0; bottom: 0; height: 4px; }
.slot.waiting { outline: 2px dashed #000; outline-offset: 0; z-index: 1; }
.legend { display: flex; flex-wrap: wrap; gap: .3em 1.2em; margin: .4em 0; font-size: .9em; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: .3em; vertical-align: -1px; }
ul { margin: .2em 0; padding-left: 1.2em; }
`;

/** The page's script (plain ES2020 for the browser; not type-checked with the rest). */
export const PAGE_JS = `'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function row(cells, attrs) {
    const tr = el('tr', attrs);
    for (const c of cells) tr.append(c instanceof Node ? c : el('td', {}, c));
    return tr;
  }
  function td(text, cls) { return el('td', cls ? { class: cls } : {}, text); }
  function age(ms) { return ms === null ? '-' : (ms / 1000).toFixed(1) + ' s ago'; }
  // One colour per backend key, stable across redraws and pools.
  const colours = new Map();
  function colour(key) {
    if (!colours.has(key)) colours.set(key, 'hsl(' + ((colours.size * 137.508) % 360).toFixed(0) + ' 62% 46%)');
    return colours.get(key);
  }

  function drawRollout(s) {
    const body = $('rollout-body');
    body.replaceChildren();
    const head = el('p', { id: 'generation', 'data-generation': s.generation, 'data-released': s.gatewayGeneration,
      'data-settled': s.rollout.settled });
    head.textContent = 'generation ' + s.generation + ' published, ' + s.gatewayGeneration +
      ' released to gateways; desired_cfg ' + s.desiredCfg +
      (s.plannedCfg === null ? ' (nothing published yet)' : ', planned from ' + s.plannedCfg);
    body.append(head);
    body.append(el('p', { id: 'rollout-state', class: s.rollout.settled ? '' : 'warn' },
      s.rollout.settled ? 'settled: every live node applied generation ' + s.generation : 'rollout in flight'));
    const late = [];
    if (s.rollout.waitingFor) late.push('waiting for ' + s.rollout.waitingFor);
    for (const l of late) body.append(el('p', { class: 'late warn' }, l));
    if (s.rollout.moves.length) {
      body.append(el('p', {}, 'generation ' + s.generation + ' moved:'));
      const ul = el('ul', { id: 'moves' });
      for (const m of s.rollout.moves) ul.append(el('li', {}, m));
      body.append(ul);
    }
    if (s.rollout.waitingSlots.length) {
      body.append(el('p', {}, 'waiting for connections to end:'));
      const ul = el('ul', { id: 'waiting-slots' });
      for (const m of s.rollout.waitingSlots) ul.append(el('li', {}, m));
      body.append(ul);
    }
    body.append(el('p', { class: 'help' }, 'planner ' + (s.planner.active ? 'active' : 'standing by') + ': ' +
      (s.planner.lastDecision || '-')));
  }

  function drawNodes(s) {
    const body = $('nodes-body');
    body.replaceChildren(...s.nodes.map((n) => row([
      td(n.name), td(n.role), td(n.appliedGeneration === null ? '-' : n.appliedGeneration),
      td(n.lag === null ? '-' : n.lag, n.late ? 'warn' : ''), td(age(n.heartbeatAgeMs), n.heartbeatAgeMs > 5000 ? 'bad' : ''),
      td(n.routing, n.fenced ? 'bad' : ''), td(n.error || '-', n.error ? 'bad' : ''),
    ], { 'data-node': n.name, 'data-applied': n.appliedGeneration, 'data-late': n.late, 'data-routing': n.routing })));
  }

  function drawPool(p) {
    const box = el('div', { class: 'pool', 'data-lb': p.lb });
    const counts = new Map();
    for (const i of p.primary) counts.set(i, (counts.get(i) || 0) + 1);
    const p1 = p.phase.filter((x) => x === 1).length;
    const p2 = p.phase.filter((x) => x === 2).length;
    box.append(el('h3', {}, p.lb + ': ' + p.slots + ' slots' + (p1 ? ', ' + p1 + ' in phase 1' : '') +
      (p2 ? ', ' + p2 + ' in phase 2' : '') + (p.waiting.length ? ', ' + p.waiting.length + ' waiting for connections' : '') +
      (p.primary.length < p.slots ? ' (first ' + p.primary.length + ' shown)' : '')));
    const legend = el('div', { class: 'legend' });
    p.members.forEach((m, i) => {
      const item = el('span', { 'data-backend': m.key });
      const sw = el('span', { class: 'swatch' });
      sw.style.background = colour(m.key);
      item.append(sw, document.createTextNode(m.key + ' on ' + m.host + ': ' + (counts.get(i) || 0) + ' slots'));
      legend.append(item);
    });
    box.append(legend);
    const grid = el('div', { class: 'grid' });
    const waiting = new Set(p.waiting);
    for (let s = 0; s < p.primary.length; s++) {
      const prim = p.members[p.primary[s]];
      const sec = p.members[p.second[s]];
      const cell = el('div', {
        class: 'slot' + (prim ? '' : ' noowner') + (waiting.has(s) ? ' waiting' : ''),
        'data-slot': s, 'data-primary': prim ? prim.key : '', 'data-second': sec ? sec.key : '',
        'data-phase': p.phase[s], 'data-waiting': waiting.has(s),
        title: 'slot ' + s + ': ' + (prim ? prim.key : 'no owner') + (sec ? ', second chance ' + sec.key +
          ' (phase ' + p.phase[s] + ')' : '') + (waiting.has(s) ? ', waiting for connections' : ''),
      });
      if (prim) cell.style.background = colour(prim.key);
      if (sec) {
        cell.textContent = String(p.phase[s]);
        const bar = el('span', { class: 'sc' });
        bar.style.background = colour(sec.key);
        cell.append(bar);
      }
      grid.append(cell);
    }
    box.append(grid);
    return box;
  }

  function drawBackends(s) {
    $('backends-body').replaceChildren(...s.backends.map((b) => row([
      td(b.lb), td(b.backend), td(b.host), td(b.adminState, b.adminState === 'active' ? '' : 'warn'),
      td(b.check),
      td(b.health, b.health === 'up' ? 'ok' : b.health === 'down' ? 'bad' : ''),
      td(b.lastProbe ?? '-', b.lastProbe === 'fail' ? 'bad' : ''),
      td(b.connections === null ? '-' : b.connections),
    ], { 'data-lb': b.lb, 'data-backend': b.backend, 'data-admin': b.adminState, 'data-health': b.health,
      'data-connections': b.connections })));
  }

  function drawSecondChance(s) {
    $('second-chance-body').replaceChildren(...s.secondChance.map((c) => row([
      td(c.lb), td(c.packets === null ? 'not reported' : c.packets),
    ], { 'data-lb': c.lb, 'data-packets': c.packets })));
  }

  let last = 0;
  function draw(s) {
    last = Date.now();
    $('summary').textContent = 'generation ' + s.generation + ' / released ' + s.gatewayGeneration + ' / ' +
      s.nodes.length + ' nodes';
    drawRollout(s);
    drawNodes(s);
    $('pools-body').replaceChildren(...s.pools.map(drawPool));
    drawBackends(s);
    drawSecondChance(s);
    document.body.setAttribute('data-generation', s.generation);
  }

  async function poll() {
    try {
      const r = await fetch('/api/state', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      draw(await r.json());
    } catch (e) {
      $('freshness').textContent = 'cannot read the planner: ' + e.message;
    }
    const f = $('freshness');
    const stale = Date.now() - last > 5000;
    f.setAttribute('data-state', stale ? 'stale' : 'fresh');
    if (!stale) f.textContent = 'updated ' + new Date(last).toLocaleTimeString();
    setTimeout(poll, 1000);
  }
  poll();
})();
`;

/** The page's routes on the planner's HTTP endpoint: `/` (the page), its script and style, `/api/state`. */
export function statusPageRoutes(state: () => unknown): Routes {
  const headers = { 'content-security-policy': PAGE_CSP, 'cache-control': 'no-store' };
  return {
    '/': () => ({ type: 'text/html; charset=utf-8', body: PAGE_HTML, headers }),
    '/ui/page.js': () => ({ type: 'text/javascript; charset=utf-8', body: PAGE_JS, headers }),
    '/ui/page.css': () => ({ type: 'text/css; charset=utf-8', body: PAGE_CSS, headers }),
    '/api/state': () => ({ type: 'application/json', body: JSON.stringify(state()), headers }),
  };
}
