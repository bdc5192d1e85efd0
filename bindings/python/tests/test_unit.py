"""The Python binding without a VM: loading, versions, errors, misuse."""
import ctypes
import os
import threading

import pytest

import airlock
from airlock import _capi


def test_versions():
    assert airlock.abi_version() == _capi.ABI_VERSION == 1
    assert airlock.version().count(".") == 2


def test_status_names_match_error_classes():
    for code, cls in _capi.ERRORS.items():
        name = _capi.airlock_status_name(code).decode()
        assert name != "unknown"
        assert cls.code == code
    assert _capi.airlock_status_name(-99) == b"unknown"


def test_missing_kernel_is_not_found():
    with pytest.raises(airlock.NotFoundError) as e:
        airlock.Sandbox(kernel="/nonexistent/kernel", initramfs="/nonexistent/initrd")
    assert "/nonexistent/kernel" in str(e.value)
    assert e.value.code == _capi.E_NOT_FOUND
    assert isinstance(e.value, FileNotFoundError)


def test_networking_options_are_not_ignored():
    # Either wired through (then the kernel is what fails) or refused plainly.
    # NotFound: the kernel; Unavailable/PermissionDenied: networking not built, or no network
    # namespace for an unprivileged user.
    with pytest.raises((airlock.NotFoundError, airlock.UnavailableError,
                        airlock.PermissionDeniedError)) as e:
        airlock.Sandbox(kernel="/nonexistent/kernel", allow_net=["example.com"],
                        secrets={"API_KEY": ("sk-do-not-print", ["example.com"])})
    assert "sk-do-not-print" not in str(e.value)


def test_bad_environment_entry():
    with pytest.raises(airlock.AirlockError):
        airlock.Sandbox(kernel="/nonexistent/kernel", env={"A": "\udcff"})


def test_closed_sandbox_object_raises_closed():
    sb = airlock.Sandbox.__new__(airlock.Sandbox)
    sb._handle = None
    sb._lock = threading.Lock()
    with pytest.raises(airlock.ClosedError):
        sb.sh("true")
    sb.close()  # idempotent


def test_raw_null_handles_give_invalid_argument():
    r = _capi.airlock_exec_result()
    _capi.airlock_exec_result_init(ctypes.byref(r))
    with pytest.raises(airlock.InvalidArgumentError) as e:
        _capi.airlock_sandbox_sh(None, b"true", None, ctypes.byref(r))
    assert "NULL" in str(e.value)
    bogus = ctypes.cast(ctypes.create_string_buffer(64), ctypes.POINTER(_capi.airlock_sandbox))
    with pytest.raises(airlock.InvalidArgumentError) as e:
        _capi.airlock_sandbox_ping(bogus, 10)
    assert "handle" in str(e.value)
    with pytest.raises(airlock.InvalidArgumentError):
        _capi.airlock_sandbox_destroy(bogus)


def test_wrong_struct_size_refused():
    o = _capi.airlock_sandbox_options()
    _capi.airlock_sandbox_options_init(ctypes.byref(o))
    o.struct_size = 8
    out = ctypes.POINTER(_capi.airlock_sandbox)()
    with pytest.raises(airlock.InvalidArgumentError) as e:
        _capi.airlock_sandbox_create(ctypes.byref(o), ctypes.byref(out))
    assert "struct_size" in str(e.value)


def test_errors_are_per_thread_under_load():
    failures = []

    def worker(i):
        for _ in range(200):
            try:
                _capi.airlock_env_set(None, b"A", b"b")
            except airlock.InvalidArgumentError as e:
                if "sandbox handle is NULL" not in str(e):
                    failures.append(str(e))
            try:
                _capi.airlock_fs_read(None, b"/x", None, None)
            except airlock.InvalidArgumentError as e:
                if "out is NULL" not in str(e):
                    failures.append(str(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_result_text():
    r = airlock.Result(0, 0, False, b"/\n", b"")
    assert r.text() == "/" and r.ok
    assert airlock.Result(1, 0, False, b"a\n\n", b"").text() == "a\n"


def test_option_and_stats_structs_match_the_library():
    o = _capi.airlock_sandbox_options()
    _capi.airlock_sandbox_options_init(ctypes.byref(o))
    assert o.struct_size == ctypes.sizeof(_capi.airlock_sandbox_options)
    st = _capi.airlock_sandbox_stats()
    _capi.airlock_sandbox_stats_init(ctypes.byref(st))
    assert st.struct_size == ctypes.sizeof(_capi.airlock_sandbox_stats)
    assert st.time_left_ms == -1


def test_lifecycle_options_are_checked_before_boot():
    with pytest.raises(airlock.InvalidArgumentError) as e:
        airlock.Sandbox(kernel="/nonexistent/kernel", memory_mb=100)
    assert "memory" in str(e.value)
    with pytest.raises(airlock.InvalidArgumentError):
        airlock.Sandbox(kernel="/nonexistent/kernel", memory_mb=8192)
    with pytest.raises(airlock.InvalidArgumentError) as e:
        airlock.Sandbox(kernel="/nonexistent/kernel", timeout=10, max_lifetime=5)
    assert "max_lifetime" in str(e.value)


def test_lifecycle_calls_on_a_closed_sandbox_raise_closed():
    sb = airlock.Sandbox.__new__(airlock.Sandbox)
    sb._handle = None
    sb._lock = threading.Lock()
    for call in (lambda: sb.set_timeout(1), lambda: sb.extend(1), sb.kill, sb.stats,
                 lambda: sb.expose_http(80)):
        with pytest.raises(airlock.ClosedError):
            call()
    with pytest.raises(airlock.InvalidArgumentError):
        sb.expose_port(70000)


def test_storage_volumes_and_snapshots(tmp_path):
    st = airlock.Storage(str(tmp_path))
    st.create_volume("data", 20 << 20)
    with pytest.raises(airlock.InvalidArgumentError):
        st.create_volume("data", 20 << 20)
    with pytest.raises(airlock.InvalidArgumentError):
        st.create_volume("../escape", 20 << 20)
    (v,) = st.volumes()
    assert (v.name, v.size_bytes, v.in_use) == ("data", 20 << 20, False)
    st.snapshot_volume("data", "data-v1")
    st.volume_from_snapshot("data-v1", "copy")
    assert sorted(x.name for x in st.volumes()) == ["copy", "data"]
    assert [(s.name, s.is_root) for s in st.snapshots()] == [("data-v1", False)]
    with pytest.raises(airlock.NotFoundError):
        st.volume_from_snapshot("absent", "copy2")
    st.remove_snapshot("data-v1")
    st.remove_volume("copy")
    st.remove_volume("data")
    assert st.volumes() == [] and st.snapshots() == []


def test_storage_options_reach_the_library(tmp_path):
    # The volume is checked before the kernel is loaded: its name in the error proves the option
    # crossed the C ABI intact.
    with pytest.raises(airlock.NotFoundError) as e:
        airlock.Sandbox(kernel="/nonexistent/kernel", initramfs="/nonexistent/initrd",
                        storage_dir=str(tmp_path), volumes=[airlock.Volume("absent", "/data")])
    assert "absent" in str(e.value)
    with pytest.raises(airlock.InvalidArgumentError):
        airlock.Sandbox(kernel="/nonexistent/kernel", storage_dir=str(tmp_path),
                        snapshottable_root=True)


def test_tap_fd_reaches_the_library():
    # A pipe is no tap: refused before anything boots, naming the option; the caller's fd is
    # borrowed, never closed. fd 0 is a valid tap_fd (the C struct has a has_tap_fd flag).
    r, w = os.pipe()
    try:
        with pytest.raises(airlock.InvalidArgumentError) as e:
            airlock.Sandbox(kernel="/nonexistent/kernel", allow_net=["example.com"], tap_fd=r)
        assert "tap_fd" in str(e.value) and "tun/tap" in str(e.value)
        os.fstat(r)  # still open
        with pytest.raises(airlock.InvalidArgumentError) as e:
            airlock.Sandbox(kernel="/nonexistent/kernel", tap_fd=r)
        assert "tap_fd needs allow_net" in str(e.value)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(airlock.InvalidArgumentError) as e:
        airlock.Sandbox(kernel="/nonexistent/kernel", allow_net=["example.com"], tap_fd=-1)
    assert "tap_fd" in str(e.value)
