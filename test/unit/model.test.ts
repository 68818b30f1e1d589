// The desired-state model: schema, semantic rules, loader, IP helpers. Pure; no fakes.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ERROR_CODES, SluiceError } from '../../src/model/errors.ts';
import {
  compareIp,
  expandIPv6,
  ipEquals,
  ipFamily,
  ipToHex,
  ipv4ToUint32,
  normalizeIp,
  parseIp,
} from '../../src/model/ip.ts';
import { decodeConfigText, parseConfigText } from '../../src/model/load.ts';
import { DEFAULTS, formatIssues, parseConfig, validateConfig } from '../../src/model/schema.ts';
import type { Config } from '../../src/model/types.ts';
import { testNodes } from '../scenarios/configs.ts';

const EXAMPLES = new URL('../../examples/', import.meta.url);
const readExample = (name: string) => readFileSync(new URL(name, EXAMPLES), 'utf8');

// biome-ignore lint/suspicious/noExplicitAny: test inputs are arbitrary decoded YAML
type Raw = any;

/** A small valid file: 1 gateway, 2 hosts, 2 load balancers. */
function base(): Raw {
  return {
    hashMode: 'dp_hash',
    slotBits: 8,
    nodes: testNodes(['gw1'], ['host1', 'host2']),
    loadBalancers: [
      {
        name: 'web',
        vip: '203.0.113.10',
        protocol: 'tcp',
        ports: [80, 443],
        backends: [
          { address: '10.0.1.11', port: 8080, host: 'host1' },
          { address: '10.0.1.12', port: 8080, host: 'host1', weight: 3 },
          { address: '10.0.2.11', host: 'host2', state: 'draining' },
        ],
      },
      {
        name: 'dns',
        vip: '2001:db8::53',
        protocol: 'udp',
        port: 53,
        backends: [{ address: 'fd00::1:11', host: 'host2' }],
      },
    ],
  };
}

/** 10.0.1.11 (web's first backend, on host1) given MAC `a` in web and `b` in a third load balancer. */
function macTwice(x: Raw, a: string, b: string): void {
  x.loadBalancers[0].backends[0].mac = a;
  const backends = [{ address: '10.0.1.11', host: 'host1', mac: b }];
  x.loadBalancers.push({ name: 'web8080', vip: '203.0.113.11', port: 8080, backends });
}

function issuesOf(input: unknown) {
  const r = validateConfig(input);
  assert.equal(r.ok, false, 'expected the config to be rejected');
  return r.ok ? [] : r.issues;
}

function mutate(f: (c: Raw) => void): Raw {
  const c = base();
  f(c);
  return c;
}

describe('parseConfig: valid input', () => {
  test("a backend's mac: optional, stored lowercase, the same MAC for one address in two load balancers", () => {
    const c = parseConfig(
      mutate((x) => {
        x.loadBalancers[1].backends[0].mac = '02:00:0a:00:02:0b';
        macTwice(x, '02:00:0A:00:01:0B', '02:00:0a:00:01:0b');
      }),
    );
    const web = c.loadBalancers.find((l) => l.name === 'web')!;
    assert.equal(web.backends[0]!.mac, '02:00:0a:00:01:0b');
    assert.equal(web.backends[1]!.mac, undefined, 'absent when not given');
    assert.ok(!('mac' in web.backends[1]!), 'no mac key at all, so documents and diffs stay as before');
    assert.equal(c.loadBalancers.find((l) => l.name === 'web8080')!.backends[0]!.mac, '02:00:0a:00:01:0b');
  });

  test('the base config parses, with defaults filled in and addresses canonical', () => {
    const c = parseConfig(base());
    assert.equal(c.hashMode, 'dp_hash');
    assert.equal(c.slotBits, 8);
    assert.equal(c.drainWindowSeconds, undefined, 'no drain window by default');
    assert.equal(c.chainLength, DEFAULTS.chainLength);
    const web = c.loadBalancers.find((l) => l.name === 'web')!;
    assert.equal(web.family, 4);
    assert.deepEqual(web.ports, [80, 443]);
    assert.deepEqual(
      web.backends.map((b) => [b.address, b.port, b.weight, b.state]),
      [
        ['10.0.1.11', 8080, 1, 'active'],
        ['10.0.1.12', 8080, 3, 'active'],
        ['10.0.2.11', undefined, 1, 'draining'],
      ],
    );
    const dns = c.loadBalancers.find((l) => l.name === 'dns')!;
    assert.equal(dns.family, 6);
    assert.equal(dns.protocol, 'udp');
    assert.deepEqual(dns.ports, [53]);
    assert.equal(dns.backends[0].address, 'fd00::1:11');
  });

  test('minimal file: everything defaulted, no load balancers', () => {
    const c = parseConfig({});
    assert.deepEqual(c, {
      hashMode: 'dp_hash',
      slotBits: 8,
      chainLength: 4,
      nodes: [],
      loadBalancers: [],
    });
  });

  test('IPv6 spellings are canonicalised (RFC 5952)', () => {
    const c = parseConfig(
      mutate((x) => {
        x.loadBalancers[1].vip = '2001:DB8:0:0:0:0:0:53';
        x.loadBalancers[1].backends[0].address = 'FD00:0000::0001:0011';
      }),
    );
    const dns = c.loadBalancers.find((l) => l.name === 'dns')!;
    assert.equal(dns.vip, '2001:db8::53');
    assert.equal(dns.backends[0].address, 'fd00::1:11');
  });

  test('an LB with no backends is allowed', () => {
    const c = parseConfig(mutate((x) => (x.loadBalancers[0].backends = [])));
    assert.equal(c.loadBalancers.find((l) => l.name === 'web')!.backends.length, 0);
  });

  test('nodes without load balancers need no gateway or host', () => {
    assert.equal(validateConfig({ nodes: [{ name: 'h', role: 'host', tunnelIp: '10.9.0.1' }] }).ok, true);
  });

  test('a backend address may serve several load balancers on the same host', () => {
    const c = parseConfig(
      mutate((x) => x.loadBalancers[1].backends.push({ address: 'fd00::1:12', host: 'host2' })),
    );
    assert.equal(c.loadBalancers.length, 2);
    const shared = mutate((x) => {
      x.loadBalancers[1] = {
        name: 'api',
        vip: '203.0.113.20',
        port: 80,
        backends: [{ address: '10.0.1.11', port: 8080, host: 'host1' }],
      };
    });
    assert.equal(validateConfig(shared).ok, true);
  });

  test('the same VIP may serve different ports or protocols', () => {
    const c = mutate((x) => {
      x.loadBalancers[1] = { name: 'web-udp', vip: '203.0.113.10', protocol: 'udp', port: 80, backends: [] };
      x.loadBalancers.push({ name: 'web-8080', vip: '203.0.113.10', port: 8080, backends: [] });
    });
    assert.equal(validateConfig(c).ok, true);
  });

  for (const name of ['lb.yaml', 'lb-change.yaml', 'lb-v6.yaml']) {
    test(`examples/${name} parses`, () => {
      const c = parseConfigText(readExample(name), name);
      assert.ok(c.nodes.some((n) => n.role === 'gateway'));
      assert.ok(c.loadBalancers.length > 0);
    });
  }

  test('examples/lb.yaml has the shape the lab expects', () => {
    const c = parseConfigText(readExample('lb.yaml'), 'lb.yaml');
    assert.deepEqual(
      c.nodes.filter((n) => n.role === 'gateway').map((n) => n.name),
      ['gw1', 'gw2'],
    );
    assert.deepEqual(
      c.nodes.filter((n) => n.role === 'host').map((n) => n.name),
      ['host1', 'host2', 'host3'],
    );
    const web = c.loadBalancers.find((l) => l.name === 'web')!;
    const other = c.loadBalancers.find((l) => l.name !== 'web')!;
    assert.equal(web.family, 4);
    assert.equal(web.protocol, 'tcp');
    assert.deepEqual(web.ports, [80]);
    assert.equal(web.backends.length, 4);
    assert.equal(other.backends.length, 2);
    const webAddrs = new Set(web.backends.map((b) => b.address));
    assert.equal(other.backends.filter((b) => webAddrs.has(b.address)).length, 1);
    // At most 2 backend addresses per host (the lab default).
    const perHost = new Map<string, Set<string>>();
    for (const lb of c.loadBalancers) {
      for (const b of lb.backends) perHost.set(b.host, (perHost.get(b.host) ?? new Set()).add(b.address));
    }
    for (const [host, addrs] of perHost) assert.ok(addrs.size <= 2, `${host} has ${addrs.size} backends`);
  });

  test('examples/lb-change.yaml is lb.yaml with one backend added and one draining', () => {
    const a = parseConfigText(readExample('lb.yaml'), 'lb.yaml');
    const b = parseConfigText(readExample('lb-change.yaml'), 'lb-change.yaml');
    const keys = (c: Config) =>
      c.loadBalancers.flatMap((l) => l.backends.map((x) => `${l.name} ${x.address}:${x.port} ${x.state}`));
    const ka = new Set(keys(a));
    const kb = new Set(keys(b));
    const added = [...kb].filter((k) => !ka.has(k));
    const removed = [...ka].filter((k) => !kb.has(k));
    assert.equal(removed.length, 1);
    assert.equal(added.length, 2);
    assert.equal(added.filter((k) => k.endsWith(' draining')).length, 1);
    assert.deepEqual(a.nodes, b.nodes);
  });

  test('examples/lb-v6.yaml has an IPv6 VIP', () => {
    const c = parseConfigText(readExample('lb-v6.yaml'), 'lb-v6.yaml');
    assert.ok(c.loadBalancers.some((l) => l.family === 6));
  });
});

describe('parseConfig: the result is canonical and frozen', () => {
  test('deeply frozen', () => {
    const c = parseConfig(base());
    const seen: unknown[] = [];
    const walk = (v: unknown) => {
      if (typeof v !== 'object' || v === null) return;
      assert.ok(Object.isFrozen(v), 'every object and array is frozen');
      seen.push(v);
      for (const x of Object.values(v)) walk(x);
    };
    walk(c);
    assert.ok(seen.length > 10);
    assert.throws(() => {
      (c as Raw).slotBits = 9;
    }, TypeError);
    assert.throws(() => {
      (c.loadBalancers[0].backends as Raw).push({});
    }, TypeError);
    assert.throws(() => {
      (c.loadBalancers[0].backends[0] as Raw).weight = 5;
    }, TypeError);
  });

  test('the input is not modified, valid or not', () => {
    for (const input of [base(), mutate((x) => (x.slotBits = 99))]) {
      const before = structuredClone(input);
      validateConfig(input);
      assert.deepEqual(input, before);
    }
  });

  test('input order does not matter (nodes, load balancers, backends, ports)', () => {
    const reference = parseConfig(base());
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        const c = base();
        let s = seed;
        const rnd = () => {
          s = (s * 1103515245 + 12345) % 2 ** 31;
          return s / 2 ** 31;
        };
        const shuffle = <T>(xs: T[]) => {
          for (let i = xs.length - 1; i > 0; i--) {
            const j = Math.floor(rnd() * (i + 1));
            [xs[i], xs[j]] = [xs[j], xs[i]];
          }
        };
        shuffle(c.nodes);
        shuffle(c.loadBalancers);
        for (const lb of c.loadBalancers) {
          shuffle(lb.backends);
          if (lb.ports) shuffle(lb.ports);
        }
        assert.deepEqual(parseConfig(c), reference);
      }),
      { numRuns: 200 },
    );
  });

  test('the same problems are found whatever the input order (as a set of codes)', () => {
    const bad = mutate((x) => {
      x.nodes.push({ name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.99' });
      x.loadBalancers[0].backends.push({ address: '10.0.1.11', port: 8080, host: 'host1' });
      x.loadBalancers[0].backends.push({ address: '10.0.9.9', port: 8080, host: 'nope' });
    });
    const codes = (i: Raw) =>
      issuesOf(i)
        .map((x) => x.code)
        .sort();
    const expected = codes(bad);
    const rev = structuredClone(bad);
    rev.nodes.reverse();
    rev.loadBalancers.reverse();
    for (const lb of rev.loadBalancers) lb.backends.reverse();
    assert.deepEqual(codes(rev), expected);
    assert.deepEqual(expected, [
      'SLUICE_E_CONFIG_DUPLICATE_BACKEND',
      'SLUICE_E_CONFIG_DUPLICATE_NODE',
      'SLUICE_E_CONFIG_UNKNOWN_HOST',
    ]);
  });
});

/** One case per problem kind: a mutation of the valid base config, the code and the path expected. */
const CASES: { name: string; code: string; path: string; input: () => Raw; message?: RegExp }[] = [
  {
    name: 'unknown top-level key',
    code: 'SLUICE_E_CONFIG_UNKNOWN_KEY',
    path: 'slotbits',
    input: () => mutate((x) => (x.slotbits = 8)),
    message: /did you mean "slotBits"/,
  },
  {
    name: 'typo `backend:`',
    code: 'SLUICE_E_CONFIG_UNKNOWN_KEY',
    path: 'loadBalancers[0].backend',
    input: () =>
      mutate((x) => {
        x.loadBalancers[0].backend = x.loadBalancers[0].backends;
        delete x.loadBalancers[0].backends;
      }),
    message: /did you mean "backends"/,
  },
  {
    name: 'unknown backend key',
    code: 'SLUICE_E_CONFIG_UNKNOWN_KEY',
    path: 'loadBalancers[0].backends[1].wieght',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].wieght = 2)),
  },
  {
    name: 'missing node tunnelIp',
    code: 'SLUICE_E_CONFIG_MISSING',
    path: 'nodes[1].tunnelIp',
    input: () => mutate((x) => delete x.nodes[1].tunnelIp),
  },
  {
    name: 'missing backends list',
    code: 'SLUICE_E_CONFIG_MISSING',
    path: 'loadBalancers[1].backends',
    input: () => mutate((x) => delete x.loadBalancers[1].backends),
  },
  {
    name: 'missing port and ports',
    code: 'SLUICE_E_CONFIG_MISSING',
    path: 'loadBalancers[1].ports',
    input: () => mutate((x) => delete x.loadBalancers[1].port),
  },
  {
    name: 'wrong type: slotBits as a string',
    code: 'SLUICE_E_CONFIG_TYPE',
    path: 'slotBits',
    input: () => mutate((x) => (x.slotBits = '8')),
    message: /expected a number, got a string \("8"\)/,
  },
  {
    name: 'wrong type: nodes as a mapping',
    code: 'SLUICE_E_CONFIG_TYPE',
    path: 'nodes',
    input: () => mutate((x) => (x.nodes = { gw1: {} })),
  },
  {
    name: 'wrong type: a backend that is a string',
    code: 'SLUICE_E_CONFIG_TYPE',
    path: 'loadBalancers[0].backends[0]',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0] = '10.0.1.11:8080')),
  },
  {
    name: 'wrong type: the whole file is a list',
    code: 'SLUICE_E_CONFIG_TYPE',
    path: '(root)',
    input: () => [base()],
  },
  {
    name: 'unknown hashMode',
    code: 'SLUICE_E_CONFIG_ENUM',
    path: 'hashMode',
    input: () => mutate((x) => (x.hashMode = 'dphash')),
    message: /dp_hash, fields/,
  },
  {
    name: 'unknown node role',
    code: 'SLUICE_E_CONFIG_ENUM',
    path: 'nodes[0].role',
    input: () => mutate((x) => (x.nodes[0].role = 'router')),
  },
  {
    name: 'unknown protocol',
    code: 'SLUICE_E_CONFIG_ENUM',
    path: 'loadBalancers[0].protocol',
    input: () => mutate((x) => (x.loadBalancers[0].protocol = 'sctp')),
  },
  {
    name: 'unknown backend state',
    code: 'SLUICE_E_CONFIG_ENUM',
    path: 'loadBalancers[0].backends[0].state',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].state = 'filling')),
  },
  {
    name: 'bad node name',
    code: 'SLUICE_E_CONFIG_NAME',
    path: 'nodes[0].name',
    input: () => mutate((x) => (x.nodes[0].name = 'gw 1')),
  },
  {
    name: 'empty LB name',
    code: 'SLUICE_E_CONFIG_NAME',
    path: 'loadBalancers[0].name',
    input: () => mutate((x) => (x.loadBalancers[0].name = '')),
  },
  {
    name: 'invalid VIP',
    code: 'SLUICE_E_CONFIG_INVALID_IP',
    path: 'loadBalancers[0].vip',
    input: () => mutate((x) => (x.loadBalancers[0].vip = '203.0.113.256')),
  },
  {
    name: 'invalid backend address (leading zero)',
    code: 'SLUICE_E_CONFIG_INVALID_IP',
    path: 'loadBalancers[0].backends[0].address',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].address = '10.0.01.11')),
  },
  {
    name: 'invalid IPv6 VIP (two ::)',
    code: 'SLUICE_E_CONFIG_INVALID_IP',
    path: 'loadBalancers[1].vip',
    input: () => mutate((x) => (x.loadBalancers[1].vip = '2001:db8::1::53')),
  },
  {
    name: 'invalid tunnelIp',
    code: 'SLUICE_E_CONFIG_INVALID_IP',
    path: 'nodes[2].tunnelIp',
    input: () => mutate((x) => (x.nodes[2].tunnelIp = 'host2.example')),
  },
  {
    name: 'multicast VIP',
    code: 'SLUICE_E_CONFIG_ADDRESS_UNUSABLE',
    path: 'loadBalancers[0].vip',
    input: () => mutate((x) => (x.loadBalancers[0].vip = '239.1.1.1')),
  },
  {
    name: 'unspecified backend address',
    code: 'SLUICE_E_CONFIG_ADDRESS_UNUSABLE',
    path: 'loadBalancers[1].backends[0].address',
    input: () => mutate((x) => (x.loadBalancers[1].backends[0].address = '::')),
  },
  {
    name: 'IPv6 tunnelIp',
    code: 'SLUICE_E_CONFIG_TUNNEL_NOT_IPV4',
    path: 'nodes[0].tunnelIp',
    input: () => mutate((x) => (x.nodes[0].tunnelIp = 'fd00::1')),
  },
  {
    name: 'IPv6 backend behind an IPv4 VIP',
    code: 'SLUICE_E_CONFIG_FAMILY_MISMATCH',
    path: 'loadBalancers[0].backends[2].address',
    input: () => mutate((x) => (x.loadBalancers[0].backends[2].address = 'fd00::2:11')),
  },
  {
    name: 'IPv4 backend behind an IPv6 VIP',
    code: 'SLUICE_E_CONFIG_FAMILY_MISMATCH',
    path: 'loadBalancers[1].backends[0].address',
    input: () => mutate((x) => (x.loadBalancers[1].backends[0].address = '10.0.2.50')),
  },
  {
    name: 'backend port out of range',
    code: 'SLUICE_E_CONFIG_PORT_RANGE',
    path: 'loadBalancers[0].backends[0].port',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].port = 65536)),
  },
  {
    name: 'LB port 0',
    code: 'SLUICE_E_CONFIG_PORT_RANGE',
    path: 'loadBalancers[0].ports[1]',
    input: () => mutate((x) => (x.loadBalancers[0].ports[1] = 0)),
  },
  {
    name: 'fractional port',
    code: 'SLUICE_E_CONFIG_PORT_RANGE',
    path: 'loadBalancers[1].port',
    input: () => mutate((x) => (x.loadBalancers[1].port = 53.5)),
  },
  {
    name: 'both port and ports',
    code: 'SLUICE_E_CONFIG_PORTS',
    path: 'loadBalancers[1].port',
    input: () => mutate((x) => (x.loadBalancers[1].ports = [53])),
  },
  {
    name: 'empty ports list',
    code: 'SLUICE_E_CONFIG_PORTS',
    path: 'loadBalancers[0].ports',
    input: () => mutate((x) => (x.loadBalancers[0].ports = [])),
  },
  {
    name: 'a port listed twice',
    code: 'SLUICE_E_CONFIG_DUPLICATE_PORT',
    path: 'loadBalancers[0].ports[2]',
    input: () => mutate((x) => x.loadBalancers[0].ports.push(80)),
  },
  {
    name: 'weight 0',
    code: 'SLUICE_E_CONFIG_WEIGHT',
    path: 'loadBalancers[0].backends[1].weight',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].weight = 0)),
  },
  {
    name: 'negative weight',
    code: 'SLUICE_E_CONFIG_WEIGHT',
    path: 'loadBalancers[0].backends[1].weight',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].weight = -1)),
  },
  {
    name: 'infinite weight',
    code: 'SLUICE_E_CONFIG_WEIGHT',
    path: 'loadBalancers[0].backends[1].weight',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].weight = Number.POSITIVE_INFINITY)),
  },
  {
    name: 'NaN weight',
    code: 'SLUICE_E_CONFIG_WEIGHT',
    path: 'loadBalancers[0].backends[1].weight',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].weight = Number.NaN)),
  },
  {
    name: 'fractional weight',
    code: 'SLUICE_E_CONFIG_WEIGHT',
    path: 'loadBalancers[0].backends[1].weight',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].weight = 1.5)),
  },
  {
    name: 'weight above 1000',
    code: 'SLUICE_E_CONFIG_WEIGHT',
    path: 'loadBalancers[0].backends[1].weight',
    input: () => mutate((x) => (x.loadBalancers[0].backends[1].weight = 1001)),
  },
  {
    name: 'slotBits 3',
    code: 'SLUICE_E_CONFIG_SLOT_BITS',
    path: 'slotBits',
    input: () => mutate((x) => (x.slotBits = 3)),
  },
  {
    name: 'slotBits 17',
    code: 'SLUICE_E_CONFIG_SLOT_BITS',
    path: 'slotBits',
    input: () => mutate((x) => (x.slotBits = 17)),
  },
  {
    name: 'chainLength 0',
    code: 'SLUICE_E_CONFIG_CHAIN_LENGTH',
    path: 'chainLength',
    input: () => mutate((x) => (x.chainLength = 0)),
  },
  {
    name: 'chainLength 8 (lanes are 8: primary + 7)',
    code: 'SLUICE_E_CONFIG_CHAIN_LENGTH',
    path: 'chainLength',
    input: () => mutate((x) => (x.chainLength = 8)),
  },
  {
    name: 'healthCheck interval below 100 ms',
    code: 'SLUICE_E_CONFIG_HEALTH_CHECK',
    path: 'loadBalancers[0].healthCheck.intervalMs',
    input: () =>
      mutate((x) => Object.assign(x.loadBalancers[0], { healthCheck: { type: 'tcp', intervalMs: 5 } })),
  },
  {
    name: 'healthCheck field of another type (path on a UDP check)',
    code: 'SLUICE_E_CONFIG_HEALTH_CHECK',
    path: 'loadBalancers[0].healthCheck',
    input: () =>
      mutate((x) => Object.assign(x.loadBalancers[0], { healthCheck: { type: 'udp', path: '/' } })),
    message: /healthCheck\.path does not apply to a udp check/,
  },
  {
    name: 'healthCheck timeout longer than its interval',
    code: 'SLUICE_E_CONFIG_HEALTH_CHECK',
    path: 'loadBalancers[0].healthCheck',
    input: () =>
      mutate((x) =>
        Object.assign(x.loadBalancers[0], { healthCheck: { type: 'http', intervalMs: 500, timeoutMs: 900 } }),
      ),
  },
  {
    name: 'healthCheck HTTP path without a leading slash',
    code: 'SLUICE_E_CONFIG_HEALTH_CHECK',
    path: 'loadBalancers[0].healthCheck.path',
    input: () =>
      mutate((x) => Object.assign(x.loadBalancers[0], { healthCheck: { type: 'https', path: 'health' } })),
  },
  {
    name: 'healthCheck type unknown',
    code: 'SLUICE_E_CONFIG_ENUM',
    path: 'loadBalancers[0].healthCheck.type',
    input: () => mutate((x) => Object.assign(x.loadBalancers[0], { healthCheck: { type: 'icmp' } })),
  },
  {
    name: 'drainWindowSeconds 0',
    code: 'SLUICE_E_CONFIG_DRAIN_WINDOW',
    path: 'drainWindowSeconds',
    input: () => mutate((x) => (x.drainWindowSeconds = 0)),
  },
  {
    name: 'duplicate node name',
    code: 'SLUICE_E_CONFIG_DUPLICATE_NODE',
    path: 'nodes[2].name',
    input: () => mutate((x) => (x.nodes[2].name = 'host1')),
    message: /duplicate node name "host1" \(also nodes\[1\]\)/,
  },
  {
    name: 'duplicate tunnelIp (different spelling is impossible for IPv4; same text)',
    code: 'SLUICE_E_CONFIG_DUPLICATE_TUNNEL_IP',
    path: 'nodes[2].tunnelIp',
    input: () => mutate((x) => (x.nodes[2].tunnelIp = '192.168.100.1')),
  },
  {
    name: 'backend host that is not a node',
    code: 'SLUICE_E_CONFIG_UNKNOWN_HOST',
    path: 'loadBalancers[0].backends[2].host',
    input: () => mutate((x) => (x.loadBalancers[0].backends[2].host = 'host9')),
    message: /^unknown node "host9" \(hosts: host1, host2\)$/,
  },
  {
    name: 'backend on a gateway',
    code: 'SLUICE_E_CONFIG_BACKEND_ON_GATEWAY',
    path: 'loadBalancers[0].backends[0].host',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].host = 'gw1')),
  },
  {
    name: 'one backend address on two hosts',
    code: 'SLUICE_E_CONFIG_BACKEND_HOST_CONFLICT',
    path: 'loadBalancers[0].backends[1].host',
    input: () =>
      mutate((x) => {
        x.loadBalancers[0].backends[1].address = '10.0.1.11';
        x.loadBalancers[0].backends[1].port = 9090;
        x.loadBalancers[0].backends[1].host = 'host2';
      }),
  },
  {
    name: 'backend mac that is not a MAC',
    code: 'SLUICE_E_CONFIG_MAC',
    path: 'loadBalancers[0].backends[0].mac',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].mac = '02:00:0a:00:01')),
    message: /"02:00:0a:00:01" is not a MAC address \(six hex bytes, colon separated\)/,
  },
  {
    name: 'backend mac that is multicast',
    code: 'SLUICE_E_CONFIG_MAC',
    path: 'loadBalancers[0].backends[0].mac',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].mac = '01:00:5e:00:00:01')),
    message: /01:00:5e:00:00:01 is a multicast MAC/,
  },
  {
    name: 'one backend address with two MACs (across load balancers, either spelling)',
    code: 'SLUICE_E_CONFIG_MAC_CONFLICT',
    path: 'loadBalancers[2].backends[0].mac',
    input: () => mutate((x) => macTwice(x, '02:00:0A:00:01:0B', '02:00:0a:00:01:0c')),
    message:
      /^backend 10\.0\.1\.11 has MAC 02:00:0a:00:01:0c here but 02:00:0a:00:01:0b at loadBalancers\[0\]\.backends\[0\]$/,
  },
  {
    name: 'duplicate LB name',
    code: 'SLUICE_E_CONFIG_DUPLICATE_LB',
    path: 'loadBalancers[1].name',
    input: () => mutate((x) => (x.loadBalancers[1].name = 'web')),
  },
  {
    name: 'duplicate VIP:port:protocol across LBs',
    code: 'SLUICE_E_CONFIG_DUPLICATE_LISTENER',
    path: 'loadBalancers[2].ports[0]',
    input: () =>
      mutate((x) =>
        x.loadBalancers.push({ name: 'web2', vip: '203.0.113.10', ports: [443, 8443], backends: [] }),
      ),
    message: /tcp 203\.0\.113\.10:443 is already served by load balancer "web" \(loadBalancers\[0\]\)/,
  },
  {
    name: 'duplicate IPv6 listener spelled differently',
    code: 'SLUICE_E_CONFIG_DUPLICATE_LISTENER',
    path: 'loadBalancers[2].port',
    input: () =>
      mutate((x) =>
        x.loadBalancers.push({
          name: 'dns2',
          vip: '2001:0DB8:0:0::53',
          protocol: 'udp',
          port: 53,
          backends: [],
        }),
      ),
  },
  {
    name: 'duplicate backend inside one LB',
    code: 'SLUICE_E_CONFIG_DUPLICATE_BACKEND',
    path: 'loadBalancers[0].backends[3]',
    input: () =>
      mutate((x) => x.loadBalancers[0].backends.push({ address: '10.0.1.12', port: 8080, host: 'host1' })),
  },
  {
    name: 'duplicate backend: dialled port equals an explicit port',
    code: 'SLUICE_E_CONFIG_DUPLICATE_BACKEND',
    path: 'loadBalancers[0].backends[3]',
    input: () =>
      mutate((x) => x.loadBalancers[0].backends.push({ address: '10.0.2.11', port: 443, host: 'host2' })),
  },
  {
    name: 'VIP equal to a tunnelIp',
    code: 'SLUICE_E_CONFIG_ADDRESS_CONFLICT',
    path: 'loadBalancers[0].vip',
    input: () => mutate((x) => (x.loadBalancers[0].vip = '192.168.100.11')),
  },
  {
    name: 'backend address equal to a tunnelIp',
    code: 'SLUICE_E_CONFIG_ADDRESS_CONFLICT',
    path: 'loadBalancers[0].backends[0].address',
    input: () => mutate((x) => (x.loadBalancers[0].backends[0].address = '192.168.100.12')),
  },
  {
    name: 'no gateway',
    code: 'SLUICE_E_CONFIG_NO_GATEWAY',
    path: 'nodes',
    input: () => mutate((x) => x.nodes.shift()),
  },
  {
    name: 'no host',
    code: 'SLUICE_E_CONFIG_NO_HOST',
    path: 'nodes',
    input: () =>
      mutate((x) => {
        x.nodes = [x.nodes[0]];
        for (const lb of x.loadBalancers) lb.backends = [];
      }),
  },
];

describe('validateConfig: each problem kind, its code and path', () => {
  for (const c of CASES) {
    test(c.name, () => {
      const issues = issuesOf(c.input());
      const hit = issues.find((i) => i.code === c.code && i.path === c.path);
      assert.ok(hit, `expected ${c.code} at ${c.path}, got:\n${formatIssues(issues)}`);
      if (c.message) assert.match(hit.message, c.message);
      assert.ok(hit.message.length > 0);
    });
  }

  test('more than 65535 backends in one LB', () => {
    const many = Array.from({ length: 65536 }, (_, i) => ({
      address: `10.${(i >> 16) + 1}.${(i >> 8) & 255}.${i & 255}`,
      port: 8080,
      host: 'host1',
    }));
    // Address 10.1.0.0 etc. are fine; the count is the problem.
    const issues = issuesOf(mutate((x) => (x.loadBalancers[0].backends = many)));
    assert.deepEqual(
      issues.map((i) => [i.code, i.path]),
      [['SLUICE_E_CONFIG_TOO_MANY_BACKENDS', 'loadBalancers[0].backends']],
    );
  });

  test('over the total-slots budget (load balancers x 2^slotBits)', () => {
    // 65 load balancers at slotBits 16: 4,259,840 slots, one LB over the 4,194,304 budget; 64 fit.
    const lbs = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        name: `lb${i}`,
        vip: '203.0.113.10',
        ports: [1000 + i],
        backends: [{ address: '10.0.1.11', host: 'host1' }],
      }));
    const issues = issuesOf(mutate((x) => Object.assign(x, { slotBits: 16, loadBalancers: lbs(65) })));
    assert.deepEqual(
      issues.map((i) => [i.code, i.path]),
      [['SLUICE_E_CONFIG_TOO_LARGE', 'loadBalancers']],
    );
    assert.match(issues[0]!.message, /65 load balancers x 2\^16 slots = 4259840 slots; at most 4194304/);
    assert.equal(
      validateConfig(mutate((x) => Object.assign(x, { slotBits: 16, loadBalancers: lbs(64) }))).ok,
      true,
    );
  });

  test('every config issue code has a case here', () => {
    const covered = new Set([
      ...CASES.map((c) => c.code),
      'SLUICE_E_CONFIG_TOO_MANY_BACKENDS',
      'SLUICE_E_CONFIG_TOO_LARGE',
    ]);
    const configCodes = Object.keys(ERROR_CODES).filter(
      (k) =>
        k.startsWith('SLUICE_E_CONFIG_') && k !== 'SLUICE_E_CONFIG_PARSE' && k !== 'SLUICE_E_CONFIG_INVALID',
    );
    assert.deepEqual(
      configCodes.filter((k) => !covered.has(k)),
      [],
    );
  });

  test('every issue code produced is a documented ERROR_CODES key', () => {
    for (const c of CASES) for (const i of issuesOf(c.input())) assert.ok(i.code in ERROR_CODES, i.code);
  });
});

describe('validateConfig: every problem is reported at once', () => {
  test('shape and semantic problems in different items, all found', () => {
    const input = mutate((x) => {
      x.slotBits = 40;
      x.nodes.push({ name: 'host1', role: 'host', tunnelIp: '192.168.100.13' }); // duplicate
      x.loadBalancers[0].backends[0].port = 0; // shape problem in a backend ...
      x.loadBalancers[0].backends[0].host = 'host9'; // ... whose host is still checked
      x.loadBalancers[0].protocol = 'sctp'; // shape problem in the LB ...
      x.loadBalancers[0].backends[1].address = 'fd00::9'; // ... whose VIP family is still checked
      x.loadBalancers[1].name = 'web'; // duplicate LB name
      x.loadBalancers[1].backends[0].weight = 0;
      x.extra = true;
    });
    const got = issuesOf(input).map((i) => `${i.code} ${i.path}`);
    assert.deepEqual(got, [
      'SLUICE_E_CONFIG_SLOT_BITS slotBits',
      'SLUICE_E_CONFIG_DUPLICATE_NODE nodes[3].name',
      'SLUICE_E_CONFIG_UNKNOWN_HOST loadBalancers[0].backends[0].host',
      'SLUICE_E_CONFIG_PORT_RANGE loadBalancers[0].backends[0].port',
      'SLUICE_E_CONFIG_FAMILY_MISMATCH loadBalancers[0].backends[1].address',
      'SLUICE_E_CONFIG_ENUM loadBalancers[0].protocol',
      'SLUICE_E_CONFIG_WEIGHT loadBalancers[1].backends[0].weight',
      'SLUICE_E_CONFIG_DUPLICATE_LB loadBalancers[1].name',
      'SLUICE_E_CONFIG_UNKNOWN_KEY extra',
    ]);
  });

  test('a node with a bad tunnelIp still counts as a known host', () => {
    const issues = issuesOf(mutate((x) => (x.nodes[1].tunnelIp = 'nope')));
    assert.deepEqual(
      issues.map((i) => [i.code, i.path]),
      [['SLUICE_E_CONFIG_INVALID_IP', 'nodes[1].tunnelIp']],
    );
  });

  test('parseConfig throws SluiceError(SLUICE_E_CONFIG_INVALID) with every issue, listed in the message', () => {
    const input = mutate((x) => {
      x.slotBits = 2;
      x.loadBalancers[0].backends[2].host = 'host9';
    });
    assert.throws(
      () => parseConfig(input, 'lb.yaml'),
      (e: unknown) => {
        assert.ok(e instanceof SluiceError);
        assert.equal(e.code, 'SLUICE_E_CONFIG_INVALID');
        assert.equal(e.issues.length, 2);
        assert.match(e.message, /^invalid config lb\.yaml: 2 problems\n/);
        assert.match(e.message, /slotBits: .*\[SLUICE_E_CONFIG_SLOT_BITS\]/);
        assert.match(
          e.message,
          /loadBalancers\[0\]\.backends\[2\]\.host: unknown node "host9" \(hosts: host1, host2\)/,
        );
        return true;
      },
    );
  });

  test('examples/bad.yaml reports every planted mistake', () => {
    try {
      parseConfigText(readExample('bad.yaml'), 'bad.yaml');
      assert.fail('bad.yaml must not validate');
    } catch (e) {
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, 'SLUICE_E_CONFIG_INVALID');
      const codes = new Set(e.issues.map((i) => i.code));
      for (const code of [
        'SLUICE_E_CONFIG_SLOT_BITS',
        'SLUICE_E_CONFIG_DUPLICATE_NODE',
        'SLUICE_E_CONFIG_DUPLICATE_TUNNEL_IP',
        'SLUICE_E_CONFIG_UNKNOWN_HOST',
        'SLUICE_E_CONFIG_PORT_RANGE',
        'SLUICE_E_CONFIG_BACKEND_ON_GATEWAY',
        'SLUICE_E_CONFIG_FAMILY_MISMATCH',
        'SLUICE_E_CONFIG_INVALID_IP',
        'SLUICE_E_CONFIG_WEIGHT',
        'SLUICE_E_CONFIG_DUPLICATE_LISTENER',
        'SLUICE_E_CONFIG_UNKNOWN_KEY',
      ]) {
        assert.ok(codes.has(code), `bad.yaml should trigger ${code}`);
      }
      assert.ok(e.issues.length >= 11);
    }
  });
});

describe('validateConfig: robustness', () => {
  test('never throws; every issue has a known code, a path and a message', () => {
    // Random values planted at random places of the valid base config, plus arbitrary values as the whole file.
    const paths: (string | number)[][] = [
      ['slotBits'],
      ['hashMode'],
      ['nodes'],
      ['nodes', 0],
      ['nodes', 1, 'name'],
      ['nodes', 2, 'tunnelIp'],
      ['loadBalancers', 0],
      ['loadBalancers', 0, 'vip'],
      ['loadBalancers', 0, 'ports'],
      ['loadBalancers', 0, 'backends'],
      ['loadBalancers', 0, 'backends', 1],
      ['loadBalancers', 0, 'backends', 1, 'address'],
      ['loadBalancers', 0, 'backends', 2, 'host'],
      ['loadBalancers', 1, 'port'],
      ['loadBalancers', 1, 'backends', 0, 'weight'],
    ];
    const plant = fc
      .array(fc.tuple(fc.constantFrom(...paths), fc.anything()), { maxLength: 4 })
      .map((edits) => {
        const c = base();
        for (const [path, value] of edits) {
          let o = c;
          for (const k of path.slice(0, -1)) o = o?.[k];
          if (typeof o === 'object' && o !== null) o[path[path.length - 1]] = value;
        }
        return c;
      });
    fc.assert(
      fc.property(fc.oneof(plant, fc.anything()), (input) => {
        const r = validateConfig(input);
        if (r.ok) return;
        assert.ok(r.issues.length > 0);
        for (const i of r.issues) {
          assert.ok(i.code in ERROR_CODES, i.code);
          assert.ok(i.path.length > 0 && i.message.length > 0);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

test('a sparse array (a hole, possible from code, not from YAML/JSON) is an item like any other', () => {
  // Counterexample found by the property above (seed -2122591684): map/forEach skip holes.
  const c = base();
  const backends: unknown[] = [];
  backends[1] = [{ '~8ta+p': -5628654490863923 }];
  c.loadBalancers[0].backends = backends;
  const r = validateConfig(c);
  assert.equal(r.ok, false);
  if (!r.ok) {
    const paths = r.issues.map((i) => i.path);
    assert.ok(
      paths.some((p) => p.startsWith('loadBalancers[0].backends[0]')),
      paths.join(', '),
    );
    assert.ok(
      paths.some((p) => p.startsWith('loadBalancers[0].backends[1]')),
      paths.join(', '),
    );
  }
});

describe('parseConfigText: YAML and JSON', () => {
  test('YAML and JSON give the same config', () => {
    const yaml = readExample('lb.yaml');
    const fromYaml = parseConfigText(yaml, 'lb.yaml');
    const json = JSON.stringify(decodeConfigText(yaml, 'lb.yaml'), null, 2);
    assert.deepEqual(parseConfigText(json, 'lb.json'), fromYaml);
  });

  test('a YAML syntax error names the file, line and column', () => {
    const text = 'slotBits: 8\nnodes:\n  - name: gw1\n   role: gateway\n';
    assert.throws(
      () => parseConfigText(text, 'cfg.yaml'),
      (e: unknown) => {
        assert.ok(e instanceof SluiceError);
        assert.equal(e.code, 'SLUICE_E_CONFIG_PARSE');
        assert.match(e.message, /^cfg\.yaml:4:1: invalid YAML: /);
        assert.equal(e.issues[0].path, 'cfg.yaml:4:1');
        return true;
      },
    );
  });

  test('a duplicate YAML key is a parse error at its line', () => {
    const text = 'slotBits: 8\nhashMode: fields\nslotBits: 9\n';
    assert.throws(
      () => parseConfigText(text, 'dup.yml'),
      /^SluiceError: dup\.yml:3:1: invalid YAML: Map keys must be unique/,
    );
  });

  test('an unknown YAML tag is rejected', () => {
    assert.throws(() => parseConfigText('slotBits: !int 8\n', 'tag.yaml'), /tag\.yaml:1:11: invalid YAML/);
  });

  test('an unresolved YAML alias is a parse error', () => {
    assert.throws(
      () => parseConfigText('slotBits: *k\n', 'alias.yaml'),
      (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_CONFIG_PARSE',
    );
  });

  test('a JSON syntax error names the file, line and column', () => {
    for (const [text, pos] of [
      ['{\n  "slotBits": 8,\n  "nodes": ]\n}', '3:12'],
      ['{\n  "slotBits": 8\n  "nodes": []\n}', '3:3'],
      ['{"slotBits": 8,}', '1:16'],
      ['', '1:1'],
    ]) {
      assert.throws(
        () => parseConfigText(text, 'cfg.json'),
        (e: unknown) => {
          assert.ok(e instanceof SluiceError);
          assert.equal(e.code, 'SLUICE_E_CONFIG_PARSE');
          assert.ok(e.message.startsWith(`cfg.json:${pos}: invalid JSON: `), `${pos}: ${e.message}`);
          return true;
        },
      );
    }
  });

  test('a well-formed file with schema problems is SLUICE_E_CONFIG_INVALID, not a parse error', () => {
    assert.throws(
      () => parseConfigText('slotBits: 99\n', 'k.yaml'),
      (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_CONFIG_INVALID',
    );
  });

  test('YAML 1.2: `yes` is a string, not a boolean; numbers stay numbers', () => {
    const issues = issuesOf(decodeConfigText('slotBits: yes\n', 'a.yaml'));
    assert.equal(issues[0].code, 'SLUICE_E_CONFIG_TYPE');
    assert.equal(parseConfigText('slotBits: 12\n', 'a.yaml').slotBits, 12);
  });
});

describe('ip', () => {
  test('known answers', () => {
    assert.equal(normalizeIp('2001:DB8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(normalizeIp('2001:db8:0:0:0:0:2:1'), '2001:db8::2:1');
    assert.equal(normalizeIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // one zero group: not shortened
    assert.equal(normalizeIp('0:0:0:0:0:0:0:0'), '::');
    assert.equal(normalizeIp('::ffff:C000:0201'), '::ffff:192.0.2.1');
    assert.equal(normalizeIp('fe80::1:2.3.4.5'), 'fe80::1:203:405');
    assert.equal(expandIPv6('2001:db8::1'), '2001:0db8:0000:0000:0000:0000:0000:0001');
    assert.equal(ipToHex('203.0.113.10'), '0xcb00710a');
    assert.equal(ipToHex('2001:db8::1'), '0x20010db8000000000000000000000001');
    assert.equal(ipv4ToUint32('255.255.255.254'), 0xfffffffe);
    assert.equal(ipFamily('10.0.0.1'), 4);
    assert.equal(ipFamily('::1'), 6);
    assert.ok(ipEquals('2001:db8::1', '2001:0DB8:0:0:0:0:0:1'));
    assert.ok(compareIp('10.0.0.2', '10.0.0.10') < 0);
    assert.ok(compareIp('255.255.255.255', '::') < 0);
  });

  test('rejects malformed addresses', () => {
    for (const bad of [
      '',
      '1.2.3',
      '1.2.3.4.5',
      '01.2.3.4',
      '1.2.3.256',
      '1.2.3.-1',
      '0x1.2.3.4',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8:9',
      '1::2::3',
      ':1::2',
      '1::2:',
      '12345::',
      'g::1',
      'fe80::1%eth0',
      '[::1]',
      '::1/128',
      '1:2:3:4:5:6:7:8::',
      '1.2.3.4::',
      '::1.2.3',
      '1:2:3:4:5:6:7:1.2.3.4',
    ]) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  test('agrees with node:net isIP on generated and mutated addresses (no zone ids)', () => {
    const addr = fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended());
    const mutated = fc
      .tuple(addr, fc.nat(60), fc.constantFrom('', ':', '.', '0', 'f', '::', '1', 'g'))
      .map(([a, i, s]) => a.slice(0, i % (a.length + 1)) + s + a.slice(i % (a.length + 1)));
    fc.assert(
      fc.property(fc.oneof(addr, mutated), (text) => {
        assert.equal(ipFamily(text) ?? 0, isIP(text), text);
      }),
      { numRuns: 5000 },
    );
  });

  test('canonical text: idempotent, round-trips, and matches WHATWG URL serialisation', () => {
    fc.assert(
      fc.property(fc.ipV6(), (text) => {
        const n = normalizeIp(text);
        assert.equal(normalizeIp(n), n);
        assert.ok(ipEquals(n, text));
        assert.equal(normalizeIp(expandIPv6(text)), n);
        const p = parseIp(text)!;
        const mapped =
          p.bytes.subarray(0, 10).every((b) => b === 0) && p.bytes[10] === 255 && p.bytes[11] === 255;
        if (!mapped) assert.equal(n, new URL(`http://[${text}]/`).hostname.slice(1, -1), text);
      }),
      { numRuns: 3000 },
    );
  });

  test('compareIp is a total order consistent with byte order', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.oneof(fc.ipV4(), fc.ipV6()), (a, b) => {
        const ab = compareIp(a, b);
        // `=== ` on purpose: strict assert.equal uses Object.is, and -Math.sign(0) is -0 (equal addresses failed it).
        assert.ok(Math.sign(ab) === -Math.sign(compareIp(b, a)), `${a} vs ${b}`);
        assert.equal(ab === 0, normalizeIp(a) === normalizeIp(b));
        if (ipFamily(a) === ipFamily(b)) {
          const ha = ipToHex(a);
          const hb = ipToHex(b);
          assert.equal(Math.sign(ab), ha < hb ? -1 : ha > hb ? 1 : 0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
