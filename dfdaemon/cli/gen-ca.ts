import { generateKeyPair } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { buildCertificate } from '../../shared/tls/x509-build.js';

const USAGE = 'usage: dfdaemon gen-ca [--out DIR] [--cn NAME] [--days N]';
const DAY = 86_400_000;

export interface GenCaOptions {
  out: string;
  cn: string;
  days: number;
}

export function parseGenCaArgs(argv: readonly string[]): GenCaOptions {
  const o: GenCaOptions = { out: '.', cn: 'dragonfly-ts dfdaemon CA', days: 3650 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    if (flag === '--out') o.out = value;
    else if (flag === '--cn') o.cn = value;
    else if (flag === '--days' && /^[1-9]\d{0,4}$/.test(value)) o.days = Number(value);
    else throw new Error(`unknown or bad argument ${argv[i]}\n${USAGE}`);
  }
  return o;
}

/**
 * Write `df.crt` and `df.key`: an RSA-2048 CA for hijack_https. Docker hosts trust `df.crt`
 * (/etc/docker/certs.d/<host:port>/ca.crt) and dfdaemon signs a leaf per hijacked host with it.
 */
export async function genCa(o: GenCaOptions): Promise<{ certFile: string; keyFile: string }> {
  const { publicKey, privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const now = Date.now();
  const pem = buildCertificate({
    commonName: o.cn,
    publicKey,
    signingKey: privateKey,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + o.days * DAY),
    ca: true,
  });
  const dir = resolve(o.out);
  await mkdir(dir, { recursive: true });
  const certFile = join(dir, 'df.crt');
  const keyFile = join(dir, 'df.key');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await writeFile(certFile, pem);
  return { certFile, keyFile };
}
