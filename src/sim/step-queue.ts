// The simulator's step queue: a binary min-heap of steps by (time, insertion order).

/** What a step does (the engine dispatches on it). */
export const STEP = {
  event: 0,
  applyCfg: 1,
  sluiceApply: 2,
  sluiceAcked: 3,
  sluiceTick: 4,
  backendStop: 5,
  detect: 6,
  end: 7,
} as const;

export interface Step {
  readonly t: number;
  readonly seq: number;
  readonly kind: number;
  /** Kind-specific arguments (a gateway, backend or event index; a version). */
  readonly a: number;
  readonly b: number;
  /** The trace event the step is a consequence of (its counters get what the step breaks). */
  readonly ev: number;
}

export class StepQueue {
  readonly #heap: Step[] = [];
  #seq = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(t: number, kind: number, a: number, b: number, ev: number): void {
    const s: Step = { t, seq: this.#seq++, kind, a, b, ev };
    const heap = this.#heap;
    heap.push(s);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(heap[p], s)) break;
      heap[i] = heap[p];
      i = p;
    }
    heap[i] = s;
  }

  pop(): Step {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= heap.length) break;
        const r = l + 1;
        const c = r < heap.length && less(heap[r], heap[l]) ? r : l;
        if (less(last, heap[c])) break;
        heap[i] = heap[c];
        i = c;
      }
      heap[i] = last;
    }
    return top;
  }
}

function less(a: Step, b: Step): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}
