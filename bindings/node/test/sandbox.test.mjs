// The Node binding against a real sandbox (nested runner in CI). One sandbox for the file; the
// last test closes it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const airlock = require('../index.js');
const { Sandbox } = airlock;

let sb;
const consoleChunks = [];

test.before(async () => {
  sb = await Sandbox.create({ bootTimeout: 240000, env: { FROM_OPTIONS: 'yes' },
    onConsole: (b) => consoleChunks.push(b) });
});

test('sh tagged template, quoting and results', async () => {
  const r = await sb.sh`echo hello; echo oops >&2; exit 3`;
  assert.equal(r.exitCode, 3);
  assert.equal(r.stdout.toString(), 'hello\n');
  assert.equal(r.stderr.toString(), 'oops\n');
  assert.equal(await sb.sh`pwd`.text(), '/');
  assert.equal((await sb.sh`echo $FROM_OPTIONS`).text(), 'yes');
  const hostile = "it's $(touch /tmp/pwned); `id` \"x\" \\ *";
  assert.equal(await sb.sh`printf %s ${hostile}`.text(), hostile);
  assert.equal(await sb.sh`printf '%s|' ${['a b', 'c']}`.text(), 'a b|c|');
  assert.equal((await sb.sh`test -e /tmp/pwned && echo yes || echo no`).text(), 'no');
});

test('sh with options, exec, timeouts', async () => {
  const r = await sb.sh('echo "$A $(pwd) $(cat)"', { env: { A: 'x y' }, cwd: '/tmp', stdin: 'in' });
  assert.equal(r.text(), 'x y /tmp in');
  assert.equal((await sb.exec(['printf', '%s', '$HOME'])).text(), '$HOME');
  assert.equal((await sb.exec(['no-such-program'])).exitCode, 127);
  assert.equal((await sb.sh('sleep 30', { timeout: 500 })).timedOut, true);
  await assert.rejects(sb.sh('sleep 30', { waitTimeout: 500 }), airlock.TimeoutError);
});

test('streaming sh delivers every chunk before resolving', async () => {
  const chunks = [];
  const r = await sb.sh('for i in 1 2 3; do echo line$i; sleep 0.1; done',
    { onStdout: (b) => chunks.push(b) });
  assert.equal(r.stdout.length, 0);
  assert.equal(Buffer.concat(chunks).toString(), 'line1\nline2\nline3\n');
});

test('a callback that throws rejects the call, nothing crashes', async () => {
  await assert.rejects(sb.sh('echo hi', { onStdout: () => { throw new Error('boom'); } }),
    (e) => e instanceof airlock.CallbackError && e.cause?.message === 'boom');
  assert.equal(await sb.sh`echo fine`.text(), 'fine');
});

test('the event loop keeps running during a long call', async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  await sb.sh('sleep 1');
  clearInterval(timer);
  assert.ok(ticks >= 20, `only ${ticks} ticks`);
});

test('spawn with callbacks and with streams', async () => {
  const got = [];
  {
    // `await using` needs Node >= 24; Node 20 gets the same through Symbol.asyncDispose.
    const p = await sb.spawn(['cat'], { onStdout: (b) => got.push(b) });
    try {
      assert.ok(p.pid > 1);
      await p.write('one\n');
      await p.write(Buffer.from('two\n'));
      await p.closeStdin();
      assert.equal((await p.wait(60000)).exitCode, 0);
    } finally {
      await p[Symbol.asyncDispose]();
    }
  }
  assert.equal(Buffer.concat(got).toString(), 'one\ntwo\n');

  const p = await sb.spawn(['sh', '-c', 'echo out; echo err >&2']);
  const chunks = [];
  for await (const c of p.stdout) chunks.push(c);
  const r = await p.wait(60000);
  assert.equal(r.exitCode, 0);
  assert.equal(Buffer.concat(chunks).toString(), 'out\n');
  await p.close();

  const s = await sb.spawn(['sleep', '60']);
  await assert.rejects(s.wait(200), airlock.TimeoutError);
  await s.kill(15);
  assert.equal((await s.wait(60000)).signal, 15);
  await s.close();
  await assert.rejects(s.wait(10), airlock.ClosedError);
});

test('files', async () => {
  await sb.files.write('/tmp/js/a.txt', 'héllo');
  assert.equal(await sb.files.readText('/tmp/js/a.txt'), 'héllo');
  await sb.files.write('/tmp/js/b.bin', Buffer.from([0, 1]), 0o600);
  const st = await sb.files.stat('/tmp/js/b.bin');
  assert.deepEqual([st.type, st.size, st.mode], ['file', 2, 0o600]);
  await assert.rejects(sb.files.read('/tmp/js/missing'), airlock.NotFoundError);
  assert.equal(await sb.files.exists('/tmp/js/missing'), false);
  await sb.files.mkdir('/tmp/js/d/e');
  assert.equal((await sb.files.stat('/tmp/js/d/e')).type, 'directory');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-js-'));
  const src = path.join(dir, 'src');
  fs.writeFileSync(src, Buffer.alloc(200000, 7));
  await sb.files.upload(src, '/tmp/js/up');
  await sb.files.download('/tmp/js/up', path.join(dir, 'dst'));
  assert.ok(fs.readFileSync(path.join(dir, 'dst')).equals(fs.readFileSync(src)));
  fs.rmSync(dir, { recursive: true });
  await sb.files.remove('/tmp/js', { recursive: true });
  assert.equal(await sb.files.exists('/tmp/js'), false);
});

test('env', async () => {
  await sb.env.set('JS_VAR', 'v1');
  assert.equal(await sb.env.get('JS_VAR'), 'v1');
  assert.equal((await sb.env.all()).JS_VAR, 'v1');
  assert.equal(await sb.sh`echo $JS_VAR`.text(), 'v1');
  await sb.env.unset('JS_VAR');
  assert.equal(await sb.env.get('JS_VAR'), null);
  await assert.rejects(sb.env.set('BAD=NAME', 'x'), airlock.InvalidArgumentError);
});

test('many calls at once', async () => {
  const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => sb.sh`echo ${i}`.text()));
  assert.deepEqual(rs, Array.from({ length: 12 }, (_, i) => String(i)));
});

test('stats and timeouts', async () => {
  const st = sb.stats();
  assert.equal(st.running, true);
  assert.ok(st.commands > 0 && st.vcpuTimeNs > 0 && st.uptimeMs > 0);
  assert.ok(st.memoryResidentBytes > 0 && st.memoryResidentBytes < st.memoryBytes);
  assert.equal(st.timeLeftMs, null);
  await assert.rejects(sb.extend(1000), airlock.InvalidArgumentError);
  await sb.setTimeout(600000);
  await sb.extend(60000);
  const left = sb.stats().timeLeftMs;
  assert.ok(left > 600000 && left <= 660000, `timeLeftMs ${left}`);
  await sb.setTimeout(0);
  assert.equal(sb.stats().timeLeftMs, null);
  const before = sb.stats().commands;
  await sb.sh`true`;
  assert.equal(sb.stats().commands, before + 1);
});

test('exposeHttp reaches a server in the guest', async () => {
  await sb.files.write('/srv/node/index.html', 'served to node\n');
  const httpd = await sb.spawn(['busybox', 'httpd', '-f', '-p', '127.0.0.1:8092', '-h', '/srv/node']);
  try {
    const ready = await sb.sh('for i in $(seq 100); do wget -q -O /dev/null ' +
      'http://127.0.0.1:8092/index.html && exit 0; sleep 0.1; done; exit 1');
    assert.equal(ready.exitCode, 0);
    const url = await sb.exposeHttp(8092);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await sb.exposePort(8092), url.slice('http://'.length));
    const res = await fetch(url + '/index.html');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'served to node\n');
  } finally {
    await httpd.close();
  }
});

test('a timeout ends a sandbox by itself; kill is then harmless', async () => {
  const s = await Sandbox.create({ bootTimeout: 240000, timeout: 2000, maxLifetime: 60000 });
  try {
    await assert.rejects(s.extend(120000), airlock.ResourceExhaustedError);
    await assert.rejects(s.sh`sleep 600`,
      (e) => e instanceof airlock.TimeoutError && e.message.includes('timed out'));
    assert.ok(s.status() instanceof airlock.TimeoutError);
    const st = s.stats();
    assert.equal(st.running, false);
    assert.equal(st.commands, 1);
    await s.kill();
    assert.ok(s.status() instanceof airlock.TimeoutError);
  } finally {
    await s.close();
  }
});

test('Debian root image and a volume: a file written in one sandbox is read in the next',
  async () => {
    // The store lives under the cwd (the build tree: the nested runner shares it, its /tmp is its
    // own). Two boots; python3 is only in the Debian image, not in the initramfs.
    const store = fs.mkdtempSync(path.join(process.cwd(), 'node-vm-store-'));
    try {
      const st = new airlock.Storage(store);
      await st.createVolume('data', 64 * 2 ** 20);
      const options = { bootTimeout: 240000, rootImage: 'default', storageDir: store,
        volumes: [{ name: 'data', path: '/data' }] };
      const first = await Sandbox.create(options);
      try {
        const w = await first.exec(['python3', '-c', "open('/data/f', 'w').write('from node')"]);
        assert.equal(w.exitCode, 0, w.stderr.toString());
        assert.deepEqual((await st.volumes()).map((v) => [v.name, v.inUse]), [['data', true]]);
        await assert.rejects(Sandbox.create(options),
          (e) => e instanceof airlock.UnavailableError && e.message.includes('volume data'));
      } finally {
        await first.close();
      }
      assert.deepEqual((await st.volumes()).map((v) => v.inUse), [false]);
      const second = await Sandbox.create(options);
      try {
        const r = await second.sh`cat /data/f && test -f /etc/debian_version`;
        assert.equal(r.exitCode, 0, r.stderr.toString());
        assert.equal(r.stdout.toString(), 'from node');
      } finally {
        await second.close();
      }
      await st.removeVolume('data');
    } finally {
      fs.rmSync(store, { recursive: true, force: true });
    }
  });

test('state', async () => {
  await sb.ping();
  assert.equal(sb.status(), null);
  assert.ok((await sb.console()).length > 0);
  assert.ok(consoleChunks.length > 0);
});

test('close while a call runs, then use', async () => {
  const pending = sb.sh('sleep 120').then(() => null, (e) => e);
  await new Promise((r) => setTimeout(r, 1500));
  await sb.close();
  const e = await pending;
  assert.ok(e instanceof airlock.ClosedError, String(e));
  await assert.rejects(sb.sh`true`, airlock.ClosedError);
  await sb.close();
});
