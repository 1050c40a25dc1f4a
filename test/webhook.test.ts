// Push webhooks: Harbor's PUSH_ARTIFACT (default and CloudEvents payloads) and a registry's
// notification envelope, matched against doublestar rules. A matching push preheats the image
// from a token-auth registry with the configured credentials; anything else starts nothing.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { taskId } from '../shared/protocol/taskid.js';
import type { Supernode } from '../supernode/server.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { startTokenIssuer, type TokenIssuer } from './fixtures/token-issuer.js';
import { supernodeAt } from './helpers/cluster.js';
import { Cleanups, loopbackIp } from './helpers/e2e.js';

const KiB = 1024;
const skip = process.env.CI !== 'true' && !existsSync('/usr/bin/docker-registry') ? 'needs /usr/bin/docker-registry' : false;

describe('webhook-driven preheat', { skip, timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let issuer: TokenIssuer;
  let reg: Registry;
  let sn: Supernode;
  let root: string;
  const images = new Map<string, BuiltImage>();
  const HOOK = { Authorization: 'Bearer hook-secret' };

  async function push(repo: string, tag: string): Promise<BuiltImage> {
    const img = await buildImage({ layers: [200 * KiB, 30 * KiB], seed: `${repo}:${tag}` });
    cleanups.push(() => img.cleanup());
    const token = issuer.mint([{ type: 'repository', name: repo, actions: ['pull', 'push'] }]);
    await pushImage(reg.url, repo, tag, img, { headers: { Authorization: `Bearer ${token}` } });
    images.set(`${repo}:${tag}`, img);
    return img;
  }

  const post = async (path: string, body: unknown, headers: Record<string, string> = HOOK, type = 'application/json') => {
    const res = await fetch(`${root}${path}`, { method: 'POST', headers: { 'content-type': type, ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { accepted: Array<{ id: number; url: string }>; ignored: Array<{ reason: string }>; msg?: string } };
  };

  const finished = (id: number) => waitFor(async () => {
    const v = (await (await fetch(`${root}/preheats/${id}`)).json()) as Record<string, string>;
    return v.status === 'SUCCESS' || v.status === 'FAILED' ? v : undefined;
  }, { timeoutMs: 30_000, message: `preheat ${id}` });

  const jobCount = async () => ((await (await fetch(`${root}/preheats`)).json()) as unknown[]).length;

  /** pkg/notifier/model/event.go + webhook/artifact/artifact.go, as Harbor posts it. */
  const harborEvent = (repo: string, tag: string) => {
    const [namespace, name] = repo.split('/');
    return {
      type: 'PUSH_ARTIFACT',
      occur_at: 1700000000,
      operator: 'admin',
      event_data: {
        resources: [{ digest: images.get(`${repo}:${tag}`)?.manifest.digest ?? `sha256:${'0'.repeat(64)}`, tag, resource_url: `${reg.hostPort}/${repo}:${tag}` }],
        repository: { date_created: 1690000000, name, namespace, repo_full_name: repo, repo_type: 'private' },
      },
    };
  };

  before(async () => {
    t = await tmpDir('webhook');
    cleanups.push(() => t.cleanup());
    issuer = await startTokenIssuer({ host: await loopbackIp(), users: { robot: 'robot-pw' } });
    cleanups.push(() => issuer.stop());
    reg = await startRegistry({ host: await loopbackIp(), auth: issuer.registryAuth });
    cleanups.push(() => reg.stop());
    for (const [repo, tag] of [['library/app', 'v1'], ['library/app', 'dev'], ['other/app', 'v1'], ['team/tool', '1.0']]) await push(repo, tag);
    sn = await supernodeAt(t.path, await loopbackIp(), [
      'preheat:',
      '  webhooks:',
      '    token: "Bearer hook-secret"',
      '    registryAuth: { username: robot, password: robot-pw }',
      '    rules:',
      `      - { repository: "library/**", tag: "{v*,latest}", registry: "${reg.url}" }`,
      '      - { repository: "team/*" }',
      '',
    ].join('\n'));
    cleanups.push(() => sn.close());
    root = `http://${(sn.api.server.address() as AddressInfo).address}:${sn.apiPort}`;
  });

  after(() => cleanups.run());

  it('a Harbor PUSH_ARTIFACT for a matching repository and tag preheats the pushed digest (202 at once)', async () => {
    const img = images.get('library/app:v1')!;
    const r = await post('/webhooks/harbor', harborEvent('library/app', 'v1'));
    assert.equal(r.status, 202);
    assert.equal(r.body.accepted.length, 1);
    // resource_url has no scheme: the rule's registry (same host) says http.
    assert.equal(r.body.accepted[0].url, `${reg.url}/v2/library/app/manifests/${img.manifest.digest}`);
    const v = await finished(r.body.accepted[0].id);
    assert.equal(v.status, 'SUCCESS', v.errorMsg);
    for (const b of [...img.layers, img.config]) {
      assert.equal(sn.cdn.get(taskId(`${reg.url}/v2/library/app/blobs/${b.digest}`))?.status, 'SUCCESS');
    }
    assert.ok(issuer.requests.some((q) => q.user === 'robot' && q.authenticated === true), 'the token came from preheat.webhooks.registryAuth');
  });

  it('the CloudEvents payload works the same', async () => {
    const ev = harborEvent('library/app', 'v1');
    const cloud = { specversion: '1.0', id: 'e-1', requestid: 'r-1', source: '/projects/1/webhook/policies/2', type: 'harbor.artifact.pushed', datacontenttype: 'application/json', time: '2024-01-01T00:00:00Z', operator: 'admin', data: ev.event_data };
    const r = await post('/webhooks/harbor', cloud, HOOK, 'application/cloudevents+json');
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal((await finished(r.body.accepted[0].id)).status, 'SUCCESS');
  });

  it('a push that no rule matches, or that is not a push, starts nothing', async () => {
    const before = await jobCount();
    for (const [repo, tag, reason] of [['other/app', 'v1', 'no rule matches'], ['library/app', 'dev', 'no rule matches']]) {
      const r = await post('/webhooks/harbor', harborEvent(repo, tag));
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.accepted, []);
      assert.equal(r.body.ignored[0].reason, reason);
    }
    // The rule names its registry: the same repository on another host is not its business.
    const elsewhere = harborEvent('library/app', 'v1');
    elsewhere.event_data.resources[0].resource_url = 'registry.example.net:5000/library/app:v1';
    assert.equal((await post('/webhooks/harbor', elsewhere)).body.ignored[0].reason, 'no rule matches');
    const pull = await post('/webhooks/harbor', { ...harborEvent('library/app', 'v1'), type: 'PULL_ARTIFACT' });
    assert.equal(pull.body.ignored[0].reason, 'event type PULL_ARTIFACT is not a push');
    const untagged = harborEvent('library/app', 'v1');
    untagged.event_data.resources[0].tag = untagged.event_data.resources[0].digest;
    assert.match((await post('/webhooks/harbor', untagged)).body.ignored[0].reason, /untagged/);
    assert.equal(await jobCount(), before, 'no job was created');
  });

  it('a registry notification envelope: the tagged manifest push preheats, blob pushes and pulls are ignored', async () => {
    const img = images.get('team/tool:1.0')!;
    const target = { mediaType: img.manifest.mediaType, size: img.manifest.size, digest: img.manifest.digest, length: img.manifest.size, repository: 'team/tool' };
    const envelope = {
      events: [
        { id: '1', timestamp: '2024-01-01T00:00:00Z', action: 'push', target: { mediaType: 'application/octet-stream', digest: img.layers[0].digest, repository: 'team/tool', url: `${reg.url}/v2/team/tool/blobs/${img.layers[0].digest}` }, request: { host: reg.hostPort } },
        { id: '2', timestamp: '2024-01-01T00:00:01Z', action: 'push', target: { ...target, url: `${reg.url}/v2/team/tool/manifests/${img.manifest.digest}`, tag: '1.0' }, request: { id: 'q', addr: '127.0.0.1:1', host: reg.hostPort, method: 'PUT', useragent: 'docker/24' }, actor: {}, source: { addr: 'x:5000', instanceID: 'i' } },
        { id: '3', timestamp: '2024-01-01T00:00:02Z', action: 'pull', target: { ...target, tag: '1.0' }, request: { host: reg.hostPort } },
      ],
    };
    const r = await post('/webhooks/registry', envelope, HOOK, 'application/vnd.docker.distribution.events.v1+json');
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.accepted.length, 1);
    assert.deepEqual(r.body.ignored.map((i) => i.reason), ['application/octet-stream is not a manifest', 'action pull is not a push']);
    assert.equal((await finished(r.body.accepted[0].id)).status, 'SUCCESS');
    assert.equal(sn.cdn.get(taskId(`${reg.url}/v2/team/tool/blobs/${img.config.digest}`))?.status, 'SUCCESS');
  });

  it('wrong or missing webhook credentials get 401; malformed bodies get 400', async () => {
    const before = await jobCount();
    const missing = await post('/webhooks/harbor', harborEvent('library/app', 'v1'), {});
    assert.equal(missing.status, 401);
    assert.match(String(missing.body.msg), /webhook: send Authorization header/);
    assert.equal((await post('/webhooks/registry', { events: [] }, { Authorization: 'Bearer nope' })).status, 401);
    const cases: Array<[string, unknown, RegExp]> = [
      ['/webhooks/harbor', '{"type":', /JSON/i],
      ['/webhooks/harbor', { type: 'PUSH_ARTIFACT' }, /not a Harbor webhook event/],
      ['/webhooks/harbor', { type: 'PUSH_ARTIFACT', event_data: { resources: [] } }, /repository must be a JSON object/],
      ['/webhooks/registry', { hello: 1 }, /expected an "events" list/],
    ];
    for (const [path, body, msg] of cases) {
      const r = await post(path, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(String(r.body.msg), msg);
    }
    assert.equal(await jobCount(), before);
  });
});
