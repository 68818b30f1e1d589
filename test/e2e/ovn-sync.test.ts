// `sluice ovn sync` against REAL OVN: Debian ovn-central's Northbound and Southbound ovsdb-servers on OVN's own
// schemas and ovn-northd (which turns NB logical ports into SB Port_Bindings), started here in a private directory,
// plus sluice's own store. Switches, ports, chassis, bindings and load balancers are made with ovn-nbctl/ovn-sbctl
// exactly as an operator would (execFile, no shell). The importer runs as a child `sluice ovn sync` daemon; the test
// reads sluice's desired state back from the store. Every process is stopped by its own PID. Unprivileged.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Config, LoadBalancer } from '../../src/model/types.ts';
import { type OvsdbServerProcess, startStandalone } from '../../src/ovsdb/server.ts';
import { DESIRED_STATE_MONITOR, storedDesiredCfg } from '../../src/store/db/index.ts';
import { StoreSession, storedConfig } from '../../src/store/operator.ts';
import { haveOvnCentral, type OvnCentral, startOvnCentral } from './helpers/ovn-central.ts';
import { execSluice, runSluice, SluiceChildren } from './helpers/sluice-children.ts';

/** Skipped only for a user who cannot install ovn-central; as root (CI runs scripts/ensure-deps.sh) it must run. */
const skip =
  !haveOvnCentral &&
  process.getuid?.() !== 0 &&
  'ovn-central is not installed (scripts/ensure-deps.sh, as root)';

let dir: string;
let ovn: OvnCentral;
let store: OvsdbServerProcess;
let session: StoreSession;
const children = new SluiceChildren(() => dir);
const nbctl = (...args: string[]) => ovn.nbctl(...args);
const sbctl = (...args: string[]) => ovn.sbctl(...args);

/** `sluice ovn sync <extra>` against this test's NB, SB and store. */
const syncArgs = (...extra: string[]) => [
  'ovn',
  'sync',
  ...extra,
  '--nb',
  ovn.nb.unixRemote,
  '--sb',
  ovn.sb.unixRemote,
  '--db',
  store.unixRemote,
];

const uuidOf = async (table: string, cond: string) => sbctl('--bare', '--columns=_uuid', 'find', table, cond);

const config = (): Config => storedConfig(session.replica).config;
const ovnLbs = (): LoadBalancer[] => config().loadBalancers.filter((lb) => lb.name.startsWith('ovn-'));
const lbByName = (name: string) => config().loadBalancers.find((lb) => lb.name === name);
const placed = (name: string) =>
  lbByName(name)
    ?.backends.map((b) => `${b.address}:${b.port}@${b.host}`)
    .join(',');

async function until(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const ok = await session.waitFor(() => {
    try {
      return pred();
    } catch {
      return false;
    }
  }, timeoutMs);
  assert.ok(ok, `${what} within ${timeoutMs} ms; desired state: ${JSON.stringify(config().loadBalancers)}`);
}

/** Waits for a log line of the sync daemon that matches `re` (among its records from index `from` on). */
async function logged(re: RegExp, timeoutMs = 10_000, from = 0): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = children
      .records('sync')
      .slice(from)
      .find((r) => re.test(String(r.msg)));
    if (hit !== undefined) return String(hit.msg);
    if (Date.now() > deadline)
      assert.fail(`no log line ${re}:\n${children.lines('sync').slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('sluice ovn sync against real ovn-central', { skip }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovn-'));
    ovn = await startOvnCentral(dir);
    store = await startStandalone(dir);
    const file = join(dir, 'nodes.yaml');
    writeFileSync(
      file,
      JSON.stringify({
        nodes: [
          { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
          { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
          { name: 'host2', role: 'host', tunnelIp: '192.168.100.12' },
        ],
        loadBalancers: [{ name: 'handmade', vip: '203.0.113.50', ports: [80], backends: [] }],
      }),
    );
    await runSluice(['apply', '-f', file, '--db', store.unixRemote]);
    session = await StoreSession.open(store.unixRemote, DESIRED_STATE_MONITOR);
    // The operator's OVN: one switch, three VMs' ports, two chassis that are sluice's hosts and one that is not.
    await nbctl('ls-add', 'sw0');
    for (const [vm, ip] of [
      ['vm1', '10.0.1.11'],
      ['vm2', '10.0.1.12'],
      ['vm3', '10.0.1.13'],
    ] as const) {
      await nbctl('lsp-add', 'sw0', vm);
      await nbctl('lsp-set-addresses', vm, `00:00:00:00:01:${ip.slice(-2)} ${ip}`);
    }
    await sbctl('chassis-add', 'ch1', 'geneve', '192.168.100.11');
    await sbctl('chassis-add', 'ch2', 'geneve', '192.168.100.12');
    await sbctl('chassis-add', 'ch9', 'geneve', '192.168.200.9');
    await nbctl('--wait=sb', 'sync'); // ovn-northd has made the Port_Bindings
    await sbctl('lsp-bind', 'vm1', 'ch1');
    await sbctl('lsp-bind', 'vm2', 'ch2');
  });

  after(async () => {
    await children.killAll();
    session?.close();
    await Promise.all([ovn?.stop(), store?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('--dry-run prints the diff of the selected load balancers and writes nothing', async () => {
    await nbctl('lb-add', 'web', '10.0.0.10:80', '10.0.1.11:8080,10.0.1.12:8080');
    await nbctl('set', 'Load_Balancer', 'web', 'external_ids:sluice=true');
    await nbctl('lb-add', 'other', '10.0.0.20:80', '10.0.1.11:80'); // not selected: never served
    const cfg = storedDesiredCfg(session.replica);
    const out = await runSluice(syncArgs('--dry-run'));
    assert.match(out, /\+ load balancer ovn-web-10.0.0.10-80 added/);
    assert.match(out, /\+ backend ovn-web-10.0.0.10-80 10.0.1.12:8080 added/);
    assert.doesNotMatch(out, /other|10\.0\.0\.20/);
    assert.match(out, /dry run: nothing written/);
    assert.equal(storedDesiredCfg(session.replica), cfg);
    assert.deepEqual(ovnLbs(), []);
  });

  test('the daemon serves lb-add, backend changes and set Load_Balancer as sluice edits', async () => {
    children.start('sync', syncArgs());
    await until(
      'web imported',
      () => placed('ovn-web-10.0.0.10-80') === '10.0.1.11:8080@host1,10.0.1.12:8080@host2',
    );
    assert.deepEqual(
      config().loadBalancers.map((lb) => lb.name),
      ['handmade', 'ovn-web-10.0.0.10-80'],
    );
    // Each backend carries its logical port's MAC (NB addresses); a changed address entry changes it in the store.
    const macs = () => lbByName('ovn-web-10.0.0.10-80')?.backends.map((b) => `${b.address}=${b.mac}`);
    assert.deepEqual(macs(), ['10.0.1.11=00:00:00:00:01:11', '10.0.1.12=00:00:00:00:01:12']);
    await nbctl('lsp-set-addresses', 'vm2', '02:00:00:00:01:12 10.0.1.12');
    await until('vm2 MAC changed', () => macs()?.[1] === '10.0.1.12=02:00:00:00:01:12');
    // A backend on a port not bound to any chassis is skipped, said so, and the rest still served.
    await nbctl(
      '--may-exist',
      'lb-add',
      'web',
      '10.0.0.10:80',
      '10.0.1.11:8080,10.0.1.12:8080,10.0.1.13:8080',
    );
    await logged(/backend 10\.0\.1\.13:8080: logical port vm3 is not bound to a chassis/);
    assert.equal(placed('ovn-web-10.0.0.10-80'), '10.0.1.11:8080@host1,10.0.1.12:8080@host2');
    await sbctl('lsp-bind', 'vm3', 'ch1');
    await until(
      'vm3 served on host1 once bound',
      () => placed('ovn-web-10.0.0.10-80')?.includes('10.0.1.13:8080@host1') === true,
    );
    // A second VIP, then the protocol: each a sluice edit.
    await nbctl('lb-add', 'web', '10.0.0.10:443', '10.0.1.12:8443');
    await until('second VIP', () => placed('ovn-web-10.0.0.10-443') === '10.0.1.12:8443@host2');
    await nbctl('set', 'Load_Balancer', 'web', 'protocol=udp');
    await until('udp', () => ovnLbs().every((lb) => lb.protocol === 'udp') && ovnLbs().length === 2);
    await nbctl('set', 'Load_Balancer', 'web', 'protocol=tcp');
    await nbctl('lb-del', 'web', '10.0.0.10:443');
    await until('VIP deleted', () => lbByName('ovn-web-10.0.0.10-443') === undefined);
  });

  test('a port binding that moves to another chassis moves its backend to that host', async () => {
    const pb = await uuidOf('Port_Binding', 'logical_port=vm1');
    const ch1 = await uuidOf('Chassis', 'name=ch1');
    const ch2 = await uuidOf('Chassis', 'name=ch2');
    await sbctl('set', 'Port_Binding', pb, `additional_chassis=${ch2}`); // live migration: bound on both
    await logged(/vm1 is migrating \(additional_chassis ch2\): it stays on host1/);
    assert.match(placed('ovn-web-10.0.0.10-80') ?? '', /10\.0\.1\.11:8080@host1/);
    await sbctl('set', 'Port_Binding', pb, `chassis=${ch2}`, 'additional_chassis=[]');
    await until(
      'vm1 on host2',
      () => placed('ovn-web-10.0.0.10-80')?.includes('10.0.1.11:8080@host2') === true,
    );
    await sbctl('set', 'Port_Binding', pb, `chassis=${ch1}`);
    const onHost = (h: string) => () =>
      placed('ovn-web-10.0.0.10-80')?.includes(`10.0.1.11:8080@${h}`) === true;
    await until('vm1 back on host1', onHost('host1'));
    // A migration that moves the VM's interface unbinds the port for a moment before the destination claims it:
    // the daemon keeps the backend on host1 meanwhile (--unbound-hold, 5 s), so the move is one host edit.
    await logged(/10\.0\.1\.11:8080 changed: host host2 -> host1/); // the move back is logged before we count
    const seen = children.records('sync').length;
    await sbctl('lsp-unbind', 'vm1');
    await logged(/vm1 lost its chassis \d+ ms ago: kept on host1/, 10_000, seen);
    await sbctl('lsp-bind', 'vm1', 'ch2');
    await until('vm1 on host2 after the switch-over', onHost('host2'));
    await logged(/10\.0\.1\.11:8080 changed: host host1 -> host2/, 10_000, seen);
    const writes = children
      .records('sync')
      .slice(seen)
      .filter((r) => r.event === 'synced')
      .map((r) => String(r.msg));
    assert.doesNotMatch(writes.join('\n'), /removed/, 'no removal during the switch-over');
    // A port that stays unbound is let go when the hold ends: the backend is removed, the rest still served.
    await sbctl('lsp-unbind', 'vm1');
    await until(
      'vm1 removed once the hold ended',
      () => placed('ovn-web-10.0.0.10-80')?.includes('10.0.1.11') === false,
      15_000,
    );
    await sbctl('lsp-bind', 'vm1', 'ch1');
    await until('vm1 back on host1 once bound', onHost('host1'));
  });

  test('bad OVN input is skipped with the load balancer and VIP named; nothing else changes', async () => {
    const before = JSON.stringify(config());
    await nbctl('lb-add', 'noport', '10.0.0.30', '10.0.1.12');
    await nbctl('lb-add', 'sctp', '10.0.0.31:80', '10.0.1.12:80', 'sctp');
    await nbctl('lsp-add', 'sw0', 'vm9', '--', 'lsp-set-addresses', 'vm9', '00:00:00:00:01:99 10.0.1.99');
    await nbctl('--wait=sb', 'sync');
    await sbctl('lsp-bind', 'vm9', 'ch9');
    await nbctl('lb-add', 'elsewhere', '10.0.0.32:80', '10.0.1.12:80,10.0.1.99:80');
    for (const lb of ['noport', 'sctp', 'elsewhere'])
      await nbctl('set', 'Load_Balancer', lb, 'external_ids:sluice=true');
    await logged(/load balancer noport, VIP 10\.0\.0\.30: a VIP without a port is not served/);
    await logged(/load balancer sctp: protocol sctp is not served/);
    await logged(
      /load balancer elsewhere, VIP 10\.0\.0\.32:80, backend 10\.0\.1\.99:80: chassis ch9 \(encap 192\.168\.200\.9\) is not a sluice host node/,
    );
    await until(
      'elsewhere served with its good backend',
      () => placed('ovn-elsewhere-10.0.0.32-80') === '10.0.1.12:80@host2',
    );
    const now = config();
    assert.deepEqual(
      JSON.parse(before).loadBalancers,
      now.loadBalancers.filter((lb) => lb.name !== 'ovn-elsewhere-10.0.0.32-80'),
    );
    assert.equal(children.get('sync')?.exitCode, null, 'the daemon is still running');
    // The status entry: `sluice status` lists what is not served and why.
    const status = await runSluice(['status', '--db', store.unixRemote]);
    assert.match(status, /OVN rows sluice ovn sync does not serve \(3\):/);
    assert.match(status, /load balancer sctp: protocol sctp is not served/);
  });

  test('lb-del removes what OVN no longer asks for; --once on an unchanged OVN writes nothing', async () => {
    for (const lb of ['web', 'elsewhere', 'noport', 'sctp']) await nbctl('lb-del', lb);
    await until('only the hand-made load balancer left', () => ovnLbs().length === 0);
    const status = await runSluice(['status', '--db', store.unixRemote]);
    assert.doesNotMatch(status, /OVN rows/);
    assert.ok(lbByName('handmade') !== undefined);
    await children.kill('sync', 'SIGTERM');
    const r = await execSluice(syncArgs('--once'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /no changes\nno change \(desired_cfg \d+\)/);
  });

  test('an unreachable OVN database fails within the deadline, naming it', async () => {
    const r = await execSluice([
      ...syncArgs('--once', '--timeout', '1'),
      '--nb', // the last --nb wins
      `unix:${join(dir, 'absent.sock')}`,
    ]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /cannot reach OVN's Northbound \(--nb\)/);
  });
});
