// The conntrack parser and per-slot counting of src/agent/node-ops.ts, on text CAPTURED from a real lab host
// (OVS 3.1.0, `ovs-appctl dpctl/dump-conntrack zone=1` on host1 of `sluice lab` with sluice's flows, 2026-11-26),
// plus a few lines written by hand in the same format where noted (UDP, closing states, a foreign zone). Pure: no
// OVS is run here; `readSlotConnections` is exercised with a fake Runner that returns the captured text.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  connectionCounts,
  countSlotConnections,
  isLiveEntry,
  mergeSlotConnections,
  parseConntrack,
  readSlotConnections,
} from '../../src/agent/node-ops.ts';
import { lbIds } from '../../src/compile/registry.ts';
import { parseConfig } from '../../src/model/schema.ts';
import type { Config } from '../../src/model/types.ts';
import type { Runner } from '../../src/openflow/runner.ts';
import { testNodes } from '../scenarios/configs.ts';

// Captured (host1: host1-b1 = 10.0.1.11 in `web` 203.0.113.10, host1-b2 = 10.0.1.12 in `api` 203.0.113.20).
const CAPTURED = `tcp,orig=(src=10.200.0.11,dst=203.0.113.10,sport=36868,dport=80),reply=(src=10.0.1.11,dst=10.200.0.11,sport=80,dport=36868),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.11,dst=203.0.113.20,sport=36218,dport=80),reply=(src=10.0.1.12,dst=10.200.0.11,sport=80,dport=36218),zone=1,mark=2465071116,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.11,dst=203.0.113.10,sport=36890,dport=80),reply=(src=10.0.1.11,dst=10.200.0.11,sport=80,dport=36890),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.11,dst=203.0.113.10,sport=36820,dport=80),reply=(src=10.0.1.11,dst=10.200.0.11,sport=80,dport=36820),zone=1,mark=3007906041,protoinfo=(state=TIME_WAIT)
tcp,orig=(src=10.200.0.11,dst=203.0.113.10,sport=36896,dport=80),reply=(src=10.0.1.11,dst=10.200.0.11,sport=80,dport=36896),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.12,dst=203.0.113.20,sport=34452,dport=80),reply=(src=10.0.1.12,dst=10.200.0.12,sport=80,dport=34452),zone=1,mark=2465071116,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=59366,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=59366),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.12,dst=203.0.113.20,sport=34480,dport=80),reply=(src=10.0.1.12,dst=10.200.0.12,sport=80,dport=34480),zone=1,mark=2465071116,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=59332,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=59332),zone=1,mark=3007906041,protoinfo=(state=TIME_WAIT)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=59344,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=59344),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.11,dst=203.0.113.10,sport=36874,dport=80),reply=(src=10.0.1.11,dst=10.200.0.11,sport=80,dport=36874),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=59388,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=59388),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
`;

// Written by hand in the same format (not captured): a live UDP entry, a SYN_SENT one, a FIN_WAIT one, an entry of
// another zone, an IPv6 one, and a mark naming no configured LB.
const HAND = `udp,orig=(src=10.200.0.11,dst=203.0.113.20,sport=5000,dport=80),reply=(src=10.0.1.12,dst=10.200.0.11,sport=80,dport=5000),zone=1,mark=2465071116
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=40001,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=40001),zone=1,mark=3007906041,protoinfo=(state=SYN_SENT)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=40002,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=40002),zone=1,mark=3007906041,protoinfo=(state=FIN_WAIT_2)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=40003,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=40003),zone=7,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=fd00:200::11,dst=2001:db8::10,sport=40004,dport=80),reply=(src=fd00:0:1::11,dst=fd00:200::11,sport=80,dport=40004),zone=1,mark=3007906041,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.200.0.12,dst=203.0.113.10,sport=40005,dport=80),reply=(src=10.0.1.11,dst=10.200.0.12,sport=80,dport=40005),zone=1,mark=65537,protoinfo=(state=ESTABLISHED)
`;

/** gw1 and host1; web and api on port 80, one backend each on host1 (web's backend port given or not). */
function webApi(webBackendPort: number | undefined): Config {
  return parseConfig(
    {
      nodes: testNodes(['gw1'], ['host1']),
      loadBalancers: [
        {
          name: 'web',
          vip: '203.0.113.10',
          protocol: 'tcp',
          ports: [80],
          backends: [{ address: '10.0.1.11', port: webBackendPort, host: 'host1' }],
        },
        {
          name: 'api',
          vip: '203.0.113.20',
          protocol: 'tcp',
          ports: [80],
          backends: [{ address: '10.0.1.12', port: 80, host: 'host1' }],
        },
      ],
    },
    'test',
  );
}

const config = webApi(80);

test('the lab marks are lb id << 16 | slot with the registry ids (sanity of the captured text)', () => {
  const ids = lbIds(['web', 'api']);
  assert.equal(3007906041 >>> 16, ids.get('web'));
  assert.equal(2465071116 >>> 16, ids.get('api'));
});

test('parseConntrack reads every field of the captured lines', () => {
  const e = parseConntrack(CAPTURED);
  assert.equal(e.length, 12);
  assert.deepEqual(e[0], {
    proto: 'tcp',
    origSrc: '10.200.0.11',
    origDst: '203.0.113.10',
    origSport: 36868,
    origDport: 80,
    replySrc: '10.0.1.11',
    replySport: 80,
    zone: 1,
    mark: 3007906041,
    state: 'ESTABLISHED',
  });
  assert.equal(e.filter((x) => x.state === 'TIME_WAIT').length, 2);
  assert.equal(parseConntrack('\nsome header\n').length, 0);
});

test('only live entries count: ESTABLISHED/SYN_RECV TCP and UDP; SYN_SENT, closing states and other zones do not', () => {
  const e = parseConntrack(HAND);
  assert.deepEqual(
    e.map((x) => isLiveEntry(x)),
    [true, false, false, true, true, true],
  );
  const c = countSlotConnections(e, config);
  // udp (api), IPv6 (web, address not in this config but counted by its key); SYN_SENT (half-open, what a SYN flood
  // makes: counted apart, see docs/security.md); zone 7 skipped; mark 65537 names lb id 1, not configured: unknown.
  assert.equal(c.total, 2);
  assert.equal(c.unknown, 1);
  assert.equal(c.states.syn_sent, 1);
});

test('countSlotConnections: per (lb, slot, backend key) from the captured host', () => {
  const c = countSlotConnections(parseConntrack(CAPTURED), config);
  const web = 3007906041 & 0xffff;
  const api = 2465071116 & 0xffff;
  assert.equal(c.total, 10, '12 entries, 2 in TIME_WAIT');
  assert.equal(c.counts.get('web')?.get(web)?.get('10.0.1.11:80'), 7);
  assert.equal(c.counts.get('api')?.get(api)?.get('10.0.1.12:80'), 3);
  const n = connectionCounts(c);
  assert.equal(n('web', web, '10.0.1.11:80', 8), 7);
  assert.equal(n('web', web, '10.0.1.12:80', 8), 0, 'another backend of the same slot');
  assert.equal(n('web', web + 1, '10.0.1.11:80', 8), 0, 'another slot');
  assert.equal(n('nope', web, '10.0.1.11:80', 8), 0);
});

test('counts with one ids map and another config: the lookup kept for those ids is not reused for it', () => {
  // The agent passes the applied generation's ids map on every report; what is derived from it (id -> name, the
  // wildcard ports) is kept per map and must follow the config it was asked with.
  const ids = lbIds(['web', 'api']);
  const web = 3007906041 & 0xffff;
  const entries = parseConntrack(CAPTURED);
  const a = countSlotConnections(entries, config, undefined, ids);
  assert.equal(a.counts.get('web')?.get(web)?.get('10.0.1.11:80'), 7);
  const again = countSlotConnections(entries, config, undefined, ids);
  assert.deepEqual(again, a, 'the same counts from the kept lookup');
  const b = countSlotConnections(entries, webApi(undefined), undefined, ids);
  assert.equal(b.counts.get('web')?.get(web)?.get('10.0.1.11:*'), 7, 'the new config has no port: addr:*');
  assert.equal(b.counts.get('web')?.get(web)?.get('10.0.1.11:80'), undefined);
});

test('a backend without a port is keyed addr:* like backendKey; merge sums hosts', () => {
  const noPort = webApi(undefined);
  const c = countSlotConnections(parseConntrack(CAPTURED), noPort);
  const web = 3007906041 & 0xffff;
  assert.equal(c.counts.get('web')?.get(web)?.get('10.0.1.11:*'), 7);
  const m = mergeSlotConnections([c, c]);
  assert.equal(m.total, 20);
  assert.equal(m.counts.get('web')?.get(web)?.get('10.0.1.11:*'), 14);
});

test('readSlotConnections asks for the sluice zone and parses the answer', async () => {
  // Fake Runner: records the appctl call and returns the captured text.
  const calls: string[][] = [];
  const fake: Runner = {
    ofctl: () => Promise.reject(new Error('not used')),
    appctl: (args) => {
      calls.push([...args]);
      return Promise.resolve({ code: 0, stdout: CAPTURED, stderr: '' });
    },
  };
  const c = await readSlotConnections(fake, config);
  assert.deepEqual(calls, [['dpctl/dump-conntrack', 'zone=1']]);
  assert.equal(c.total, 10);
});
