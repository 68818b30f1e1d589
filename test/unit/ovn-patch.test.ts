// The OVN patch's delivery entries derived from the config (src/compile/ovn-patch.ts) and the host flows they make.
// Pure; node facts are fake (test/scenarios/fake-facts.ts), the generation is the planner's first for the config.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { initialGeneration } from '../../src/cli/explain.ts';
import { compileNode, type NodeFacts } from '../../src/compile/index.ts';
import { ovnPatchEntries, withDeliveryEntries } from '../../src/compile/ovn-patch.ts';
import { decodeCookie } from '../../src/compile/registry.ts';
import type { Backend, Config } from '../../src/model/types.ts';
import { activeBackend, testConfig, testLb, testNodes } from '../scenarios/configs.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';

const MAC = { vm1: '02:00:0a:00:01:0b', vm2: '02:00:0a:00:01:0c', far: '02:00:0a:00:02:15' } as const;
const PATCH = 40;
const withMac = (b: Backend, mac: string): Backend => ({ ...b, mac });

/** web: vm1 and vm2 (OVN ports on host1, with MACs), a plain backend on host1, an OVN port on host2; shop: vm1. */
function config(without: readonly string[] = []): Config {
  const keep = (bs: Backend[]) => bs.filter((b) => !without.includes(b.address));
  return testConfig(testNodes(['gw1'], ['host1', 'host2']), [
    testLb(
      'web',
      '203.0.113.10',
      'tcp',
      [80],
      keep([
        withMac(activeBackend('10.0.1.11', 'host1'), MAC.vm1),
        withMac(activeBackend('10.0.1.12', 'host1'), MAC.vm2),
        activeBackend('10.0.1.13', 'host1'),
        withMac(activeBackend('10.0.2.21', 'host2'), MAC.far),
      ]),
    ),
    testLb(
      'shop',
      '203.0.113.11',
      'tcp',
      [8080],
      keep([withMac(activeBackend('10.0.1.11', 'host1', 80), MAC.vm1)]),
    ),
  ]);
}

/** host1 as its OVSDB describes it: the plain backend's own port, the OVN patch, and (`own`) entries by hand. */
function host1(c: Config, own: NodeFacts['vms'] = {}): NodeFacts {
  const f = fakeFacts(c, 'host1');
  return { ...f, vms: { '10.0.1.13': f.vms['10.0.1.13']!, ...own }, ovnPatch: PATCH };
}

test("a host's OVN patch delivers to the backends the config places on it with a MAC", () => {
  const c = config();
  const g = initialGeneration(c);
  assert.deepEqual(ovnPatchEntries(c, g, host1(c)), {
    '10.0.1.11': { ofport: PATCH, mac: MAC.vm1 },
    '10.0.1.12': { ofport: PATCH, mac: MAC.vm2 },
  });
  // No patch named (or not made yet), or a gateway: nothing derived.
  const { ovnPatch: _, ...noPatch } = host1(c);
  assert.deepEqual(ovnPatchEntries(c, g, noPatch), {});
  assert.deepEqual(ovnPatchEntries(c, g, { ...fakeFacts(c, 'gw1'), ovnPatch: PATCH }), {});
  // host2 gets its own OVN backend only.
  assert.deepEqual(Object.keys(ovnPatchEntries(c, g, { ...fakeFacts(c, 'host2'), ovnPatch: 7 })), [
    '10.0.2.21',
  ]);
});

test('the compiled host commits and delivers through the patch with each VM MAC; without the entries it cannot', () => {
  const c = config();
  const g = initialGeneration(c);
  const facts = host1(c);
  const int = (f: NodeFacts) => compileNode(c, g, f).bridges.get('br-int')!.flows;
  const flows = int(withDeliveryEntries(facts, ovnPatchEntries(c, g, facts)));
  const kind = (k: string) => flows.filter((f) => decodeCookie(f.cookie)?.kind === k);
  const commits = kind('CT_COMMIT').map((f) => f.actions);
  for (const [ip, mac] of [
    ['10.0.1.11:80', MAC.vm1],
    ['10.0.1.11', MAC.vm1],
    ['10.0.1.12', MAC.vm2],
  ])
    assert.ok(
      commits.some(
        (a) => a.includes(`nat(dst=${ip})`) && a.endsWith(`set_field:${mac}->eth_dst,output:${PATCH}`),
      ),
      `${ip} committed and sent to ${mac} on the patch: ${commits.join('\n')}`,
    );
  const delivers = kind('CT_DELIVER').map((f) => `${f.match} ${f.actions}`);
  assert.ok(
    delivers.some((d) => d.includes('nw_dst=10.0.1.12') && d.includes(`${MAC.vm2}->eth_dst,output:${PATCH}`)),
  );
  assert.ok(!delivers.some((d) => d.includes('10.0.2.21')), "no entry for host2's backend");
  assert.ok(
    kind('FROM_VM').some((f) => f.match.includes(`in_port=${PATCH}`)),
    "the VMs' replies through the patch are looked up in conntrack",
  );
  // Negative control: the same host without the derived entries has no port for its OVN backends.
  assert.throws(() => int(facts), /node host1: no port for local backend 10\.0\.1\.11 of load balancer shop/);
});

test("the node's own entries win over the derived ones", () => {
  const c = config();
  const g = initialGeneration(c);
  // vm2 behind an OVN router: the operator delivers it to the router leg's MAC on the patch (docs/ovn.md).
  const own = { '10.0.1.12': { ofport: PATCH, mac: '02:00:00:00:fe:00' } };
  const facts = host1(c, own);
  const vms = withDeliveryEntries(facts, ovnPatchEntries(c, g, facts)).vms;
  assert.deepEqual(vms['10.0.1.12'], own['10.0.1.12']);
  assert.deepEqual(vms['10.0.1.11'], { ofport: PATCH, mac: MAC.vm1 });
  assert.equal(vms['10.0.1.13']?.ofport, facts.vms['10.0.1.13']!.ofport);
});

test('an entry derived before stays while a plan still has the backend as a member (removed, or unbound)', () => {
  const c = config();
  const before = ovnPatchEntries(c, initialGeneration(c), host1(c));
  const removed = config(['10.0.1.12']);
  // The generation in force still has 10.0.1.12 as a member (its connections live on): kept, on today's patch port.
  const moved = { ...host1(removed), ovnPatch: PATCH + 1 };
  const kept = ovnPatchEntries(removed, initialGeneration(c), moved, before);
  assert.deepEqual(kept['10.0.1.12'], { ofport: PATCH + 1, mac: MAC.vm2 });
  // Once no plan has it, it goes; without a previous entry nothing is kept (a restarted agent).
  assert.equal(ovnPatchEntries(removed, initialGeneration(removed), moved, before)['10.0.1.12'], undefined);
  assert.equal(ovnPatchEntries(removed, initialGeneration(c), moved)['10.0.1.12'], undefined);
});
