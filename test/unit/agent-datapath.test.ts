// The gateway's continuous hash audit (src/agent/datapath.ts, src/audit.ts datapathDisagreement): which datapath a
// node's OVSDB describes, whether its hash can agree with the other gateways' in each hash mode, and the verdict the
// agent keeps, reports and withdraws on. Pure: the OVSDB tables are FAKE (made here in the shape `ovs-vsctl
// --format=json` prints); the real reader runs against a lab gateway in test/e2e/routing.test.ts.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DATAPATH_KEY,
  DATAPATH_VSCTL_ARGS,
  datapathFromOvs,
  HashAgreement,
  readDatapath,
} from '../../src/agent/datapath.ts';
import { parseVsctlTables } from '../../src/agent/facts.ts';
import { datapathDisagreement } from '../../src/audit.ts';
import type { Datapath } from '../../src/explain.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { CANNOT_AGREE } from '../../src/store/db/index.ts';
import { hashWarnings, type NodeReport } from '../../src/store/operator.ts';

/** ovs-vsctl's JSON lines for DATAPATH_VSCTL_ARGS: Open_vSwitch external_ids, Bridge name/datapath_type, Interface type. */
function vsctlOutput(o: { ext?: Record<string, string>; intType?: string; ifaceTypes?: string[] }): string {
  const ext = ['map', Object.entries(o.ext ?? {})];
  return [
    { data: [[ext]], headings: ['external_ids'] },
    {
      data: [
        ['br-int', o.intType ?? 'netdev'],
        ['br-phy', 'netdev'],
      ],
      headings: ['name', 'datapath_type'],
    },
    {
      data: (o.ifaceTypes ?? ['', 'internal', 'patch', 'patch', 'geneve']).map((t) => [t]),
      headings: ['type'],
    },
  ]
    .map((t) => JSON.stringify(t))
    .join('\n');
}

const dp = (o: Parameters<typeof vsctlOutput>[0]) =>
  datapathFromOvs(parseVsctlTables(vsctlOutput(o)), 'br-int');

describe('the datapath a gateway hashes in, from its OVSDB', () => {
  test('netdev bridge, plain ports: the userspace datapath without an RSS hash', () => {
    assert.equal(dp({}), 'netdev');
  });
  test('the kernel datapath: datapath_type system or empty', () => {
    assert.equal(dp({ intType: 'system' }), 'system');
    assert.equal(dp({ intType: '' }), 'system');
  });
  test('a DPDK or AF_XDP port: the NIC supplies the RSS hash', () => {
    assert.equal(dp({ ifaceTypes: ['', 'patch', 'dpdk'] }), 'netdev-rss');
    assert.equal(dp({ ifaceTypes: ['afxdp'] }), 'netdev-rss');
  });
  test("the operator's external_ids:sluice-datapath wins; a bad value names the key", () => {
    assert.equal(dp({ ext: { [DATAPATH_KEY]: 'system' } }), 'system');
    assert.equal(dp({ ext: { [DATAPATH_KEY]: 'netdev' }, ifaceTypes: ['dpdk'] }), 'netdev');
    assert.throws(
      () => dp({ ext: { [DATAPATH_KEY]: 'kernel' } }),
      (e: unknown) =>
        e instanceof SluiceError && e.code === 'SLUICE_E_NODE_FACTS' && e.message.includes(DATAPATH_KEY),
    );
  });
  test('no such integration bridge: an error that names it', () => {
    assert.throws(
      () => datapathFromOvs(parseVsctlTables(vsctlOutput({})), 'br-x'),
      /Bridge br-x: not in the node's OVSDB/,
    );
  });
  test('readDatapath runs the one ovs-vsctl transaction; a failing ovs-vsctl is an I/O error', async () => {
    const seen: string[][] = [];
    const ok = await readDatapath(
      {
        vsctl: async (args) => {
          seen.push([...args]);
          return { code: 0, stdout: vsctlOutput({ intType: 'system' }), stderr: '' };
        },
      },
      'br-int',
    );
    assert.equal(ok, 'system');
    assert.deepEqual(seen, [[...DATAPATH_VSCTL_ARGS]]);
    await assert.rejects(
      readDatapath(
        { vsctl: async () => ({ code: 1, stdout: '', stderr: 'database connection failed' }) },
        'br-int',
      ),
      /cannot read the node's OVSDB with ovs-vsctl: database connection failed/,
    );
  });
});

describe('can a datapath agree with the other gateways?', () => {
  test('fields mode: every datapath (OVS computes the hash in userspace)', () => {
    for (const d of ['netdev', 'netdev-rss', 'system'] as const)
      assert.equal(datapathDisagreement('fields', d), undefined);
  });
  test('dp_hash mode: only the userspace datapath without an RSS hash', () => {
    assert.equal(datapathDisagreement('dp_hash', 'netdev'), undefined);
    assert.match(datapathDisagreement('dp_hash', 'system') ?? '', /kernel datapath seeds its dp_hash/);
    assert.match(datapathDisagreement('dp_hash', 'netdev-rss') ?? '', /RSS hash/);
  });
  test("the reason tells an operator what brings the gateway back (not explain's --hash)", () => {
    for (const d of ['netdev-rss', 'system'] as const) {
      const why = datapathDisagreement('dp_hash', d) ?? '';
      assert.match(why, /set hashMode fields in the desired state .* or run it on OVS's userspace datapath/);
      assert.doesNotMatch(why, /--hash/);
    }
  });
});

describe("the agent's verdict (HashAgreement)", () => {
  function agreement(first: Datapath) {
    let next: Datapath | Error = first;
    const a = new HashAgreement(async () => {
      if (next instanceof Error) throw next;
      return next;
    });
    return { a, set: (d: Datapath | Error) => (next = d) };
  }

  test('unchecked at first: it may not announce before a check for the applied mode', async () => {
    const { a } = agreement('netdev');
    assert.equal(a.mayAnnounce('dp_hash'), false);
    assert.equal(a.text(), 'not checked yet');
    assert.deepEqual(await a.check('dp_hash'), { state: 'agrees', datapath: 'netdev' });
    assert.equal(a.mayAnnounce('dp_hash'), true);
    assert.equal(a.mayAnnounce('fields'), false, 'a check for another mode does not count');
    assert.equal(a.text(), 'ok (dp_hash on netdev)');
    assert.equal(await a.check('dp_hash'), undefined, 'no change, no news');
  });

  test('a datapath that cannot agree: a disagreement, not announced, and back when it is fixed', async () => {
    const { a, set } = agreement('netdev');
    await a.check('dp_hash');
    set('system');
    const v = await a.check('dp_hash');
    assert.equal(v?.state, 'cannot-agree');
    assert.match(a.disagreement ?? '', /dp_hash on the system datapath cannot agree/);
    assert.equal(a.mayAnnounce('dp_hash'), false);
    assert.ok(a.text().startsWith(CANNOT_AGREE), a.text());
    // The same datapath in fields mode agrees.
    assert.equal((await a.check('fields'))?.state, 'agrees');
    assert.equal(a.disagreement, undefined);
    set('netdev');
    assert.equal((await a.check('dp_hash'))?.state, 'agrees');
  });

  test('a failed read keeps the last verdict and says so', async () => {
    const { a, set } = agreement('system');
    await a.check('dp_hash');
    set(new Error('ovs-vsctl: timed out'));
    assert.equal(await a.check('dp_hash'), undefined);
    assert.ok(a.disagreement !== undefined, 'still cannot agree');
    assert.match(a.text(), /last read failed: ovs-vsctl: timed out/);
  });
});

test('sluice status warns about each gateway whose hash cannot agree', () => {
  const node = (name: string, hashAgreement: string | null): NodeReport => ({
    name,
    role: 'gateway',
    desired: true,
    appliedGeneration: 3,
    appliedCfg: 1,
    lag: 0,
    heartbeatAgeMs: 100,
    fenced: hashAgreement?.startsWith(CANNOT_AGREE) === true,
    fencedBy: hashAgreement?.startsWith(CANNOT_AGREE) === true ? 'agent' : null,
    error: null,
    routing: null,
    hashAgreement,
    slotAudit: null,
  });
  assert.deepEqual(
    hashWarnings([
      node('gw1', `${CANNOT_AGREE} hashMode dp_hash on the system datapath cannot agree: why`),
      node('gw2', 'ok (dp_hash on netdev)'),
      node('gw3', null),
    ]),
    ['WARNING gw1 (withdrawn by its agent): hashMode dp_hash on the system datapath cannot agree: why'],
  );
});
