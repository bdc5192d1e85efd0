// The Node binding without a VM: loading, errors, misuse, quoting.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const airlock = require('../index.js');

test('versions', () => {
  assert.equal(airlock.abiVersion, 1);
  assert.match(airlock.version, /^\d+\.\d+\.\d+$/);
});

test('a missing kernel rejects with NotFoundError, off the event loop', async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  await assert.rejects(
    airlock.Sandbox.create({ kernel: '/nonexistent/kernel', initramfs: '/nonexistent/initrd' }),
    (e) => e instanceof airlock.NotFoundError && e.code === 'not_found' && e.status === -2 &&
      e.message.includes('/nonexistent/kernel'));
  clearInterval(timer);
});

test('networking options are passed on or refused plainly, never ignored', async () => {
  await assert.rejects(
    airlock.Sandbox.create({ kernel: '/nonexistent/kernel', allowNet: ['example.com'],
      secrets: { API_KEY: { value: 'sk-do-not-print', hosts: ['example.com'] } } }),
    (e) => (e instanceof airlock.NotFoundError || e instanceof airlock.UnavailableError ||
            e instanceof airlock.PermissionDeniedError) &&
      !e.message.includes('sk-do-not-print'));
});

test('bad options are InvalidArgumentError', async () => {
  await assert.rejects(airlock.Sandbox.create({ allowNet: 'not-an-array' }),
    airlock.InvalidArgumentError);
  await assert.rejects(airlock.Sandbox.create({ secrets: { A: { hosts: [] } } }),
    airlock.InvalidArgumentError);
});

test('calls on a fake or closed handle reject cleanly', async () => {
  const fake = new airlock.Sandbox({});
  await assert.rejects(fake.sh`true`, airlock.InvalidArgumentError);
  await assert.rejects(fake.files.read('/x'), airlock.InvalidArgumentError);
  await assert.rejects(fake.env.get('A'), airlock.InvalidArgumentError);
  await fake.close().catch(() => {});
});

test('quote', () => {
  assert.equal(airlock.quote('abc'), 'abc');
  assert.equal(airlock.quote("it's; rm -rf /"), `'it'\\''s; rm -rf /'`);
  assert.equal(airlock.quote(''), "''");
  assert.equal(airlock.quote('$(id)'), "'$(id)'");
  assert.throws(() => airlock.quote('a\0b'), airlock.InvalidArgumentError);
});

test('lifecycle options out of range are InvalidArgumentError before anything boots', async () => {
  await assert.rejects(airlock.Sandbox.create({ kernel: '/nonexistent/kernel', memoryMb: 100 }),
    (e) => e instanceof airlock.InvalidArgumentError && e.message.includes('memory'));
  await assert.rejects(airlock.Sandbox.create({ kernel: '/nonexistent/kernel', vcpus: 1000 }),
    airlock.InvalidArgumentError);
  await assert.rejects(
    airlock.Sandbox.create({ kernel: '/nonexistent/kernel', timeout: 10000, maxLifetime: 5000 }),
    (e) => e instanceof airlock.InvalidArgumentError && e.message.includes('max_lifetime'));
});

test('lifecycle calls on a fake handle reject or throw cleanly', async () => {
  const fake = new airlock.Sandbox({});
  await assert.rejects(fake.setTimeout(1000), airlock.InvalidArgumentError);
  await assert.rejects(fake.extend(1000), airlock.InvalidArgumentError);
  await assert.rejects(fake.kill(), airlock.InvalidArgumentError);
  await assert.rejects(fake.exposeHttp(8080), airlock.InvalidArgumentError);
  await assert.rejects(fake.exposePort(0), airlock.InvalidArgumentError);
  await assert.rejects(fake.exposePort(70000), airlock.InvalidArgumentError);
  assert.throws(() => fake.stats(), airlock.InvalidArgumentError);
});

test('storage: volumes and snapshots in a fresh store', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'airlock-node-store-'));
  try {
    const st = new airlock.Storage(dir);
    await st.createVolume('data', 20 * 2 ** 20);
    await assert.rejects(st.createVolume('data', 20 * 2 ** 20), airlock.InvalidArgumentError);
    await assert.rejects(st.createVolume('../escape', 20 * 2 ** 20), airlock.InvalidArgumentError);
    const vols = await st.volumes();
    assert.equal(vols.length, 1);
    assert.deepEqual([vols[0].name, vols[0].sizeBytes, vols[0].inUse], ['data', 20 * 2 ** 20, false]);
    await st.snapshotVolume('data', 'data-v1');
    await st.volumeFromSnapshot('data-v1', 'copy');
    assert.deepEqual((await st.volumes()).map((v) => v.name).sort(), ['copy', 'data']);
    assert.deepEqual((await st.snapshots()).map((s) => [s.name, s.isRoot]), [['data-v1', false]]);
    await assert.rejects(st.volumeFromSnapshot('absent', 'copy2'), airlock.NotFoundError);
    await st.removeSnapshot('data-v1');
    await st.removeVolume('copy');
    await st.removeVolume('data');
    assert.deepEqual(await st.volumes(), []);
    // The volume is checked before the kernel is loaded: its name in the error proves the option
    // crossed the C ABI intact.
    await assert.rejects(
      airlock.Sandbox.create({ kernel: '/nonexistent/kernel', initramfs: '/nonexistent/initrd',
        storageDir: dir, volumes: [{ name: 'absent', path: '/data' }] }),
      (e) => e instanceof airlock.NotFoundError && e.message.includes('absent'));
    await assert.rejects(airlock.Sandbox.create({ volumes: [{ name: 'x' }] }),
      airlock.InvalidArgumentError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tapFd crosses the C ABI: a file is no tap, refused before anything boots', async () => {
  const { openSync, fstatSync, closeSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const fd = openSync(fileURLToPath(import.meta.url), 'r');
  try {
    await assert.rejects(
      airlock.Sandbox.create({ kernel: '/nonexistent/kernel', allowNet: ['example.com'], tapFd: fd }),
      (e) => e instanceof airlock.InvalidArgumentError && e.message.includes('tap_fd') &&
        e.message.includes('tun/tap'));
    fstatSync(fd);  // borrowed: still open
    await assert.rejects(airlock.Sandbox.create({ kernel: '/nonexistent/kernel', tapFd: fd }),
      (e) => e instanceof airlock.InvalidArgumentError &&
        e.message.includes('tap_fd needs allow_net'));
  } finally {
    closeSync(fd);
  }
  await assert.rejects(
    airlock.Sandbox.create({ kernel: '/nonexistent/kernel', allowNet: ['example.com'], tapFd: -1 }),
    (e) => e instanceof airlock.InvalidArgumentError && e.message.includes('tap_fd'));
  await assert.rejects(airlock.Sandbox.create({ tapFd: 'three' }),
    (e) => e instanceof airlock.InvalidArgumentError && e.message.includes('tapFd'));
});
