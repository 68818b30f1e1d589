// endStdin (src/child-input.ts): a child that exits before reading its stdin must not take this process down.

import * as assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { endStdin } from '../../src/child-input.ts';

// 1 MiB is far more than a pipe holds, so the write is still pending when `true` exits: it fails with EPIPE.
const BIG = 'x'.repeat(1 << 20);

describe('endStdin', () => {
  it('a child that exits without reading its stdin does not crash this process', async () => {
    const code = await new Promise<number>((resolve) => {
      const child = execFile('true', [], (err) => resolve(err ? Number(err.code) : 0));
      endStdin(child, BIG);
    });
    assert.equal(code, 0);
  });

  it('chunks are written as the pipe drains, all of them, in order', async () => {
    let pulled = 0;
    function* chunks() {
      for (let i = 0; i < 64; i++) {
        pulled++;
        yield `${String(i).padStart(4, '0')}${BIG}`;
      }
    }
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile('wc', ['-c'], (err, stdout) => (err ? reject(err) : resolve(stdout)));
      endStdin(child, chunks());
    });
    assert.equal(pulled, 64);
    assert.equal(Number(out.trim()), 64 * (4 + BIG.length));
  });

  it('a child that exits early stops the chunks being rendered, and does not crash this process', async () => {
    let pulled = 0;
    function* chunks() {
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield BIG;
      }
    }
    await new Promise<void>((resolve) => {
      const child = execFile('true', [], () => resolve());
      endStdin(child, chunks());
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(pulled < 1000, `only what the pipe took was rendered (${pulled} of 1000 chunks)`);
  });

  it('negative control: the same write with no error listener ends the process with EPIPE', () => {
    const script = `require('node:child_process').execFile('true', [], () => {}).stdin.end('x'.repeat(1 << 20));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /EPIPE/);
  });
});
