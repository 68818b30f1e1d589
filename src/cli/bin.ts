#!/usr/bin/env node
// Entry point of the `sluice` executable.
import { main } from './main.ts';

main(process.argv.slice(2)).then((code) => {
  // Exit once stdout and stderr have handed everything to the OS: process.exit() right away drops what a slow
  // pipe reader has not taken yet (`sluice plan --json | jq` got only the first 64 KiB). A reader that went away
  // (EPIPE, `| head`) ends the wait too.
  let pending = 2;
  const done = (): void => {
    if (--pending === 0) process.exit(code);
  };
  for (const s of [process.stdout, process.stderr]) {
    s.once('error', () => process.exit(code));
    s.write('', done);
  }
});
