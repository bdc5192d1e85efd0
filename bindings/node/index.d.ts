// TypeScript declarations for the airlock Node binding (index.js).
/// <reference types="node" />
import { Readable } from 'node:stream';

export declare const version: string;
export declare const abiVersion: number;

export interface SecretSpec {
  /** The real value: never sent to the guest. */
  value: string;
  /** allow_net-style host patterns the value may be sent to (default: every allowNet host). */
  hosts?: string[];
}

export interface SandboxOptions {
  /** Hosts the guest may reach: "api.example.com", "*.example.com", "host:port". */
  allowNet?: string[];
  /** NAME -> secret. The guest's $NAME holds only a placeholder. */
  secrets?: Record<string, SecretSpec | string>;
  env?: Record<string, string>;
  memoryMb?: number;
  vcpus?: number;
  kernel?: string;
  initramfs?: string;
  /** Milliseconds. */
  bootTimeout?: number;
  onConsole?: (chunk: Buffer) => void;
  /** One event per request through the egress proxy. */
  onAudit?: (event: AuditEvent) => void;
  /** Runs (synchronously, on the event loop) before each allowed request goes upstream. */
  requestHook?: (request: HookRequest) => HookDecision | undefined | null;
  /** Milliseconds the proxy waits for requestHook's answer; past it the request gets 403.
   * Default 2000. */
  hookDeadline?: number;
  /** Upstream overrides {"host[:port]": "ip"}, for tests against local servers. */
  resolveOverride?: Record<string, string>;
  /** Extra PEM CA files trusted upstream. */
  extraCaFiles?: string[];
  /** Milliseconds after boot when the sandbox is killed (everything freed); 0/absent: none.
   * Sandbox.setTimeout()/extend() move it. */
  timeout?: number;
  /** Milliseconds: a hard cap setTimeout()/extend() cannot pass. */
  maxLifetime?: number;
  /** Root filesystem: "default" (the cached Debian image) or an ext4 image path; absent: the
   * initramfs. */
  rootImage?: string;
  /** Boot from a root snapshot (Sandbox.snapshot()). */
  rootSnapshot?: string;
  /** The root's writable layer on a disk (rootUpperBytes, default 4 GiB), so snapshot() works. */
  snapshottableRoot?: boolean;
  rootUpperBytes?: number;
  /** Volumes of the store to mount; read-write ones are attached to one sandbox at a time. */
  volumes?: VolumeMount[];
  /** The store of volumes and snapshots; absent: the default. */
  storageDir?: string;
  /** A tap fd the caller opened (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), e.g. from a privileged
   * helper: creating the sandbox then needs no privilege (README "Network privileges"). airlock
   * dups it; the caller keeps and closes its own. Needs allowNet. */
  tapFd?: number;
}

export interface VolumeMount {
  name: string;
  /** Absolute guest path, created if missing. */
  path: string;
  readOnly?: boolean;
}

export interface VolumeInfo {
  name: string;
  sizeBytes: number;
  allocatedBytes: number;
  inUse: boolean;
}

export interface SnapshotInfo {
  name: string;
  sizeBytes: number;
  allocatedBytes: number;
  /** A snapshot of a sandbox root (boot it with rootSnapshot); else of a volume. */
  isRoot: boolean;
}

/** Volumes and snapshots on the host, in `dir` (default ${AIRLOCK_CACHE_DIR:-~/.cache/airlock}). */
export declare class Storage {
  constructor(dir?: string | null);
  readonly dir: string | null;
  createVolume(name: string, sizeBytes: number): Promise<void>;
  volumes(): Promise<VolumeInfo[]>;
  removeVolume(name: string): Promise<void>;
  snapshotVolume(volume: string, snapshot: string): Promise<void>;
  volumeFromSnapshot(snapshot: string, volume: string): Promise<void>;
  snapshots(): Promise<SnapshotInfo[]>;
  removeSnapshot(name: string): Promise<void>;
}

export interface SandboxStats {
  uptimeMs: number;
  /** CPU time of the vCPU threads. */
  vcpuTimeNs: number;
  memoryBytes: number;
  memoryResidentBytes: number;
  /** Through the egress proxy. */
  netBytesUp: number;
  netBytesDown: number;
  netRequests: number;
  /** Commands started (sh, exec, spawn). */
  commands: number;
  /** Until the timeout or max lifetime; null without either, or once ended. */
  timeLeftMs: number | null;
  running: boolean;
}

export interface AuditEvent {
  timeMs: number;
  connectionId: number;
  client: string;
  method: string;
  scheme: string;
  host: string;
  port: number;
  path: string;
  status: number;
  bytesUp: number;
  bytesDown: number;
  durationUs: number;
  decision: 'allowed' | 'denied' | 'error';
  reason: string;
  secretsSubstituted: string[];
  exfiltrationAttempt: boolean;
}

export interface HookRequest {
  method: string;
  scheme: string;
  host: string;
  port: number;
  target: string;
  headers: [string, string][];
}

export interface HookDecision {
  allow?: boolean;
  status?: number;
  message?: string;
  setHeaders?: Record<string, string>;
  removeHeaders?: string[];
}

export interface ExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Milliseconds, enforced in the guest (result.timedOut). */
  timeout?: number;
  /** Milliseconds the host waits (TimeoutError past it). */
  waitTimeout?: number;
  stdin?: Buffer | Uint8Array | string;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  timeout?: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export declare class Result {
  readonly exitCode: number;
  readonly signal: number;
  readonly timedOut: boolean;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly ok: boolean;
  /** stdout as UTF-8 without one trailing newline. */
  text(): string;
}

export interface ResultPromise extends Promise<Result> {
  text(): Promise<string>;
}

export interface FileStat {
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  size: number;
  mtimeMs: number;
}

export declare class Process {
  readonly pid: number;
  /** Set when spawn() got no onStdout / onStderr callback. */
  readonly stdout?: Readable;
  readonly stderr?: Readable;
  write(data: Buffer | Uint8Array | string, timeoutMs?: number): Promise<void>;
  closeStdin(): Promise<void>;
  kill(signal?: number): Promise<void>;
  wait(timeoutMs?: number): Promise<Result>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface Files {
  write(path: string, data: Buffer | Uint8Array | string, mode?: number): Promise<void>;
  read(path: string): Promise<Buffer>;
  readText(path: string): Promise<string>;
  upload(hostPath: string, guestPath: string, mode?: number): Promise<void>;
  download(guestPath: string, hostPath: string): Promise<void>;
  mkdir(path: string, options?: { mode?: number; parents?: boolean }): Promise<void>;
  stat(path: string): Promise<FileStat>;
  exists(path: string): Promise<boolean>;
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
}

export interface Env {
  get(name: string): Promise<string | null>;
  all(): Promise<Record<string, string>>;
  set(name: string, value: string): Promise<void>;
  unset(name: string): Promise<void>;
}

export type ShTag = (strings: TemplateStringsArray, ...values: unknown[]) => ResultPromise;

/**
 * A microVM. Close it when done. `await using sb = await Sandbox.create()` needs Node >= 24;
 * on Node 20 and 22 use `const sb = await Sandbox.create(); try { ... } finally { await
 * sb.close(); }` (Symbol.asyncDispose is implemented, and defined if the runtime lacks it).
 */
export declare class Sandbox {
  static create(options?: SandboxOptions): Promise<Sandbox>;
  readonly files: Files;
  readonly env: Env;
  readonly closed: boolean;
  /** Tagged template: interpolated values (and array elements) are shell-quoted. */
  sh(strings: TemplateStringsArray, ...values: unknown[]): ResultPromise;
  sh(command: string, options?: ExecOptions): ResultPromise;
  /** An `sh` tag bound to options. */
  with(options: ExecOptions): ShTag;
  exec(argv: string[], options?: ExecOptions): ResultPromise;
  spawn(argv: string[], options?: SpawnOptions): Promise<Process>;
  ping(timeoutMs?: number): Promise<void>;
  status(): AirlockError | null;
  console(): Promise<Buffer>;
  setTimeout(ms: number): Promise<void>;
  extend(ms: number): Promise<void>;
  kill(): Promise<void>;
  stats(): SandboxStats;
  /** "127.0.0.1:PORT" forwarding to the guest's TCP `port`. */
  exposePort(port: number): Promise<string>;
  /** "http://127.0.0.1:PORT". */
  exposeHttp(port: number): Promise<string>;
  /** A read-only snapshot of this sandbox's root (needs snapshottableRoot). */
  snapshot(name: string): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export declare function quote(value: unknown): string;

export declare class AirlockError extends Error {
  readonly code: string;
  readonly status: number;
}
export declare class InvalidArgumentError extends AirlockError {}
export declare class NotFoundError extends AirlockError {}
export declare class PermissionDeniedError extends AirlockError {}
export declare class UnavailableError extends AirlockError {}
export declare class IOError extends AirlockError {}
export declare class TimeoutError extends AirlockError {}
export declare class ClosedError extends AirlockError {}
export declare class ProtocolError extends AirlockError {}
export declare class ResourceExhaustedError extends AirlockError {}
export declare class DeniedError extends AirlockError {}
export declare class BadImageError extends AirlockError {}
export declare class InternalError extends AirlockError {}
export declare class CancelledError extends AirlockError {}
export declare class CallbackError extends AirlockError {}
