// dfdaemon's decisions as data: proxies rules, the mirror route, upstream TLS host rules, the
// per-task supernode order and the supernode failover with an injected clock.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { parseNodeList } from '../shared/config/dfget-flags.js';
import { createLogger } from '../shared/log/index.js';
import { nodeOrder } from '../dfdaemon/peer/node-order.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import { type RegisterBody } from '../dfdaemon/peer/supernode-wire.js';
import { routeAbsolute, routeMirror } from '../dfdaemon/proxy/router.js';
import { parseAuthority, UpstreamRules } from '../dfdaemon/proxy/upstream-tls.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const quiet = createLogger('test', { level: 'silent' });

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function configFrom(yaml: string) {
  const dir = mkdtempSync(join(tmpdir(), 'dfts-route-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  writeFileSync(join(dir, 'dfdaemon.yml'), yaml);
  return loadDfdaemonConfig({ file: join(dir, 'dfdaemon.yml'), defaultFile: null, env: { HOME: dir } });
}

describe('proxies rules', () => {
  const cfg = configFrom(
    [
      'proxies:',
      '  - regx: blobs/sha256.*skip',
      '    direct: true',
      '  - regx: plain.test/.*blobs/sha256',
      '    use_https: true',
      '  - regx: old.test:5000/.*blobs/sha256',
      '    redirect: new.test:6000',
      '  - regx: blobs/sha256.*',
      '',
    ].join('\n'),
  );
  const blob = (host: string, extra = '') => `http://${host}/v2/library/a/blobs/sha256:${'a'.repeat(64)}${extra}`;

  it('the first matching rule wins, even when a later one would send it through P2P', () => {
    assert.deepEqual(routeAbsolute(blob('h.test', '?skip'), 'GET', cfg.proxies), { kind: 'direct', url: blob('h.test', '?skip'), redirected: false });
    assert.equal(routeAbsolute(blob('h.test'), 'GET', cfg.proxies).kind, 'p2p');
  });

  it('use_https upgrades the scheme and redirect swaps the host', () => {
    assert.deepEqual(routeAbsolute(blob('plain.test'), 'GET', cfg.proxies), { kind: 'p2p', url: blob('plain.test').replace('http:', 'https:'), redirected: false });
    assert.deepEqual(routeAbsolute(blob('old.test:5000'), 'GET', cfg.proxies), { kind: 'p2p', url: blob('new.test:6000'), redirected: true });
  });

  it('no rule, or a method other than GET, passes through', () => {
    assert.equal(routeAbsolute('http://h.test/v2/library/a/manifests/latest', 'GET', cfg.proxies).kind, 'direct');
    assert.equal(routeAbsolute(blob('h.test'), 'HEAD', cfg.proxies).kind, 'direct');
  });

  it('registry mirror: blob GETs through P2P against the remote, the rest passed through', () => {
    const remote = 'https://mirror.test:8443/';
    assert.deepEqual(routeMirror('/v2/library/a/blobs/sha256:abc?ns=docker.io', 'GET', remote, false), {
      kind: 'p2p', url: 'https://mirror.test:8443/v2/library/a/blobs/sha256:abc?ns=docker.io', redirected: true,
    });
    assert.equal(routeMirror('/v2/library/a/manifests/latest', 'GET', remote, false).kind, 'direct');
    assert.equal(routeMirror('/v2/library/a/blobs/sha256:abc', 'GET', remote, true).kind, 'direct', 'registry_mirror.direct');
    // The same blob URL (so the same task) however the remote spells its default port and host.
    assert.equal(routeMirror('/v2/a/blobs/sha256:abc', 'GET', 'https://Harbor.test:443', false).url, 'https://harbor.test/v2/a/blobs/sha256:abc');
    assert.equal(routeMirror('/v2/a/blobs/sha256:abc', 'GET', 'http://h.test:80/prefix/', false).url, 'http://h.test/prefix/v2/a/blobs/sha256:abc');
  });
});

describe('upstream TLS host rules', () => {
  const cfg = configFrom(
    ['hijack_https:', '  hosts:', '    - regx: ^harbor\\.test:9443$', '      certs: ["ca.crt"]', '    - regx: ^insecure\\.test$', '      insecure: true', ''].join('\n'),
  );
  const rules = new UpstreamRules(cfg);

  it('matches host:port or the bare host, first rule first, with certs read once', () => {
    assert.equal(rules.match('harbor.test', 9443)?.ca.length, 1);
    assert.equal(rules.match('harbor.test', 443), undefined);
    assert.equal(rules.match('insecure.test', 5000)?.insecure, true);
    assert.deepEqual(rules.forUrl('https://other.test/v2/'), { insecure: false, ca: [] });
    assert.equal(rules.forUrl('https://harbor.test:9443/v2/').ca.length, 1);
  });

  it('parses CONNECT authorities, IPv6 included', () => {
    assert.deepEqual(parseAuthority('harbor.test:443'), { host: 'harbor.test', port: 443 });
    assert.deepEqual(parseAuthority('[::1]:8443'), { host: '::1', port: 8443 });
    assert.equal(parseAuthority('harbor.test'), undefined);
    assert.equal(parseAuthority('h:99999'), undefined);
  });
});

describe('supernode order per task', () => {
  const nodes = parseNodeList('a.test:8002=3,b.test:8002=1,c.test:8002=1', 'n');

  it('is the same for every peer of a task and lists each node once', () => {
    const o = nodeOrder(nodes, 'task-1');
    assert.deepEqual(nodeOrder(nodes, 'task-1'), o);
    assert.deepEqual([...o].sort(), ['a.test:8002', 'b.test:8002', 'c.test:8002']);
  });

  it('gives each node the first place for its share of the weights, as Dragonfly\'s list does', () => {
    const first = new Map<string, number>();
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      const n = nodeOrder(nodes, `t${i}`)[0];
      first.set(n, (first.get(n) ?? 0) + 1);
    }
    assert.ok(Math.abs(first.get('a.test:8002')! / N - 0.6) < 0.02, `a first ${first.get('a.test:8002')}`);
    assert.ok(Math.abs(first.get('b.test:8002')! / N - 0.2) < 0.02);
  });

  it('moves only the removed node\'s tasks when a node goes', () => {
    const without = parseNodeList('a.test:8002=3,b.test:8002=1', 'n');
    for (let i = 0; i < 2_000; i++) {
      const before = nodeOrder(nodes, `t${i}`)[0];
      if (before !== 'c.test:8002') assert.equal(nodeOrder(without, `t${i}`)[0], before);
    }
  });
});

describe('supernode failover', () => {
  const servers: Server[] = [];
  after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  async function fakeNode(seen: string[], name: string): Promise<string> {
    const s = createServer((req: IncomingMessage, res) => {
      seen.push(name);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 200, data: { taskId: 't', fileLength: 1, pieceSize: 4 * 1024 * 1024 } }));
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return `127.0.0.1:${(s.address() as AddressInfo).port}`;
  }

  it('falls over to the next node, keeps the failed one last for a while, then tries it first again', async () => {
    const seen: string[] = [];
    const live = await fakeNode(seen, 'live');
    // A port nothing listens on: the "killed" first supernode.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const dead = `127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise((r) => probe.close(r));

    let now = 1_000_000;
    const client = new SupernodeClient(parseNodeList(`${dead}=1,${live}=1`, 'n'), quiet, { now: () => now, retryFailedMs: 30_000 });
    // A task that ranks the dead node first.
    let key = 0;
    while (nodeOrder(parseNodeList(`${dead}=1,${live}=1`, 'n'), `k${key}`)[0] !== dead) key++;
    const tried: string[] = [];
    const make = async (node: string): Promise<RegisterBody> => {
      tried.push(node);
      return { rawUrl: 'http://o/x', taskUrl: 'http://o/x', cid: 'c', ip: '127.0.0.1', port: 1, path: '/peer/file/t', hostName: 'h', version: 'v', superNodeIp: '', headers: [], dfdaemon: true, relay: true, insecure: false, rootCAs: [] };
    };
    try {
      const r1 = await client.register(`k${key}`, make);
      assert.equal(r1.node, live);
      assert.deepEqual(tried, [dead, live]);
      assert.deepEqual(client.order(`k${key}`), [live, dead], 'the failed node goes last');
      tried.length = 0;
      now += 29_000;
      await client.register(`k${key}`, make);
      assert.deepEqual(tried, [live], 'not retried within the window');
      now += 2_000;
      assert.deepEqual(client.order(`k${key}`), [dead, live], 'retried first after the window');
    } finally {
      await client.close();
    }
  });
});

describe('supernode answers that stall', () => {
  it('a node that sends its head and stalls fails registration over to the next one; /peer/task gives up too', async () => {
    const seen: string[] = [];
    const stall = createServer((req, res) => {
      req.resume();
      // A head and half a JSON body, then nothing.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"code":');
    });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', () => r()));
    const stalled = `127.0.0.1:${(stall.address() as AddressInfo).port}`;
    const good = createServer((req, res) => {
      seen.push(req.url ?? '');
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 200, data: { taskId: 't', fileLength: 1, pieceSize: 4 * 1024 * 1024 } }));
    });
    await new Promise<void>((r) => good.listen(0, '127.0.0.1', () => r()));
    const live = `127.0.0.1:${(good.address() as AddressInfo).port}`;
    const nodes = parseNodeList(`${stalled}=1,${live}=1`, 'n');
    let key = 0;
    while (nodeOrder(nodes, `s${key}`)[0] !== stalled) key++;
    const client = new SupernodeClient(nodes, quiet, { replyTimeoutMs: 500 });
    const make = async (): Promise<RegisterBody> => ({ rawUrl: 'http://o/x', taskUrl: 'http://o/x', cid: 'c', ip: '127.0.0.1', port: 1, path: '/peer/file/t', hostName: 'h', version: 'v', superNodeIp: '', headers: [], dfdaemon: true, relay: true, insecure: false, rootCAs: [] });
    try {
      const started = Date.now();
      const r = await client.register(`s${key}`, make);
      assert.equal(r.node, live);
      assert.ok(Date.now() - started < 5_000);
      const t0 = Date.now();
      await assert.rejects(client.next(stalled, { taskId: 't', srcCid: 'c', status: 0 } as never));
      assert.ok(Date.now() - t0 < 3_000, 'bounded by replyTimeoutMs');
    } finally {
      await client.close();
      stall.closeAllConnections();
      good.closeAllConnections();
      await new Promise((r) => stall.close(r));
      await new Promise((r) => good.close(r));
    }
  });
});

describe('a stock supernode that answers 609 (wait auth)', () => {
  it('is asked again after waitAuthMs, up to three times, and not demoted', async () => {
    let calls = 0;
    const node = createServer((req, res) => {
      req.resume();
      calls++;
      const body = calls <= 2 ? { code: 609, msg: 'wait auth' } : { code: 200, data: { taskId: 't', fileLength: 1, pieceSize: 4 * 1024 * 1024 } };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', () => r()));
    const addr = `127.0.0.1:${(node.address() as AddressInfo).port}`;
    const client = new SupernodeClient(parseNodeList(addr, 'n'), quiet, { waitAuthMs: 20 });
    try {
      const r = await client.register('k', async () => ({ rawUrl: 'http://o/x', taskUrl: 'http://o/x', cid: 'c', ip: '127.0.0.1', port: 1, path: '/peer/file/t', hostName: 'h', version: 'v', superNodeIp: '', headers: [], dfdaemon: true, relay: true, insecure: false, rootCAs: [] }));
      assert.equal(r.node, addr);
      assert.equal(calls, 3);
    } finally {
      await client.close();
      node.closeAllConnections();
      await new Promise((res) => node.close(res));
    }
  });
});

describe('dfdaemon config keys of ours', () => {
  it('cacheLimit and maxConcurrentUploads: defaults, values, and errors that name the key', () => {
    const d = configFrom('');
    assert.equal(d.cacheLimit, 10 * 1024 ** 3);
    assert.equal(d.maxConcurrentUploads, 16);
    assert.equal(d.dfget.expireTime, 180_000, "dfget's --expiretime default");
    const c = configFrom('cacheLimit: 2G\nmaxConcurrentUploads: 4\ndfget_flags: ["--expiretime", "30s"]\n');
    assert.equal(c.cacheLimit, 2 * 1024 ** 3);
    assert.equal(c.maxConcurrentUploads, 4);
    assert.equal(c.dfget.expireTime, 30_000);
    assert.throws(() => configFrom('cacheLimit: 0\n'), /cacheLimit/);
    assert.throws(() => configFrom('maxConcurrentUploads: 0\n'), /maxConcurrentUploads/);
  });
});
