// Progress of long work on a terminal (`lab up`, the demo's start-up, the benchmarks): one status line redrawn in
// place, "lab up [3/6] starting 8 ovsdb-server + ovs-vswitchd (4.2 s)", its clock ticking while a step runs. Off a
// terminal (a log file, a pipe, CI) it writes nothing: the callers' own log lines say what happened.

export interface Progress {
  /** Starts step `n` of the total (1-based), saying what it does. */
  step(n: number, what: string): void;
  /** Updates the current step's detail ("7/8 nodes acknowledged") without moving on. */
  detail(text: string): void;
  /** Clears the line (call before printing anything else, and at the end). */
  clear(): void;
  /** The work is over: clears the line and stops the clock. */
  end(): void;
}

export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): boolean;
}

const NONE: Progress = { step() {}, detail() {}, clear() {}, end() {} };

/** The line for a step (pure, for tests): label, [n/total], what, detail, elapsed. */
export function progressLine(
  label: string,
  n: number,
  total: number,
  what: string,
  detail: string,
  elapsedMs: number,
  columns = 120,
): string {
  const line = `${label} [${n}/${total}] ${what}${detail ? `: ${detail}` : ''} (${(elapsedMs / 1000).toFixed(1)} s)`;
  return line.length > columns - 1 ? `${line.slice(0, columns - 2)}…` : line;
}

/** A progress line on `out` if it is a terminal (default stderr), else a no-op. */
export function terminalProgress(
  label: string,
  total: number,
  out: ProgressStream = process.stderr,
  now: () => number = Date.now,
): Progress {
  if (!out.isTTY) return NONE;
  let n = 0;
  let what = '';
  let detail = '';
  let since = now();
  let timer: NodeJS.Timeout | undefined;
  const draw = () => {
    out.write(`\r\x1b[2K${progressLine(label, n, total, what, detail, now() - since, out.columns)}`);
  };
  return {
    step(i, text) {
      n = i;
      what = text;
      detail = '';
      since = now();
      draw();
      timer ??= setInterval(draw, 500);
      timer.unref();
    },
    detail(text) {
      detail = text;
      draw();
    },
    clear() {
      out.write('\r\x1b[2K');
    },
    end() {
      if (timer) clearInterval(timer);
      timer = undefined;
      out.write('\r\x1b[2K');
    },
  };
}
