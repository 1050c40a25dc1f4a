import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { PreheatConfig } from '../../shared/config/preheat.js';
import type { Logger } from '../../shared/log/index.js';
import type { Cdn } from '../cdn/cdn.js';
import { JobStore } from './jobs.js';
import { HostLimiters } from './limiter.js';
import { createPreheatMetrics } from './metrics.js';
import { providerAuth } from './provider-auth.js';
import { v1Routes } from './routes-v1.js';
import { v2Routes } from './routes-v2.js';
import { webhookRoutes } from './webhooks.js';

export interface PreheatDeps {
  cfg: PreheatConfig;
  cdn: Cdn;
  log: Logger;
  now: () => number;
  /** The supernode's metrics registry, for the preheat counters. */
  registry?: Registry;
}

/** Body types Harbor's CloudEvents and a registry's notifications arrive with; both are JSON. */
const JSON_TYPES = ['application/cloudevents+json', 'application/vnd.docker.distribution.events.v1+json'];

/** Harbor's provider APIs (/preheats, /oapi/v1/jobs) and the push webhooks. */
export function preheatRoutes(app: FastifyInstance, deps: PreheatDeps): void {
  const { cfg } = deps;
  if (!cfg.enabled) return;
  let store: JobStore | undefined;
  const metrics = deps.registry && createPreheatMetrics(deps.registry, () => store?.unfinished ?? 0);
  store = new JobStore({
    cdn: deps.cdn,
    limiters: new HostLimiters(cfg.concurrency),
    tls: { insecure: cfg.insecure, rootCAs: cfg.rootCAs },
    log: deps.log,
    now: deps.now,
    metrics,
  });
  // Encapsulated, so the extra body parsers and the auth hook touch only these routes.
  void app.register(async (scope) => {
    scope.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, scope.getDefaultJsonParser('error', 'error'));
    scope.addHook('onClose', async () => store.close());
    // Public, like /_ping: Harbor's health check only needs a 2xx.
    scope.get('/healthy', async (_req, reply) => reply.type('text/plain').send('OK'));
    await scope.register(async (provider) => {
      const check = providerAuth(cfg.auth);
      if (check !== undefined) provider.addHook('onRequest', check);
      v1Routes(provider, store, cfg);
      v2Routes(provider, store, cfg);
    });
    webhookRoutes(scope, store, cfg);
  });
}
