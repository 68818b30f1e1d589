// A throwaway public key infrastructure for the lab and the tests, made with Debian's `ovs-pki` (openvswitch-common),
// as an operator would make one: a CA, then one key and certificate per identity, the certificate's CN being the
// identity (`-u`: no UUID appended). The store's TLS remotes and RBAC (src/store/db/rbac.ts) key on that CN.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SluiceError } from '../model/errors.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';

const run = promisify(execFile);

export class Pki {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The CA every certificate here is signed by (ovs-pki's "switch" CA). */
  get caCert(): string {
    return join(this.dir, 'pki', 'switchca', 'cacert.pem');
  }

  /** Key, certificate and CA of `name` (made by issue()). */
  files(name: string): TlsFiles {
    return {
      privateKey: join(this.dir, `${name}-privkey.pem`),
      certificate: join(this.dir, `${name}-cert.pem`),
      caCert: this.caCert,
    };
  }

  /** `--private-key ... --certificate ... --ca-cert ...` for a sluice daemon or CLI call as `name`. */
  args(name: string): string[] {
    const f = this.files(name);
    return ['--private-key', f.privateKey, '--certificate', f.certificate, '--ca-cert', f.caCert];
  }

  /** Creates the CA (once) and a key and certificate for each name not made yet. */
  async issue(names: readonly string[]): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    if (!existsSync(this.caCert)) await this.#pki(['init']);
    for (const name of names) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name))
        throw new SluiceError(
          'SLUICE_E_USAGE',
          `certificate name ${JSON.stringify(name)}: use [A-Za-z0-9_.-]`,
        );
      if (!existsSync(this.files(name).certificate)) await this.#pki(['-u', 'req+sign', name, 'switch']);
    }
  }

  async #pki(args: readonly string[]): Promise<void> {
    const all = [`--dir=${join(this.dir, 'pki')}`, `--log=${join(this.dir, 'ovs-pki.log')}`, ...args];
    try {
      await run('ovs-pki', all, { cwd: this.dir, timeout: 120_000 });
    } catch (e) {
      throw new SluiceError('SLUICE_E_LAB_COMMAND', `ovs-pki ${args.join(' ')}: ${(e as Error).message}`);
    }
  }
}
