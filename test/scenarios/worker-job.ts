// Runs a job of a model-check test file in a worker thread (the same file, loaded through tsx as the test runner
// loads it: a worker does not inherit the loader), so a check uses both cores. The file answers a job in its
// `!isMainThread` branch with parentPort.postMessage(result).
import { Worker } from 'node:worker_threads';

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
