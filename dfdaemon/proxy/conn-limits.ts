import type { Server as HttpServer, IncomingMessage, ServerOptions } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log/index.js';
import type { ProxyLimits } from './limits.js';

/**
 * Node's default requestTimeout (5 min) answers 408 and drops a request whose body is still
 * arriving: a large `docker push` through the pass-through. The body may take as long as it
 * takes; only a stalled request head is cut. headersTimeout must be given: left out it defaults
 * to min(60 s, requestTimeout), which is 0 here.
 */
export function proxyServerOptions(limits: ProxyLimits): ServerOptions {
  return { requestTimeout: 0, headersTimeout: limits.headersTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs };
}

/**
 * Holds `server` to the connection limits: at most maxConnections at once (Node closes the ones
 * past it as they are accepted; the operator hears of it at most once a minute, not once per
 * connection), and a whole first request within headersTimeoutMs. Node's headersTimeout starts
 * only at a request's first byte: a connection that never sends one would be held for good.
 * `opened` is the event that hands over the connection requests arrive on ('secureConnection'
 * for TLS, whose handshake has its own timeout).
 */
export function guardConnections(server: HttpServer, limits: ProxyLimits, log: Logger, opened: 'connection' | 'secureConnection' = 'connection'): void {
  (server as NetServer).maxConnections = limits.maxConnections;
  let told = -Infinity;
  server.on('drop', () => {
    if (Date.now() - told < 60_000) return;
    told = Date.now();
    log.warn({ maxConnections: limits.maxConnections }, 'connection limit reached: closing new connections as they arrive');
  });
  const silent = new WeakMap<object, NodeJS.Timeout>();
  server.on(opened, (socket: Socket) => {
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    timer.unref();
    silent.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });
  const spoke = (socket: Duplex) => {
    const timer = silent.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    silent.delete(socket);
  };
  server.on('request', (req: IncomingMessage) => spoke(req.socket));
  server.on('connect', (req: IncomingMessage) => spoke(req.socket));
  server.on('upgrade', (req: IncomingMessage) => spoke(req.socket));
}
