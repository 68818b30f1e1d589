/**
 * A serial loop for the daemons (the agent's apply, heartbeat and fencing loops, the planner's step): `schedule()`
 * runs the step unless one is running, and a schedule() that arrives while it runs makes it run once more right
 * after (never twice at once, never a trigger lost). Errors go to `onError`; the loop keeps going.
 */
export class SerialLoop {
  readonly #step: () => Promise<void>;
  readonly #onError: (e: Error) => void;
  readonly #stopped: () => boolean;
  #running = false;
  #again = false;

  constructor(step: () => Promise<void>, onError: (e: Error) => void, stopped: () => boolean) {
    this.#step = step;
    this.#onError = onError;
    this.#stopped = stopped;
  }

  /** True while a step runs. */
  get running(): boolean {
    return this.#running;
  }

  schedule(): void {
    if (this.#stopped()) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    // Never inside the task that scheduled it (a store client's handler that just parsed a snapshot, say): the
    // timers due first run before the step, among them the store client's keepalive. ovsdb-server drops a session
    // that sends nothing for two of its probe intervals (5 s each on a TCP remote by default), and a 10,000-VIP
    // snapshot's parse followed by a first step in the same task kept a planner silent longer than that on every
    // reconnect.
    setTimeout(() => this.#run(), 0);
  }

  #run(): void {
    if (this.#stopped()) {
      this.#running = false;
      return;
    }
    this.#step()
      .catch((e: unknown) => this.#onError(e instanceof Error ? e : new Error(String(e))))
      .finally(() => {
        this.#running = false;
        if (this.#again) {
          this.#again = false;
          setImmediate(() => this.schedule());
        }
      });
  }
}
