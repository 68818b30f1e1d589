// JsonSplitter: concatenated JSON values split at every possible byte boundary come out whole and in order.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FramingError, JsonSplitter } from '../../src/ovsdb/framing.ts';

/** Feeds `bytes` in pieces ending at `cuts` and collects the parsed values. */
function feed(splitter: JsonSplitter, bytes: Buffer, cuts: number[]): unknown[] {
  const out: unknown[] = [];
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
    for (const text of splitter.push(bytes.subarray(at, c))) out.push(JSON.parse(text));
    at = c;
  }
  return out;
}

// Strings full of the characters a naive splitter trips on: braces, brackets, quotes, backslashes, multi-byte.
const nasty = fc.string({
  unit: fc.constantFrom('{', '}', '[', ']', '"', '\\', 'a', ' ', '\n', 'é', '€', '😀', '\u0000', '/'),
  maxLength: 12,
});
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    nasty,
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(nasty, tie('value'), { maxKeys: 4 }),
  ),
})).value;
const message = fc.record({ id: fc.integer(), method: nasty, params: fc.array(json, { maxLength: 3 }) });

test('concatenated messages split at arbitrary byte boundaries come out whole, in order', () => {
  fc.assert(
    fc.property(
      fc.array(message, { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.constantFrom('', ' ', '\n', '\r\n\t'),
      (msgs, rawCuts, sep) => {
        const bytes = Buffer.from(msgs.map((m) => JSON.stringify(m)).join(sep), 'utf8');
        const cuts = rawCuts.map((c) => c % (bytes.length + 1));
        const s = new JsonSplitter();
        assert.deepEqual(feed(s, bytes, cuts), JSON.parse(JSON.stringify(msgs)));
        assert.equal(s.pending, false);
      },
    ),
    { numRuns: 400 },
  );
});

test('byte-at-a-time feeding, including inside a multi-byte character and an escape', () => {
  const msgs = [{ a: 'x\\"}{', b: ['€', '😀', { c: '\\\\' }] }, [1, '[', ']'], { s: '"}' }];
  const bytes = Buffer.from(msgs.map((m) => JSON.stringify(m)).join(''), 'utf8');
  const cuts = Array.from({ length: bytes.length }, (_, i) => i);
  assert.deepEqual(feed(new JsonSplitter(), bytes, cuts), msgs);
});

test('an unfinished value stays pending and completes with the next chunk', () => {
  const s = new JsonSplitter();
  assert.deepEqual(s.push(Buffer.from('{"id":1,"result":"}')), []);
  assert.equal(s.pending, true);
  assert.deepEqual(s.push(Buffer.from('"}{"id"')), ['{"id":1,"result":"}"}']);
  assert.deepEqual(s.push(Buffer.from(':2}')), ['{"id":2}']);
  assert.equal(s.pending, false);
});

test('garbage between values is a FramingError', () => {
  assert.throws(() => new JsonSplitter().push(Buffer.from('{"a":1} x')), FramingError);
  assert.throws(() => new JsonSplitter().push(Buffer.from('42')), FramingError);
});

test('a value larger than the bound is a FramingError', () => {
  const s = new JsonSplitter(16);
  assert.throws(() => s.push(Buffer.from(`{"a":"${'x'.repeat(32)}`)), /exceeds 16 bytes/);
});
