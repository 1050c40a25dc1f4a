/**
 * Manifest GETs against a Docker Registry v2 / Harbor, with the auth dance a preheat needs:
 * Harbor's own `Authorization` first, then a configured token, then a token from the
 * challenge's realm (with configured basic credentials, Harbor's Basic header, or none).
 * The headers that worked are kept for every later request of the job, blobs included.
 */
import { Agent, errors as undiciErrors, interceptors, request, type Dispatcher } from 'undici';
import type { RegistryCredentials } from '../../shared/config/preheat.js';
import { redactUrl } from '../../shared/errors.js';
import { upstreamTls } from '../../shared/tls/ca-store.js';
import { MANIFEST_ACCEPT, PreheatFailure } from './manifest.js';

const TIMEOUT_MS = 30_000;
const MAX_MANIFEST = 4 * 1024 * 1024;
const MAX_TOKEN = 1024 * 1024;

export interface RegistryTls {
  insecure: boolean;
  rootCAs: readonly string[];
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses `Bearer realm="..",service="..",scope=".."`. One header may hold several challenges
 * (RFC 7235): a Bearer one is preferred, else the first; each keeps only its own parameters.
 */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined;
  const challenges: Challenge[] = [];
  // A scheme is a token not followed by '=' (with an optional token68, as in `Basic dXNlcg==`);
  // `name=value` pairs after it are its parameters; empty list elements are skipped.
  const re = /[\s,]*(?:([A-Za-z][\w-]*)(?![\w-]*\s*=)(?:\s+[\w.~+/-]+=*(?=\s*(?:,|$)))?|([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))\s*,?/gy;
  for (let p = re.exec(header); p !== null && p[0] !== ''; p = re.exec(header)) {
    if (p[1] !== undefined) challenges.push({ scheme: p[1].toLowerCase(), params: {} });
    else if (challenges.length > 0) challenges[challenges.length - 1].params[p[2].toLowerCase()] = p[3] !== undefined ? p[3].replace(/\\(.)/g, '$1') : p[4];
  }
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges[0];
}

const agents = new Map<string, Dispatcher>();

function agentFor(tls: RegistryTls): Dispatcher {
  const key = `${tls.insecure}|${tls.rootCAs.join('')}`;
  let a = agents.get(key);
  if (!a) {
    a = new Agent({ connect: { ...upstreamTls(tls.insecure, tls.rootCAs), timeout: 10_000 }, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS })
      .compose(interceptors.redirect({ maxRedirections: 3 }));
    agents.set(key, a);
  }
  return a;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const header = (h: Answer['headers'], name: string): string | undefined => {
  const v = h[name];
  // Several WWW-Authenticate lines are several challenges: read them as one list.
  return Array.isArray(v) ? (name === 'www-authenticate' ? v.join(', ') : v[0]) : v;
};

/** Why a registry said no, from its `{"errors":[{code,message}]}` body when it has one. */
function registryReason(a: Answer): string {
  try {
    const doc = JSON.parse(a.body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    const first = doc.errors?.[0];
    if (first) return `${first.code ?? ''}${first.message ? `: ${first.message}` : ''}`;
  } catch {
    /* not JSON */
  }
  return a.body.toString('utf8').slice(0, 200).trim();
}

export interface ManifestAnswer {
  body: Buffer;
  contentType: string;
  digest: string | undefined;
}

export class RegistryClient {
  /** Headers for the registry: Harbor's, with the Authorization that last worked. */
  headers: Record<string, string>;
  private readonly dispatcher: Dispatcher;
  private renewing: Promise<void> | undefined;
  /** Harbor's own Basic header, kept: after the first token exchange `headers` holds the Bearer. */
  private readonly harborBasic: string | undefined;

  constructor(
    headers: Record<string, string>,
    private readonly o: { tls: RegistryTls; credentials: RegistryCredentials | null; signal: AbortSignal },
  ) {
    this.headers = { ...headers };
    const given = findHeader(headers, 'authorization');
    this.harborBasic = given !== undefined && /^basic\s/i.test(given) ? given : undefined;
    this.dispatcher = agentFor(o.tls);
  }

  async manifest(url: string, repo: string): Promise<ManifestAnswer> {
    let a = await this.get(url, this.headers, MAX_MANIFEST);
    if (a.status === 401) {
      const tried: string[] = [];
      a = await this.authenticate(url, repo, a, tried);
      if (a.status === 401) {
        const hint = this.o.credentials === null
          ? 'the token may be expired or lack pull access, and no registry credentials apply (preheat.webhooks.registryAuth, for authenticated callers)'
          : 'the configured preheat.webhooks.registryAuth was refused too';
        throw new PreheatFailure(`registry answered 401 Unauthorized to GET ${redactUrl(url)}: refused ${tried.join(', then ')}; ${hint}`);
      }
    }
    if (a.status === 404) throw new PreheatFailure(`registry has no manifest at ${redactUrl(url)} (404 ${registryReason(a)})`);
    if (a.status < 200 || a.status >= 300) {
      throw new PreheatFailure(`registry answered ${a.status} to GET ${redactUrl(url)}: ${registryReason(a)}`);
    }
    return { body: a.body, contentType: header(a.headers, 'content-type') ?? '', digest: header(a.headers, 'docker-content-digest') };
  }

  /**
   * Authenticates again (a blob was refused: the token has expired since the manifest was read).
   * Concurrent callers share one renewal.
   */
  renew(url: string, repo: string): Promise<void> {
    this.renewing ??= this.manifest(url, repo).then(() => undefined).finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /** Tries each way to authenticate in turn and keeps the first that is not refused; `tried` says what was refused and why. */
  private async authenticate(url: string, repo: string, first: Answer, tried: string[]): Promise<Answer> {
    let last = first;
    const given = findHeader(this.headers, 'authorization');
    const why = (a: Answer): string => {
      const c = parseChallenge(header(a.headers, 'www-authenticate'));
      return c?.params.error ? ` (${c.params.error}${c.params.error_description ? `: ${c.params.error_description}` : ''})` : '';
    };
    tried.push(`${given === undefined ? 'an anonymous request' : 'the Authorization sent with the request'}${why(first)}`);
    const creds = this.o.credentials;
    const attempts: Array<() => Promise<{ auth: string; what: string } | undefined>> = [];
    if (creds !== null && creds.token !== '') attempts.push(async () => ({ auth: `Bearer ${creds.token}`, what: 'the configured registry token' }));
    attempts.push(async () => {
      const c = parseChallenge(header(last.headers, 'www-authenticate'));
      const login = creds !== null && creds.username !== '' ? { auth: basic(creds.username, creds.password), who: creds.username } : undefined;
      if (c?.scheme === 'basic') return login === undefined ? undefined : { auth: login.auth, what: `basic credentials for ${login.who}` };
      if (c?.scheme !== 'bearer' || !c.params.realm) return undefined;
      const token = await this.token(c, repo, login?.auth ?? this.harborBasic);
      const who = login !== undefined ? `for ${login.who}` : this.harborBasic !== undefined ? 'for the basic credentials sent' : 'for anonymous';
      return { auth: `Bearer ${token}`, what: `a token ${who} from the token service` };
    });
    for (const attempt of attempts) {
      const next = await attempt();
      if (next === undefined || next.auth === given) continue;
      const headers = { ...withoutAuthorization(this.headers), Authorization: next.auth };
      const a = await this.get(url, headers, MAX_MANIFEST);
      if (a.status !== 401) {
        this.headers = headers;
        return a;
      }
      tried.push(`${next.what}${why(a)}`);
      last = a;
    }
    return last;
  }

  private async token(c: Challenge, repo: string, login: string | undefined): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(c.params.realm);
    } catch {
      throw new PreheatFailure(`the registry's token realm ${JSON.stringify(c.params.realm)} is not a URL`);
    }
    if (c.params.service) realm.searchParams.set('service', c.params.service);
    realm.searchParams.set('scope', c.params.scope || `repository:${repo}:pull`);
    const a = await this.get(realm.href, login === undefined ? {} : { Authorization: login }, MAX_TOKEN, 'application/json');
    if (a.status < 200 || a.status >= 300) {
      throw new PreheatFailure(`token service ${redactUrl(realm.href)} answered ${a.status}${login === undefined ? ' to an anonymous request' : ''}: ${registryReason(a)}`);
    }
    let doc: { token?: unknown; access_token?: unknown };
    try {
      doc = JSON.parse(a.body.toString('utf8')) as typeof doc;
    } catch {
      throw new PreheatFailure(`token service ${redactUrl(realm.href)} did not answer with JSON`);
    }
    const token = typeof doc.token === 'string' && doc.token !== '' ? doc.token : doc.access_token;
    if (typeof token !== 'string' || token === '') throw new PreheatFailure(`token service ${redactUrl(realm.href)} returned no token`);
    return token;
  }

  private async get(url: string, headers: Record<string, string>, limit: number, accept = MANIFEST_ACCEPT): Promise<Answer> {
    try {
      const res = await request(url, {
        method: 'GET',
        headers: { ...headers, Accept: accept },
        dispatcher: this.dispatcher,
        signal: this.o.signal,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limit) {
          res.body.destroy();
          throw new PreheatFailure(`GET ${redactUrl(url)} answered more than ${limit} bytes`);
        }
        chunks.push(chunk);
      }
      return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
    } catch (err) {
      if (err instanceof PreheatFailure || this.o.signal.aborted) throw err;
      const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
      const code = e.cause?.code ?? e.code ?? '';
      const timeout = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError;
      const tlsHint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code) ? "; trust the registry's CA with preheat.certs, or set preheat.insecure" : '';
      throw new PreheatFailure(`cannot reach ${redactUrl(url)}: ${timeout ? `no answer within ${TIMEOUT_MS / 1000}s` : `${code} ${e.cause?.message ?? e.message}`.trim()}${tlsHint}`);
    }
  }
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function findHeader(h: Record<string, string>, name: string): string | undefined {
  for (const [k, v] of Object.entries(h)) if (k.toLowerCase() === name) return v;
  return undefined;
}

function withoutAuthorization(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).filter(([k]) => k.toLowerCase() !== 'authorization'));
}
