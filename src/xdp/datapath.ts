// An XDP gateway's datapath as the agent and the lab controller drive it: per generation, compile the tables (pure,
// src/compile/xdp.ts; a generation that does not fit is refused before any map is touched), attach the program on
// the uplink the first time (or again after a failure), write the copy not in force, then flip the index. The
// caller acknowledges only after `install` resolves, i.e. after the flip. The I/O goes through `XdpOps`, so the
// unit tests drive this with a fake (test/unit/xdp-datapath.test.ts). Design: docs/design/xdp.md.

import {
  type XdpGatewayFacts,
  type XdpMapImage,
  type XdpTables,
  type XdpVip,
  xdpInstallWrites,
  xdpMapImage,
  xdpTables,
} from '../compile/xdp.ts';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import type { Generation } from '../rollout/types.ts';
import {
  attachedSteps,
  attachXdp,
  detachXdp,
  sumCounters,
  sumIcmpCounters,
  type XdpAttachment,
  type XdpIcmpCounters,
  type XdpVipCounters,
} from './attach.ts';
import type { XdpStepResult } from './bpftool.ts';

/** The device-facing side: the real one is `deviceOps`; tests pass a fake. */
export interface XdpOps {
  /** Loads the program and attaches it to the uplink (replacing one left attached). Throws with nothing attached. */
  attach(): Promise<XdpAttachment>;
  steps: typeof attachedSteps;
  detach(): Promise<void>;
}

/** The real device: `object` on `dev`, in network namespace `netns` (undefined = the caller's own). */
export function deviceOps(dev: string, object: string, netns?: string): XdpOps {
  return {
    attach: () => attachXdp(netns, dev, object),
    steps: attachedSteps,
    detach: () => detachXdp(netns, dev),
  };
}

export interface XdpInstall {
  readonly generation: number;
  /** The copy now in force. */
  readonly copy: 0 | 1;
  /** Map writes, the flip included. */
  readonly writes: number;
  /** True when the program was (re)attached by this install. */
  readonly attached: boolean;
  readonly ms: number;
}

/** Per-VIP counters with the VIP they belong to (the generation in force's numbering). */
export interface XdpVipStats extends XdpVipCounters {
  readonly lb: string;
  readonly vip: string;
  readonly proto: XdpVip['proto'];
  readonly port: number;
}

/** Failures of the device side (program or map), as opposed to a generation the maps cannot hold. */
export class XdpDatapathError extends SluiceError {
  constructor(message: string) {
    super('SLUICE_E_XDP', message);
  }
}

export class XdpDatapath {
  readonly #ops: XdpOps;
  #att: XdpAttachment | undefined;
  /** What each copy holds, as this process wrote it (undefined: unknown or empty). */
  #held: [XdpMapImage | undefined, XdpMapImage | undefined] = [undefined, undefined];
  #active: 0 | 1 = 1;
  #tables: XdpTables | undefined;

  constructor(ops: XdpOps) {
    this.#ops = ops;
  }

  get attachment(): XdpAttachment | undefined {
    return this.#att;
  }

  /**
   * Installs `gen`: tables (SLUICE_E_XDP, nothing written, when the generation does not fit), attach if needed, write the inactive copy, flip. A failed attach or write throws
   * XdpDatapathError and forgets the attachment: the next install attaches a fresh program with empty maps.
   */
  async install(config: Config, gen: Generation, facts: XdpGatewayFacts): Promise<XdpInstall> {
    const t0 = performance.now();
    const tables = xdpTables(config, gen, facts);
    let attached = false;
    if (this.#att === undefined) {
      try {
        this.#att = await this.#ops.attach();
      } catch (e) {
        throw new XdpDatapathError(`xdp: attaching the program failed: ${firstLine(e)}`);
      }
      this.#held = [undefined, undefined];
      this.#active = 1;
      attached = true;
    }
    const copy: 0 | 1 = this.#active === 0 ? 1 : 0;
    const image = xdpMapImage(tables, copy);
    const writes = xdpInstallWrites(this.#held[copy], image, copy);
    try {
      await this.#ops.steps(this.#att, writes);
    } catch (e) {
      // What the maps hold is unknown now: start over from a fresh program next time.
      const att = this.#att;
      this.#att = undefined;
      await this.#ops.detach().catch(() => {});
      throw new XdpDatapathError(`xdp: writing the maps of program ${att.progId} failed: ${firstLine(e)}`);
    }
    this.#held[copy] = image;
    this.#active = copy;
    this.#tables = tables;
    return {
      generation: gen.number,
      copy,
      writes: writes.length,
      attached,
      ms: Math.round(performance.now() - t0),
    };
  }

  /** The per-VIP counters of the program, by the VIPs of the generation in force; [] when not attached. */
  async counters(): Promise<XdpVipStats[]> {
    return (await this.readCounters()).vips;
  }

  /** The per-VIP counters and the ICMP program's, in one batch (undefined ICMP counters when not attached). */
  async readCounters(): Promise<{ vips: XdpVipStats[]; icmp: XdpIcmpCounters | undefined }> {
    const att = this.#att;
    const tables = this.#tables;
    if (att === undefined || tables === undefined) return { vips: [], icmp: undefined };
    const dumps = await this.#ops.steps(att, [
      { kind: 'dump', map: 'sluice_stats' },
      { kind: 'dump', map: 'sluice_icmpstat' },
    ]);
    const entries = (i: number) => (dumps[i] as Extract<XdpStepResult, { kind: 'dump' }>).entries;
    const byIndex = sumCounters(entries(0));
    const vips = tables.vips.map((v) => ({
      lb: v.lb,
      vip: v.vip,
      proto: v.proto,
      port: v.port,
      ...(byIndex.get(v.counter) ?? { packets: 0, bytes: 0, dropNoSlot: 0, dropNoRoom: 0, dropNotMine: 0 }),
    }));
    return { vips, icmp: sumIcmpCounters(entries(1)) };
  }

  /** Detaches the program (the uplink falls back to the kernel and OVS behind it). */
  async detach(): Promise<void> {
    this.#att = undefined;
    this.#tables = undefined;
    await this.#ops.detach();
  }

  /** Forgets the attachment without touching the device (it is gone: the node's namespace or program was lost). */
  forget(): void {
    this.#att = undefined;
    this.#tables = undefined;
  }
}

function firstLine(e: unknown): string {
  return (e as Error).message.split('\n')[0]!;
}
