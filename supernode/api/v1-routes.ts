import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { badRequest, peerNotFound, redactUrl, taskNotFound } from '../../shared/errors.js';
import { Params } from '../../shared/protocol/params.js';
import type { Cdn } from '../cdn/cdn.js';
import { peerJson } from '../service/peers.js';
import type { TaskService } from '../service/tasks.js';

const SORT_KEYS = ['ID', 'IP', 'hostName', 'created', 'lastSeen'] as const;

/** Dragonfly's /api/v1 management API for peers and tasks. */
export function v1Routes(app: FastifyInstance, svc: TaskService, cdn: Cdn, now: () => number): void {
  app.post('/api/v1/peers', async (req, reply) => {
    const p = new Params(req.body);
    const ip = p.str('IP', { required: true, max: 64 });
    if (!isIP(ip)) throw badRequest('parameter IP must be an IP address');
    const hostName = p.str('hostName', { max: 256 });
    const id = `${hostName || 'peer'}-${ip}-${process.hrtime.bigint()}${randomBytes(2).toString('hex')}`;
    svc.peers.upsert(id, { IP: ip, hostName, port: p.int('port', { min: 0, max: 65535, def: 0 }), version: p.str('version', { max: 64 }) }, now());
    return reply.status(201).send({ ID: id });
  });

  app.get('/api/v1/peers', async (req) => {
    const p = new Params(req.query);
    const pageNum = p.int('pageNum', { min: 0, def: 0 });
    const pageSize = p.int('pageSize', { min: 1, max: 1000, def: 100 });
    const sortKey = p.str('sortKey', { max: 32 }) || 'created';
    if (!(SORT_KEYS as readonly string[]).includes(sortKey)) throw badRequest(`parameter sortKey must be one of ${SORT_KEYS.join(', ')}`);
    const dir = (p.str('sortDirect', { max: 4 }) || 'ASC').toUpperCase();
    if (dir !== 'ASC' && dir !== 'DESC') throw badRequest('parameter sortDirect must be ASC or DESC');
    const list = [...svc.peers.peers.values()].map(peerJson);
    const k = sortKey as (typeof SORT_KEYS)[number];
    list.sort((a, b) => (a[k] < b[k] ? -1 : a[k] > b[k] ? 1 : 0) * (dir === 'ASC' ? 1 : -1));
    return list.slice(pageNum * pageSize, (pageNum + 1) * pageSize);
  });

  app.get<{ Params: { id: string } }>('/api/v1/peers/:id', async (req) => {
    const info = svc.peers.get(req.params.id);
    if (!info) throw peerNotFound(req.params.id);
    return peerJson(info);
  });

  app.delete<{ Params: { id: string } }>('/api/v1/peers/:id', async (req, reply) => {
    if (!svc.removePeer(req.params.id)) throw peerNotFound(req.params.id);
    return reply.status(204).send();
  });

  app.get<{ Params: { id: string } }>('/api/v1/tasks/:id', async (req) => {
    const id = req.params.id;
    const t = cdn.get(id);
    const e = svc.tasks.get(id);
    if (!t) throw taskNotFound(id);
    return {
      ID: id,
      cdnStatus: t.status,
      rawURL: redactUrl(t.req.url),
      fileLength: t.fileLength,
      httpFileLength: t.fileLength,
      pieceSize: t.pieceSize,
      pieceTotal: t.layout?.count ?? -1,
      piecesReady: t.pieces.filter(Boolean).length,
      realMd5: t.md5 ?? '',
      sha256: t.sha256 ?? '',
      bytesFromSource: t.bytesFromSource,
      resumedFrom: t.resumedFrom,
      accessTime: new Date(t.accessTime).toISOString(),
      peers: e ? e.sched.peers.size : 0,
    };
  });

  app.delete<{ Params: { id: string }; Querystring: { full?: string } }>('/api/v1/tasks/:id', async (req, reply) => {
    const id = req.params.id;
    const full = new Params(req.query).bool('full');
    const known = cdn.get(id) !== undefined || svc.tasks.has(id);
    if (!known) throw taskNotFound(id);
    svc.drop(id);
    if (full) await cdn.delete(id);
    else cdn.forget(id);
    return reply.status(204).send();
  });
}
