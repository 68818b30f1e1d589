// parseConfigParts (src/model/config-parts.ts), the agents' parse of a plan's config that re-validates only the load
// balancers whose documents changed: its result must equal parseConfig of the whole document, every time, and every
// document the full parse refuses must be refused with the full parse's own error.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { syntheticDesiredDoc } from '../../bench/store-fixture.ts';
import { type ConfigParts, crossCheckOk, parseConfigParts } from '../../src/model/config-parts.ts';
import { parseConfig } from '../../src/model/schema.ts';
import { planDocument, splitPlanDocument } from '../../src/store/db/plans.ts';

type Doc = {
  nodes: unknown[];
  loadBalancers: { name: string; vip: string; protocol: string; ports: number[]; backends: unknown[] }[];
  [k: string]: unknown;
};

/** `n` load balancers x 20 backends (the store benchmarks' synthetic state; v0 has 19), each with its own arrays
 *  (the fixture shares one backend list). */
const doc = (n: number) => JSON.parse(JSON.stringify(syntheticDesiredDoc(n))) as Doc;

/** parseConfigParts of `d` after `prev`, as the agent calls it. */
function parts(d: Doc, prev?: ConfigParts): ConfigParts {
  const docs = splitPlanDocument(d);
  return parseConfigParts(docs.base, docs.lbs, () => planDocument(docs), prev, 'plan g9');
}

/** The full parse's error message (or undefined when it accepts `d`). */
function fullError(d: Doc): string | undefined {
  try {
    parseConfig(planDocument(splitPlanDocument(d)), 'plan g9');
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

test('a one-LB change re-parses that LB only; the rest are the same objects; equal to a full parse', () => {
  const d0 = doc(50);
  const p0 = parts(d0);
  assert.equal(p0.parsed, 50);
  const d1 = structuredClone(d0);
  d1.loadBalancers[7]!.backends.push({ address: '10.0.2.20', port: 80, host: 'host2' });
  const p1 = parts(d1, p0);
  assert.equal(p1.parsed, 1);
  assert.deepEqual(p1.config, parseConfig(d1));
  const before = new Map(p0.config.loadBalancers.map((lb) => [lb.name, lb]));
  for (const lb of p1.config.loadBalancers) {
    // Negative control: the changed load balancer is a new object with the new backend, not the cached one.
    if (lb.name === 'v7') {
      assert.notEqual(lb, before.get('v7'));
      assert.ok(lb.backends.some((b) => b.address === '10.0.2.20'));
    } else assert.equal(lb, before.get(lb.name));
  }
  assert.ok(Object.isFrozen(p1.config) && Object.isFrozen(p1.config.loadBalancers));
});

test('nothing changed: the same config object, nothing parsed', () => {
  const p0 = parts(doc(5));
  const p1 = parts(doc(5), p0);
  assert.equal(p1.parsed, 0);
  assert.equal(p1.config, p0.config);
});

test('a changed base (settings, nodes) parses everything again', () => {
  const p0 = parts(doc(5));
  const d1 = { ...doc(5), slotBits: 7 };
  const p1 = parts(d1, p0);
  assert.equal(p1.parsed, 5);
  assert.deepEqual(p1.config, parseConfig(d1));
  const p2 = parts(doc(6), p1);
  assert.equal(p2.parsed, 6, 'other settings and another load balancer: all of them');
  assert.deepEqual(p2.config, parseConfig(doc(6)));
  const d3 = { ...doc(6), nodes: [...doc(6).nodes, { name: 'host3', role: 'host', tunnelIp: '192.0.2.13' }] };
  const p3 = parts(d3, p2);
  assert.equal(p3.parsed, 6);
  assert.deepEqual(p3.config, parseConfig(d3));
});

test('load balancers added or removed: only the new ones are parsed, the others are the same objects', () => {
  const p0 = parts(doc(12));
  // v12..v23 added: their names sort between the old ones (v1 < v10 < v12 < v2), as in the full parse.
  const p1 = parts(doc(24), p0);
  assert.equal(p1.parsed, 12);
  assert.deepEqual(p1.config, parseConfig(doc(24)));
  const old = new Set(p0.config.loadBalancers);
  assert.equal(
    p1.config.loadBalancers.filter((lb) => old.has(lb)).length,
    12,
    'the 12 kept are the same objects',
  );
  assert.ok(Object.isFrozen(p1.config) && Object.isFrozen(p1.config.loadBalancers));
  // Removed, and one changed at the same time; then a one-LB edit on the result (the kept counts and positions).
  const d2 = doc(20);
  d2.loadBalancers[3]!.backends.pop();
  const p2 = parts(d2, p1);
  assert.equal(p2.parsed, 1);
  assert.deepEqual(p2.config, parseConfig(d2));
  const d3 = structuredClone(d2);
  d3.loadBalancers[15]!.ports = [81];
  const p3 = parts(d3, p2);
  assert.equal(p3.parsed, 1);
  assert.deepEqual(p3.config, parseConfig(d3));
  // An added load balancer that breaks a rule between load balancers (v1's VIP): the full parse's error.
  const d4 = doc(21);
  d4.loadBalancers[20]!.vip = d4.loadBalancers[1]!.vip;
  const want = fullError(d4);
  assert.ok(want !== undefined);
  assert.throws(
    () => parts(d4, p2),
    (e: Error) => e.message === want,
  );
  // Negative control: the counts were not changed by the refused add (v20 with its own VIP is accepted after it).
  const d5 = doc(21);
  d5.loadBalancers[3]!.backends.pop();
  const p5 = parts(d5, p2);
  assert.equal(p5.parsed, 1);
  assert.deepEqual(p5.config, parseConfig(d5));
});

test('every refused change is refused with the full parse’s own error', () => {
  const p0 = parts(doc(5));
  const cases: [string, (d: Doc) => void][] = [
    [
      'bad address in one LB',
      (d) => (d.loadBalancers[2]!.backends[0] = { address: '10.0.1.300', port: 80, host: 'host1' }),
    ],
    [
      'unknown host',
      (d) => (d.loadBalancers[2]!.backends[0] = { address: '10.0.1.10', port: 80, host: 'host9' }),
    ],
    ['listener of another LB', (d) => (d.loadBalancers[3]!.vip = d.loadBalancers[1]!.vip)],
    [
      'backend that is another LB’s VIP',
      (d) => (d.loadBalancers[4]!.backends[0] = { address: '198.18.0.1', port: 80, host: 'host1' }),
    ],
    [
      'backend on another host than in other LBs',
      (d) => (d.loadBalancers[0]!.backends[0] = { address: '10.0.1.10', port: 80, host: 'host2' }),
    ],
    ['document filed under another name', (d) => (d.loadBalancers[1]!.name = 'v3')],
  ];
  for (const [what, edit] of cases) {
    const d = structuredClone(doc(5));
    edit(d);
    const want = fullError(d);
    assert.ok(want !== undefined, `${what}: the full parse refuses it`);
    // Filed under the old name: the base still lists v1 while its document now says v3.
    const docs = splitPlanDocument(d);
    const filed =
      what === 'document filed under another name'
        ? new Map(
            [...splitPlanDocument(doc(5)).lbs].map(([n, x]) => [n, n === 'v1' ? docs.lbs.get('v3')! : x]),
          )
        : docs.lbs;
    const base = what === 'document filed under another name' ? splitPlanDocument(doc(5)).base : docs.base;
    const whole = () => planDocument({ base, lbs: filed });
    assert.throws(
      () => parseConfigParts(base, filed, whole, p0, 'plan g9'),
      (e: Error) => e.message === (what === 'document filed under another name' ? wholeError(whole) : want),
      what,
    );
  }
});

function wholeError(whole: () => unknown): string {
  try {
    parseConfig(whole(), 'plan g9');
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('the full parse accepted it');
}

test('crossCheckOk: accepts a valid config, rejects each relation between load balancers', () => {
  const c = parseConfig(doc(3));
  assert.equal(crossCheckOk(c), true);
  const lbs = c.loadBalancers;
  const swap = (i: number, lb: object) => ({
    ...c,
    loadBalancers: lbs.map((x, j) => (j === i ? { ...x, ...lb } : x)),
  });
  assert.equal(crossCheckOk(swap(1, { vip: lbs[0]!.vip })), false);
  assert.equal(
    crossCheckOk(swap(1, { backends: [{ ...lbs[1]!.backends[0]!, address: lbs[0]!.vip }] })),
    false,
  );
  assert.equal(crossCheckOk(swap(1, { backends: [{ ...lbs[1]!.backends[0]!, host: 'host2' }] })), false);
});

test('many random one-LB edits in a row stay equal to the full parse', () => {
  let d = doc(20);
  let p = parts(d);
  let seed = 7;
  // mulberry32: the low bits of a plain LCG repeat too soon for several draws per step.
  const rnd = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
  let refused = 0;
  const kinds = new Set<number>();
  for (let step = 0; step < 120; step++) {
    const last = d;
    d = structuredClone(d);
    const lb = d.loadBalancers[rnd(20)]!;
    const other = d.loadBalancers[rnd(20)]!;
    const k = rnd(6);
    if (k === 0 && lb.backends.length > 1) lb.backends.pop();
    else if (k === 1) lb.backends.push({ address: `10.0.2.${30 + step}`, port: 80, host: 'host2' });
    else if (k === 2) lb.ports = [80 + rnd(5)];
    // The rules between load balancers (checked on the changed one against counts kept from before):
    else if (k === 3) lb.backends.push({ address: other.vip, port: 80, host: 'host1' });
    else if (k === 4) lb.backends.push({ address: '10.0.1.10', port: 81, host: rnd(2) ? 'host1' : 'host2' });
    else lb.vip = other.vip;
    const want = fullError(d);
    if (want !== undefined) {
      kinds.add(k);
      assert.throws(
        () => parts(d, p),
        (e: Error) => e.message === want,
      );
      refused++;
      d = last;
      continue;
    }
    p = parts(d, p);
    assert.ok(p.parsed <= 1, `step ${step}: ${p.parsed} parsed`);
    assert.deepEqual(p.config, parseConfig(d), `step ${step}`);
  }
  assert.ok(refused < 120, 'some edits were accepted');
  // Each kind of edit that breaks a rule between load balancers was tried and refused at least once.
  for (const k of [2, 3, 4, 5]) assert.ok(kinds.has(k), `edit kind ${k} refused`);
});
