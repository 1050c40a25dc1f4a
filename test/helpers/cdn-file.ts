// Reading a CDN task as a test must: when it ends, its content unwrapped, what it logged.
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import type { CdnTask } from '../../supernode/cdn/cdn-task.js';

export function ended(t: CdnTask): Promise<void> {
  if (t.status !== 'RUNNING' && t.status !== 'WAITING') return Promise.resolve();
  return new Promise((r) => t.once('end', () => r()));
}

/** The content of a CDN task file, its pieces unwrapped. */
export async function unwrap(file: string, t: CdnTask): Promise<Buffer> {
  const raw = await readFile(file);
  const parts: Buffer[] = [];
  for (let n = 0; n < t.layout!.count; n++) {
    const p = t.layout!.piece(n);
    parts.push(raw.subarray(p.start + 4, p.start + 4 + p.contentLen));
  }
  return Buffer.concat(parts);
}

/** Log lines as objects, for what a test must see logged (and at which level). */
export function capturingLog() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

