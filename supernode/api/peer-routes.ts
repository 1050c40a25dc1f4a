import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isDfError } from '../../shared/errors.js';
import { Code, PeerStatus } from '../../shared/protocol/codes.js';
import { hangUpSignal } from '../../shared/http/hang-up.js';
import { Params } from '../../shared/protocol/params.js';
import type { SupernodeMetrics } from '../metrics.js';
import { RegistrationFailed, type TaskService } from '../service/tasks.js';
import type { ReportIn } from '../service/types.js';
import { parseRegistration } from './parse-registration.js';

const MAX_WAIT_MS = 30_000;

/** The peer's address as this connection shows it (IPv4 the same on a dual-stack socket). */
function remoteOf(req: FastifyRequest): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

function params(req: FastifyRequest): Params {
  return new Params(req.query, req.method === 'GET' ? undefined : req.body);
}

/** Dragonfly 1.x's legacy peer API, as stock dfget calls it. */
export function peerRoutes(app: FastifyInstance, svc: TaskService, metrics: SupernodeMetrics): void {
  app.post('/peer/registry', async (req, reply) => {
    const reg = { ...parseRegistration(params(req)), remote: remoteOf(req) };
    try {
      const data = await svc.register(reg);
      metrics.registrations.inc({ result: 'ok' });
      return { code: Code.Success, msg: 'success', data };
    } catch (err) {
      // Full: HTTP 429, and a system error in the envelope. Stock dfget falls back to the origin
      // on any failed registration but 608; our dfdaemon tries its next supernode, then the
      // origin (607 would stop it trying other supernodes).
      if (isDfError(err, 'TOO_MANY_REQUESTS')) {
        metrics.registrations.inc({ result: err.code });
        return reply.status(429).send({ code: Code.SystemError, msg: err.message, error: err.code });
      }
      // The origin refused this peer's own credentials for a task fetched with someone's: 608,
      // as for a task the origin refused outright, so stock dfget and our dfdaemon go to the
      // origin themselves (which refuses an unauthorised client) instead of other supernodes.
      if (isDfError(err, 'ACCESS_DENIED')) {
        metrics.registrations.inc({ result: err.code });
        return { code: Code.NeedAuth, msg: err.message, error: err.code };
      }
      // Nobody could say whether it may have the task: refused, but worth another node or a retry.
      if (isDfError(err, 'ACCESS_UNVERIFIED')) {
        metrics.registrations.inc({ result: err.code });
        return reply.status(503).send({ code: Code.SystemError, msg: err.message, error: err.code });
      }
      if (!(err instanceof RegistrationFailed)) throw err;
      metrics.registrations.inc({ result: err.failure.code });
      // A source failure is not bad input: Dragonfly answers 200 with 607/608 so dfget migrates.
      return { code: err.failure.dfCode, msg: err.failure.message };
    }
  });

  app.get('/peer/task', async (req, reply) => {
    const p = params(req);
    const taskId = p.str('taskId', { required: true, max: 128 });
    const cid = p.str('srcCid', { required: true, max: 256 });
    const status = p.int('status', { min: 700, max: 702, def: PeerStatus.Running });
    let report: ReportIn | undefined;
    if (p.has('range') && p.has('result')) {
      report = {
        range: p.str('range', { max: 64 }),
        result: p.int('result', { min: 500, max: 503 }),
        dstCid: p.str('dstCid', { max: 256 }),
      };
    }
    const waitMs = status === PeerStatus.Finished ? 0 : Math.min(p.int('wait', { min: 0, def: 0 }), MAX_WAIT_MS);
    return svc.next(taskId, cid, report, waitMs, hangUpSignal(reply.raw), status === PeerStatus.Finished, remoteOf(req));
  });

  app.get('/peer/piece/suc', async (req) => {
    const p = params(req);
    const taskId = p.str('taskId', { required: true, max: 128 });
    const cid = p.str('cid', { required: true, max: 256 });
    svc.report(taskId, cid, { range: p.str('pieceRange', { required: true, max: 64 }), result: 501, dstCid: p.str('dstCid', { max: 256 }) });
    return { code: Code.PieceSuccess, msg: 'success' };
  });

  app.get('/peer/piece/error', async (req) => {
    const p = params(req);
    // Stock dfget follows this call with result=500 for the same piece on its next /peer/task,
    // which is where the failure is counted (and metered); counting it here too would blacklist
    // and eliminate sources twice as fast. As in Dragonfly, this call only concerns the CDN.
    // dfget's FILE_NOT_EXIST report sends an empty range, so an unknown range is no error here.
    svc.pieceError(p.str('taskId', { required: true, max: 128 }), {
      cid: p.str('srcCid', { required: true, max: 256 }),
      range: p.str('range', { max: 64 }),
      dstCid: p.str('dstCid', { max: 256 }),
      errorType: p.str('errorType', { max: 64 }),
    });
    return { code: Code.Success, msg: 'success' };
  });

  app.get('/peer/service/down', async (req) => {
    const p = params(req);
    svc.serviceDown(p.str('taskId', { required: true, max: 128 }), p.str('cid', { required: true, max: 256 }));
    return { code: Code.PeerDown, msg: 'success' };
  });

  app.post('/task/metrics', async () => null);
  app.post('/peer/network', async () => ({}));
  app.post('/peer/heartbeat', async () => ({}));
}
