import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DfError } from '../../shared/errors.js';
import { Code } from '../../shared/protocol/codes.js';
import type { Logger } from '../../shared/log/index.js';

/**
 * The one place errors become responses. Bad input is a 4xx whose body keeps Dragonfly's
 * envelope (`code` 501 param error / 502 not found, `msg`) plus our stable `error` code.
 */
export function errorHandler(log: Logger) {
  return (err: FastifyError | DfError | Error, _req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof DfError) {
      const code = err.status === 404 ? Code.TargetNotFound : err.status < 500 ? Code.ParamError : Code.SystemError;
      return reply.status(err.status).send({ code, msg: err.message, error: err.code });
    }
    const fe = err as FastifyError;
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      const error = fe.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : fe.statusCode === 415 ? 'UNSUPPORTED_MEDIA' : 'BAD_REQUEST';
      return reply.status(fe.statusCode).send({ code: Code.ParamError, msg: fe.message, error });
    }
    log.error({ err }, 'unhandled error');
    return reply.status(500).send({ code: Code.SystemError, msg: 'internal error', error: 'INTERNAL' });
  };
}
