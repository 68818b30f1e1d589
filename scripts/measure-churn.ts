// Measures second-chance traffic during churn on the real lab (root): runs the `sluice demo` scenario
// (src/lab/demo.ts runDemo, through the lab's control plane: backend added, drained, removed; a gateway withdrawn; a
// gateway's ovs-vswitchd killed; a rollout with the gateways on different generations) on its own lab (prefix `slt-measure-`, torn down at the
// end) and prints, per step, the packets the hosts handed on by second chance (SECOND_CHANCE flows' n_packets), the
// generations published and the connections broken, as a Markdown table for docs/design/lab.md.
//
//   sudo node --import tsx scripts/measure-churn.ts [--connections 300]

import { runDemo } from '../src/lab/demo.ts';

const i = process.argv.indexOf('--connections');
const connections = i >= 0 ? Number(process.argv[i + 1]) : 300;
const quiet: string[] = [];
const r = await runDemo({
  prefix: 'slt-measure-',
  connections,
  counters: false,
  print: (l) => quiet.push(l),
});
const out = [
  `Churn on the lab (${new Date().toISOString().slice(0, 10)}): ${r.opened} connections opened in all, ` +
    `${r.broken} broken, ${r.failed} failed; each connection sends a few bytes every 300 ms and needs them echoed within 3 s.`,
  '',
  '| step | generations | second-chance packets | broken | wall time |',
  '|---|---|---|---|---|',
  ...r.steps.map(
    (s) =>
      `| ${s.name} | ${s.generations.length ? s.generations.map((g) => `g${g}`).join(', ') : '-'} | ${s.secondChance} | ${s.broken} | ${(s.ms / 1000).toFixed(1)} s |`,
  ),
];
console.log(out.join('\n'));
if (process.env.VERBOSE) console.error(quiet.join('\n'));
process.exitCode = r.broken === 0 ? 0 : 1;
