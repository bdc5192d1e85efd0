// Networking through the Node binding (nested runner in CI): secret placeholder, a refused host,
// and the refusal as an audit event. The only request goes to a host the proxy refuses.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const airlock = require('../index.js');
const REAL_KEY = 'sk-test-0123456789abcdef-not-real';

test('secret placeholder, refused host, audit event', async (t) => {
  const events = [];
  let sb;
  try {
    sb = await airlock.Sandbox.create({
      bootTimeout: 240000, allowNet: ['api.example.com'],
      secrets: { API_KEY: { value: REAL_KEY, hosts: ['api.example.com'] } },
      onAudit: (e) => events.push(e),
    });
  } catch (e) {
    assert.ok(e instanceof airlock.UnavailableError && /networking not built yet/.test(e.message));
    t.skip('networking not built yet in this libairlock');
    return;
  }
  try {
    const seen = await sb.sh`printf %s "$API_KEY"`.text();
    assert.ok(seen.length > 0 && !seen.includes(REAL_KEY));
    const out = await sb.sh`wget -q -O /dev/null http://example.org/ 2>&1; echo " exit=$?"`.text();
    assert.ok(out.includes('403') && !out.includes('exit=0'), out);
    for (let i = 0; i < 200 && !events.some((e) => e.host === 'example.org'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const denied = events.filter((e) => e.host === 'example.org');
    assert.ok(denied.length > 0, JSON.stringify(events));
    for (const e of denied) {
      assert.equal(e.decision, 'denied');
      assert.equal(e.status, 403);
      assert.ok(!JSON.stringify(e).includes(REAL_KEY));
    }
  } finally {
    await sb.close();
  }
});
