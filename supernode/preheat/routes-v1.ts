/**
 * Dragonfly 1.x's preheat API, as Harbor v2.1-v2.11 drive it: `POST /preheats` answers
 * `{"ID":"<string>"}`, `GET /preheats/{id}` answers `{ID,status,startTime,finishTime,errorMsg}`.
 * Served with and without the `/api/v1` prefix, as Dragonfly does.
 */
import type { FastifyInstance } from 'fastify';
import type { PreheatConfig } from '../../shared/config/preheat.js';
import { badRequest, notFound } from '../../shared/errors.js';
import { checkImageUrl, filterKeys, headerMap, httpUrl, object, optionalString, requiredString } from './body.js';
import type { JobRequest, PreheatJob } from './job.js';
import type { JobStore } from './jobs.js';

const iso = (ms: number): string => (ms > 0 ? new Date(ms).toISOString() : '');

export function v1View(j: PreheatJob, cfg: PreheatConfig): Record<string, string> {
  return {
    ID: String(j.id),
    status: j.state === 'FAILED' ? cfg.failedStatus : j.state,
    startTime: iso(j.startedAt || j.createdAt),
    finishTime: iso(j.finishedAt),
    errorMsg: j.error,
  };
}

function parseV1(body: unknown, cfg: PreheatConfig): JobRequest {
  const b = object(body, 'the preheat request');
  const type = requiredString(b, 'type').toLowerCase();
  if (type !== 'image' && type !== 'file') throw badRequest(`unknown preheat type ${JSON.stringify(b.type)}: expected "image" or "file"`);
  const url = httpUrl(b, 'url');
  if (type === 'image') checkImageUrl(url);
  return {
    type,
    url,
    headers: headerMap(b, 'headers'),
    filter: filterKeys(optionalString(b, 'filter')),
    identifier: optionalString(b, 'identifier'),
    platforms: cfg.platforms,
    timeoutMs: cfg.jobTimeout,
    trigger: 'v1',
    digest: manifestDigest(optionalString(b, 'digest')),
    credentials: registryCredentials(cfg),
  };
}

/** The configured registry credentials, only for callers the provider auth let in: an anonymous caller could aim them at any host. */
export const registryCredentials = (cfg: PreheatConfig) => (cfg.auth.mode === 'none' ? null : cfg.webhooks.registryAuth);

export function jobId(raw: string): number {
  if (!/^\d{1,15}$/.test(raw)) throw notFound(`preheat ${JSON.stringify(raw)} not found`);
  return Number(raw);
}

export function v1Routes(app: FastifyInstance, store: JobStore, cfg: PreheatConfig): void {
  const find = (raw: string): PreheatJob => {
    const j = store.get(jobId(raw));
    if (j === undefined) throw notFound(`preheat ${raw} not found`);
    return j;
  };
  for (const prefix of ['', '/api/v1']) {
    app.post(`${prefix}/preheats`, async (req, reply) => {
      const r = parseV1(req.body, cfg);
      // Harbor 2.3+ takes 208 as "already preheated": success without polling.
      const done = store.cached(r);
      if (done !== undefined) return reply.status(208).send({ ID: String(done.id) });
      const { job } = store.submit(r);
      return reply.status(201).send({ ID: String(job.id) });
    });
    app.get(`${prefix}/preheats`, async () => store.list().map((j) => v1View(j, cfg)));
    app.get<{ Params: { id: string } }>(`${prefix}/preheats/:id`, async (req) => v1View(find(req.params.id), cfg));
    app.delete<{ Params: { id: string } }>(`${prefix}/preheats/:id`, async (req) => {
      const j = find(req.params.id);
      store.delete(j.id);
      return v1View(j, cfg);
    });
  }
}

/** Harbor's v1 `digest`: checked against what the tag serves, so it must be one we can compute. */
function manifestDigest(d: string): string {
  if (d !== '' && !/^sha256:[0-9a-f]{64}$/.test(d)) throw badRequest(`digest must be sha256:<64 hex digits>, got ${JSON.stringify(d.slice(0, 80))}`);
  return d;
}
