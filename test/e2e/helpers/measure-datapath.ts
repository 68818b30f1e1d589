// Measurement (not a test): datapath flows and upcalls on one gateway for N real TCP connections, dp_hash vs
// fields mode. Root; builds its own small lab (prefix `slt-dp-`) and tears it down. Results go to stdout as JSON
// and are recorded by hand in docs/design/ovs-pipeline.md ("Measured").
//
//   node --import tsx test/e2e/helpers/measure-datapath.ts [connections=1000] [slotBits=8]

import { setTimeout as sleep } from 'node:timers/promises';
import { compileNode } from '../../../src/compile/index.ts';
import { NO_OWNER } from '../../../src/hashing/slots.ts';
import { labDown, labUp } from '../../../src/lab/topology.ts';
import { startTraffic } from '../../../src/lab/traffic.ts';
import { backendKey, type Config, type HashMode } from '../../../src/model/types.ts';
import { applyFlowSet, revalidate } from '../../../src/openflow/applier.ts';
import type { Generation, PoolPlan } from '../../../src/rollout/types.ts';

const N = Number(process.argv[2] ?? 1000);
const BITS = Number(process.argv[3] ?? 8);
const SIZE = 2 ** BITS;
const PREFIX = 'slt-dp-';

async function main(): Promise<void> {
  const lab = await labUp(
    {
      prefix: PREFIX,
      gateways: 1,
      hosts: 2,
      backendsPerHost: 1,
      clients: 2,
      vips: [
        {
          name: 'web',
          vip: '203.0.113.10',
          family: 4,
          protocol: 'tcp',
          port: 80,
          backends: ['host1-b1', 'host2-b1'],
        },
      ],
    },
    { replace: true },
  );
  const results: Record<string, unknown>[] = [];
  try {
    for (const mode of ['dp_hash', 'fields'] as HashMode[]) {
      const config: Config = lab.sluiceConfig({ hashMode: mode, slotBits: BITS });
      const pools = new Map<string, PoolPlan>();
      for (const l of config.loadBalancers) {
        const members = l.backends
          .map((b) => ({ key: backendKey(b), address: b.address, port: b.port, host: b.host }))
          .sort((x, y) => (x.key < y.key ? -1 : 1));
        pools.set(l.name, {
          lb: l.name,
          bits: BITS,
          members,
          primary: Uint16Array.from({ length: SIZE }, (_, s) => s % 2),
          second: new Uint16Array(SIZE).fill(NO_OWNER),
          phase: new Uint8Array(SIZE),
          since: new Float64Array(SIZE),
        });
      }
      const gen: Generation = { number: 1, createdAt: 0, pools };
      for (const n of config.nodes) {
        await applyFlowSet(lab.node(n.name), compileNode(config, gen, lab.compilerFacts(n.name)));
        await revalidate(lab.node(n.name));
      }
      const gw = lab.node('gw1');
      await gw.appctl(['dpctl/del-flows']);
      await lab.node('host1').appctl(['dpctl/del-flows']);
      await gw.appctl(['dpif-netdev/pmd-stats-clear']);
      const t0 = Date.now();
      const tr = await startTraffic(lab, {
        vip: '203.0.113.10',
        port: 80,
        count: N,
        rate: 300,
        intervalMs: 1000,
      });
      await tr.waitOpened(N, 120_000);
      const openMs = Date.now() - t0;
      await sleep(2000);
      const flows = (await gw.appctl(['dpctl/dump-flows'])).stdout
        .split('\n')
        .filter((l) => l.includes('recirc_id'));
      const stats = (await gw.appctl(['dpif-netdev/pmd-stats-show'])).stdout;
      const upcalls = [...stats.matchAll(/miss with success upcall: (\d+)/g)].reduce(
        (a, m) => a + Number(m[1]),
        0,
      );
      const hostFlows = (await lab.node('host1').appctl(['dpctl/dump-flows'])).stdout
        .split('\n')
        .filter((l) => l.includes('recirc_id'));
      const c = await tr.stop();
      results.push({
        mode,
        connections: N,
        slotBits: BITS,
        openMs,
        broken: c.broken,
        failed: c.failed,
        perBackend: Object.fromEntries(Object.entries(c.perBackend).map(([k, v]) => [k, v.opened])),
        gatewayDatapathFlows: flows.length,
        gatewayTcpDatapathFlows: flows.filter((l) => l.includes('proto=6')).length,
        gatewayUpcalls: upcalls,
        host1DatapathFlows: hostFlows.length,
        host1FirstPassTunnelFlows: hostFlows.filter(
          (l) => l.startsWith('tunnel(') && l.includes('recirc_id(0)'),
        ).length,
      });
    }
  } finally {
    await labDown(PREFIX);
  }
  console.log(JSON.stringify(results, null, 2));
}

await main();
