// The operator's view end to end (root, REAL lab + control plane + headless Chromium): the planner's status page
// shows what the store says and follows a `sluice backend drain` (the DOM is checked, not a timer); `sluice status`
// lists the slots that wait for connections; `sluice rollout status --watch` follows a change to the end (exit 0)
// and calls a rollout stuck after --timeout (exit 1) while a host's agent is stopped. One lab (prefix slt-ui-) for
// all of it. Chromium is Debian's /usr/bin/chromium driven by playwright-core (which never downloads a browser),
// headless with a fresh profile and no network features. With SLUICE_SCREENSHOTS=<dir>, screenshots of the page
// during the rollout are written there (docs/img holds the committed ones).

import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { type ControlPlane, startControlPlane } from '../../src/lab/control-plane.ts';
import { type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import { publishedState } from '../../src/store/operator.ts';
import { execSluice } from './helpers/sluice-children.ts';

const PREFIX = 'slt-ui-';
const CHROMIUM = '/usr/bin/chromium';
const isRoot = process.getuid?.() === 0;
const skip = !isRoot
  ? 'needs root'
  : !existsSync(CHROMIUM)
    ? `needs ${CHROMIUM} (scripts/ensure-deps.sh)`
    : false;
const SHOTS = process.env.SLUICE_SCREENSHOTS;

let lab: Lab;
let cp: ControlPlane;
let browser: BrowserContext;
let page: Page;
let profile: string;
let traffic: Traffic | undefined;

function plannerAddress(): string {
  const rec = cp
    .records('planner-a')
    .filter((r) => r.event === 'metrics')
    .at(-1);
  assert.ok(rec, 'planner-a logged its HTTP address');
  return rec.address as string;
}

async function sluice(...args: string[]) {
  return execSluice([...args, '--db', cp.db]);
}

async function shot(name: string): Promise<void> {
  if (SHOTS === undefined) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
}

describe('status page, status and rollout status', { skip, timeout: 400_000 }, () => {
  before(async () => {
    await labDown(PREFIX);
    lab = await labUp({ prefix: PREFIX, gateways: 2, hosts: 3, backendsPerHost: 2, clients: 1 });
    cp = await startControlPlane(lab, { planners: 1 });
    profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 1000 },
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
  });

  after(async () => {
    await traffic?.kill().catch(() => {});
    await browser?.close().catch(() => {});
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (cp) for (const a of ['agent-host2']) if (cp.pid(a) !== undefined) cp.signal(a, 'SIGCONT');
    await labDown(PREFIX);
  });

  test('the page loads and shows what the store says', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const res = await page.goto(`http://${plannerAddress()}/`);
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    const { generation } = await publishedState(cp.db);
    await page.waitForSelector(`body[data-generation="${generation.number}"]`, { timeout: 15_000 });
    // A store that has settled: every host reported every backend's health (reports start a few seconds after the
    // first generation is acknowledged), so the page and this snapshot describe the same state.
    let store = await cp.status();
    for (const deadline = Date.now() + 30_000; store.backends.some((b) => b.health === 'unknown'); ) {
      assert.ok(Date.now() < deadline, `health never reported: ${JSON.stringify(store.backends)}`);
      await sleep(500);
      store = await cp.status();
    }
    // The page redraws every second from the planner's replica: each row must come to show what the store says.
    const shows = async (selector: string, what: string) => {
      try {
        await page.waitForSelector(selector, { timeout: 10_000 });
      } catch {
        assert.fail(`the page does not show ${what} (${selector})`);
      }
    };
    // Nodes: what each agent acknowledged.
    for (const n of store.nodes)
      await shows(`tr[data-node="${n.name}"][data-applied="${n.appliedGeneration}"]`, `${n.name} applied`);
    // Backends: admin state and health as the host agents reported them.
    assert.ok(store.backends.length > 0);
    for (const b of store.backends)
      await shows(
        `#backends-body tr[data-lb="${b.lb}"][data-backend="${b.backend}"][data-admin="${b.adminState}"][data-health="${b.health}"]`,
        `${b.lb} ${b.backend} ${b.adminState} ${b.health}`,
      );
    // Slot tables: every slot's primary as published.
    for (const plan of generation.pools.values()) {
      const cells = await page.$$eval(`.pool[data-lb="${plan.lb}"] .slot`, (els) =>
        els.map((e) => e.getAttribute('data-primary')),
      );
      assert.equal(cells.length, plan.primary.length, plan.lb);
      assert.deepEqual(
        cells,
        Array.from(plan.primary, (i) => plan.members[i]?.key ?? ''),
        `${plan.lb}: every slot coloured by its published primary`,
      );
    }
    assert.equal(await page.getAttribute('#generation', 'data-settled'), 'true');
    assert.deepEqual(errors, [], 'no script errors');
    await shot('status-page-settled.png');
  });

  test('a drain shows on the page (phases, second chances, waiting slots), in status and rollout status', async () => {
    const web = lab.config.vips.find((v) => v.name === 'web') ?? lab.config.vips[0]!;
    const drained = lab.backend('host1-b1');
    const key = `${drained.ip}:${web.port}`;
    // Long-lived connections, so the drained backend's slots keep a second chance that waits for them.
    traffic = await startTraffic(lab, { vip: web.vip, port: web.port, count: 60, rate: 200 });
    await traffic.waitOpened(60, 30_000);
    const r = await sluice('backend', 'drain', web.name, drained.ip);
    assert.equal(r.code, 0, r.stderr);
    // The page follows: the backend row says draining, then its slots carry it as their second chance.
    await page.waitForSelector(`#backends-body tr[data-backend="${key}"][data-admin="draining"]`, {
      timeout: 20_000,
    });
    await page.waitForSelector(`.pool[data-lb="${web.name}"] .slot[data-second="${key}"]`, {
      timeout: 30_000,
    });
    await page.waitForSelector('#moves li', { timeout: 10_000 });
    const moves = await page.$$eval('#moves li', (els) => els.map((e) => e.textContent ?? ''));
    assert.ok(
      moves.some((m) => m.startsWith(`${web.name}: `) && m.includes(`${key} -> `)),
      `moves name the drained backend: ${moves.join(' | ')}`,
    );
    await shot('status-page-rollout.png');
    // Second-chance packets per VIP are reported by the hosts (a number, not "not reported").
    await page.waitForSelector(`#second-chance-body tr[data-lb="${web.name}"][data-packets]`, {
      timeout: 15_000,
    });

    const watch = await sluice('rollout', 'status', '--watch', '--timeout', '120');
    assert.equal(watch.code, 0, `${watch.stdout}\n${watch.stderr}`);
    const lines = watch.stdout.trim().split('\n');
    assert.match(lines.at(-1)!, /rollout complete$/);
    assert.match(lines.at(-1)!, /gateways 2\/2, hosts 3\/3 acknowledged/);

    // Every slot of the drained backend moved; those with its live connections wait, and say so.
    await page.waitForFunction(
      (k) =>
        !document.querySelector(`.slot[data-primary="${k}"]`) &&
        !!document.querySelector('.slot[data-waiting="true"]'),
      key,
      { timeout: 30_000 },
    );
    const waiting = await page.$$eval('.slot[data-waiting="true"]', (els) =>
      els.map((e) => [e.getAttribute('data-second'), e.getAttribute('data-phase')]),
    );
    assert.ok(waiting.length > 0);
    for (const [second, phase] of waiting) assert.deepEqual([second, phase], [key, '2']);
    await page.waitForSelector('#waiting-slots li');
    await shot('status-page-waiting.png');

    const st = await sluice('status');
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^slots keeping previous owners that hold connections/m);
    assert.match(
      st.stdout,
      new RegExp(
        `^ {2}${web.name} slots? .*keep previous owner ${key.replaceAll('.', '\\.')}: it has \\d+ connections?`,
        'm',
      ),
    );
    const j = JSON.parse((await sluice('status', '--format', 'json')).stdout);
    assert.ok(
      j.waitingSlots.length > 0 && j.waitingSlots.every((w: { backend: string }) => w.backend === key),
    );
    // Metrics: the planner measured change-to-acknowledged latency per node; hosts count second chances per VIP.
    const metrics = await (await fetch(`http://${plannerAddress()}/metrics`)).text();
    for (const n of ['gw1', 'gw2', 'host1'])
      assert.match(
        metrics,
        new RegExp(`^sluice_planner_ack_latency_seconds_count\\{node="${n}"\\} [1-9]\\d*$`, 'm'),
      );
    const counters = await traffic.stop();
    traffic = undefined;
    assert.equal(counters.broken, 0, 'no connection broke during the drain');
  });

  test('rollout status --watch calls a rollout stuck after --timeout (exit 1), then follows it to the end', async () => {
    const web = lab.config.vips.find((v) => v.name === 'web') ?? lab.config.vips[0]!;
    const drained = lab.backend('host1-b1');
    cp.signal('agent-host2', 'SIGSTOP');
    try {
      const r = await sluice('backend', 'undrain', web.name, drained.ip);
      assert.equal(r.code, 0, r.stderr);
      const t0 = Date.now();
      const stuck = await sluice('rollout', 'status', '--watch', '--timeout', '6');
      assert.equal(stuck.code, 1, `${stuck.stdout}\n${stuck.stderr}`);
      assert.ok(Date.now() - t0 >= 6000);
      // host2's agent is stopped: the planner waits for its connection report (or its ack), and the message says so.
      assert.match(stuck.stderr, /rollout stuck: generation \d+ not done after 6 s; waiting for .*host2/);
      assert.match(stuck.stderr, /silent: host2 \(heartbeat \d+ s ago\)/);
      assert.match(stuck.stderr, /\[SLUICE_E_ROLLOUT_STUCK\]/);
      // The page names the late node too.
      await page.waitForSelector('tr[data-node="host2"][data-late="true"]', { timeout: 10_000 });
      await page.waitForSelector('#rollout-body .late', { timeout: 10_000 });
      const late = await page.textContent('#rollout-body .late');
      assert.match(late ?? '', /host2/);
    } finally {
      cp.signal('agent-host2', 'SIGCONT');
    }
    const done = await sluice('rollout', 'status', '--watch', '--timeout', '120');
    assert.equal(done.code, 0, `${done.stdout}\n${done.stderr}`);
    assert.match(done.stdout.trim().split('\n').at(-1)!, /rollout complete$/);
    const once = await sluice('rollout', 'status', '--format', 'json');
    assert.equal(JSON.parse(once.stdout).done, true);
  });
});
