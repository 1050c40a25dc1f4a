// A preheat must warm the tasks the dfdaemons will ask for. Their task IDs come from the blob URL
// as a URL object writes it (a hijacked or mirrored request: lower-case host, no default port),
// so Harbor's own spelling of its address must not give other IDs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blobUrl, parseManifestUrl, PreheatFailure } from '../supernode/preheat/manifest.js';

const digest = `sha256:${'a'.repeat(64)}`;

describe('preheat manifest URLs', () => {
  it('spell the registry as a dfdaemon request does', () => {
    for (const written of ['https://Harbor.test:443', 'https://harbor.test', 'HTTPS://HARBOR.TEST:443']) {
      const t = parseManifestUrl(`${written}/v2/library/app/manifests/v1`);
      assert.equal(blobUrl(t, digest), `https://harbor.test/v2/library/app/blobs/${digest}`, written);
    }
    assert.equal(blobUrl(parseManifestUrl('http://h.test:80/v2/a/manifests/v1'), digest), `http://h.test/v2/a/blobs/${digest}`);
    assert.equal(blobUrl(parseManifestUrl('https://h.test:8443/prefix/v2/a/manifests/v1'), digest), `https://h.test:8443/prefix/v2/a/blobs/${digest}`);
  });

  it('refuse a registry address no URL can hold', () => {
    assert.throws(() => parseManifestUrl('https://bad host/v2/a/manifests/v1'), PreheatFailure);
  });
});
