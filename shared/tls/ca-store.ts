import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];
let cached: string[] | undefined;

/**
 * The system's CA store, as Docker trusts it (Debian's /etc/ssl/certs bundle), falling back to
 * Node's built-in roots. SSL_CERT_FILE replaces the bundle, as it does for Docker (Go) and
 * OpenSSL. Read once: operators add CAs and restart, as with Docker.
 */
export function systemCAs(): string[] {
  if (cached) return cached;
  const env = process.env.SSL_CERT_FILE;
  for (const f of env ? [env] : SYSTEM_BUNDLES) {
    try {
      cached = [readFileSync(f, 'utf8')];
      return cached;
    } catch (err) {
      // An operator's SSL_CERT_FILE that cannot be read must not pass unnoticed.
      if (env) process.emitWarning(`SSL_CERT_FILE ${env} cannot be read (${(err as Error).message}); using Node's built-in roots`);
    }
  }
  cached = [...rootCertificates];
  return cached;
}

/** TLS options for an upstream: the system store plus extra CAs, or no verification at all. */
export function upstreamTls(insecure: boolean, extraCAs: readonly string[]): { rejectUnauthorized: boolean; ca?: string[] } {
  if (insecure) return { rejectUnauthorized: false };
  return { rejectUnauthorized: true, ca: [...systemCAs(), ...extraCAs] };
}
