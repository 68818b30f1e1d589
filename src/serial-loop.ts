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
