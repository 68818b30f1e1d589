// Runs the jobs of a model-check test file in worker threads (the same file, loaded through tsx as the test runner
// loads it: a worker does not inherit the loader), so a check uses both cores. The file answers a job in its
// `!isMainThread` branch with answerJob(run).
import { parentPort, Worker, workerData } from 'node:worker_threads';

/** One worker's share of a model check: `sequences` random runs from `seed`, with the model mutated or not. */
export interface ModelCheckJob<Mutation> {
  readonly seed: number;
  readonly sequences: number;
  readonly mutation: Mutation;
}

export function inWorker<Job, Result>(fileUrl: string, job: Job): Promise<Result> {
  return new Promise((resolve, reject) => {
    const boot =
      `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
      `.then((tsx) => { tsx.register(); return import(${JSON.stringify(fileUrl)}); })`;
    const w = new Worker(boot, { eval: true, workerData: job });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`model check worker exited with ${code}`));
    });
  });
}

/** In a worker thread: runs the job this thread was started with and posts the result back. */
export function answerJob<Mutation, Result>(run: (job: ModelCheckJob<Mutation>) => Result): void {
  parentPort!.postMessage(run(workerData as ModelCheckJob<Mutation>));
}

/**
 * Splits `sequences` unmutated runs between two seeds, one worker thread each: two streams, so a regression in one
 * corner of the event space is not hidden by one stream, and both cores busy.
 */
export function unmutatedInWorkers<Result>(
  fileUrl: string,
  seeds: readonly [number, number],
  sequences: number,
): Promise<Result[]> {
  const half = Math.floor(sequences / 2);
  return Promise.all([
    inWorker<ModelCheckJob<'none'>, Result>(fileUrl, { seed: seeds[0], sequences: half, mutation: 'none' }),
    inWorker<ModelCheckJob<'none'>, Result>(fileUrl, {
      seed: seeds[1],
      sequences: sequences - half,
      mutation: 'none',
    }),
  ]);
}
