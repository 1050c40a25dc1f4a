import type { KeyObject } from 'node:crypto';

/**
 * Why `key` cannot sign certificates (x509-build signs with RSA PKCS#1 v1.5 or ECDSA only), or
 * undefined when it can. Kept apart from x509-build so that a startup check need not load
 * node-forge.
 */
export function unusableSigningKey(key: KeyObject): string | undefined {
  const t = key.asymmetricKeyType;
  return t === 'rsa' || t === 'ec' ? undefined : `cannot sign certificates with a ${t ?? 'unknown'} key (RSA or EC only)`;
}
