'use strict';
// airlock for Node: run untrusted code in a Linux microVM.
//
//   const { Sandbox } = require('airlock');
//   await using sb = await Sandbox.create({ allowNet: ['api.openai.com'],
//                                          secrets: { OPENAI_API_KEY: { value, hosts: [...] } } });
//   const r = await sb.sh`ls -lh ${dir}`;   // interpolations are shell-quoted
//   console.log(r.exitCode, r.text());
//
// Every call returns a Promise and runs off the event loop (the addon's async work); output
// callbacks and streams are fed through thread-safe functions. Errors are AirlockError subclasses
// with .code ('timeout', 'closed', ...) and .status (the negative C status).
const path = require('node:path');
const fs = require('node:fs');
const { Readable } = require('node:stream');

function loadAddon() {
  const tried = [];
  const candidates = [];
  if (process.env.AIRLOCK_NODE_ADDON) candidates.push(process.env.AIRLOCK_NODE_ADDON);
  else {
    const root = path.resolve(__dirname, '..', '..');
    let builds = [];
    try {
      builds = fs.readdirSync(root).filter((d) => d.startsWith('build'))
        .map((d) => path.join(root, d, 'bindings', 'node', 'airlock.node'))
        .filter((p) => fs.existsSync(p))
        .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
    } catch { /* not a source tree */ }
    candidates.push(...builds, path.join(__dirname, 'airlock.node'));
  }
  for (const c of candidates) {
    try {
      return require(c);
    } catch (e) {
      tried.push(`${c}: ${e.message}`);
    }
  }
  throw new Error(`cannot load airlock.node (set AIRLOCK_NODE_ADDON): ${tried.join('; ')}`);
}

const native = loadAddon();

class AirlockError extends Error {
  constructor(message, code, status, options) {
    super(message, options);
    this.name = this.constructor.name;
    this.code = code;
    this.status = status;
  }
}
class InvalidArgumentError extends AirlockError {}
class NotFoundError extends AirlockError {}
class PermissionDeniedError extends AirlockError {}
class UnavailableError extends AirlockError {}
class IOError extends AirlockError {}
class TimeoutError extends AirlockError {}
class ClosedError extends AirlockError {}
class ProtocolError extends AirlockError {}
class ResourceExhaustedError extends AirlockError {}
class DeniedError extends AirlockError {}
class BadImageError extends AirlockError {}
class InternalError extends AirlockError {}
class CancelledError extends AirlockError {}
class CallbackError extends AirlockError {}

// By C status (the negated airlock::Errc): [code, class].
const ERRORS = {
  [-1]: ['invalid_argument', InvalidArgumentError], [-2]: ['not_found', NotFoundError],
  [-3]: ['permission_denied', PermissionDeniedError], [-4]: ['unavailable', UnavailableError],
  [-5]: ['io', IOError], [-6]: ['timeout', TimeoutError], [-7]: ['closed', ClosedError],
  [-8]: ['protocol', ProtocolError], [-9]: ['resource_exhausted', ResourceExhaustedError],
  [-10]: ['denied', DeniedError], [-11]: ['bad_image', BadImageError],
  [-12]: ['internal', InternalError], [-13]: ['cancelled', CancelledError],
};

function wrapError(e) {
  if (e instanceof AirlockError || !(e instanceof Error)) return e;
  const opts = e.cause !== undefined ? { cause: e.cause } : undefined;
  if (e.code === 'callback') return new CallbackError(e.message, 'callback', -1, opts);
  const entry = ERRORS[e.status];
  if (!entry) return e;
  return new entry[1](e.message, entry[0], e.status, opts);
}

// Calls the addon; synchronous throws and rejections both become AirlockErrors.
async function call(fn, ...args) {
  try {
    return await fn(...args);
  } catch (e) {
    throw wrapError(e);
  }
}

// Explicit resource management: `await using sb = await Sandbox.create()` needs a runtime with
// the `using` syntax (Node 24+; Node 20 and 22 do not parse it). On Node 20 write
//   const sb = await Sandbox.create(); try { ... } finally { await sb.close(); }
// Sandbox and Process still implement Symbol.asyncDispose for runtimes and tools (TypeScript's
// downlevel `await using`, DisposableStack polyfills) that call it. Where Symbol.asyncDispose is
// missing it is defined here as Symbol.for('nodejs.asyncDispose'), the symbol Node itself uses,
// so every library agrees on one key.
if (typeof Symbol.asyncDispose !== 'symbol') {
  Object.defineProperty(Symbol, 'asyncDispose', {
    value: Symbol.for('nodejs.asyncDispose'), writable: false, enumerable: false,
    configurable: false,
  });
}
const asyncDispose = Symbol.asyncDispose;

/** POSIX shell quoting: the value arrives as one word, whatever it contains. */
function quote(value) {
  const s = String(value);
  if (s.includes('\0')) throw new InvalidArgumentError('NUL cannot be passed through a shell', 'invalid_argument', -1);
  if (/^[A-Za-z0-9_\/.,:@%+=-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function isTemplate(strings) {
  return Array.isArray(strings) && Array.isArray(strings.raw);
}

/** The template's text with every interpolated value quoted (arrays: each element quoted). */
function buildCommand(strings, values) {
  let out = strings[0];
  values.forEach((v, i) => {
    out += Array.isArray(v) ? v.map(quote).join(' ') : quote(v);
    out += strings[i + 1];
  });
  return out;
}

class Result {
  constructor(r) {
    this.exitCode = r.exitCode;
    this.signal = r.signal;
    this.timedOut = r.timedOut;
    this.stdout = r.stdout;
    this.stderr = r.stderr;
  }
  get ok() { return this.exitCode === 0; }
  /** stdout as UTF-8 without one trailing newline. */
  text() {
    const s = this.stdout.toString('utf8');
    return s.endsWith('\n') ? s.slice(0, -1) : s;
  }
}

// A Promise<Result> that also offers .text(): `await sb.sh\`pwd\`.text()`.
function resultPromise(p) {
  const rp = p.then((r) => new Result(r));
  rp.text = () => rp.then((r) => r.text());
  return rp;
}

function execOptions(o = {}) {
  return {
    env: o.env, cwd: o.cwd,
    timeoutMs: o.timeout, waitTimeoutMs: o.waitTimeout,
    stdin: o.stdin, onStdout: o.onStdout, onStderr: o.onStderr,
  };
}

class Process {
  constructor(handle, streams) {
    this._h = handle;
    this._closed = false;
    /** Readable streams of the output, when no callback was given for it; they end when the
     *  command ends. */
    this.stdout = streams.stdout;
    this.stderr = streams.stderr;
    this._done = null;
    if (this.stdout || this.stderr) {
      // Streams need the end of the command without anyone calling wait(): one waiter for all.
      this._done = call(native.wait, this._h, -1).finally(() => this._endStreams());
      this._done.catch(() => {});
    }
  }
  _endStreams() {
    for (const s of [this.stdout, this.stderr]) if (s && !s.readableEnded) s.push(null);
  }
  get pid() { return native.pid(this._h); }
  write(data, timeoutMs = 30000) { return call(native.write, this._h, data, timeoutMs); }
  closeStdin() { return call(native.closeStdin, this._h); }
  kill(signal = 9) { return call(native.kill, this._h, signal); }
  /** Resolves when the command ends (rejects TimeoutError after timeoutMs; it keeps running). */
  async wait(timeoutMs) {
    if (this._closed) throw new ClosedError('the process handle is closed', 'closed', -7);
    if (!this._done) return new Result(await call(native.wait, this._h, timeoutMs ?? -1));
    if (timeoutMs === undefined || timeoutMs < 0) return new Result(await this._done);
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(
        `the command is still running after ${timeoutMs} ms`, 'timeout', -6)), timeoutMs);
    });
    try {
      return new Result(await Promise.race([this._done, timeout]));
    } finally {
      clearTimeout(timer);
    }
  }
  /** Kills the command if still running; no callback runs after this resolves. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await call(native.destroyProcess, this._h);
    this._endStreams();
  }
  async [asyncDispose]() { await this.close(); }
}

class Files {
  constructor(sb) { this._sb = sb; }
  write(path, data, mode = 0o644) { return call(native.fs, 'write', this._sb._h, path, data, mode); }
  read(path) { return call(native.fs, 'read', this._sb._h, path); }
  async readText(path) { return (await this.read(path)).toString('utf8'); }
  upload(hostPath, guestPath, mode) {
    return call(native.fs, 'upload', this._sb._h, hostPath, guestPath, mode ?? -1);
  }
  download(guestPath, hostPath) { return call(native.fs, 'download', this._sb._h, guestPath, hostPath); }
  mkdir(path, { mode = 0o755, parents = true } = {}) {
    return call(native.fs, 'mkdir', this._sb._h, path, parents, mode);
  }
  stat(path) { return call(native.fs, 'stat', this._sb._h, path); }
  async exists(path) {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
  remove(path, { recursive = false } = {}) {
    return call(native.fs, 'remove', this._sb._h, path, recursive);
  }
}

class Env {
  constructor(sb) { this._sb = sb; }
  /** The value, or null when unset. */
  get(name) { return call(native.env, 'get', this._sb._h, name); }
  all() { return call(native.env, 'list', this._sb._h); }
  set(name, value) { return call(native.env, 'set', this._sb._h, name, String(value)); }
  unset(name) { return call(native.env, 'unset', this._sb._h, name); }
}

function normaliseSecrets(secrets, allowNet) {
  if (!secrets) return undefined;
  return Object.entries(secrets).map(([name, s]) => {
    if (typeof s === 'string') return { name, value: s, hosts: allowNet ?? [] };
    return { name, value: s.value, hosts: s.hosts ?? allowNet ?? [] };
  });
}

class Sandbox {
  constructor(handle) {
    this._h = handle;
    this._closed = false;
    this.files = new Files(this);
    this.env = new Env(this);
  }

  /**
   * Boots a microVM. Options: allowNet, secrets ({NAME: {value, hosts}} or {NAME: value} bound
   * to every allowNet host), env, memoryMb, vcpus, kernel, initramfs, bootTimeout (ms),
   * onConsole(Buffer), onAudit(event) (one per proxied request; names only, never values),
   * requestHook(request) -> undefined (allow) | {allow: false, status, message} |
   * {setHeaders, removeHeaders} (synchronous; throwing denies), hookDeadline (ms the proxy
   * waits for requestHook's answer before refusing the request with 403; default 2000),
   * resolveOverride, extraCaFiles, timeout (ms: the sandbox is killed and everything freed
   * this long after it booted; setTimeout()/extend() move it), maxLifetime (ms, a cap they
   * cannot pass). memoryMb must be 256 to 4096 and vcpus 1 to 64. tapFd: a tap the caller
   * opened (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR; README "Network privileges"), so no privilege
   * is needed; airlock dups it (the caller keeps and closes its own); needs allowNet.
   * Node 20 has no `await using`: close in `finally` (`try { ... } finally { await sb.close(); }`).
   */
  static async create(options = {}) {
    const h = await call(native.create, {
      kernel: options.kernel, initramfs: options.initramfs, memoryMb: options.memoryMb,
      vcpus: options.vcpus, bootTimeoutMs: options.bootTimeout, env: options.env,
      allowNet: options.allowNet, secrets: normaliseSecrets(options.secrets, options.allowNet),
      onConsole: options.onConsole, resolveOverride: options.resolveOverride,
      extraCaFiles: options.extraCaFiles, onAudit: options.onAudit,
      requestHook: options.requestHook, hookDeadlineMs: options.hookDeadline,
      timeoutMs: options.timeout, maxLifetimeMs: options.maxLifetime,
      rootImage: options.rootImage, rootSnapshot: options.rootSnapshot,
      snapshottableRoot: options.snapshottableRoot, rootUpperBytes: options.rootUpperBytes,
      volumes: options.volumes, storageDir: options.storageDir, tapFd: options.tapFd,
    });
    return new Sandbox(h);
  }

  /**
   * `/bin/sh -c command`. As a tagged template (sb.sh`ls ${dir}`) interpolated values are
   * shell-quoted; as a function, sb.sh(command, options). Options: env, cwd, timeout (ms, in the
   * guest), waitTimeout (ms), stdin, onStdout(Buffer), onStderr(Buffer).
   * Resolves to a Result (also for non-zero exit codes); the Promise has .text().
   */
  sh(strings, ...values) {
    let command, options;
    if (isTemplate(strings)) command = buildCommand(strings, values);
    else [command, options] = [strings, values[0]];
    return resultPromise(call(native.sh, this._h, command, execOptions(options)));
  }

  /** Returns an `sh` tagged template that runs with these options. */
  with(options) {
    return (strings, ...values) => resultPromise(
      call(native.sh, this._h, buildCommand(strings, values), execOptions(options)));
  }

  /** argv[0] is looked up in PATH (missing: exit code 127). */
  exec(argv, options) {
    return resultPromise(call(native.exec, this._h, argv, execOptions(options)));
  }

  /**
   * Starts argv. Output goes to onStdout/onStderr callbacks if given, else to the Readable
   * streams process.stdout / process.stderr.
   */
  async spawn(argv, options = {}) {
    const streams = {};
    const onStdout = options.onStdout ?? (streams.stdout = new Readable({ read() {} }),
      (b) => streams.stdout.push(b));
    const onStderr = options.onStderr ?? (streams.stderr = new Readable({ read() {} }),
      (b) => streams.stderr.push(b));
    const h = await call(native.spawn, this._h, argv, {
      env: options.env, cwd: options.cwd, timeoutMs: options.timeout, onStdout, onStderr,
    });
    return new Process(h, streams);
  }

  ping(timeoutMs = 5000) { return call(native.ping, this._h, timeoutMs); }
  /** null while running, else the AirlockError saying why it ended. */
  status() { return wrapError(native.status(this._h)); }
  console() { return call(native.console, this._h); }
  get closed() { return this._closed; }

  /** Kills the sandbox `ms` from now (0: no timeout; maxLifetime still applies). Rejects with
   * ResourceExhaustedError past maxLifetime. */
  setTimeout(ms) { return call(native.lifecycle, 'setTimeout', this._h, ms); }
  /** Pushes the current timeout back by `ms`: InvalidArgumentError without a timeout,
   * ResourceExhaustedError past maxLifetime (the timeout is then unchanged). */
  extend(ms) { return call(native.lifecycle, 'extend', this._h, ms); }
  /** Ends the sandbox at once (no graceful flush) and frees what it holds; calls in flight
   * reject with ClosedError. status() and stats() still work; close() releases the handle. */
  kill() { return call(native.lifecycle, 'kill', this._h, 0); }
  /** Metering figures; frozen once the sandbox ended. */
  stats() {
    try {
      return native.stats(this._h);
    } catch (e) {
      throw wrapError(e);
    }
  }
  /** Forwards a new 127.0.0.1 listener to TCP `port` in the guest: "127.0.0.1:PORT". */
  exposePort(port) { return call(native.expose, this._h, port, false); }
  /** exposePort() as a URL: "http://127.0.0.1:PORT". */
  exposeHttp(port) { return call(native.expose, this._h, port, true); }

  /** A read-only snapshot `name` of this sandbox's root in its store (needs snapshottableRoot);
   * boot it with Sandbox.create({ rootSnapshot: name }). */
  snapshot(name) { return call(native.snapshot, this._h, name); }

  /** Stops the microVM and frees it; calls in flight reject with ClosedError. Idempotent. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await call(native.destroy, this._h);
  }
  async [asyncDispose]() { await this.close(); }
}

// Internal, for bench/bindings only (not API, may change): runs sh("true") n times through the
// C ABI on this sandbox's handle, on the addon's pool thread; resolves to the round trips in ns.
Object.defineProperty(Sandbox.prototype, '_benchShLoop', {
  value(n) { return call(native._benchShLoop, this._h, n); },
  enumerable: false,
});

/**
 * Volumes and snapshots on the host, in `dir` (default ${AIRLOCK_CACHE_DIR:-~/.cache/airlock}).
 * Names: 1-64 of [A-Za-z0-9._-]. A volume attached read-write to a running sandbox cannot be
 * attached again, snapshotted or removed (UnavailableError naming it).
 */
class Storage {
  constructor(dir = null) { this.dir = dir; }
  /** A new empty ext4 volume (sparse; rounded up to whole MiB, at least 16 MiB). */
  createVolume(name, sizeBytes) {
    return call(native.storage, 'createVolume', this.dir, name, null, sizeBytes);
  }
  async volumes() {
    return parseList(await call(native.storage, 'listVolumes', this.dir, null, null, 0))
      .map(([name, size, allocated, flag]) => ({ name, sizeBytes: size, allocatedBytes: allocated,
        inUse: flag }));
  }
  removeVolume(name) { return call(native.storage, 'removeVolume', this.dir, name, null, 0); }
  /** A read-only copy of a volume no sandbox has attached. */
  snapshotVolume(volume, snapshot) {
    return call(native.storage, 'snapshotVolume', this.dir, volume, snapshot, 0);
  }
  volumeFromSnapshot(snapshot, volume) {
    return call(native.storage, 'volumeFromSnapshot', this.dir, snapshot, volume, 0);
  }
  async snapshots() {
    return parseList(await call(native.storage, 'listSnapshots', this.dir, null, null, 0))
      .map(([name, size, allocated, flag]) => ({ name, sizeBytes: size, allocatedBytes: allocated,
        isRoot: flag }));
  }
  removeSnapshot(name) { return call(native.storage, 'removeSnapshot', this.dir, name, null, 0); }
}

// "NAME SIZE ALLOCATED FLAG" lines -> [name, size, allocated, flag].
function parseList(text) {
  return (text ?? '').split('\n').filter((l) => l).map((l) => {
    const [name, size, allocated, flag] = l.split(' ');
    return [name, Number(size), Number(allocated), flag === '1'];
  });
}

const versions = native.versions();

module.exports = {
  Sandbox, Process, Result, Storage, quote, version: versions.version, abiVersion: versions.abi,
  AirlockError, InvalidArgumentError, NotFoundError, PermissionDeniedError, UnavailableError,
  IOError, TimeoutError, ClosedError, ProtocolError, ResourceExhaustedError, DeniedError,
  BadImageError, InternalError, CancelledError, CallbackError,
};
