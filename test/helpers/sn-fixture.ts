// One temp dir, one counting origin and (optionally) one in-process supernode per suite,
// created before its tests and removed after them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { request } from 'undici';
import type { Supernode } from '../../supernode/server.js';
import { supernodeAt } from './cluster.js';
import { startOrigin, type Origin } from './origin.js';

export interface SuiteCtx {
  dir: string;
  origin: Origin;
  /** Set when the suite asked for a supernode (its extra `base:` YAML). */
  sn: Supernode;
  api: string;
}

export function useOrigin(prefix: string, supernodeYaml?: string): SuiteCtx {
  const ctx = {} as SuiteCtx;
  before(async () => {
    ctx.dir = await mkdtemp(join(tmpdir(), `dfts-${prefix}-`));
    ctx.origin = await startOrigin();
    if (supernodeYaml !== undefined) {
      ctx.sn = await supernodeAt(ctx.dir, '127.0.0.1', supernodeYaml);
      ctx.api = `http://127.0.0.1:${ctx.sn.apiPort}`;
    }
  });
  after(async () => {
    await ctx.sn?.close();
    await ctx.origin.close();
    await rm(ctx.dir, { recursive: true, force: true });
  });
  return ctx;
}

export interface Registered {
  code: number;
  taskId: string;
  fileLength: number;
  pieceSize: number;
}

/** POST /peer/registry as JSON; the answer's data flattened. */
export async function registerPeer(api: string, body: Record<string, unknown>): Promise<Registered> {
  const res = await request(`${api}/peer/registry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = (await res.body.json()) as { code: number; data?: { taskId: string; fileLength: number; pieceSize: number } };
  return { code: j.code, taskId: j.data?.taskId ?? '', fileLength: j.data?.fileLength ?? -1, pieceSize: j.data?.pieceSize ?? 0 };
}
