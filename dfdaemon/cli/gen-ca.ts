import { generateKeyPair } from 'node:crypto';
import { chmod, lstat, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError } from '../../shared/errors.js';
import { parseBool } from '../../shared/units.js';
import { buildCertificate } from '../../shared/tls/x509-build.js';

export const GEN_CA_USAGE = 'usage: dfdaemon gen-ca [--out DIR] [--cn NAME] [--days N] [--force]';
const DAY = 86_400_000;

export interface GenCaOptions {
  out: string;
  cn: string;
  days: number;
  /** Replace an existing df.crt/df.key; every host trusting the old df.crt then rejects dfdaemon. */
  force?: boolean;
}

const VALUE_FLAGS = new Set(['--out', '--cn', '--days']);

function printUsageAndExit(usage: string): never {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

const argError = (flag: string, reason: string): ConfigError => new ConfigError(flag, `${reason}\n${GEN_CA_USAGE}`, flag);

/**
 * `onHelp` runs for `--help`/`-h`; by default it prints the usage and exits 0, since the
 * caller would otherwise go on to write a CA.
 */
export function parseGenCaArgs(argv: readonly string[], onHelp: (usage: string) => never = printUsageAndExit): GenCaOptions {
  const o: GenCaOptions = { out: '.', cn: 'dragonfly-ts dfdaemon CA', days: 3650 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    if (flag === '--help' || flag === '-h') return onHelp(GEN_CA_USAGE);
    // --overwrite is Dragonfly 1.0's name for the same switch.
    if (flag === '--force' || flag === '--overwrite') {
      o.force = inline === undefined ? true : parseBool(inline, flag);
      continue;
    }
    if (!VALUE_FLAGS.has(flag)) throw argError(flag, flag.startsWith('-') ? 'unknown flag' : 'unexpected argument');
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') throw argError(flag, 'needs a value');
    if (flag === '--out') o.out = value;
    else if (flag === '--cn') o.cn = value;
    else if (/^[1-9]\d{0,4}$/.test(value)) o.days = Number(value);
    else throw argError(flag, `expected a whole number of days from 1 to 99999, got ${JSON.stringify(value)}`);
  }
  return o;
}

const exists = (file: string): Promise<boolean> => lstat(file).then(() => true, () => false);
const refuse = (file: string): Error => new Error(`${file} already exists; pass --force to replace it`);

async function writeOnce(file: string, data: string, force: boolean, mode?: number): Promise<void> {
  try {
    await writeFile(file, data, { flag: force ? 'w' : 'wx', mode });
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'EEXIST' ? refuse(file) : err;
  }
  // writeFile's mode applies only to a new file; a replaced key must not stay readable.
  if (force && mode !== undefined) await chmod(file, mode);
}

/**
 * Write `df.crt` and `df.key`: an RSA-2048 CA for hijack_https. Docker hosts trust `df.crt`
 * (/etc/docker/certs.d/<host:port>/ca.crt) and dfdaemon signs a leaf per hijacked host with it,
 * so an existing pair is kept unless `force` is set.
 */
export async function genCa(o: GenCaOptions): Promise<{ certFile: string; keyFile: string }> {
  const force = o.force === true;
  const dir = resolve(o.out);
  const certFile = join(dir, 'df.crt');
  const keyFile = join(dir, 'df.key');
  // Checked before the key is generated so a refusal leaves neither file touched.
  if (!force) for (const f of [keyFile, certFile]) if (await exists(f)) throw refuse(f);
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
  await mkdir(dir, { recursive: true });
  await writeOnce(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, force, 0o600);
  await writeOnce(certFile, pem, force);
  return { certFile, keyFile };
}
