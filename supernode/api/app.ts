import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { badRequest } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/index.js';
import { VERSION } from '../../shared/protocol/version.js';
import type { SupernodeMetrics } from '../metrics.js';
import type { TaskService } from '../service/tasks.js';
import { Code } from '../../shared/protocol/codes.js';
import { errorHandler } from './errors.js';
import { peerRoutes } from './peer-routes.js';


/** Form bodies: repeated keys become arrays, as Go's r.Form gives them. */
function parseForm(body: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(body)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/**
 * How long a client may take to send one whole request (head and body). Node counts only the
 * receiving: a long poll (30 s at most) or a registration waiting on a slow origin, with its
 * request in, is not cut. Without it a client that sends a head and stalls its body would hold
 * its socket and fd for good (Fastify's default 0 also turns off Node's own 300 s).
 */
export const REQUEST_TIMEOUT_MS = 60_000;

/** Builds the API without listening, so tests can inject or listen on port 0. */
export function buildApi(opts: {
  svc: TaskService;
  metrics: SupernodeMetrics;
  log: Logger;
  plugins?: Array<(app: FastifyInstance) => void>;
  /** Tests shorten REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
}): FastifyInstance {
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const app = Fastify({
    // Request logs would drown the piece traffic; errors are logged by errorHandler.
    logger: false,
    bodyLimit: 1024 * 1024,
    requestTimeout,
    // Node sweeps for timed-out requests this often (its default, 30 s, would let a stalled
    // request live up to 1.5 times the limit).
    http: { requestTimeout, headersTimeout: Math.min(60_000, requestTimeout), connectionsCheckingInterval: Math.max(50, Math.min(30_000, requestTimeout / 4)) },
    // On shutdown, end every connection: a parked long-poll or a client that connected and never
    // sent a request would otherwise hold close() until fastify's 72 s keep-alive timeout.
    forceCloseConnections: true,
    // Every route also answers under /v<version>, as Dragonfly's router does.
    rewriteUrl: (req) => (req.url ?? '/').replace(/^\/v\d+(?:\.\d+)*(?=\/)/, ''),
    // A URL fastify cannot decode (`/preheats/%ZZ`) gets the same envelope as any bad input.
    frameworkErrors: (err, _req, reply) => {
      void (reply as FastifyReply).status(400).send({ code: Code.ParamError, msg: err.message, error: 'BAD_REQUEST' });
    },
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, parseForm(body as string));
  });
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, body === '' ? {} : JSON.parse(body as string));
    } catch {
      done(badRequest('the body is not valid JSON'), undefined);
    }
  });
  app.setErrorHandler(errorHandler(opts.log));
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ code: 404, msg: `no route ${req.method} ${req.url}`, error: 'NOT_FOUND' });
  });
  app.get('/_ping', async (_req, reply) => reply.type('text/plain').send('OK'));
  app.get('/version', async () => ({ Version: VERSION, Revision: 'dragonfly-ts', GoVersion: process.version, Arch: process.arch, OS: process.platform }));
  app.get('/metrics', async (_req, reply) => reply.type(opts.metrics.registry.contentType).send(await opts.metrics.registry.metrics()));
  peerRoutes(app, opts.svc, opts.metrics);
  for (const p of opts.plugins ?? []) p(app);
  return app;
}
