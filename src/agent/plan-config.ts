// The config of the plan an agent applies, built from the store's documents with the work following what changed
// (src/model/config-parts.ts). Pure; the agent (src/agent/daemon.ts) keeps one, and so does bench/generation-compile.ts.

import { type ConfigParts, parseConfigParts } from '../model/config-parts.ts';
import { parseConfig } from '../model/schema.ts';
import type { Config } from '../model/types.ts';
import { type PlanDocs, planDocument } from '../store/db/plans.ts';

/** Which load balancers' documents may differ between two PlanDocs (undefined: not known). The store's follower
 *  answers it (src/store/db/plan-index.ts PlanIndex.changed). */
export type DocsChanges = (from: PlanDocs, to: PlanDocs) => ReadonlySet<string> | undefined;

export class PlanConfigReader {
  /** The last plan config parsed, by the UUIDs of its Plan_Config rows (rows are never modified), and the
   *  documents object it came from. */
  #cache: { ref: string | undefined; docs: PlanDocs; parts: ConfigParts } | undefined;

  /** The plan's config, parsed once per set of Plan_Config rows (the generations of one rollout share it); after a
   *  change, only the load balancers whose documents changed are parsed again. With `changes` (documents from the
   *  store's follower, the same object while none changed), the object is the key and only the documents it names
   *  are compared. Throws what parseConfig throws. */
  read(docs: PlanDocs, ref: string | undefined, target: number, changes?: DocsChanges): Config {
    const c = this.#cache;
    if (c !== undefined && (c.docs === docs || (ref !== undefined && c.ref === ref))) return c.parts.config;
    const source = `plan g${target}`;
    const whole = () => planDocument(docs);
    if (ref === undefined && changes === undefined) return parseConfig(whole(), source);
    const hint = c === undefined ? undefined : changes?.(c.docs, docs);
    const parts = parseConfigParts(docs.base, docs.lbs, whole, c?.parts, source, hint);
    this.#cache = { ref, docs, parts };
    return parts.config;
  }
}
