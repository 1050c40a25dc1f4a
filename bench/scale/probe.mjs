// A late-joining dfdaemon's registration, with the real SupernodeClient, while the swarm runs.
import { SupernodeClient } from '../../dist/dfdaemon/peer/supernode-client.js';
import { createLogger } from '../../dist/shared/log/index.js';
const [node, url] = process.argv.slice(2);
const c = new SupernodeClient([{ addr: node, host: node.split(':')[0], port: Number(node.split(':')[1]), weight: 1 }], createLogger('probe', { level: 'warn' }));
const t0 = Date.now();
try {
  const r = await c.register('k', async () => ({ rawUrl: url, taskUrl: url, cid: 'rvk-probe-' + process.pid, ip: '127.0.0.1', port: 30001, path: '/peer/file/x', hostName: 'probe', version: '1', superNodeIp: '127.0.0.1', headers: [], dfdaemon: true, relay: true, insecure: false, rootCAs: [] }));
  console.log('registered in', Date.now() - t0, 'ms', r.taskId.slice(0, 12));
} catch (e) { console.log('REGISTRATION FAILED after', Date.now() - t0, 'ms:', e.message); }
await c.close();
