// Change-to-acknowledged latency per node, for the planner's `sluice_planner_ack_latency_seconds{node}` histogram:
// from the moment this planner first saw the desired-state change (desired_cfg) a generation was planned from, to the
// moment it saw the node acknowledge that generation (both on the planner's clock). Every generation of a phased
// rollout counts from the same change, so the last one measures the whole rollout. A generation planned from a
// change this planner did not see (it started later) counts from the generation's own creation time.

export interface AckSample {
  readonly node: string;
  readonly generation: number;
  readonly seconds: number;
}

export class AckLatency {
  /** desired_cfg -> when this planner first saw it (the last few only). */
  readonly #cfgSeen = new Map<number, number>();
  /** node -> the generation it had acknowledged at the last observation. */
  readonly #acked = new Map<string, number>();

  /**
   * Feeds one observation of the store: the desired_cfg now, what every node acknowledged, and for a generation the
   * desired_cfg it was planned from and when it was created. Returns the acknowledgements new since the last call
   * (none for a node seen for the first time: its ack predates this planner).
   */
  observe(
    desiredCfg: number,
    acked: ReadonlyMap<string, number>,
    plan: (generation: number) => { readonly desiredCfg: number; readonly createdAt: number } | undefined,
    now: number,
  ): AckSample[] {
    if (!this.#cfgSeen.has(desiredCfg)) {
      this.#cfgSeen.set(desiredCfg, now);
      if (this.#cfgSeen.size > 64) this.#cfgSeen.delete(this.#cfgSeen.keys().next().value!);
    }
    const out: AckSample[] = [];
    for (const [node, generation] of acked) {
      const before = this.#acked.get(node);
      this.#acked.set(node, generation);
      if (before === undefined || generation <= before) continue;
      const p = plan(generation);
      if (p === undefined) continue;
      const start = this.#cfgSeen.get(p.desiredCfg) ?? p.createdAt;
      out.push({ node, generation, seconds: Math.max(0, now - start) / 1000 });
    }
    return out;
  }
}
