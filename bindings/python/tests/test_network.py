"""Networking through the Python binding (nested runner in CI): a secret the guest sees only as
a placeholder and that reaches its bound host as the real value, a host outside allow_net
refused, audit events, and the request hook. No traffic leaves the machine: api.example.com is
resolved to a local HTTP server on 127.0.0.1, and example.org is refused by the proxy."""
import http.server
import threading
import time

import pytest

import airlock

REAL_KEY = "sk-test-0123456789abcdef-not-real"


class Upstream(http.server.BaseHTTPRequestHandler):
    seen = []  # (path, headers) of every request

    def do_GET(self):
        Upstream.seen.append((self.path, dict(self.headers)))
        body = b"upstream ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# Longer than the proxy's 2 s default: a hook that takes SLOW_HOOK_S still decides in time only
# if hook_deadline reached the proxy.
HOOK_DEADLINE_S = 8.0
SLOW_HOOK_S = 3.5


def hook(req):
    if req.target.startswith("/slow"):
        time.sleep(SLOW_HOOK_S)
        return airlock.HookDecision(set_headers={"X-Hooked": "slow"})
    if req.target.startswith("/blocked"):
        return airlock.HookDecision(allow=False, status=451, message="blocked by hook")
    return airlock.HookDecision(set_headers={"X-Hooked": "yes"})


@pytest.fixture(scope="module")
def sb():
    events = []
    lock = threading.Lock()

    def on_audit(e):
        with lock:
            events.append(e)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    host = f"api.example.com:{port}"
    try:
        s = airlock.Sandbox(boot_timeout=240, allow_net=[host],
                            secrets={"API_KEY": (REAL_KEY, [host])}, on_audit=on_audit,
                            request_hook=hook, hook_deadline=HOOK_DEADLINE_S,
                            resolve_override={"api.example.com": "127.0.0.1"})
    except airlock.UnavailableError as e:
        assert "networking not built yet" in str(e)
        server.shutdown()
        pytest.skip("networking not built yet in this libairlock")
    s._events = events
    s._port = port
    yield s
    s.close()
    server.shutdown()


def test_allowed_host_gets_the_real_secret_and_hook_headers(sb):
    url = f"http://api.example.com:{sb._port}/ok"
    out = sb.sh(f'wget -q -O - --header "Authorization: Bearer $API_KEY" {url} 2>&1; '
                'echo " exit=$?"').text()
    assert "upstream ok" in out and "exit=0" in out, out
    path, headers = Upstream.seen[-1]
    assert path == "/ok"
    assert headers.get("Authorization") == "Bearer " + REAL_KEY  # substituted by the proxy
    assert headers.get("X-Hooked") == "yes"                      # added by the hook
    sb.raise_callback_errors()


def test_hook_can_deny(sb):
    n = len(Upstream.seen)
    out = sb.sh(f'wget -q -O - http://api.example.com:{sb._port}/blocked 2>&1; '
                'echo " exit=$?"').text()
    assert "451" in out and "exit=0" not in out, out
    assert len(Upstream.seen) == n  # never reached the upstream


def test_hook_deadline_is_the_configured_one(sb):
    # 3.5 s is past the proxy's default deadline (2 s) and within the configured 8 s.
    out = sb.sh(f'wget -q -O - http://api.example.com:{sb._port}/slow 2>&1; '
                'echo " exit=$?"').text()
    assert "upstream ok" in out and "exit=0" in out, out
    path, headers = Upstream.seen[-1]
    assert path == "/slow" and headers.get("X-Hooked") == "slow"


def test_secret_is_a_placeholder(sb):
    seen = sb.sh('printf %s "$API_KEY"').text()
    assert seen and REAL_KEY not in seen
    # Nowhere in the guest's environment either.
    assert REAL_KEY not in sb.sh("env").text()


def test_host_outside_allow_net_refused_and_audited(sb):
    # The guest's busybox wget goes through the proxy (http_proxy is set for every command).
    out = sb.sh('wget -q -O /dev/null http://example.org/ 2>&1; echo " exit=$?"').text()
    assert "403" in out and "exit=0" not in out, out
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e.host == "example.org" for e in sb._events):
        time.sleep(0.05)
    sb.raise_callback_errors()
    denied = [e for e in sb._events if e.host == "example.org"]
    assert denied, sb._events
    for e in denied:
        assert e.decision == "denied" and e.status == 403
        assert REAL_KEY not in repr(e)
