// What the store benchmarks share (cli-edit, plan-store, planner-step): the synthetic desired state (`vips` load
// balancers with the same 20 backends on two hosts, v0 with 19 of them so a backend add has something to add,
// slotBits 8, dp_hash), writing it in batches, and a baseline tree extracted from git.

import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The desired state document (config-file shape) of `vips` VIPs x 20 backends. */
export function syntheticDesiredDoc(vips: number) {
  const backends = Array.from({ length: 20 }, (_, i) => ({
    address: `10.0.${1 + (i >> 3)}.${10 + (i & 7)}`,
    port: 80,
    host: i < 10 ? 'host1' : 'host2',
    weight: 1,
    state: 'active',
  }));
  return {
    hashMode: 'dp_hash',
    slotBits: 8,
    nodes: [
      { name: 'gw1', role: 'gateway', tunnelIp: '192.0.2.1' },
      { name: 'host1', role: 'host', tunnelIp: '192.0.2.11' },
      { name: 'host2', role: 'host', tunnelIp: '192.0.2.12' },
    ],
    loadBalancers: Array.from({ length: vips }, (_, i) => ({
      name: `v${i}`,
      vip: `198.18.${(i + 1) >> 8}.${(i + 1) & 255}`,
      protocol: 'tcp',
      ports: [80],
      backends: i === 0 ? backends.slice(0, 19) : backends,
    })),
  };
}

/** Writes `doc` in transactions of at most 1000 load balancers (one transaction of 210,000 operations is more than
 *  one call's arguments can carry); `ops(k)` returns the operations that bring the store to the first k. */
export async function writeInBatches(
  vips: number,
  ops: (k: number) => unknown[],
  transact: (ops: unknown[]) => Promise<unknown>,
): Promise<void> {
  for (let k = Math.min(1000, vips); ; k = Math.min(k + 1000, vips)) {
    await transact(ops(k));
    if (k === vips) break;
  }
}

const root = fileURLToPath(new URL('..', import.meta.url));

/** Extracts src/ and schema/ at `commit` into node_modules/.cache/`cache` (the tree's own imports and schema file
 *  resolve inside it: a baseline version measured in the same run). Needs the git history. */
export function extractTree(commit: string, cache: string): string {
  const full = execFileSync('git', ['-C', root, 'rev-parse', commit], { encoding: 'utf8' }).trim();
  const dir = `${root}node_modules/.cache/${cache}/${full}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const tar = execFileSync('git', ['-C', root, 'archive', full, 'src', 'schema'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  return dir;
}
