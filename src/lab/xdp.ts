// XDP gateways in the lab (docs/design/lab.md "XDP gateways"): the objects built into the lab's run directory, the
// pass program on the fabric side of every gateway's veth (a veth hands XDP_TX'd frames only to a peer that runs
// XDP), and the node facts that make a gateway's agent (or the LabController) run the XDP datapath: external_ids
// sluice-gateway-datapath=xdp, its uplink (eth0) and the node's namespace. Which datapath a gateway runs is read back from
// its OVSDB and its uplink (`lab status`).

import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DATAPATH_KEYS, type GatewayDatapath } from '../agent/xdp-gateway.ts';
import { SluiceError } from '../model/errors.ts';
import { attachedSteps, attachXdpPass, programMaps } from '../xdp/attach.ts';
import type { XdpMapName, XdpStepResult } from '../xdp/bpftool.ts';
import type { LabConfig, LabNodePlan } from './config.ts';
import { nsRun, run } from './exec.ts';
import type { LabNode } from './node.ts';

/** The uplink the program attaches to on a lab gateway. */
export const LAB_UPLINK = 'eth0';

export function labXdpDir(runDir: string): string {
  return `${runDir}/xdp`;
}

/** The gateway program the lab's agents and controller attach. */
export function labXdpObject(runDir: string): string {
  return `${labXdpDir(runDir)}/gateway.bpf.o`;
}

/** external_ids arguments (ovs-vsctl set Open_vSwitch .) that make `node` an XDP gateway, or an OVS one. */
export function datapathIdArgs(node: Pick<LabNodePlan, 'netns'>, datapath: GatewayDatapath): string[] {
  return datapath === 'ovs'
    ? [`external_ids:${DATAPATH_KEYS.datapath}=ovs`]
    : [
        `external_ids:${DATAPATH_KEYS.datapath}=xdp`,
        `external_ids:${DATAPATH_KEYS.uplink}=${LAB_UPLINK}`,
        `external_ids:${DATAPATH_KEYS.netns}=${node.netns}`,
      ];
}

/**
 * A lab with XDP gateways: compiles the programs (scripts/build-xdp.sh, clang) into the run directory and attaches
 * the pass program to the fabric side of EVERY gateway's veth (so any gateway can switch to XDP later).
 */
export async function prepareLabXdp(
  cfg: LabConfig,
  runDir: string,
  fabricNetns: string,
  gateways: readonly string[],
): Promise<void> {
  if ((cfg.gatewayDatapath ?? 'ovs') === 'ovs') return;
  const script = ['../../scripts/build-xdp.sh', '../../../scripts/build-xdp.sh']
    .map((p) => fileURLToPath(new URL(p, import.meta.url)))
    .find((p) => existsSync(p));
  if (script === undefined)
    throw new SluiceError(
      'SLUICE_E_XDP',
      'gatewayDatapath xdp/mixed needs scripts/build-xdp.sh and src/xdp/*.bpf.c (a checkout or the npm package)',
    );
  const dir = labXdpDir(runDir);
  mkdirSync(dir, { recursive: true });
  await run('bash', [script, dir], { timeoutMs: 120_000 });
  for (const g of gateways) await attachXdpPass(fabricNetns, g, `${dir}/pass.bpf.o`);
}

/** Makes a running lab gateway's node facts say `datapath` (its agent reads them at start). */
export async function setLabDatapathFacts(node: LabNode, datapath: GatewayDatapath): Promise<void> {
  await node.vsctl(['set', 'Open_vSwitch', '.', ...datapathIdArgs(node, datapath)]);
}

/** What a lab gateway runs: its node facts' datapath and the XDP program attached to its uplink, if any. */
export interface LabDatapathStatus {
  readonly datapath: GatewayDatapath;
  /** Id of the XDP program on the uplink (undefined: none attached). */
  readonly xdpProgram: number | undefined;
}

export async function labDatapathStatus(node: LabNode): Promise<LabDatapathStatus> {
  const r = await node.vsctl(
    ['--if-exists', 'get', 'Open_vSwitch', '.', `external_ids:${DATAPATH_KEYS.datapath}`],
    {
      allowFail: true,
    },
  );
  const datapath = r.stdout.trim().replace(/^"(.*)"$/, '$1') === 'xdp' ? 'xdp' : 'ovs';
  const link = await nsRun(node.netns, 'ip', ['-j', 'link', 'show', 'dev', LAB_UPLINK], {
    allowFail: true,
    timeoutMs: 5000,
  });
  let xdpProgram: number | undefined;
  try {
    const [l] = JSON.parse(link.stdout) as { xdp?: { prog?: { id?: number } } }[];
    xdpProgram = l?.xdp?.prog?.id;
  } catch {
    xdpProgram = undefined;
  }
  return { datapath, xdpProgram };
}

/** What the XDP program on a lab gateway's uplink holds: the copy in force and that copy's entries. */
export interface LabXdpInForce {
  readonly progId: number;
  readonly copy: number;
  /** The copy's config, VIP and slot entries as `xdpImageLines` writes them. */
  readonly lines: readonly string[];
}

/** Reads (never writes) the maps of the program on `node`'s uplink; undefined when none is attached. */
export async function labXdpInForce(node: LabNode): Promise<LabXdpInForce | undefined> {
  const { xdpProgram } = await labDatapathStatus(node);
  if (xdpProgram === undefined) return undefined;
  const ids = await programMaps(xdpProgram);
  const maps = ['sluice_active', 'sluice_config', 'sluice_vips', 'sluice_slots'] as const;
  const missing = maps.filter((m) => ids[m] === undefined);
  if (missing.length > 0)
    throw new SluiceError(
      'SLUICE_E_XDP',
      `${node.name}: program ${xdpProgram} has no map ${missing.join(', ')}`,
    );
  const att = {
    netns: node.netns,
    dev: LAB_UPLINK,
    progId: xdpProgram,
    maps: ids as Record<XdpMapName, number>,
  };
  const dumps = await attachedSteps(
    att,
    maps.map((map) => ({ kind: 'dump', map })),
  );
  const entries = (i: number) => (dumps[i] as Extract<XdpStepResult, { kind: 'dump' }>).entries;
  const copyOf = (key: Uint8Array) => new DataView(key.buffer, key.byteOffset).getUint32(0, true);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const copy = entries(0)[0]?.values[0]?.[0] ?? 0;
  const lines = maps.slice(1).flatMap((map, i) =>
    entries(i + 1)
      .filter((e) => copyOf(e.key) === copy)
      .map((e) => `${map} ${hex(e.key)}=${hex(e.values[0]!)}`),
  );
  return { progId: xdpProgram, copy, lines: lines.sort() };
}

export function formatDatapath(s: LabDatapathStatus): string {
  if (s.datapath === 'ovs')
    return s.xdpProgram === undefined ? 'ovs' : `ovs (XDP program ${s.xdpProgram} left on ${LAB_UPLINK})`;
  return s.xdpProgram === undefined
    ? `xdp (no program on ${LAB_UPLINK})`
    : `xdp (program ${s.xdpProgram} on ${LAB_UPLINK})`;
}
