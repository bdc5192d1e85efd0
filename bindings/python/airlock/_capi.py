"""ctypes mirror of capi/airlock.h, one declaration per C declaration, in the header's order.

Every function returning a status code has an errcheck that raises the matching AirlockError
subclass (message from airlock_last_error(), read on the calling thread right after the call).
ctypes releases the GIL for the duration of every call, so blocking calls do not stall other
Python threads; callbacks re-acquire it on the library's threads.

The library is found via $AIRLOCK_LIBRARY, else the newest build*/capi/libairlock.so.0 of the
source tree this package sits in, else the system's libairlock.so.0.
"""
from __future__ import annotations

import ctypes
import glob
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_int64, c_size_t,
                    c_uint32, c_uint64, c_void_p)
from typing import Dict, Type

ABI_VERSION = 1

OK = 0
E_INVALID_ARGUMENT = -1
E_NOT_FOUND = -2
E_PERMISSION_DENIED = -3
E_UNAVAILABLE = -4
E_IO = -5
E_TIMEOUT = -6
E_CLOSED = -7
E_PROTOCOL = -8
E_RESOURCE_EXHAUSTED = -9
E_DENIED = -10
E_BAD_IMAGE = -11
E_INTERNAL = -12
E_CANCELLED = -13


class AirlockError(Exception):
    """An airlock call failed. `code` is the negative AIRLOCK_E_* status."""

    code: int = 0

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(AirlockError, ValueError):
    code = E_INVALID_ARGUMENT


class NotFoundError(AirlockError, FileNotFoundError):
    code = E_NOT_FOUND


class PermissionDeniedError(AirlockError, PermissionError):
    code = E_PERMISSION_DENIED


class UnavailableError(AirlockError):
    code = E_UNAVAILABLE


class AirlockIOError(AirlockError, OSError):
    code = E_IO


class AirlockTimeoutError(AirlockError, TimeoutError):
    code = E_TIMEOUT


class ClosedError(AirlockError):
    code = E_CLOSED


class ProtocolError(AirlockError):
    code = E_PROTOCOL


class ResourceExhaustedError(AirlockError):
    code = E_RESOURCE_EXHAUSTED


class DeniedError(AirlockError):
    code = E_DENIED


class BadImageError(AirlockError):
    code = E_BAD_IMAGE


class InternalError(AirlockError):
    code = E_INTERNAL


class CancelledError(AirlockError):
    code = E_CANCELLED


ERRORS: Dict[int, Type[AirlockError]] = {
    cls.code: cls
    for cls in (InvalidArgumentError, NotFoundError, PermissionDeniedError, UnavailableError,
                AirlockIOError, AirlockTimeoutError, ClosedError, ProtocolError,
                ResourceExhaustedError, DeniedError, BadImageError, InternalError, CancelledError)
}

# ---- opaque handles ----


class airlock_sandbox(Structure):
    pass


class airlock_process(Structure):
    pass


class airlock_hook_decision(Structure):
    pass


# ---- structs ----


class airlock_env_var(Structure):
    _fields_ = [("name", c_char_p), ("value", c_char_p)]


class airlock_secret(Structure):
    _fields_ = [("name", c_char_p), ("value", c_char_p), ("hosts", POINTER(c_char_p)),
                ("hosts_count", c_size_t)]


class airlock_header(Structure):
    _fields_ = [("name", c_char_p), ("value", c_char_p)]


DECISION_ALLOWED = 0
DECISION_DENIED = 1
DECISION_ERROR = 2


class airlock_audit_event(Structure):
    _fields_ = [("struct_size", c_size_t), ("time_unix_ns", c_int64), ("connection_id", c_uint64),
                ("client", c_char_p), ("method", c_char_p), ("scheme", c_char_p),
                ("host", c_char_p), ("port", c_uint32), ("path", c_char_p), ("status", c_int),
                ("bytes_up", c_uint64), ("bytes_down", c_uint64), ("duration_us", c_int64),
                ("decision", c_int), ("reason", c_char_p),
                ("secrets_substituted", POINTER(c_char_p)),
                ("secrets_substituted_count", c_size_t), ("exfiltration_attempt", c_int)]


class airlock_hook_request(Structure):
    _fields_ = [("struct_size", c_size_t), ("method", c_char_p), ("scheme", c_char_p),
                ("host", c_char_p), ("port", c_uint32), ("target", c_char_p),
                ("headers", POINTER(airlock_header)), ("headers_count", c_size_t)]


# `data` as c_void_p: c_char_p would stop at the first NUL.
airlock_output_fn = CFUNCTYPE(None, c_void_p, c_size_t, c_void_p)
airlock_audit_fn = CFUNCTYPE(None, POINTER(airlock_audit_event), c_void_p)
airlock_hook_fn = CFUNCTYPE(c_int, POINTER(airlock_hook_request), POINTER(airlock_hook_decision),
                            c_void_p)


class airlock_volume_mount(Structure):
    _fields_ = [("name", c_char_p), ("path", c_char_p), ("read_only", c_int)]


class airlock_sandbox_options(Structure):
    _fields_ = [("struct_size", c_size_t), ("kernel_path", c_char_p),
                ("initramfs_path", c_char_p), ("memory_bytes", c_uint64), ("vcpus", c_uint32),
                ("boot_timeout_ms", c_uint32), ("env", POINTER(airlock_env_var)),
                ("env_count", c_size_t), ("allow_net", POINTER(c_char_p)),
                ("allow_net_count", c_size_t), ("secrets", POINTER(airlock_secret)),
                ("secrets_count", c_size_t), ("on_console", airlock_output_fn),
                ("console_user_data", c_void_p), ("on_audit", airlock_audit_fn),
                ("audit_user_data", c_void_p), ("request_hook", airlock_hook_fn),
                ("hook_user_data", c_void_p), ("hook_deadline_ms", c_uint32),
                ("resolve_override", POINTER(airlock_env_var)),
                ("resolve_override_count", c_size_t), ("extra_ca_files", POINTER(c_char_p)),
                ("extra_ca_files_count", c_size_t),
                # storage
                ("root_image", c_char_p), ("root_snapshot", c_char_p),
                ("snapshottable_root", c_int), ("root_upper_bytes", c_uint64),
                ("volumes", POINTER(airlock_volume_mount)), ("volumes_count", c_size_t),
                ("storage_dir", c_char_p),
                # lifecycle
                ("timeout_ms", c_uint64), ("max_lifetime_ms", c_uint64),
                # after version 1: caller-opened tap
                ("has_tap_fd", c_int), ("tap_fd", c_int)]


class airlock_sandbox_stats(Structure):
    _fields_ = [("struct_size", c_size_t), ("uptime_ms", c_uint64), ("vcpu_time_ns", c_uint64),
                ("memory_bytes", c_uint64), ("memory_resident_bytes", c_uint64),
                ("net_bytes_up", c_uint64), ("net_bytes_down", c_uint64),
                ("net_requests", c_uint64), ("commands", c_uint64), ("time_left_ms", c_int64),
                ("running", c_int)]


class airlock_exec_options(Structure):
    _fields_ = [("struct_size", c_size_t), ("env", POINTER(airlock_env_var)),
                ("env_count", c_size_t), ("cwd", c_char_p), ("timeout_ms", c_uint64),
                ("wait_timeout_ms", c_uint64), ("stdin_data", c_void_p), ("stdin_len", c_size_t),
                ("on_stdout", airlock_output_fn), ("on_stderr", airlock_output_fn),
                ("user_data", c_void_p)]


class airlock_spawn_options(Structure):
    _fields_ = [("struct_size", c_size_t), ("env", POINTER(airlock_env_var)),
                ("env_count", c_size_t), ("cwd", c_char_p), ("timeout_ms", c_uint64),
                ("on_stdout", airlock_output_fn), ("on_stderr", airlock_output_fn),
                ("user_data", c_void_p)]


class airlock_exec_result(Structure):
    _fields_ = [("struct_size", c_size_t), ("exit_code", c_int), ("signal", c_int),
                ("timed_out", c_int), ("stdout_data", c_void_p), ("stdout_len", c_size_t),
                ("stderr_data", c_void_p), ("stderr_len", c_size_t)]


FILE_OTHER = 0
FILE_REGULAR = 1
FILE_DIRECTORY = 2
FILE_SYMLINK = 3


class airlock_file_stat(Structure):
    _fields_ = [("struct_size", c_size_t), ("type", c_int), ("mode", c_uint32),
                ("size", c_uint64), ("mtime_ns", c_int64)]


# ---- loading ----


def _candidates() -> list[str]:
    env = os.environ.get("AIRLOCK_LIBRARY")
    if env:
        return [env]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    built = glob.glob(os.path.join(root, "build*", "capi", "libairlock.so.0"))
    built.sort(key=os.path.getmtime, reverse=True)
    return built + ["libairlock.so.0"]


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("cannot load libairlock.so.0 (set AIRLOCK_LIBRARY): " + "; ".join(errors))


lib = _load()


def last_error() -> str:
    return lib.airlock_last_error().decode("utf-8", "replace")


def error_for(code: int, message: str | None = None) -> AirlockError:
    cls = ERRORS.get(code, AirlockError)
    return cls(message if message is not None else last_error(), code)


def _check(result: int, func, args):
    if result != OK:
        raise error_for(result)
    return result


def _fn(name: str, restype, argtypes, check: bool = True):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    if check:
        f.errcheck = _check
    return f


_S = POINTER(airlock_sandbox)
_P = POINTER(airlock_process)
_D = POINTER(airlock_hook_decision)

airlock_version = _fn("airlock_version", c_char_p, [], check=False)
airlock_abi_version = _fn("airlock_abi_version", c_int, [], check=False)
airlock_last_error = _fn("airlock_last_error", c_char_p, [], check=False)
airlock_status_name = _fn("airlock_status_name", c_char_p, [c_int], check=False)
airlock_free = _fn("airlock_free", None, [c_void_p], check=False)

airlock_hook_deny = _fn("airlock_hook_deny", c_int, [_D, c_int, c_char_p])
airlock_hook_set_header = _fn("airlock_hook_set_header", c_int, [_D, c_char_p, c_char_p])
airlock_hook_remove_header = _fn("airlock_hook_remove_header", c_int, [_D, c_char_p])

airlock_sandbox_options_init = _fn("airlock_sandbox_options_init", None,
                                   [POINTER(airlock_sandbox_options)], check=False)
airlock_exec_options_init = _fn("airlock_exec_options_init", None,
                                [POINTER(airlock_exec_options)], check=False)
airlock_spawn_options_init = _fn("airlock_spawn_options_init", None,
                                 [POINTER(airlock_spawn_options)], check=False)
airlock_exec_result_init = _fn("airlock_exec_result_init", None, [POINTER(airlock_exec_result)],
                               check=False)
airlock_file_stat_init = _fn("airlock_file_stat_init", None, [POINTER(airlock_file_stat)],
                             check=False)
airlock_exec_result_free = _fn("airlock_exec_result_free", None, [POINTER(airlock_exec_result)],
                               check=False)

airlock_sandbox_create = _fn("airlock_sandbox_create", c_int,
                             [POINTER(airlock_sandbox_options), POINTER(_S)])
airlock_sandbox_close = _fn("airlock_sandbox_close", c_int, [_S])
airlock_sandbox_destroy = _fn("airlock_sandbox_destroy", c_int, [_S])
airlock_sandbox_status = _fn("airlock_sandbox_status", c_int, [_S], check=False)
airlock_sandbox_ping = _fn("airlock_sandbox_ping", c_int, [_S, c_uint64])
airlock_sandbox_console = _fn("airlock_sandbox_console", c_int,
                              [_S, POINTER(c_void_p), POINTER(c_size_t)])
airlock_sandbox_sh = _fn("airlock_sandbox_sh", c_int,
                         [_S, c_char_p, POINTER(airlock_exec_options),
                          POINTER(airlock_exec_result)])
airlock_sandbox_exec = _fn("airlock_sandbox_exec", c_int,
                           [_S, POINTER(c_char_p), c_size_t, POINTER(airlock_exec_options),
                            POINTER(airlock_exec_result)])

airlock_sandbox_spawn = _fn("airlock_sandbox_spawn", c_int,
                            [_S, POINTER(c_char_p), c_size_t, POINTER(airlock_spawn_options),
                             POINTER(_P)])
airlock_process_pid = _fn("airlock_process_pid", c_int, [_P, POINTER(c_int)])
airlock_process_write_stdin = _fn("airlock_process_write_stdin", c_int,
                                  [_P, c_void_p, c_size_t, c_uint64])
airlock_process_close_stdin = _fn("airlock_process_close_stdin", c_int, [_P])
airlock_process_kill = _fn("airlock_process_kill", c_int, [_P, c_int])
airlock_process_wait = _fn("airlock_process_wait", c_int,
                           [_P, c_uint64, POINTER(airlock_exec_result)])
airlock_process_destroy = _fn("airlock_process_destroy", c_int, [_P])

airlock_fs_write = _fn("airlock_fs_write", c_int, [_S, c_char_p, c_void_p, c_size_t, c_uint32])
airlock_fs_read = _fn("airlock_fs_read", c_int,
                      [_S, c_char_p, POINTER(c_void_p), POINTER(c_size_t)])
airlock_fs_upload = _fn("airlock_fs_upload", c_int, [_S, c_char_p, c_char_p, c_int])
airlock_fs_download = _fn("airlock_fs_download", c_int, [_S, c_char_p, c_char_p])
airlock_fs_mkdir = _fn("airlock_fs_mkdir", c_int, [_S, c_char_p, c_uint32, c_int])
airlock_fs_stat = _fn("airlock_fs_stat", c_int, [_S, c_char_p, POINTER(airlock_file_stat)])
airlock_fs_remove = _fn("airlock_fs_remove", c_int, [_S, c_char_p, c_int])

airlock_env_get = _fn("airlock_env_get", c_int, [_S, c_char_p, POINTER(c_void_p)])
airlock_env_list = _fn("airlock_env_list", c_int, [_S, POINTER(c_void_p), POINTER(c_size_t)])
airlock_env_set = _fn("airlock_env_set", c_int, [_S, c_char_p, c_char_p])
airlock_env_unset = _fn("airlock_env_unset", c_int, [_S, c_char_p])

airlock_volume_create = _fn("airlock_volume_create", c_int, [c_char_p, c_char_p, c_uint64])
airlock_volume_list = _fn("airlock_volume_list", c_int,
                          [c_char_p, POINTER(c_void_p), POINTER(c_size_t)])
airlock_volume_remove = _fn("airlock_volume_remove", c_int, [c_char_p, c_char_p])
airlock_volume_snapshot = _fn("airlock_volume_snapshot", c_int, [c_char_p, c_char_p, c_char_p])
airlock_volume_from_snapshot = _fn("airlock_volume_from_snapshot", c_int,
                                   [c_char_p, c_char_p, c_char_p])
airlock_snapshot_list = _fn("airlock_snapshot_list", c_int,
                            [c_char_p, POINTER(c_void_p), POINTER(c_size_t)])
airlock_snapshot_remove = _fn("airlock_snapshot_remove", c_int, [c_char_p, c_char_p])
airlock_sandbox_snapshot = _fn("airlock_sandbox_snapshot", c_int, [_S, c_char_p])

airlock_sandbox_stats_init = _fn("airlock_sandbox_stats_init", None,
                                 [POINTER(airlock_sandbox_stats)], check=False)
airlock_sandbox_set_timeout = _fn("airlock_sandbox_set_timeout", c_int, [_S, c_uint64])
airlock_sandbox_extend = _fn("airlock_sandbox_extend", c_int, [_S, c_uint64])
airlock_sandbox_kill = _fn("airlock_sandbox_kill", c_int, [_S])
airlock_sandbox_stats_get = _fn("airlock_sandbox_stats_get", c_int,
                                [_S, POINTER(airlock_sandbox_stats)])
airlock_sandbox_expose_port = _fn("airlock_sandbox_expose_port", c_int,
                                  [_S, c_uint32, POINTER(c_void_p)])
airlock_sandbox_expose_http = _fn("airlock_sandbox_expose_http", c_int,
                                  [_S, c_uint32, POINTER(c_void_p)])


def take_bytes(ptr: c_void_p, length: int) -> bytes:
    """Copies a library-allocated buffer into bytes and frees it."""
    if not ptr.value:
        return b""
    try:
        return ctypes.string_at(ptr.value, length)
    finally:
        airlock_free(ptr)
