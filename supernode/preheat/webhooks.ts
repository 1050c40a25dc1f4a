/**
 * `POST /webhooks/harbor` and `POST /webhooks/registry`: push events matched against
 * `preheat.webhooks.rules` start preheats. The answer comes at once (202 when something was
 * started); the jobs run on and show in `GET /preheats`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PreheatConfig } from '../../shared/config/preheat.js';
import { DfError, isDfError } from '../../shared/errors.js';
import type { JobStore } from './jobs.js';
import { parseManifestUrl } from './manifest.js';
import { sameSecret } from './provider-auth.js';
import { findRule, manifestUrlFor, parseHarborEvent, parseRegistryEvents, type Ignored, type Parsed } from './webhook-events.js';

interface Accepted {
  id: number;
  repository: string;
  tag: string;
  url: string;
}

export function webhookRoutes(app: FastifyInstance, store: JobStore, cfg: PreheatConfig): void {
  const w = cfg.webhooks;

  const checkToken = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (w.token === '') return;
    const got = req.headers.authorization;
    if (got === undefined || !sameSecret(got, w.token)) {
      reply.header('www-authenticate', 'Bearer realm="dragonfly-webhooks"');
      throw new DfError('UNAUTHORIZED', `webhook: ${got === undefined ? 'send' : 'wrong'} Authorization header (preheat.webhooks.token; Harbor's "Auth Header", a registry endpoint's headers)`);
    }
  };

  const handle = (parsed: Parsed, reply: FastifyReply) => {
    const accepted: Accepted[] = [];
    const ignored: Ignored[] = [...parsed.ignored];
    let busy = false;
    for (const e of parsed.pushes) {
      const who = { repository: e.repository, tag: e.tag };
      if (e.tag === '') {
        ignored.push({ ...who, reason: 'untagged push (only pushed tags are preheated, as Harbor does)' });
        continue;
      }
      const rule = findRule(w.rules, e);
      if (rule === undefined) {
        ignored.push({ ...who, reason: w.rules.length === 0 ? 'no preheat.webhooks.rules configured' : 'no rule matches' });
        continue;
      }
      const url = manifestUrlFor(e, rule, w.scheme);
      if (url === undefined) {
        ignored.push({ ...who, reason: 'the event names no registry host and the matching rule has no registry' });
        continue;
      }
      // An event whose repository or tag cannot form a manifest URL would only make a failed
      // job; one past the cap on running jobs is reported, not thrown at the whole delivery.
      try {
        parseManifestUrl(url);
        const { job } = store.submit({
          type: 'image',
          url,
          headers: {},
          filter: [],
          identifier: '',
          platforms: cfg.platforms,
          timeoutMs: cfg.jobTimeout,
          trigger: 'webhook',
          digest: e.digest,
          credentials: w.registryAuth,
        });
        accepted.push({ id: job.id, ...who, url });
      } catch (err) {
        if (isDfError(err, 'TOO_MANY_REQUESTS')) busy = true;
        ignored.push({ ...who, reason: (err as Error).message });
      }
    }
    // Registries and Harbor redeliver only on a non-2xx answer; events already accepted join
    // their running jobs when the delivery comes again.
    return reply.status(busy ? 429 : accepted.length > 0 ? 202 : 200).send({ accepted, ignored });
  };

  app.post('/webhooks/harbor', { onRequest: checkToken }, async (req, reply) => handle(parseHarborEvent(req.body), reply));
  app.post('/webhooks/registry', { onRequest: checkToken }, async (req, reply) => handle(parseRegistryEvents(req.body), reply));
}
