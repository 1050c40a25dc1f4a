/**
 * Push events from Harbor (PUSH_ARTIFACT, default or CloudEvents payload) and from a Docker
 * Registry's notifications, reduced to what a preheat needs, and matched against the rules.
 * Pure: the routes do the I/O.
 */
import type { WebhookRule } from '../../shared/config/preheat.js';
import { badRequest } from '../../shared/errors.js';
import { match } from '../../shared/doublestar.js';
import { object, type Json } from './body.js';
import { MediaType } from './manifest.js';

export interface PushEvent {
  repository: string;
  /** '' when the push carried no tag. */
  tag: string;
  /** Manifest digest, or ''. */
  digest: string;
  /** Where the event says the registry is: `<scheme>://<host>` (registry events) ... */
  origin: string;
  /** ... or only `<host>[:port]` (Harbor's resource_url has no scheme). */
  host: string;
}

export interface Ignored {
  repository?: string;
  tag?: string;
  reason: string;
}

export interface Parsed {
  pushes: PushEvent[];
  ignored: Ignored[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Harbor's PUSH_ARTIFACT body (`type`, `event_data`) or its CloudEvents form (`type`, `data`). */
export function parseHarborEvent(body: unknown): Parsed {
  const b = object(body, 'the webhook body');
  const type = typeof b.type === 'string' ? b.type : '';
  const cloud = typeof b.specversion === 'string';
  const data = cloud ? b.data : b.event_data;
  if (type === '' || data === undefined) {
    throw badRequest(`not a Harbor webhook event: expected "type" and "${cloud ? 'data' : 'event_data'}"`);
  }
  if (type !== 'PUSH_ARTIFACT' && type !== 'harbor.artifact.pushed') return { pushes: [], ignored: [{ reason: `event type ${type} is not a push` }] };
  const d = object(data, cloud ? 'data' : 'event_data');
  const repo = object(d.repository, 'repository');
  const repository = typeof repo.repo_full_name === 'string' && repo.repo_full_name !== ''
    ? repo.repo_full_name
    : [repo.namespace, repo.name].filter((s) => typeof s === 'string' && s !== '').join('/');
  if (repository === '') throw badRequest('the event names no repository (repository.repo_full_name)');
  if (!Array.isArray(d.resources)) throw badRequest('the event has no resources list');
  const out: Parsed = { pushes: [], ignored: [] };
  for (const raw of d.resources) {
    const r = object(raw, 'each resource');
    const digest = typeof r.digest === 'string' && DIGEST.test(r.digest) ? r.digest : '';
    // With no tag pushed, Harbor puts the digest in `tag`.
    const tag = typeof r.tag === 'string' && !r.tag.startsWith('sha256:') ? r.tag : '';
    const url = typeof r.resource_url === 'string' ? r.resource_url : '';
    const host = url.includes('/') ? url.slice(0, url.indexOf('/')) : '';
    out.pushes.push({ repository, tag, digest, origin: '', host });
  }
  return out;
}

const MANIFEST_TYPES = new Set<string>([...Object.values(MediaType), 'application/vnd.docker.distribution.manifest.v1+prettyjws']);

/** A registry's notification envelope: `{"events":[{action, target:{mediaType,digest,repository,url,tag}, request:{host}}]}`. */
export function parseRegistryEvents(body: unknown): Parsed {
  const b = object(body, 'the notification body');
  if (!Array.isArray(b.events)) throw badRequest('not a registry notification: expected an "events" list');
  const out: Parsed = { pushes: [], ignored: [] };
  for (const raw of b.events) {
    const e = object(raw, 'each event');
    const t = object(e.target ?? {}, 'target');
    const repository = typeof t.repository === 'string' ? t.repository : '';
    const tag = typeof t.tag === 'string' ? t.tag : '';
    if (e.action !== 'push') {
      out.ignored.push({ repository, tag, reason: `action ${String(e.action)} is not a push` });
      continue;
    }
    if (typeof t.mediaType !== 'string' || !MANIFEST_TYPES.has(t.mediaType)) {
      out.ignored.push({ repository, tag, reason: `${String(t.mediaType)} is not a manifest` });
      continue;
    }
    if (repository === '') throw badRequest('a push event names no target.repository');
    let origin = '';
    if (typeof t.url === 'string') {
      try {
        const u = new URL(t.url);
        if (u.protocol === 'http:' || u.protocol === 'https:') origin = `${u.protocol}//${u.host}`;
      } catch {
        /* fall back to request.host */
      }
    }
    const req = (typeof e.request === 'object' && e.request !== null ? e.request : {}) as Json;
    const digest = typeof t.digest === 'string' && DIGEST.test(t.digest) ? t.digest : '';
    out.pushes.push({ repository, tag, digest, origin, host: typeof req.host === 'string' ? req.host : '' });
  }
  return out;
}

/** Harbor's filters: an empty pattern matches everything, else doublestar. */
const matches = (pattern: string, value: string): boolean => pattern === '' || match(pattern, value);

/** A rule with a registry only takes events from that host (or naming none). */
function sameRegistry(rule: WebhookRule, e: PushEvent): boolean {
  if (rule.registry === '' || (e.origin === '' && e.host === '')) return true;
  const reg = new URL(rule.registry);
  try {
    return new URL(e.origin !== '' ? e.origin : `${reg.protocol}//${e.host}`).host === reg.host;
  } catch {
    return false;
  }
}

export function findRule(rules: readonly WebhookRule[], e: PushEvent): WebhookRule | undefined {
  return rules.find((r) => sameRegistry(r, e) && matches(r.repository, e.repository) && matches(r.tag, e.tag));
}

/**
 * The manifest URL to preheat: on the host the event names (with the scheme of the rule's
 * registry, which findRule made that host, else `scheme`), or on the rule's registry when the
 * event names none.
 * By digest when the event has one, so a tag moved since cannot change what is warmed.
 */
export function manifestUrlFor(e: PushEvent, rule: WebhookRule, scheme: string): string | undefined {
  let base = e.origin;
  if (base === '' && e.host !== '') base = `${rule.registry === '' ? scheme : new URL(rule.registry).protocol.slice(0, -1)}://${e.host}`;
  if (base === '') base = rule.registry;
  if (base === '') return undefined;
  return `${base}/v2/${e.repository}/manifests/${e.digest || e.tag}`;
}
