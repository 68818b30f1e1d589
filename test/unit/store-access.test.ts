// `sluice store access`: the TLS remotes and roles it writes, and the usage errors it refuses before connecting.
// Pure (no store): the transaction itself is the lab's (accessControlOps), exercised on real ovsdb-server by the
// security e2e.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { accessRemotes } from '../../src/cli/store-commands.ts';
import { SluiceError } from '../../src/model/errors.ts';

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
