// `sluice store access`: the TLS remotes and roles it writes, and the usage errors it refuses before connecting.
// Pure (no store): the transaction itself is the lab's (accessControlOps), exercised on real ovsdb-server by the
// security e2e.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { accessProbeMs, accessRemotes } from '../../src/cli/store-commands.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { accessControlOps } from '../../src/store/db/rbac.ts';

test('store access: each --<role>-remote becomes pssl targets with that role, comma lists split', () => {
  assert.deepEqual(
    accessRemotes({
      agentRemote: 'pssl:6642:10.0.0.1,pssl:6642:10.0.0.2',
      plannerRemote: 'pssl:6643',
      operatorRemote: undefined,
    }),
    [
      { target: 'pssl:6642:10.0.0.1', role: 'sluice-agent' },
      { target: 'pssl:6642:10.0.0.2', role: 'sluice-agent' },
      { target: 'pssl:6643', role: 'sluice-planner' },
    ],
  );
});

test('store access: a remote that is not pssl, or no remote at all, is a usage error naming the option', () => {
  const usage = (opts: Record<string, string | undefined>, text: RegExp) =>
    assert.throws(
      () => accessRemotes(opts),
      (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_USAGE' && text.test(e.message),
    );
  usage(
    { operatorRemote: 'ptcp:6641' },
    /--operator-remote: expected pssl:PORT\[:ADDRESS\], got "ptcp:6641"/,
  );
  usage({ agentRemote: 'pssl:6642:1.2.3.4; rm -rf /' }, /--agent-remote/);
  usage({}, /at least one of --agent-remote/);
});

test('store access: --inactivity-probe is whole seconds (default 30, 0 = never), written on every remote in ms', () => {
  assert.equal(accessProbeMs({}), 30_000);
  assert.equal(accessProbeMs({ inactivityProbe: '0' }), 0);
  assert.equal(accessProbeMs({ inactivityProbe: '120' }), 120_000);
  for (const bad of ['-1', '1.5', '3601', '30s', ''])
    assert.throws(
      () => accessProbeMs({ inactivityProbe: bad }),
      (e: unknown) =>
        e instanceof SluiceError &&
        e.code === 'SLUICE_E_USAGE' &&
        e.message.startsWith(`--inactivity-probe: expected whole seconds from 0 to 3600, got "${bad}"`),
    );
  const rows = (probe?: number) =>
    accessControlOps(
      [
        { target: 'pssl:6642', role: 'sluice-agent' },
        { target: 'pssl:6643', role: 'sluice-planner' },
      ],
      probe,
    ).flatMap((op) => (op.op === 'insert' && op.table === 'Connection' ? [op.row] : []));
  assert.deepEqual(
    rows().map((r) => r.inactivity_probe),
    [30_000, 30_000],
  );
  assert.deepEqual(
    rows(0).map((r) => r.inactivity_probe),
    [0, 0],
  );
});
