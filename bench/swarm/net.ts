// The simulated site: one network namespace per host, each on a veth into one bridge in the
// root namespace, every link shaped with tbf in both directions. Addresses stay in
// 198.18.0.0/15 (RFC 2544 benchmarking range) and no namespace gets a default route, so
// nothing the benchmark starts can reach anything outside its own hosts.
import { runOk } from '../../test/fixtures/proc.js';

export const BRIDGE = 'dfb-br0';
export const BRIDGE_IP = '198.18.0.1';
const PREFIX = 15;

export interface Host {
  ns: string;
  /** veth end in the root namespace, enslaved to the bridge; its egress is the host's downlink. */
  veth: string;
  ip: string;
}

export const ORIGIN: Host = { ns: 'dfb-origin', veth: 'dfb-origin', ip: '198.18.0.10' };
export const SUPER: Host = { ns: 'dfb-sn', veth: 'dfb-sn', ip: '198.18.0.11' };
export const client = (i: number): Host => ({ ns: `dfb-c${i}`, veth: `dfb-c${i}`, ip: `198.18.1.${i}` });

const ip = (args: string[]) => runOk('ip', args, { timeoutMs: 10_000 });
const tc = (args: string[]) => runOk('tc', args, { timeoutMs: 10_000 });

export function inNs(ns: string, cmd: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', ns, cmd, ...args]];
}

/** Leftovers of an earlier run that died hard (names only: whatever runs inside is not ours to kill). */
export async function leftovers(): Promise<{ ns: string[]; links: string[] }> {
  const ns = (await ip(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith('dfb-'));
  const links = (await ip(['-o', 'link', 'show'])).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter((n) => n.startsWith('dfb-'));
  return { ns, links };
}

export async function removeLeftovers(l: { ns: string[]; links: string[] }): Promise<void> {
  for (const x of l.links) await ip(['link', 'del', x]).catch(() => undefined);
  for (const x of l.ns) await ip(['netns', 'del', x]).catch(() => undefined);
}

export class Topology {
  private readonly made: Host[] = [];
  private bridge = false;

  async createBridge(): Promise<void> {
    await ip(['link', 'add', BRIDGE, 'type', 'bridge']);
    this.bridge = true;
    await ip(['addr', 'add', `${BRIDGE_IP}/${PREFIX}`, 'dev', BRIDGE]);
    await ip(['link', 'set', BRIDGE, 'up']);
  }

  async addHost(h: Host): Promise<void> {
    await ip(['netns', 'add', h.ns]);
    this.made.push(h);
    await ip(['link', 'add', h.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
    await ip(['link', 'set', h.veth, 'master', BRIDGE, 'up']);
    await ip(['-n', h.ns, 'addr', 'add', `${h.ip}/${PREFIX}`, 'dev', 'eth0']);
    await ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
  }

  /**
   * tbf on both ends of every host link. The burst covers one 64 KiB GSO packet (a smaller one
   * makes tbf re-segment every packet); 20 ms of queue is a plain switch-port FIFO, so control
   * requests wait behind bulk transfers the way they would on a real saturated link.
   */
  async shape(rate: string, originRate = rate): Promise<void> {
    for (const h of this.made) {
      const spec = ['root', 'tbf', 'rate', h.ns === ORIGIN.ns ? originRate : rate, 'burst', '128kb', 'latency', '20ms'];
      await tc(['qdisc', 'replace', 'dev', h.veth, ...spec]);
      await tc(['-n', h.ns, 'qdisc', 'replace', 'dev', 'eth0', ...spec]);
    }
  }

  get hosts(): readonly Host[] {
    return this.made;
  }

  /** Deleting the root-side veth deletes its peer; namespaces go after. Best effort throughout. */
  async destroy(): Promise<void> {
    for (const h of [...this.made].reverse()) {
      await ip(['link', 'del', h.veth]).catch(() => undefined);
      await ip(['netns', 'del', h.ns]).catch(() => undefined);
    }
    this.made.length = 0;
    if (this.bridge) await ip(['link', 'del', BRIDGE]).catch(() => undefined);
    this.bridge = false;
  }
}

export interface IfCounters {
  rx: number;
  tx: number;
}

/** Byte counters of a host's eth0, read inside its namespace (where /sys shows its devices). */
export async function counters(h: Host): Promise<IfCounters> {
  const [cmd, args] = inNs(h.ns, 'cat', ['/sys/class/net/eth0/statistics/rx_bytes', '/sys/class/net/eth0/statistics/tx_bytes']);
  const [rx, tx] = (await runOk(cmd, args, { timeoutMs: 10_000 })).trim().split('\n').map(Number);
  return { rx, tx };
}

export async function allCounters(hosts: readonly Host[]): Promise<Map<string, IfCounters>> {
  const out = new Map<string, IfCounters>();
  await Promise.all(hosts.map(async (h) => out.set(h.ns, await counters(h))));
  return out;
}
