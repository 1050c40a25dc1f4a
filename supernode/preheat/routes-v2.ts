/**
 * The Dragonfly 2 manager's open API as Harbor v2.12+ drives it: `POST /oapi/v1/jobs` and
 * `GET /oapi/v1/jobs/{id}`. Harbor decodes `id` as a number and the times as RFC3339, maps
 * PENDING to running, SUCCESS and FAILURE to the end, and anything else to failure, so an
 * unfinished job is always PENDING here (the DF2 manager never says RUNNING either).
 */
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { PreheatConfig } from '../../shared/config/preheat.js';
import { badRequest, notFound } from '../../shared/errors.js';
import { checkImageUrl, filterKeys, headerMap, httpUrl, object, optionalString, requiredString, type Json } from './body.js';
import type { JobRequest, PreheatJob } from './job.js';
import type { JobStore } from './jobs.js';
import { jobId, registryCredentials } from './routes-v1.js';

type V2State = 'PENDING' | 'SUCCESS' | 'FAILURE';

const v2State = (j: PreheatJob): V2State => (j.state === 'SUCCESS' ? 'SUCCESS' : j.state === 'FAILED' ? 'FAILURE' : 'PENDING');

export function v2View(j: PreheatJob, ip: string): Json {
  const host = hostname();
  const clusterIds = ((j.req.args as Json | undefined)?.scheduler_cluster_ids as unknown[] | undefined) ?? [];
  const cluster = typeof clusterIds[0] === 'number' ? clusterIds[0] : 1;
  const state = v2State(j);
  return {
    id: j.id,
    created_at: new Date(j.createdAt).toISOString(),
    updated_at: new Date(j.updatedAt).toISOString(),
    is_del: 0,
    task_id: `preheat_${j.id}`,
    bio: '',
    type: 'preheat',
    state,
    args: (j.req.args as Json | undefined)?.args ?? { type: j.req.type, url: j.req.url },
    result: {
      state,
      job_states: [{
        task_name: 'preheat',
        state,
        error: j.error,
        results: [{
          success_tasks: j.blobs.filter((b) => b.state === 'SUCCESS').map((b) => ({ url: b.url, hostname: host, ip })),
          failure_tasks: j.blobs.filter((b) => b.state === 'FAILED').map((b) => ({ url: b.url, hostname: host, ip, description: b.error })),
          scheduler_cluster_id: cluster,
        }],
      }],
    },
    user_id: 0,
    scheduler_clusters: [],
  };
}

const NS_PER_MS = 1e6;

function parseV2(body: unknown, cfg: PreheatConfig): JobRequest {
  const b = object(body, 'the job request');
  const kind = requiredString(b, 'type');
  if (kind !== 'preheat') throw badRequest(`unsupported job type ${JSON.stringify(kind)}: only "preheat" jobs exist`);
  const a = object(b.args, 'args');
  const type = requiredString(a, 'type', 'args.').toLowerCase();
  if (type !== 'image' && type !== 'file') throw badRequest(`unknown preheat type ${JSON.stringify(a.type)}: expected "image" or "file"`);
  const url = httpUrl(a, 'url', 'args.');
  if (type === 'image') checkImageUrl(url);
  const timeout = a.timeout ?? 0;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) throw badRequest('args.timeout must be a number of nanoseconds');
  const platform = optionalString(a, 'platform', 'args.');
  return {
    type,
    url,
    headers: headerMap(a, 'headers', 'args.'),
    filter: filterKeys(optionalString(a, 'filtered_query_params', 'args.')),
    identifier: '',
    platforms: platform !== '' ? [platform] : cfg.platforms,
    timeoutMs: timeout > 0 ? Math.max(1000, timeout / NS_PER_MS) : cfg.jobTimeout,
    trigger: 'v2',
    digest: '',
    credentials: registryCredentials(cfg),
    // What the job view echoes: the request rebuilt from the fields read above. Never the raw
    // body (its size and depth are the caller's, and args.headers carry registry tokens).
    args: {
      scheduler_cluster_ids: clusterIds(b.scheduler_cluster_ids),
      args: { type, url, ...(platform !== '' ? { platform } : {}), ...(a.filtered_query_params ? { filtered_query_params: optionalString(a, 'filtered_query_params', 'args.') } : {}) },
    },
  };
}

function clusterIds(v: unknown): number[] {
  return Array.isArray(v) ? v.filter((x): x is number => Number.isSafeInteger(x)).slice(0, 16) : [];
}

export function v2Routes(app: FastifyInstance, store: JobStore, cfg: PreheatConfig): void {
  const find = (raw: string): PreheatJob => {
    const j = store.get(jobId(raw));
    if (j === undefined) throw notFound(`job ${raw} not found`);
    return j;
  };
  app.post('/oapi/v1/jobs', async (req) => v2View(store.submit(parseV2(req.body, cfg)).job, req.socket.localAddress ?? ''));
  app.get('/oapi/v1/jobs', async (req) => store.list().map((j) => v2View(j, req.socket.localAddress ?? '')));
  app.get<{ Params: { id: string } }>('/oapi/v1/jobs/:id', async (req) => v2View(find(req.params.id), req.socket.localAddress ?? ''));
  app.delete<{ Params: { id: string } }>('/oapi/v1/jobs/:id', async (req) => {
    const j = find(req.params.id);
    store.delete(j.id);
    return v2View(j, req.socket.localAddress ?? '');
  });
}
