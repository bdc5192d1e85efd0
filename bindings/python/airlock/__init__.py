"""airlock: run untrusted code in a Linux microVM, from Python.

    import airlock
    with airlock.Sandbox(allow_net=["api.openai.com"],
                         secrets={"OPENAI_API_KEY": ("sk-...", ["api.openai.com"])}) as sb:
        r = sb.sh("ls -lh /")
        print(r.exit_code, r.text())

A thin layer over libairlock.so (the C ABI, capi/airlock.h) through ctypes; see airlock._capi.
Errors raise AirlockError subclasses (TimeoutError-, ValueError-, ... compatible ones where
Python has them). Blocking calls release the GIL. Methods may be called from any thread.
Streaming callbacks run on library threads; an exception raised by one is kept and re-raised as
CallbackError by the call that waits for that command (sh/exec/Process.wait), never lost and
never crashing the process.
"""
from __future__ import annotations

import ctypes
import shlex
import threading
from ctypes import byref, c_char_p, c_int, c_size_t, c_void_p
from dataclasses import dataclass, field
from typing import (Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from . import _capi
from ._capi import (AirlockError, AirlockIOError, AirlockTimeoutError, BadImageError,
                    CancelledError, ClosedError, DeniedError, InternalError, InvalidArgumentError,
                    NotFoundError, PermissionDeniedError, ProtocolError, ResourceExhaustedError,
                    UnavailableError)

__all__ = [
    "Sandbox", "Process", "Result", "FileStat", "Secret", "AuditEvent", "HookRequest",
    "HookDecision", "Stats", "CallbackError", "AirlockError", "InvalidArgumentError", "NotFoundError",
    "PermissionDeniedError", "UnavailableError", "AirlockIOError", "AirlockTimeoutError",
    "ClosedError", "ProtocolError", "ResourceExhaustedError", "DeniedError", "BadImageError",
    "InternalError", "CancelledError", "version", "abi_version", "quote", "Storage", "Volume",
    "VolumeInfo", "SnapshotInfo"
]

OutputCallback = Callable[[bytes], None]
quote = shlex.quote


def version() -> str:
    """The loaded libairlock's version ("0.1.0")."""
    return _capi.airlock_version().decode()


def abi_version() -> int:
    """The loaded libairlock's ABI version (this package speaks version 1)."""
    return int(_capi.airlock_abi_version())


if abi_version() != _capi.ABI_VERSION:
    raise ImportError(f"libairlock ABI {abi_version()} is not the {_capi.ABI_VERSION} this "
                      "package was written for")


class CallbackError(AirlockError):
    """A Python callback given to airlock raised; the original is in __cause__."""


@dataclass(frozen=True)
class Result:
    """What a finished command produced."""

    exit_code: int  # -1 when killed by a signal
    signal: int
    timed_out: bool
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self, encoding: str = "utf-8") -> str:
        """stdout decoded, without one trailing newline: sb.sh("pwd").text() == "/"."""
        s = self.stdout.decode(encoding, "replace")
        return s[:-1] if s.endswith("\n") else s


@dataclass(frozen=True)
class FileStat:
    type: str  # "regular", "directory", "symlink", "other"
    mode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Volume:
    """A volume of the store (Storage) to mount in the guest at `path`. A read-write volume is
    attached to one sandbox at a time (a second one gets UnavailableError naming it)."""

    name: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    size_bytes: int
    allocated_bytes: int  # host space used (images are sparse)
    in_use: bool  # attached to a running sandbox


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    size_bytes: int
    allocated_bytes: int
    is_root: bool  # of a sandbox root (boot it with root_snapshot=); else of a volume


class Storage:
    """Volumes and snapshots on the host, in `directory` (default:
    ${AIRLOCK_CACHE_DIR:-~/.cache/airlock}). Names: 1-64 of [A-Za-z0-9._-]."""

    def __init__(self, directory: Optional[str] = None) -> None:
        self.directory = directory

    def _d(self) -> Optional[bytes]:
        return _b(self.directory)

    @staticmethod
    def _lines(fn, d) -> list:
        out, n = c_void_p(), c_size_t()
        fn(d, byref(out), byref(n))
        text = _capi.take_bytes(out, n.value).decode()
        return [line.split(" ") for line in text.splitlines() if line]

    def create_volume(self, name: str, size_bytes: int) -> None:
        """A new empty ext4 volume (sparse; rounded up to whole MiB, at least 16 MiB)."""
        _capi.airlock_volume_create(self._d(), _b(name), size_bytes)

    def volumes(self) -> list:
        return [VolumeInfo(f[0], int(f[1]), int(f[2]), f[3] == "1")
                for f in self._lines(_capi.airlock_volume_list, self._d())]

    def remove_volume(self, name: str) -> None:
        _capi.airlock_volume_remove(self._d(), _b(name))

    def snapshot_volume(self, volume: str, snapshot: str) -> None:
        """A read-only copy of a volume no sandbox has attached."""
        _capi.airlock_volume_snapshot(self._d(), _b(volume), _b(snapshot))

    def volume_from_snapshot(self, snapshot: str, volume: str) -> None:
        _capi.airlock_volume_from_snapshot(self._d(), _b(snapshot), _b(volume))

    def snapshots(self) -> list:
        return [SnapshotInfo(f[0], int(f[1]), int(f[2]), f[3] == "1")
                for f in self._lines(_capi.airlock_snapshot_list, self._d())]

    def remove_snapshot(self, name: str) -> None:
        _capi.airlock_snapshot_remove(self._d(), _b(name))


@dataclass(frozen=True)
class Secret:
    """A real credential and the hosts (allow_net patterns) it may be sent to. The guest sees an
    environment variable of the secret's name holding only a placeholder."""

    value: str
    hosts: Sequence[str]


@dataclass(frozen=True)
class AuditEvent:
    time_unix_ns: int
    connection_id: int
    client: str
    method: str
    scheme: str
    host: str
    port: int
    path: str
    status: int
    bytes_up: int
    bytes_down: int
    duration_us: int
    decision: str  # "allowed", "denied", "error"
    reason: str
    secrets_substituted: Tuple[str, ...]
    exfiltration_attempt: bool


@dataclass(frozen=True)
class HookRequest:
    method: str
    scheme: str
    host: str
    port: int
    target: str
    headers: Tuple[Tuple[str, str], ...]


@dataclass
class HookDecision:
    """Returned by a request hook; None from the hook means allow unchanged."""

    allow: bool = True
    status: int = 403
    message: str = ""
    set_headers: Dict[str, str] = field(default_factory=dict)
    remove_headers: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stats:
    """Metering figures of a sandbox (Sandbox.stats()); frozen once it ended."""

    uptime: float  # seconds since the sandbox was created (until its end)
    vcpu_time: float  # CPU seconds used by the vCPU threads
    memory_bytes: int  # guest RAM configured
    memory_resident_bytes: int  # guest RAM the host actually backs
    net_bytes_up: int  # through the egress proxy, to upstreams
    net_bytes_down: int
    net_requests: int
    commands: int  # commands started (sh, exec, spawn)
    time_left: Optional[float]  # seconds until the timeout / max lifetime; None: no limit
    running: bool


def _b(s: Union[str, bytes, None]) -> Optional[bytes]:
    """A C string argument: UTF-8, no NUL inside."""
    if s is None:
        return None
    try:
        b = s if isinstance(s, bytes) else str(s).encode()
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(f"not encodable as UTF-8: {e}", _capi.E_INVALID_ARGUMENT)
    if b"\0" in b:
        raise InvalidArgumentError("strings passed to airlock must not contain NUL",
                                   _capi.E_INVALID_ARGUMENT)
    return b


def _data(d: Union[str, bytes, None]) -> bytes:
    """Binary data (file contents, stdin): any bytes; str is UTF-8 encoded."""
    if d is None:
        return b""
    if isinstance(d, str):
        return d.encode()
    return bytes(d)


def _s(p: Optional[bytes]) -> str:
    return p.decode("utf-8", "replace") if p else ""


def _ms(seconds: Optional[float]) -> int:
    if seconds is None:
        return 0
    if seconds < 0:
        raise InvalidArgumentError("timeouts must not be negative", _capi.E_INVALID_ARGUMENT)
    return max(1, int(seconds * 1000)) if seconds > 0 else 0


def _env_array(env: Optional[Mapping[str, str]]):
    items = list((env or {}).items())
    arr = (_capi.airlock_env_var * max(1, len(items)))()
    for i, (k, v) in enumerate(items):
        arr[i].name = _b(k)
        arr[i].value = _b(v)
    return arr, len(items)


def _str_array(items: Sequence[str]):
    arr = (c_char_p * max(1, len(items)))()
    for i, s in enumerate(items):
        arr[i] = _b(s)
    return arr


class _CallbackErrors:
    """Collects the first exception a callback raised, for the waiting call to re-raise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None

    def record(self, e: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = e

    def raise_if_any(self) -> None:
        with self._lock:
            e, self._error = self._error, None
        if e is not None:
            raise CallbackError(f"a callback raised {type(e).__name__}: {e}",
                                _capi.E_INVALID_ARGUMENT) from e


def _output_fn(cb: Optional[OutputCallback], errors: _CallbackErrors):
    if cb is None:
        return _capi.airlock_output_fn()  # NULL

    def trampoline(data, length, _user):
        try:
            cb(ctypes.string_at(data, length) if length else b"")
        except BaseException as e:  # noqa: BLE001 - must not unwind into C
            errors.record(e)

    return _capi.airlock_output_fn(trampoline)


def _take_result(r: _capi.airlock_exec_result) -> Result:
    try:
        out = ctypes.string_at(r.stdout_data, r.stdout_len) if r.stdout_data else b""
        err = ctypes.string_at(r.stderr_data, r.stderr_len) if r.stderr_data else b""
        return Result(r.exit_code, r.signal, bool(r.timed_out), out, err)
    finally:
        _capi.airlock_exec_result_free(byref(r))


class _Closeable:
    """close() at the with-block's end and when collected (errors then are swallowed: a
    finaliser must not raise)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class Process(_Closeable):
    """A command started with Sandbox.spawn(). Use as a context manager, or close() it: that kills
    the command if it still runs and stops its callbacks."""

    def __init__(self, handle, callbacks, errors: _CallbackErrors, sandbox: "Sandbox") -> None:
        self._handle = handle
        self._callbacks = callbacks  # the ctypes trampolines must outlive the handle
        self._errors = errors
        self._sandbox = sandbox
        self._lock = threading.Lock()

    def _h(self):
        h = self._handle
        if h is None:
            raise ClosedError("process handle is closed", _capi.E_CLOSED)
        return h

    @property
    def pid(self) -> int:
        """The command's pid in the guest."""
        pid = c_int()
        _capi.airlock_process_pid(self._h(), byref(pid))
        return pid.value

    def write(self, data: Union[bytes, str], timeout: float = 30.0) -> None:
        """Writes to the command's stdin (blocks while more than 1 MiB is unread)."""
        b = _data(data)
        _capi.airlock_process_write_stdin(self._h(), b, len(b), _ms(timeout))

    def close_stdin(self) -> None:
        _capi.airlock_process_close_stdin(self._h())

    def kill(self, signal: int = 9) -> None:
        """Signals the command's process group."""
        _capi.airlock_process_kill(self._h(), signal)

    def wait(self, timeout: Optional[float] = None) -> Result:
        """Waits for the command. AirlockTimeoutError when still running after `timeout` seconds
        (it keeps running). Output of streams without a callback is in the result."""
        r = _capi.airlock_exec_result()
        _capi.airlock_exec_result_init(byref(r))
        ms = (1 << 62) if timeout is None else (_ms(timeout) if timeout > 0 else 0)
        _capi.airlock_process_wait(self._h(), ms, byref(r))
        result = _take_result(r)
        self._errors.raise_if_any()
        return result

    def close(self) -> None:
        """Kills the command if running; no callback runs after this returns. Idempotent."""
        with self._lock:
            h, self._handle = self._handle, None
        if h is not None:
            _capi.airlock_process_destroy(h)
        self._callbacks = None



class Files:
    """The guest's filesystem (guest paths). Reach it as Sandbox.files."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sb = sandbox

    def write(self, path: str, data: Union[bytes, str], mode: int = 0o644) -> None:
        """Creates or truncates `path` (parents created)."""
        b = _data(data)
        _capi.airlock_fs_write(self._sb._h(), _b(path), b, len(b), mode)

    def read(self, path: str) -> bytes:
        out, n = c_void_p(), c_size_t()
        _capi.airlock_fs_read(self._sb._h(), _b(path), byref(out), byref(n))
        return _capi.take_bytes(out, n.value)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def upload(self, host_path: str, guest_path: str, mode: Optional[int] = None) -> None:
        _capi.airlock_fs_upload(self._sb._h(), _b(host_path), _b(guest_path),
                                -1 if mode is None else mode)

    def download(self, guest_path: str, host_path: str) -> None:
        _capi.airlock_fs_download(self._sb._h(), _b(guest_path), _b(host_path))

    def mkdir(self, path: str, mode: int = 0o755, parents: bool = True) -> None:
        _capi.airlock_fs_mkdir(self._sb._h(), _b(path), mode, 1 if parents else 0)

    def stat(self, path: str) -> FileStat:
        st = _capi.airlock_file_stat()
        _capi.airlock_file_stat_init(byref(st))
        _capi.airlock_fs_stat(self._sb._h(), _b(path), byref(st))
        kind = {_capi.FILE_REGULAR: "regular", _capi.FILE_DIRECTORY: "directory",
                _capi.FILE_SYMLINK: "symlink"}.get(st.type, "other")
        return FileStat(kind, st.mode, st.size, st.mtime_ns)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except NotFoundError:
            return False

    def remove(self, path: str, recursive: bool = False) -> None:
        _capi.airlock_fs_remove(self._sb._h(), _b(path), 1 if recursive else 0)


class Env:
    """The default environment of later commands. Reach it as Sandbox.env."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sb = sandbox

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        out = c_void_p()
        _capi.airlock_env_get(self._sb._h(), _b(name), byref(out))
        if not out.value:
            return default
        try:
            return ctypes.string_at(out.value).decode("utf-8", "replace")
        finally:
            _capi.airlock_free(out)

    def all(self) -> Dict[str, str]:
        out, n = c_void_p(), c_size_t()
        _capi.airlock_env_list(self._sb._h(), byref(out), byref(n))
        block = _capi.take_bytes(out, n.value)
        env: Dict[str, str] = {}
        for entry in block.split(b"\0"):
            if entry:
                k, _, v = entry.partition(b"=")
                env[k.decode()] = v.decode("utf-8", "replace")
        return env

    def set(self, name: str, value: str) -> None:
        _capi.airlock_env_set(self._sb._h(), _b(name), _b(value))

    def update(self, values: Mapping[str, str]) -> None:
        for k, v in values.items():
            self.set(k, v)

    def unset(self, name: str) -> None:
        _capi.airlock_env_unset(self._sb._h(), _b(name))

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.unset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.all())


SecretValue = Union[str, Secret, Tuple[str, Sequence[str]]]


class Sandbox(_Closeable):
    """One microVM. Boots in the constructor; close() (or the with-block's end) stops it.

    allow_net: hosts the guest may reach ("api.example.com", "*.example.com", "host:port").
    secrets: name -> Secret(value, hosts) | (value, hosts) | value (bound to every allow_net
    pattern). The guest sees $name holding a placeholder; the proxy puts the real value in
    only on requests to the secret's hosts.
    on_console(bytes), on_audit(AuditEvent) and request_hook(HookRequest) -> HookDecision|None run
    on library threads; a raising request_hook denies the request. hook_deadline (seconds,
    default 2) bounds the wait for request_hook's decision: past it the request gets 403.
    resolve_override ({"host[:port]": "ip"}) and extra_ca_files point upstreams at local test
    servers.
    timeout (seconds): the sandbox is killed, and everything it holds freed, this long after it
    booted (set_timeout()/extend() move it); max_lifetime (seconds) is a cap they cannot pass.
    memory_mb must be 256 to 4096 and vcpus 1 to 64 (else InvalidArgumentError).
    tap_fd (an int or an object with fileno()): a tap the caller opened (IFF_TAP | IFF_NO_PI |
    IFF_VNET_HDR), so creating the sandbox needs no privilege (README "Network privileges");
    airlock duplicates it, the caller keeps and closes its own. Needs allow_net.
    """

    def __init__(self, *, allow_net: Iterable[str] = (),
                 secrets: Optional[Mapping[str, SecretValue]] = None,
                 env: Optional[Mapping[str, str]] = None, memory_mb: Optional[int] = None,
                 vcpus: Optional[int] = None, kernel: Optional[str] = None,
                 initramfs: Optional[str] = None, boot_timeout: Optional[float] = None,
                 on_console: Optional[OutputCallback] = None,
                 on_audit: Optional[Callable[[AuditEvent], None]] = None,
                 request_hook: Optional[Callable[[HookRequest], Optional[HookDecision]]] = None,
                 hook_deadline: Optional[float] = None,
                 resolve_override: Optional[Mapping[str, str]] = None,
                 extra_ca_files: Sequence[str] = (), timeout: Optional[float] = None,
                 max_lifetime: Optional[float] = None,
                 root_image: Optional[str] = None, root_snapshot: Optional[str] = None,
                 snapshottable_root: bool = False, root_upper_bytes: int = 0,
                 volumes: Sequence[Volume] = (), storage_dir: Optional[str] = None,
                 tap_fd: Optional[int] = None) -> None:
        self._handle = None
        self._lock = threading.Lock()
        self._errors = _CallbackErrors()
        self.files = Files(self)
        self.env = Env(self)

        o = _capi.airlock_sandbox_options()
        _capi.airlock_sandbox_options_init(byref(o))
        keep: list = []  # everything the C call borrows
        o.kernel_path = _b(kernel)
        o.initramfs_path = _b(initramfs)
        o.memory_bytes = (memory_mb or 0) * (1 << 20)
        o.vcpus = vcpus or 0
        o.boot_timeout_ms = _ms(boot_timeout)
        env_arr, o.env_count = _env_array(env)
        o.env = ctypes.cast(env_arr, ctypes.POINTER(_capi.airlock_env_var))
        keep.append(env_arr)
        allow = [str(h) for h in allow_net]
        allow_arr = _str_array(allow)
        keep.append(allow_arr)
        o.allow_net = ctypes.cast(allow_arr, ctypes.POINTER(c_char_p))
        o.allow_net_count = len(allow)
        specs = []
        for name, sv in (secrets or {}).items():
            if isinstance(sv, Secret):
                value, hosts = sv.value, list(sv.hosts)
            elif isinstance(sv, tuple):
                value, hosts = sv[0], list(sv[1])
            else:
                value, hosts = sv, list(allow)
            specs.append((name, value, hosts))
        sec_arr = (_capi.airlock_secret * max(1, len(specs)))()
        for i, (name, value, hosts) in enumerate(specs):
            harr = _str_array(hosts)
            keep.append(harr)
            sec_arr[i].name = _b(name)
            sec_arr[i].value = _b(value)
            sec_arr[i].hosts = ctypes.cast(harr, ctypes.POINTER(c_char_p))
            sec_arr[i].hosts_count = len(hosts)
        keep.append(sec_arr)
        o.secrets = ctypes.cast(sec_arr, ctypes.POINTER(_capi.airlock_secret))
        o.secrets_count = len(specs)

        self._callbacks: list = []
        if on_console is not None:
            fn = _output_fn(on_console, self._errors)
            self._callbacks.append(fn)
            o.on_console = fn
        if on_audit is not None:
            fn = _capi.airlock_audit_fn(self._audit_trampoline(on_audit))
            self._callbacks.append(fn)
            o.on_audit = fn
        if request_hook is not None:
            fn = _capi.airlock_hook_fn(self._hook_trampoline(request_hook))
            self._callbacks.append(fn)
            o.request_hook = fn
        o.hook_deadline_ms = _ms(hook_deadline)
        ro_arr, o.resolve_override_count = _env_array(resolve_override)
        keep.append(ro_arr)
        o.resolve_override = ctypes.cast(ro_arr, ctypes.POINTER(_capi.airlock_env_var))
        cas = list(extra_ca_files)
        ca_arr = _str_array(cas)
        keep.append(ca_arr)
        o.extra_ca_files = ctypes.cast(ca_arr, ctypes.POINTER(c_char_p))
        o.extra_ca_files_count = len(cas)
        o.timeout_ms = _ms(timeout)
        o.max_lifetime_ms = _ms(max_lifetime)
        o.root_image = _b(root_image)
        o.root_snapshot = _b(root_snapshot)
        o.snapshottable_root = 1 if snapshottable_root else 0
        o.root_upper_bytes = root_upper_bytes
        o.storage_dir = _b(storage_dir)
        vols = [v if isinstance(v, Volume) else Volume(*v) for v in volumes]
        vol_arr = (_capi.airlock_volume_mount * max(1, len(vols)))()
        for i, v in enumerate(vols):
            vol_arr[i].name = _b(v.name)
            vol_arr[i].path = _b(v.path)
            vol_arr[i].read_only = 1 if v.read_only else 0
        keep.append(vol_arr)
        o.volumes = ctypes.cast(vol_arr, ctypes.POINTER(_capi.airlock_volume_mount))
        o.volumes_count = len(vols)
        if tap_fd is not None:
            # The library checks it (a negative fd, or one that is no tap, is InvalidArgumentError).
            o.has_tap_fd = 1
            o.tap_fd = tap_fd if isinstance(tap_fd, int) else tap_fd.fileno()

        handle = ctypes.POINTER(_capi.airlock_sandbox)()
        _capi.airlock_sandbox_create(byref(o), byref(handle))
        self._handle = handle
        del keep

    def _audit_trampoline(self, cb):
        errors = self._errors

        def trampoline(ev, _user):
            try:
                e = ev.contents
                names = tuple(_s(e.secrets_substituted[i])
                              for i in range(e.secrets_substituted_count))
                decision = {_capi.DECISION_ALLOWED: "allowed",
                            _capi.DECISION_DENIED: "denied"}.get(e.decision, "error")
                cb(AuditEvent(e.time_unix_ns, e.connection_id, _s(e.client), _s(e.method),
                              _s(e.scheme), _s(e.host), e.port, _s(e.path), e.status, e.bytes_up,
                              e.bytes_down, e.duration_us, decision, _s(e.reason), names,
                              bool(e.exfiltration_attempt)))
            except BaseException as ex:  # noqa: BLE001
                errors.record(ex)

        return trampoline

    def _hook_trampoline(self, cb):
        errors = self._errors

        def trampoline(req, decision, _user):
            try:
                r = req.contents
                headers = tuple((_s(r.headers[i].name), _s(r.headers[i].value))
                                for i in range(r.headers_count))
                d = cb(HookRequest(_s(r.method), _s(r.scheme), _s(r.host), r.port, _s(r.target),
                                   headers))
                if d is None:
                    return 0
                if not d.allow:
                    _capi.airlock_hook_deny(decision, d.status, _b(d.message))
                    return 0
                for k, v in d.set_headers.items():
                    _capi.airlock_hook_set_header(decision, _b(k), _b(v))
                for k in d.remove_headers:
                    _capi.airlock_hook_remove_header(decision, _b(k))
                return 0
            except BaseException as ex:  # noqa: BLE001 - a failing hook denies (fail closed)
                errors.record(ex)
                return 1

        return trampoline

    def _h(self):
        h = self._handle
        if h is None:
            raise ClosedError("the sandbox is closed", _capi.E_CLOSED)
        return h

    # ---- commands ----

    def _exec_options(self, env, cwd, timeout, wait_timeout, input, on_stdout, on_stderr, keep):
        o = _capi.airlock_exec_options()
        _capi.airlock_exec_options_init(byref(o))
        env_arr, o.env_count = _env_array(env)
        keep.append(env_arr)
        o.env = ctypes.cast(env_arr, ctypes.POINTER(_capi.airlock_env_var))
        o.cwd = _b(cwd)
        o.timeout_ms = _ms(timeout)
        o.wait_timeout_ms = _ms(wait_timeout)
        data = _data(input)
        if data:
            buf = ctypes.create_string_buffer(data, len(data))
            keep.append(buf)
            o.stdin_data = ctypes.cast(buf, c_void_p)
            o.stdin_len = len(data)
        errors = _CallbackErrors()
        if on_stdout is not None or on_stderr is not None:
            fo, fe = _output_fn(on_stdout, errors), _output_fn(on_stderr, errors)
            keep.extend([fo, fe])
            o.on_stdout, o.on_stderr = fo, fe
        return o, errors

    def sh(self, command: str, *, env: Optional[Mapping[str, str]] = None,
           cwd: Optional[str] = None, timeout: Optional[float] = None,
           wait_timeout: Optional[float] = None, input: Union[bytes, str, None] = None,
           on_stdout: Optional[OutputCallback] = None,
           on_stderr: Optional[OutputCallback] = None) -> Result:
        """Runs `/bin/sh -c command` and waits. timeout (seconds) is enforced in the guest
        (result.timed_out); with on_stdout/on_stderr output streams to them instead of the
        result. A non-zero exit code is a normal result, not an exception."""
        keep: list = []
        o, errors = self._exec_options(env, cwd, timeout, wait_timeout, input, on_stdout,
                                       on_stderr, keep)
        r = _capi.airlock_exec_result()
        _capi.airlock_exec_result_init(byref(r))
        _capi.airlock_sandbox_sh(self._h(), _b(command), byref(o), byref(r))
        result = _take_result(r)
        errors.raise_if_any()
        return result

    def exec(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
             cwd: Optional[str] = None, timeout: Optional[float] = None,
             wait_timeout: Optional[float] = None, input: Union[bytes, str, None] = None,
             on_stdout: Optional[OutputCallback] = None,
             on_stderr: Optional[OutputCallback] = None) -> Result:
        """Runs argv (argv[0] looked up in PATH; missing: exit code 127) and waits."""
        if isinstance(argv, (str, bytes)):
            raise InvalidArgumentError("argv must be a sequence of strings",
                                       _capi.E_INVALID_ARGUMENT)
        keep: list = []
        o, errors = self._exec_options(env, cwd, timeout, wait_timeout, input, on_stdout,
                                       on_stderr, keep)
        arr = _str_array(list(argv))
        r = _capi.airlock_exec_result()
        _capi.airlock_exec_result_init(byref(r))
        _capi.airlock_sandbox_exec(self._h(), arr, len(argv), byref(o), byref(r))
        result = _take_result(r)
        errors.raise_if_any()
        return result

    def spawn(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
              cwd: Optional[str] = None, timeout: Optional[float] = None,
              on_stdout: Optional[OutputCallback] = None,
              on_stderr: Optional[OutputCallback] = None) -> Process:
        """Starts argv and returns at once. Output goes to the callbacks as it arrives (on a
        library thread), else it is collected for Process.wait()."""
        if isinstance(argv, (str, bytes)):
            raise InvalidArgumentError("argv must be a sequence of strings",
                                       _capi.E_INVALID_ARGUMENT)
        o = _capi.airlock_spawn_options()
        _capi.airlock_spawn_options_init(byref(o))
        env_arr, o.env_count = _env_array(env)
        o.env = ctypes.cast(env_arr, ctypes.POINTER(_capi.airlock_env_var))
        o.cwd = _b(cwd)
        o.timeout_ms = _ms(timeout)
        errors = _CallbackErrors()
        fo, fe = _output_fn(on_stdout, errors), _output_fn(on_stderr, errors)
        o.on_stdout, o.on_stderr = fo, fe
        arr = _str_array(list(argv))
        handle = ctypes.POINTER(_capi.airlock_process)()
        _capi.airlock_sandbox_spawn(self._h(), arr, len(argv), byref(o), byref(handle))
        return Process(handle, [fo, fe], errors, self)

    # ---- state ----

    def ping(self, timeout: float = 5.0) -> None:
        """Round trip to the guest agent; raises if it does not answer."""
        _capi.airlock_sandbox_ping(self._h(), _ms(timeout))

    def status(self) -> Optional[AirlockError]:
        """None while running, else the error saying why the sandbox ended."""
        rc = _capi.airlock_sandbox_status(self._h())
        return None if rc == 0 else _capi.error_for(rc)

    def snapshot(self, name: str) -> None:
        """A read-only snapshot of this sandbox's root in its store (needs snapshottable_root=True);
        boot it with Sandbox(root_snapshot=name)."""
        _capi.airlock_sandbox_snapshot(self._h(), _b(name))

    def console(self) -> bytes:
        """Guest console output so far (bounded)."""
        out, n = c_void_p(), c_size_t()
        _capi.airlock_sandbox_console(self._h(), byref(out), byref(n))
        return _capi.take_bytes(out, n.value)

    # ---- lifecycle ----

    def set_timeout(self, seconds: float) -> None:
        """The sandbox is killed `seconds` from now (0: no timeout; max_lifetime still applies).
        Raises ResourceExhaustedError past max_lifetime."""
        _capi.airlock_sandbox_set_timeout(self._h(), _ms(seconds))

    def extend(self, seconds: float) -> None:
        """Pushes the current timeout back. InvalidArgumentError without a timeout;
        ResourceExhaustedError past max_lifetime (the timeout is then unchanged)."""
        _capi.airlock_sandbox_extend(self._h(), _ms(seconds))

    def kill(self) -> None:
        """Ends the sandbox at once (no graceful flush, unlike close) and frees what it holds;
        running calls fail with ClosedError. The object stays usable for status()/stats()."""
        _capi.airlock_sandbox_kill(self._h())

    def stats(self) -> Stats:
        s = _capi.airlock_sandbox_stats()
        _capi.airlock_sandbox_stats_init(byref(s))
        _capi.airlock_sandbox_stats_get(self._h(), byref(s))
        return Stats(uptime=s.uptime_ms / 1000, vcpu_time=s.vcpu_time_ns / 1e9,
                     memory_bytes=s.memory_bytes, memory_resident_bytes=s.memory_resident_bytes,
                     net_bytes_up=s.net_bytes_up, net_bytes_down=s.net_bytes_down,
                     net_requests=s.net_requests, commands=s.commands,
                     time_left=None if s.time_left_ms < 0 else s.time_left_ms / 1000,
                     running=bool(s.running))

    def expose_port(self, guest_port: int) -> str:
        """Forwards a new 127.0.0.1 listener to TCP `guest_port` on the guest's loopback;
        returns "127.0.0.1:PORT" (the same for the same port)."""
        if not 0 < int(guest_port) < 65536:
            raise InvalidArgumentError("guest_port must be 1 to 65535", _capi.E_INVALID_ARGUMENT)
        out = c_void_p()
        _capi.airlock_sandbox_expose_port(self._h(), int(guest_port), byref(out))
        return _capi.take_bytes(out, len(ctypes.string_at(out.value))).decode()

    def expose_http(self, guest_port: int) -> str:
        """expose_port() as a URL: "http://127.0.0.1:PORT"."""
        if not 0 < int(guest_port) < 65536:
            raise InvalidArgumentError("guest_port must be 1 to 65535", _capi.E_INVALID_ARGUMENT)
        out = c_void_p()
        _capi.airlock_sandbox_expose_http(self._h(), int(guest_port), byref(out))
        return _capi.take_bytes(out, len(ctypes.string_at(out.value))).decode()

    def raise_callback_errors(self) -> None:
        """Re-raises (as CallbackError) an exception raised by on_console/on_audit/request_hook."""
        self._errors.raise_if_any()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Stops the microVM and releases it; no callback runs after this returns. Idempotent.
        Calls running on other threads fail with ClosedError."""
        with self._lock:
            h, self._handle = self._handle, None
        if h is not None:
            _capi.airlock_sandbox_destroy(h)

