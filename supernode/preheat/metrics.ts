import { Counter, Gauge, type Registry } from 'prom-client';
import type { PreheatJob } from './job.js';

/**
 * What Harbor's preheats did, for alerting without reading logs: jobs and blobs by outcome, and
 * jobs not yet finished. Labels take a few fixed values only.
 */
export function createPreheatMetrics(registry: Registry, unfinished: () => number) {
  const jobs = new Counter({
    name: 'supernode_preheat_jobs_total',
    help: 'Preheat jobs finished, by result (success, failed) and what created them (v1, v2, webhook)',
    labelNames: ['result', 'trigger'] as const,
    registers: [registry],
  });
  const blobs = new Counter({
    name: 'supernode_preheat_blobs_total',
    help: 'Blobs of finished preheat jobs, by result (cached, failed, skipped: the job ended first)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'supernode_preheat_jobs_unfinished',
    help: 'Preheat jobs waiting or running',
    registers: [registry],
    collect() {
      this.set(unfinished());
    },
  });
  return {
    finished(job: PreheatJob): void {
      jobs.inc({ result: job.state === 'SUCCESS' ? 'success' : 'failed', trigger: job.req.trigger });
      for (const b of job.blobs) blobs.inc({ result: b.state === 'SUCCESS' ? 'cached' : b.state === 'FAILED' ? 'failed' : 'skipped' });
    },
  };
}
export type PreheatMetrics = ReturnType<typeof createPreheatMetrics>;
