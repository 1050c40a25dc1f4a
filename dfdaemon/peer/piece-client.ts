import { connect, type Socket } from 'node:net';

/** Where the bytes of a response body go: called synchronously with each slice of it. */
export interface BodySink {
  /** Status and Content-Length are known (and whether the source relays it); throw to refuse the body. */
  head(status: number, contentLength: number, relayed?: boolean): void;
  /**
   * A slice of the body, valid only during the call (its memory is reused for the next read).
   * Return a promise to stop reading until it settles (backpressure); a rejection aborts.
   */
  data(chunk: Buffer): Promise<void> | undefined;
}

/** The connection closed before any byte of a response: safe to retry on a new one. */
class NoResponse extends Error {
  constructor() {
    super('connection closed before the response');
  }
}

export const READ_BUFFER = 64 * 1024;
const MAX_HEAD = 16 * 1024;
const IDLE_MS = 10_000;
/**
 * A response that sends nothing for this long fails. Clearly below the swarm watchdog (STALL_MS
 * in p2p-download.ts): were the two equal, a download whose slots all sit on a frozen peer could
 * give the blob to the origin before the piece failure blames that peer and frees the slots.
 * While other fetches still receive bytes, the slow-source watch cuts such a fetch off sooner.
 */
export const READ_TIMEOUT_MS = 20_000;

interface Conn {
  socket: Socket;
  /** Receives every read of this connection while a request is active. */
  onRead: ((n: number, buf: Buffer) => boolean) | undefined;
  idleTimer?: NodeJS.Timeout;
}

/**
 * A keep-alive HTTP/1.1 client for piece GETs, which every peer and supernode answers with a
 * Content-Length body. Each connection reads into one fixed buffer (net's `onread`), so
 * streaming a blob allocates nothing per read: with the usual one new buffer per socket read,
 * a 1 GiB download leaves tens of MB of garbage between collections, and dfdaemon runs under a
 * 100 MB memory limit.
 */
export class PieceClient {
  private readonly idle = new Map<string, Conn[]>();
  private closed = false;

  constructor(private readonly opts: { connectTimeoutMs?: number; readTimeoutMs?: number } = {}) {}

  async get(host: string, port: number, path: string, headers: Record<string, string>, sink: BodySink, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const key = `${host}:${port}`;
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${host.includes(':') ? `[${host}]` : host}:${port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    const request = `${lines.join('\r\n')}\r\n\r\n`;
    let conn = this.reuse(key);
    if (conn) {
      // The server may have closed an idle connection just now: then try once on a new one.
      try {
        return await this.run(key, conn, request, sink, signal);
      } catch (err) {
        if (!(err instanceof NoResponse)) throw err;
      }
    }
    conn = await this.open(host, port, signal);
    return this.run(key, conn, request, sink, signal);
  }

  private reuse(key: string): Conn | undefined {
    const list = this.idle.get(key);
    for (let c = list?.pop(); c; c = list?.pop()) {
      clearTimeout(c.idleTimer);
      if (!c.socket.destroyed) return c;
    }
    return undefined;
  }

  private async run(key: string, conn: Conn, request: string, sink: BodySink, signal?: AbortSignal): Promise<void> {
    let keep = false;
    try {
      keep = await this.exchange(conn, request, sink, signal);
    } finally {
      conn.onRead = undefined;
      if (keep && !this.closed && !conn.socket.destroyed) {
        conn.idleTimer = setTimeout(() => this.drop(key, conn), IDLE_MS).unref();
        const list = this.idle.get(key) ?? [];
        list.push(conn);
        this.idle.set(key, list);
      } else {
        conn.socket.destroy();
      }
    }
  }

  private drop(key: string, conn: Conn): void {
    conn.socket.destroy();
    const list = this.idle.get(key);
    if (list) this.idle.set(key, list.filter((c) => c !== conn));
  }

  private open(host: string, port: number, signal?: AbortSignal): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const conn: Conn = { socket: undefined as unknown as Socket, onRead: undefined };
      const socket = connect({
        host,
        port,
        noDelay: true,
        onread: {
          buffer: Buffer.allocUnsafeSlow(READ_BUFFER),
          callback: (n: number, buf: Uint8Array) => conn.onRead?.(n, buf as Buffer) ?? true,
        },
      });
      conn.socket = socket;
      const timer = setTimeout(() => socket.destroy(new Error(`connect to ${host}:${port} timed out`)), this.opts.connectTimeoutMs ?? 3_000);
      const onAbort = () => socket.destroy(signal!.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.on('error', () => undefined);
        resolve(conn);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      });
    });
  }

  /** Send one request and feed its body to `sink`; resolves true when the connection may be reused. */
  private exchange(conn: Conn, request: string, sink: BodySink, signal?: AbortSignal): Promise<boolean> {
    const { socket } = conn;
    return new Promise<boolean>((resolve, reject) => {
      let head = '';
      let left = -1;
      let keep = true;
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        socket.setTimeout(0);
        socket.off('close', onClose);
        socket.off('timeout', onTimeout);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(keep);
      };
      const fail = (err: Error) => {
        socket.destroy();
        finish(err);
      };
      const onClose = () => finish(left < 0 && head === '' ? new NoResponse() : new Error(`connection closed with ${left} body bytes to come`));
      const onTimeout = () => fail(new Error('piece response timed out'));
      const onAbort = () => fail(signal!.reason as Error);
      const deliver = (chunk: Buffer): boolean => {
        left -= chunk.length;
        let wait: Promise<void> | undefined;
        try {
          wait = sink.data(chunk);
        } catch (err) {
          fail(err as Error);
          return false;
        }
        if (left === 0 && !wait) {
          finish();
          return true;
        }
        if (!wait) return true;
        wait.then(
          () => {
            if (done) return;
            if (left === 0) finish();
            else socket.resume();
          },
          (err: Error) => fail(err),
        );
        return false;
      };
      conn.onRead = (n, buf) => {
        if (done) return false;
        if (left >= 0) {
          if (n <= left) return deliver(buf.subarray(0, n));
          fail(new Error('more body bytes than Content-Length'));
          return false;
        }
        // Header bytes are few and ASCII; latin1 keeps offsets equal to byte offsets.
        head += buf.toString('latin1', 0, n);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > MAX_HEAD) fail(new Error('response head too large'));
          return !done;
        }
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
        const len = /\r\ncontent-length:\s*(\d+)/i.exec(head.slice(0, end));
        if (!m || !len) {
          // A refusal without a length (chunked) still says why: the sink judges its status.
          if (m && !m[1].startsWith('2')) {
            try {
              sink.head(Number(m[1]), -1);
            } catch (err) {
              fail(err as Error);
              return false;
            }
          }
          fail(new Error(`unusable response head: ${JSON.stringify(head.slice(0, 80))}`));
          return false;
        }
        keep = !/\r\nconnection:\s*close/i.test(head.slice(0, end)) && /^HTTP\/1\.1/.test(head);
        left = Number(len[1]);
        try {
          sink.head(Number(m[1]), left, /\r\nx-dragonfly-relay:\s*1/i.test(head.slice(0, end)));
        } catch (err) {
          keep = false;
          fail(err as Error);
          return false;
        }
        const bodyStart = end + 4 - (head.length - n);
        if (left === 0) {
          finish();
          return true;
        }
        return bodyStart < n ? deliver(buf.subarray(bodyStart, n)) : true;
      };
      socket.on('close', onClose);
      socket.setTimeout(this.opts.readTimeoutMs ?? READ_TIMEOUT_MS, onTimeout);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.resume();
      socket.write(request);
    });
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
  }
}
