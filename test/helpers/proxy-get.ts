import { createHash } from 'node:crypto';
import { request } from 'node:http';

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
