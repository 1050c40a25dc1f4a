/**
 * The supernode's top-level `preheat:` section (ours; Dragonfly 1.x has none): how Harbor
 * authenticates to the provider endpoints, which platforms of a multi-arch image to warm, job
 * limits, registry TLS, and the push-webhook rules.
 *
 * ```yaml
 * preheat:
 *   auth: { mode: bearer, token: s3cret }   # none | bearer | basic | header (Harbor: NONE/OAUTH/BASIC/CUSTOM)
 *   platforms: [linux/amd64, linux/arm64]  # empty: every platform of an index
 *   jobTimeout: 30m
 *   concurrency: 8                         # blobs fetched at once, per registry
 *   failedStatus: FAILED                   # FAIL for Harbor 2.1-2.7 (they only stop polling on FAIL)
 *   insecure: false
 *   certs: [harbor-ca.crt]                 # relative paths: next to this file
 *   webhooks:
 *     token: "Bearer hook-secret"          # the whole Authorization header senders must send
 *     scheme: https                        # for Harbor's scheme-less resource_url
 *     registryAuth: { username: robot, password: pw }   # or { token: ... }
 *     rules:
 *       - { repository: "library/**", tag: "{v*,latest}", registry: "https://harbor.example.com" }
 * ```
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { patternError } from '../doublestar.js';
import { ConfigError } from '../errors.js';
import {
  deepFreeze, describe, isMapping, parseBool, parseEnum, parseHttpUrl, parseList, parsePositiveDuration,
  parsePositiveInt, parseSection, parseString, parseStringList, rule, type SectionSchema,
} from '../units.js';

export type ProviderAuthMode = 'none' | 'bearer' | 'basic' | 'header';

export interface ProviderAuth {
  readonly mode: ProviderAuthMode;
  readonly token: string;
  readonly username: string;
  readonly password: string;
  readonly header: { readonly name: string; readonly value: string } | null;
}

/** Credentials the supernode itself presents to a registry (basic for its token service, or a bearer token). */
export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
  readonly token: string;
}

export interface WebhookRule {
  /** doublestar pattern on the full repository name (`library/nginx`); '' matches every repository. */
  readonly repository: string;
  /** doublestar pattern on the pushed tag; '' matches every tag. */
  readonly tag: string;
  /**
   * Base URL of the registry (`https://harbor.example.com`). When set, the rule only matches events
   * from that host (or naming none, which then use it), and gives Harbor events their scheme.
   */
  readonly registry: string;
}

export interface WebhooksConfig {
  /** Expected Authorization header value ('' = webhooks need no credentials). */
  readonly token: string;
  /** Scheme for Harbor events, whose resource_url has none (unless a rule's registry says otherwise). */
  readonly scheme: 'http' | 'https';
  /**
   * Registry credentials for webhook preheats, and the fallback when an authenticated provider
   * call's token is refused. Needs `token`, so that no anonymous caller can aim them elsewhere.
   */
  readonly registryAuth: RegistryCredentials | null;
  readonly rules: readonly WebhookRule[];
}

export interface PreheatConfig {
  readonly enabled: boolean;
  readonly auth: ProviderAuth;
  /** `os/arch[/variant]`; empty = every platform in an index. */
  readonly platforms: readonly string[];
  /** ms a job may take before it fails. */
  readonly jobTimeout: number;
  /** Blobs fetched into the CDN for preheat jobs at once (all jobs together). */
  readonly concurrency: number;
  /** What `GET /preheats/{id}` reports for a failed job. */
  readonly failedStatus: 'FAILED' | 'FAIL';
  /** Skip TLS verification of registries. */
  readonly insecure: boolean;
  /** Extra trusted CAs for registries (PEM text, read from the configured files). */
  readonly rootCAs: readonly string[];
  readonly webhooks: WebhooksConfig;
}

export const PREHEAT_DEFAULTS: PreheatConfig = deepFreeze({
  enabled: true,
  auth: { mode: 'none', token: '', username: '', password: '', header: null },
  platforms: [],
  jobTimeout: 30 * 60_000,
  concurrency: 8,
  failedStatus: 'FAILED',
  insecure: false,
  rootCAs: [],
  webhooks: { token: '', scheme: 'https', registryAuth: null, rules: [] },
} satisfies PreheatConfig);

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const RESERVED_HEADERS = new Set(['host', 'content-length', 'content-type', 'transfer-encoding', 'connection']);

type Header = { name: string; value: string };
const HEADER_SCHEMA: SectionSchema<Header> = { name: rule('name', parseString), value: rule('value', parseString) };

function parseHeader(raw: unknown, key: string): Header {
  const t: Header = { name: '', value: '' };
  parseSection(raw, HEADER_SCHEMA, key, t);
  if (!HEADER_NAME.test(t.name)) throw new ConfigError(`${key}.name`, `expected an HTTP header name, got ${describe(t.name)}`, t.name);
  if (RESERVED_HEADERS.has(t.name.toLowerCase())) throw new ConfigError(`${key}.name`, `${t.name} cannot carry credentials`, t.name);
  if (t.value === '') throw new ConfigError(`${key}.value`, 'expected a non-empty header value', t.value);
  return t;
}

const AUTH_SCHEMA: SectionSchema<Mutable<ProviderAuth>> = {
  mode: rule('mode', (v, k) => parseEnum(v, k, ['none', 'bearer', 'basic', 'header'] as const)),
  token: rule('token', parseString),
  username: rule('username', parseString),
  password: rule('password', parseString),
  header: rule('header', parseHeader),
};

function parseAuth(raw: unknown, key: string): ProviderAuth {
  const a: Mutable<ProviderAuth> = { ...PREHEAT_DEFAULTS.auth };
  parseSection(raw, AUTH_SCHEMA, key, a);
  const need = (field: 'token' | 'username' | 'password' | 'header'): void => {
    if (a[field] === '' || a[field] === null) throw new ConfigError(`${key}.${field}`, `required when ${key}.mode is ${a.mode}`);
  };
  if (a.mode === 'bearer') need('token');
  if (a.mode === 'basic') {
    need('username');
    need('password');
    if (a.username.includes(':')) throw new ConfigError(`${key}.username`, 'a basic-auth user name cannot contain ":"', a.username);
  }
  if (a.mode === 'header') need('header');
  return a;
}

const CREDENTIALS_SCHEMA: SectionSchema<Mutable<RegistryCredentials>> = {
  username: rule('username', parseString),
  password: rule('password', parseString),
  token: rule('token', parseString),
};

function parseRegistryAuth(raw: unknown, key: string): RegistryCredentials {
  const c: Mutable<RegistryCredentials> = { username: '', password: '', token: '' };
  parseSection(raw, CREDENTIALS_SCHEMA, key, c);
  const basic = c.username !== '' || c.password !== '';
  if (basic && c.token !== '') throw new ConfigError(key, 'give either username and password or token, not both', raw);
  if (!basic && c.token === '') throw new ConfigError(key, 'expected username and password, or token', raw);
  if (basic && (c.username === '' || c.password === '')) {
    throw new ConfigError(`${key}.${c.username === '' ? 'username' : 'password'}`, 'required with basic credentials');
  }
  return c;
}

/** A doublestar pattern, checked now so that a typo fails at startup, not at the first push. */
export function parsePattern(v: unknown, key: string): string {
  const p = parseString(v, key);
  const reason = patternError(p);
  if (reason !== undefined) throw new ConfigError(key, `invalid pattern ${JSON.stringify(p)}: ${reason}`, v);
  return p;
}

const RULE_SCHEMA: SectionSchema<Mutable<WebhookRule>> = {
  repository: rule('repository', parsePattern),
  tag: rule('tag', parsePattern),
  registry: rule('registry', (v, k) => parseHttpUrl(v, k).replace(/\/+$/, '')),
};

function parseRule(raw: unknown, key: string): WebhookRule {
  const r: Mutable<WebhookRule> = { repository: '', tag: '', registry: '' };
  if (!isMapping(raw)) throw new ConfigError(key, `expected a mapping, got ${describe(raw)}`, raw);
  parseSection(raw, RULE_SCHEMA, key, r);
  return r;
}

const WEBHOOKS_SCHEMA: SectionSchema<Mutable<WebhooksConfig>> = {
  token: rule('token', parseString),
  scheme: rule('scheme', (v, k) => parseEnum(v, k, ['http', 'https'] as const)),
  registryAuth: rule('registryAuth', (v, k) => (v === null ? null : parseRegistryAuth(v, k))),
  rules: rule('rules', (v, k) => parseList(v, k, parseRule)),
};

function parseWebhooks(raw: unknown, key: string): WebhooksConfig {
  const w: Mutable<WebhooksConfig> = { ...PREHEAT_DEFAULTS.webhooks };
  parseSection(raw, WEBHOOKS_SCHEMA, key, w);
  return w;
}

const PLATFORM = /^[a-z0-9_-]+\/[a-z0-9_-]+(?:\/[a-z0-9_-]+)?$/;

function parsePlatforms(v: unknown, key: string): string[] {
  return parseStringList(v, key).map((p, i) => {
    if (!PLATFORM.test(p)) throw new ConfigError(`${key}[${i}]`, `expected os/arch[/variant] such as linux/arm/v7, got ${describe(p)}`, p);
    return p;
  });
}

/** Relative paths resolve against `baseDir`, as dfdaemon's do: a container's cwd is not the config's. */
const readCerts = (baseDir: string) => (v: unknown, key: string): string[] =>
  parseStringList(v, key).map((file, i) => {
    const path = resolve(baseDir, file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`${key}[${i}]`, `cannot read ${path}: ${(err as Error).message}`, file, { cause: err });
    }
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`${key}[${i}]`, `${path} holds no PEM certificate`, file);
    return text;
  });

const schema = (baseDir: string): SectionSchema<Mutable<PreheatConfig>> => ({
  enabled: rule('enabled', parseBool),
  auth: rule('auth', parseAuth),
  platforms: rule('platforms', parsePlatforms),
  jobTimeout: rule('jobTimeout', parsePositiveDuration),
  concurrency: rule('concurrency', parsePositiveInt),
  failedStatus: rule('failedStatus', (v, k) => parseEnum(v, k, ['FAILED', 'FAIL'] as const)),
  insecure: rule('insecure', parseBool),
  certs: rule('rootCAs', readCerts(baseDir)),
  webhooks: rule('webhooks', parseWebhooks),
});

/** `baseDir`: the directory of the file the section came from, for relative `certs`. */
export function parsePreheatSection(raw: unknown, key: string, baseDir: string = process.cwd()): PreheatConfig {
  if (raw === null || raw === undefined) return PREHEAT_DEFAULTS;
  const c: Mutable<PreheatConfig> = { ...PREHEAT_DEFAULTS };
  parseSection(raw, schema(baseDir), key, c);
  if (c.webhooks.registryAuth !== null && c.webhooks.token === '') {
    throw new ConfigError(`${key}.webhooks.token`, `required when ${key}.webhooks.registryAuth is set: otherwise anyone could have the supernode send those credentials to a registry of their choosing`);
  }
  return deepFreeze(c);
}
