"""The Python binding against a real sandbox (nested runner in CI). One sandbox for the module
(each boot costs tens of seconds nested); the last tests close it."""
import os
import tempfile
import threading
import time

import pytest

import airlock


@pytest.fixture(scope="module")
def sb():
    console = []
    s = airlock.Sandbox(boot_timeout=240, env={"FROM_OPTIONS": "yes"}, on_console=console.append)
    s._test_console = console
    yield s
    s.close()


def test_sh_result(sb):
    r = sb.sh("echo hello; echo oops >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"hello\n", b"oops\n")
    assert not r.ok
    assert sb.sh("pwd").text() == "/"
    assert sb.sh("echo $FROM_OPTIONS").text() == "yes"


def test_sh_options(sb):
    r = sb.sh('echo "$A $(pwd) $(cat)"', env={"A": "x y"}, cwd="/tmp", input="stdin data")
    assert r.text() == "x y /tmp stdin data"
    r = sb.sh("sleep 30", timeout=0.5)
    assert r.timed_out
    with pytest.raises(airlock.AirlockTimeoutError):
        sb.sh("sleep 30", wait_timeout=0.5)


def test_exec(sb):
    assert sb.exec(["printf", "%s|", "a b", "$HOME"]).stdout == b"a b|$HOME|"
    assert sb.exec(["no-such-program"]).exit_code == 127
    with pytest.raises(airlock.InvalidArgumentError):
        sb.exec("echo not a list")


def test_binary_output(sb):
    r = sb.sh("printf 'a\\000b\\377'")
    assert r.stdout == b"a\x00b\xff"


def test_streaming_sh(sb):
    chunks = []
    r = sb.sh("for i in 1 2 3; do echo line$i; sleep 0.1; done; echo e >&2",
              on_stdout=chunks.append, on_stderr=chunks.append)
    assert r.exit_code == 0 and r.stdout == b""
    joined = b"".join(chunks)
    assert b"line1\nline2\nline3\n" in joined and b"e\n" in joined


def test_callback_that_raises(sb):
    def bad(_data):
        raise RuntimeError("boom from callback")

    with pytest.raises(airlock.CallbackError) as e:
        sb.sh("echo hi", on_stdout=bad)
    assert isinstance(e.value.__cause__, RuntimeError)
    assert sb.sh("echo still fine").text() == "still fine"


def test_spawn(sb):
    got = []
    with sb.spawn(["cat"], on_stdout=got.append) as p:
        assert p.pid > 1
        p.write(b"one\n")
        p.write("two\n")
        p.close_stdin()
        r = p.wait(60)
    assert r.exit_code == 0 and b"".join(got) == b"one\ntwo\n"

    p = sb.spawn(["sleep", "60"])
    with pytest.raises(airlock.AirlockTimeoutError):
        p.wait(0.2)
    p.kill(15)
    r = p.wait(60)
    assert r.signal == 15 and r.exit_code == -1
    p.close()
    with pytest.raises(airlock.ClosedError):
        p.wait(1)

    collected = sb.spawn(["sh", "-c", "echo out; echo err >&2"])
    r = collected.wait(60)
    assert (r.stdout, r.stderr) == (b"out\n", b"err\n")
    collected.close()


def test_files(sb):
    sb.files.write("/tmp/py/a.txt", "héllo")
    assert sb.files.read_text("/tmp/py/a.txt") == "héllo"
    sb.files.write("/tmp/py/b.bin", b"\x00\x01", mode=0o600)
    st = sb.files.stat("/tmp/py/b.bin")
    assert (st.type, st.size, st.mode) == ("regular", 2, 0o600)
    assert sb.files.stat("/tmp/py").type == "directory"
    with pytest.raises(airlock.NotFoundError):
        sb.files.read("/tmp/py/missing")
    assert not sb.files.exists("/tmp/py/missing")
    sb.files.mkdir("/tmp/py/d/e")
    assert sb.files.exists("/tmp/py/d/e")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src")
        with open(src, "wb") as f:
            f.write(os.urandom(300000))
        sb.files.upload(src, "/tmp/py/up")
        dst = os.path.join(d, "dst")
        sb.files.download("/tmp/py/up", dst)
        assert open(src, "rb").read() == open(dst, "rb").read()
    sb.files.remove("/tmp/py", recursive=True)
    assert not sb.files.exists("/tmp/py")


def test_env(sb):
    sb.env["PY_VAR"] = "v1"
    assert sb.env.get("PY_VAR") == "v1"
    assert sb.env.all()["PY_VAR"] == "v1"
    assert sb.sh("echo $PY_VAR").text() == "v1"
    del sb.env["PY_VAR"]
    assert sb.env.get("PY_VAR") is None
    with pytest.raises(KeyError):
        sb.env["PY_VAR"]
    with pytest.raises(airlock.InvalidArgumentError):
        sb.env.set("BAD=NAME", "x")


def test_threads(sb):
    errors = []

    def worker(i):
        try:
            for _ in range(3):
                assert sb.sh(f"echo {i}").text() == str(i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []


def test_stats_and_timeouts(sb):
    st = sb.stats()
    assert st.running and st.commands > 0 and st.vcpu_time > 0 and st.uptime > 0
    assert 0 < st.memory_resident_bytes < st.memory_bytes
    assert st.time_left is None
    with pytest.raises(airlock.InvalidArgumentError):
        sb.extend(10)  # no timeout to extend
    sb.set_timeout(600)
    sb.extend(60)
    assert 600 < sb.stats().time_left <= 660
    sb.set_timeout(0)
    assert sb.stats().time_left is None
    before = sb.stats().commands
    sb.sh("true")
    assert sb.stats().commands == before + 1


def test_expose_http(sb):
    import urllib.request
    sb.files.write("/srv/py/index.html", "served from the guest\n")
    with sb.spawn(["busybox", "httpd", "-f", "-p", "127.0.0.1:8091", "-h", "/srv/py"]):
        assert sb.sh("for i in $(seq 100); do wget -q -O /dev/null "
                     "http://127.0.0.1:8091/index.html && exit 0; sleep 0.1; done; exit 1").ok
        url = sb.expose_http(8091)
        assert url.startswith("http://127.0.0.1:")
        assert sb.expose_port(8091) == url[len("http://"):]
        with urllib.request.urlopen(url + "/index.html", timeout=60) as r:
            assert r.read() == b"served from the guest\n"
    with pytest.raises(airlock.InvalidArgumentError):
        sb.expose_port(0)


def test_timeout_ends_a_sandbox_then_kill():
    with airlock.Sandbox(boot_timeout=240, timeout=2, max_lifetime=60) as s:
        with pytest.raises(airlock.ResourceExhaustedError):
            s.extend(120)
        with pytest.raises(airlock.AirlockTimeoutError) as e:
            s.sh("sleep 600")
        assert "timed out" in str(e.value)
        assert isinstance(s.status(), airlock.AirlockTimeoutError)
        st = s.stats()
        assert not st.running and st.commands == 1
        s.kill()  # already ended: fine
        assert isinstance(s.status(), airlock.AirlockTimeoutError)


def test_state(sb):
    sb.ping()
    assert sb.status() is None
    assert len(sb.console()) > 0
    assert len(sb._test_console) > 0


def test_close_while_running_then_use(sb):
    # Runs last (pytest keeps file order): closing ends the module's sandbox.
    outcome = []

    def long_call():
        try:
            sb.sh("sleep 120")
            outcome.append("returned")
        except airlock.AirlockError as e:
            outcome.append(type(e))

    t = threading.Thread(target=long_call)
    t.start()
    time.sleep(1.5)
    start = time.monotonic()
    sb.close()
    t.join(60)
    assert not t.is_alive()
    assert time.monotonic() - start < 60
    assert outcome and outcome[0] in (airlock.ClosedError, airlock.InvalidArgumentError)
    assert sb.closed
    with pytest.raises(airlock.ClosedError):
        sb.sh("true")
    sb.close()  # idempotent


def test_root_image_and_volume_survive_the_sandbox():
    # Its own sandbox: the Debian root image with a volume; the file is read back on the host.
    import shutil
    import subprocess
    base = os.environ.get("TMPDIR") or "/tmp"
    store = tempfile.mkdtemp(prefix="airlock-py-store-", dir=base)
    try:
        st = airlock.Storage(store)
        st.create_volume("data", 32 << 20)
        with airlock.Sandbox(boot_timeout=240, root_image="default", storage_dir=store,
                             volumes=[airlock.Volume("data", "/data")]) as s:
            r = s.exec(["python3", "-c", "open('/data/f', 'w').write('from python')"], timeout=120)
            assert r.ok, r.stderr
            assert [v.in_use for v in st.volumes()] == [True]
            with pytest.raises(airlock.UnavailableError) as e:
                airlock.Sandbox(storage_dir=store, volumes=[airlock.Volume("data", "/d")])
            assert "volume data" in str(e.value)
        assert [v.in_use for v in st.volumes()] == [False]
        debugfs = shutil.which("debugfs") or "/usr/sbin/debugfs"
        out = subprocess.run([debugfs, "-R", "cat /f", os.path.join(store, "volumes", "data.ext4")],
                             capture_output=True, text=True).stdout
        assert out == "from python"
    finally:
        shutil.rmtree(store, ignore_errors=True)
