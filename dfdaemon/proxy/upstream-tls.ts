import { readFileSync } from 'node:fs';
import type { DfdaemonConfig, HijackHost } from '../../shared/config/dfdaemon.js';

/** How to reach one upstream: extra CA PEMs on top of the system store, or no verification. */
export interface UpstreamTls {
  insecure: boolean;
  ca: string[];
}

export interface HostRule extends UpstreamTls {
  regx: RegExp;
}

const NONE: UpstreamTls = { insecure: false, ca: [] };

function load(paths: readonly string[]): string[] {
  return paths.map((p) => readFileSync(p, 'utf8'));
}

/**
 * `hijack_https.hosts` and `registry_mirror`, with their CA files read once at start. A host
 * rule matches `host:port` or the bare host, so `regx: harbor.test` and `regx: harbor.test:9443`
 * both do what they say.
 */
export class UpstreamRules {
  readonly hosts: readonly HostRule[];
  readonly mirror: UpstreamTls;

  constructor(cfg: DfdaemonConfig) {
    this.hosts = (cfg.hijackHttps?.hosts ?? []).map((h: HijackHost) => ({ regx: h.regx, insecure: h.insecure, ca: load(h.certs) }));
    this.mirror = { insecure: cfg.registryMirror.insecure, ca: load(cfg.registryMirror.certs) };
  }

  /** The first host rule for `host` and `port`. */
  match(host: string, port: number): HostRule | undefined {
    const hostPort = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    return this.hosts.find((h) => h.regx.test(hostPort) || h.regx.test(host));
  }

  /** TLS for an absolute URL: its host rule when one matches, else the system store alone. */
  forUrl(url: string): UpstreamTls {
    const u = new URL(url);
    const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
    return this.match(u.hostname.replace(/^\[|\]$/g, ''), port) ?? NONE;
  }
}

/** Split a CONNECT target `host:port` / `[v6]:port`. */
export function parseAuthority(target: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined;
}
