import { generateKeyPair, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import { promisify } from 'node:util';
import type { Logger } from '../../shared/log/index.js';
import { unusableSigningKey } from '../../shared/tls/signing-key.js';
import { buildCertificate, keyIdentifier, subjectNameDer } from '../../shared/tls/x509-build.js';

const generateKeyPairAsync = promisify(generateKeyPair);

const HOUR = 3_600_000;
/** Dragonfly's leaf lifetime. A leaf is reissued when less than an hour of it is left. */
const LEAF_LIFETIME_MS = 24 * HOUR;
const LRU_SIZE = 100;

interface Leaf {
  ctx: Promise<SecureContext>;
  notAfter: number;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * The certificates presented after a leaf: the CA that signed it unless it is a self-signed
 * root (clients hold the root; a gen-ca CA stays a bare leaf, as before), then every further
 * certificate in the cert file. A corporate intermediate shipped as intermediate + root thus
 * reaches clients that trust only the root.
 */
function chainOf(ca: X509Certificate, certPem: string): string {
  const pems = certPem.match(PEM_CERT) ?? [];
  const rest = pems.slice(1).map((p, i) => {
    try {
      new X509Certificate(p);
    } catch (err) {
      throw new Error(`hijack_https: certificate ${i + 2} in the cert file is not usable: ${(err as Error).message}`, { cause: err });
    }
    return `${p}\n`;
  });
  const selfSigned = ca.checkIssued(ca) && ca.verify(ca.publicKey);
  return (selfSigned ? [] : [ca.toString()]).concat(rest).join('');
}

/**
 * The certificates hijacked hosts see. A CA in `hijack_https.cert` signs one leaf per host
 * (SAN = the DNS name or IP) and presents it with the CA's chain (chainOf); any other
 * certificate is presented as is, as Dragonfly 1.0.6 does, and then clients must skip
 * verification (Docker's insecure-registries).
 *
 * Key generation stays off the request path: one EC key pair, made asynchronously at start,
 * serves every leaf; signing a leaf is a native signature of about a millisecond. Concurrent
 * handshakes for one host share one pending leaf.
 */
export class HijackCerts {
  private readonly leaves = new Map<string, Leaf>();
  private readonly leafKey: Promise<{ publicKey: KeyObject; privateKey: KeyObject }> | undefined;
  private readonly fixed: SecureContext | undefined;
  private readonly ca: { cert: X509Certificate; key: KeyObject; name: Buffer; keyId: Buffer; chain: string } | undefined;

  constructor(
    certPem: string,
    keyPem: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const cert = new X509Certificate(certPem);
    const key = createPrivateKey(keyPem);
    if (!cert.checkPrivateKey(key)) throw new Error('hijack_https: the key does not belong to the certificate');
    if (cert.ca) {
      const unusable = unusableSigningKey(key);
      if (unusable !== undefined) throw new Error(`hijack_https: the CA ${unusable}`);
      this.ca = { cert, key, name: subjectNameDer(cert.raw), keyId: keyIdentifier(cert.publicKey), chain: chainOf(cert, certPem) };
      this.leafKey = generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
      // Surface a failure at the first handshake, not as an unhandled rejection now.
      this.leafKey.catch(() => undefined);
    } else {
      log.warn({ subject: cert.subject }, 'hijack_https.cert is not a CA: presenting it for every hijacked host');
      this.fixed = createSecureContext({ cert: certPem, key: keyPem });
    }
  }

  static fromFiles(certFile: string, keyFile: string, log: Logger, now?: () => number): HijackCerts {
    return new HijackCerts(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'), log, now);
  }

  get signsLeaves(): boolean {
    return this.ca !== undefined;
  }

  /** The TLS identity to present for `host` (a DNS name or an IP address). */
  contextFor(host: string): Promise<SecureContext> {
    if (this.fixed) return Promise.resolve(this.fixed);
    const hit = this.leaves.get(host);
    if (hit && hit.notAfter - this.now() > HOUR) {
      this.leaves.delete(host);
      this.leaves.set(host, hit);
      return hit.ctx;
    }
    const notAfter = Math.min(this.now() + LEAF_LIFETIME_MS, Date.parse(this.ca!.cert.validTo));
    const leaf: Leaf = { ctx: this.issue(host, notAfter), notAfter };
    this.leaves.delete(host);
    this.leaves.set(host, leaf);
    if (this.leaves.size > LRU_SIZE) this.leaves.delete(this.leaves.keys().next().value!);
    leaf.ctx.catch(() => {
      if (this.leaves.get(host) === leaf) this.leaves.delete(host);
    });
    return leaf.ctx;
  }

  private async issue(host: string, notAfter: number): Promise<SecureContext> {
    const ca = this.ca!;
    const { publicKey, privateKey } = await this.leafKey!;
    const pem = buildCertificate({
      commonName: host,
      issuerName: ca.name,
      issuerKeyId: ca.keyId,
      publicKey,
      signingKey: ca.key,
      // Back-dated an hour for clients whose clocks run a little behind ours.
      notBefore: new Date(this.now() - HOUR),
      notAfter: new Date(notAfter),
      ca: false,
      hosts: [host],
    });
    this.log.debug({ host }, 'issued hijack certificate');
    return createSecureContext({ cert: pem + ca.chain, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) });
  }

  /** Number of cached leaves (for tests). */
  get cached(): number {
    return this.leaves.size;
  }
}
