// WebSocket through the proxy: the upgrade request is checked (policy, Host, secrets) like any
// other request; after the upstream's 101 bytes flow both ways.
#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

const char* kWsClient = R"PY(
import base64, os, socket, ssl, sys
proxy, target, cafile, host, placeholder = sys.argv[1:6]
path = sys.argv[6] if len(sys.argv) > 6 else "/ws"
ph, pp = proxy.rsplit(":", 1)
s = socket.create_connection((ph, int(pp)), timeout=10)
s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
resp = b""
while b"\r\n\r\n" not in resp:
    resp += s.recv(4096)
assert b" 200 " in resp.split(b"\r\n")[0], resp
ctx = ssl.create_default_context(cafile=cafile)
s = ctx.wrap_socket(s, server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
           % (path, target, key, placeholder)).encode())
resp = b""
while b"\r\n\r\n" not in resp:
    d = s.recv(4096)
    if not d:
        break
    resp += d
head, _, rest = resp.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
if b" 101 " not in head.split(b"\r\n")[0]:
    sys.exit(0)
if path != "/ws":
    # Read one whole message (two fragments) and print its text.
    buf, text = rest, b""
    for _ in range(2):
        while len(buf) < 2:
            buf += s.recv(4096)
        ln, off = buf[1] & 0x7F, 2
        if ln == 126:
            while len(buf) < 4:
                buf += s.recv(4096)
            ln, off = int.from_bytes(buf[2:4], "big"), 4
        while len(buf) < off + ln:
            buf += s.recv(4096)
        text += buf[off:off + ln]
        buf = buf[off + ln:]
    print("auth-frame", text.decode())
    sys.exit(0)
for msg in [b"hello", b"x" * 1000, b"third message"]:
    mask = os.urandom(4)
    n = len(msg)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    buf = rest
    while len(buf) < 2:
        buf += s.recv(4096)
    ln = buf[1] & 0x7F
    off = 2
    if ln == 126:
        while len(buf) < 4:
            buf += s.recv(4096)
        ln = int.from_bytes(buf[2:4], "big")
        off = 4
    while len(buf) < off + ln:
        buf += s.recv(4096)
    rest = buf[off + ln:]
    print("echo", len(buf[off:off + ln]), buf[off:off + ln][:20].decode())
)PY";

}  // namespace

TEST_CASE("WebSocket echo through the intercepting proxy") {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  o.secrets = {SecretSpec{"WS_TOKEN", "ws-real-secret-value-42", {"api.example.test"}}};
  ProxyFixture f(std::move(o));
  std::string target = "api.example.test:" + std::to_string(f.upstream->port());
  auto r = run({"/usr/bin/python3", "-c", kWsClient, f.proxy_addr, target, f.proxy_ca,
                "api.example.test", f.proxy->placeholder("WS_TOKEN")},
               30s);
  INFO(r.err);
  CHECK(r.out.find("HTTP/1.1 101") != std::string::npos);
  CHECK(r.out.find("echo 5 hello") != std::string::npos);
  CHECK(r.out.find("echo 1000 xxxx") != std::string::npos);
  CHECK(r.out.find("echo 13 third message") != std::string::npos);
  // The upgrade request's headers were substituted like any other request's.
  CHECK(read_text(f.upstream_log).find("Bearer ws-real-secret-value-42") != std::string::npos);

  // The upstream echoes the credential it received inside a WebSocket message (in two
  // fragments): the client gets the placeholder back, never the value.
  auto echoed = run({"/usr/bin/python3", "-c", kWsClient, f.proxy_addr, target, f.proxy_ca,
                     "api.example.test", f.proxy->placeholder("WS_TOKEN"), "/ws?auth=1"},
                    30s);
  INFO(echoed.err);
  CHECK(echoed.out.find("auth-frame Bearer " + f.proxy->placeholder("WS_TOKEN")) !=
        std::string::npos);
  CHECK(echoed.out.find("ws-real-secret-value-42") == std::string::npos);
  // Compression was not negotiated: it would hide values from redaction.
  CHECK(read_text(f.upstream_log).find("permessage-deflate") == std::string::npos);

  // The same upgrade with the placeholder towards an unbound host is refused before any 101.
  std::string other = "other.example.test:" + std::to_string(f.upstream->port());
  auto refused = run({"/usr/bin/python3", "-c", kWsClient, f.proxy_addr, other, f.proxy_ca,
                      "other.example.test", f.proxy->placeholder("WS_TOKEN")},
                     30s);
  CHECK(refused.out.find("HTTP/1.1 403") != std::string::npos);
}
