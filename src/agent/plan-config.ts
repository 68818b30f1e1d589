// The config of the plan an agent applies, built from the store's documents with the work following what changed
// (src/model/config-parts.ts). Pure; the agent (src/agent/daemon.ts) keeps one, and so does bench/generation-compile.ts.

import { type ConfigParts, parseConfigParts } from '../model/config-parts.ts';
import { parseConfig } from '../model/schema.ts';
import type { Config } from '../model/types.ts';
import { type PlanDocs, planDocument } from '../store/db/plans.ts';

export class PlanConfigReader {
  /** The last plan config parsed, by the UUIDs of its Plan_Config rows (rows are never modified). */
  #cache: { ref: string; parts: ConfigParts } | undefined;

  /** The plan's config, parsed once per set of Plan_Config rows (the generations of one rollout share it); after a
   *  change, only the load balancers whose documents changed are parsed again. Throws what parseConfig throws. */
  read(docs: PlanDocs, ref: string | undefined, target: number): Config {
    if (ref !== undefined && this.#cache?.ref === ref) return this.#cache.parts.config;
    const source = `plan g${target}`;
    const whole = () => planDocument(docs);
    if (ref === undefined) return parseConfig(whole(), source);
    const parts = parseConfigParts(docs.base, docs.lbs, whole, this.#cache?.parts, source);
    this.#cache = { ref, parts };
    return parts.config;
  }
}
