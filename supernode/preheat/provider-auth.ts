import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ProviderAuth } from '../../shared/config/preheat.js';
import { DfError } from '../../shared/errors.js';
import { headerValue } from '../../shared/http/client.js';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Compares secrets in constant time (hashing first evens out the lengths). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

const unauthorized = (reply: FastifyReply, challenge: string, message: string): DfError => {
  reply.header('www-authenticate', challenge);
  return new DfError('UNAUTHORIZED', message);
};

/**
 * The check Harbor's provider calls must pass, one per auth mode: Harbor's OAUTH sends
 * `Authorization: Bearer <token>`, BASIC the first key and value of its map as user and
 * password, CUSTOM one header named after the first key.
 */
export function providerAuth(auth: ProviderAuth): ((req: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined {
  const where = 'preheat API';
  switch (auth.mode) {
    case 'none':
      return undefined;
    case 'bearer':
      return async (req, reply) => {
        const m = /^bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
        if (m === null) throw unauthorized(reply, 'Bearer realm="dragonfly"', `${where}: send "Authorization: Bearer <token>" (preheat.auth.mode is bearer; Harbor's auth mode OAUTH)`);
        if (!sameSecret(m[1].trim(), auth.token)) throw unauthorized(reply, 'Bearer realm="dragonfly", error="invalid_token"', `${where}: the bearer token is not the one in preheat.auth.token`);
      };
    case 'basic':
      return async (req, reply) => {
        const m = /^basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
        if (m === null) throw unauthorized(reply, 'Basic realm="dragonfly"', `${where}: send basic credentials (preheat.auth.mode is basic; Harbor's auth mode BASIC with {"<user>":"<password>"})`);
        if (!sameSecret(Buffer.from(m[1], 'base64').toString('utf8'), `${auth.username}:${auth.password}`)) {
          throw unauthorized(reply, 'Basic realm="dragonfly"', `${where}: wrong user name or password`);
        }
      };
    case 'header': {
      const h = auth.header!;
      return async (req, reply) => {
        const got = headerValue(req.headers[h.name.toLowerCase()]);
        if (got === undefined) throw unauthorized(reply, `Custom header="${h.name}"`, `${where}: send the ${h.name} header (preheat.auth.mode is header; Harbor's auth mode CUSTOM)`);
        if (!sameSecret(got, h.value)) throw unauthorized(reply, `Custom header="${h.name}"`, `${where}: the ${h.name} header has the wrong value`);
      };
    }
  }
}
