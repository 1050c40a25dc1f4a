import type { FastifyInstance } from 'fastify';
import type { PreheatConfig } from '../../shared/config/preheat.js';
import type { Logger } from '../../shared/log/index.js';
import type { Cdn } from '../cdn/cdn.js';

export interface PreheatDeps {
  cfg: PreheatConfig;
  cdn: Cdn;
  log: Logger;
  now: () => number;
}

/** Harbor's provider APIs (/preheats, /oapi/v1/jobs) and the push webhooks. */
export function preheatRoutes(app: FastifyInstance, deps: PreheatDeps): void {
  void app;
  void deps;
}
