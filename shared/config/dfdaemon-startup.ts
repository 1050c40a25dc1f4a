/**
 * Checks a dfdaemon makes of its config as it starts, not as the config loads: loading stays
 * Dragonfly's (tools and tests load files whose certificates are placeholders), but a daemon
 * should neither start on a key pair it cannot use nor run silently as a plain proxy.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { unusableSigningKey } from '../tls/signing-key.js';
import type { DfdaemonConfig } from './dfdaemon.js';

const GUIDE_RULE = 'add a rule such as "proxies: [{regx: blobs/sha256.*}]", as the user guide\'s dfdaemon.yml has';

/**
 * hijack_https's cert and key must be a pair, or every hijacked CONNECT would fail its
 * handshake; a config error, so the daemon exits 2 naming the key.
 */
export function checkHijackKeyPair(cfg: Pick<DfdaemonConfig, 'hijackHttps'>): void {
  const h = cfg.hijackHttps;
  if (!h?.enabled || h.cert === null || h.key === null) return;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(h.cert));
  } catch (err) {
    throw new ConfigError('hijack_https.cert', `${h.cert} is not a usable certificate: ${(err as Error).message}`, h.cert, { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(h.key));
  } catch (err) {
    // The guide makes df.pass.key (encrypted) first: the daemon has no way to ask for its passphrase.
    throw new ConfigError('hijack_https.key', `${h.key} is not a usable private key (it must not be encrypted): ${(err as Error).message}`, h.key, { cause: err });
  }
  if (!cert.checkPrivateKey(key)) throw new ConfigError('hijack_https.key', `${h.key} does not belong to the certificate ${h.cert}`, h.key);
  // A CA signs a leaf per hijacked host; one it cannot sign with would fail every hijacked CONNECT.
  const unusable = cert.ca ? unusableSigningKey(key) : undefined;
  if (unusable !== undefined) {
    throw new ConfigError('hijack_https.key', `${h.key}: the CA ${h.cert} ${unusable}; make one with "dfdaemon gen-ca"`, h.key);
  }
}

/**
 * Warnings for a config under which nothing, or only mirror pulls, can go through P2P: without a
 * proxies rule every HTTP_PROXY request passes straight through, which otherwise looks exactly
 * like a working P2P setup until someone counts registry traffic.
 */
export function p2pWarnings(cfg: Pick<DfdaemonConfig, 'proxies' | 'registryMirror'>): string[] {
  if (cfg.proxies.some((r) => !r.direct)) return [];
  const why = cfg.proxies.length === 0 ? 'proxies: no rules' : 'proxies: every rule is direct';
  if (cfg.registryMirror.direct) {
    return [`${why} and registry_mirror.direct is set: nothing goes through P2P, every request passes straight through; ${GUIDE_RULE}`];
  }
  return [
    `${why}: requests sent through this proxy (HTTP_PROXY/HTTPS_PROXY) pass straight through, and only blob pulls using this dfdaemon ` +
      `as Docker's registry mirror (of ${cfg.registryMirror.remote}) go through P2P; ${GUIDE_RULE}`,
  ];
}
