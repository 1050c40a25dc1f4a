import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface ProxiedResult {
  status: number;
  bytes: number;
  sha256: string;
  complete: boolean;
  headers: Record<string, string | string[] | undefined>;
}

/** GET an absolute URL through an HTTP proxy, as Docker does with HTTP_PROXY. */
export function getViaProxy(proxyHost: string, proxyPort: number, url: string, headers: Record<string, string> = {}): Promise<ProxiedResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: proxyHost, port: proxyPort, method: 'GET', path: url, headers: { host: new URL(url).host, ...headers } }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      const done = (complete: boolean) =>
        resolve({ status: res.statusCode ?? 0, bytes, sha256: h.digest('hex'), complete, headers: res.headers });
      res.once('end', () => done(res.complete));
      res.once('error', () => done(false));
      res.once('aborted', () => undefined);
    });
    req.once('error', reject);
    req.end();
  });
}

/**
 * CONNECT through an HTTP proxy to `target` (host:port), then TLS trusting only `ca`, as Docker
 * does with HTTPS_PROXY. Resolves once the handshake is done; the caller owns the socket.
 */
export function tlsViaProxy(proxyHost: string, proxyPort: number, target: string, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const req = request({ host: proxyHost, port: proxyPort, method: 'CONNECT', path: target });
    req.once('error', reject);
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) return reject(new Error(`CONNECT answered ${res.statusCode}`));
      const t = tlsConnect({ socket, ca, host: target.replace(/:\d+$/, '') }, () => resolve(t));
      t.once('error', reject);
    });
    req.end();
  });
}

/** dfdaemon.yml's `hijack_https` section, as YAML lines: the signing CA, then one rule per host. */
export function hijackYaml(ca: { certFile: string; keyFile: string }, hosts: Array<{ regx: string; certs?: string[] }>): string[] {
  const rules = hosts.flatMap((h) => [`    - regx: ${h.regx}`, ...(h.certs ? [`      certs: [${h.certs.join(', ')}]`] : [])]);
  return ['hijack_https:', `  cert: ${ca.certFile}`, `  key: ${ca.keyFile}`, '  hosts:', ...rules];
}
