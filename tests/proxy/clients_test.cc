// Real clients other than curl: Python's urllib and requests through the explicit proxy
// (HTTPS_PROXY, CONNECT), Node's https module against the transparent listener (SNI routing,
// NODE_EXTRA_CA_CERTS), and many concurrent connections.
#include <sys/resource.h>

#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> proxy_env(const ProxyFixture& f) {
  return {"HTTPS_PROXY=http://" + f.proxy_addr,
          "https_proxy=http://" + f.proxy_addr,
          "HTTP_PROXY=http://" + f.proxy_addr,
          "http_proxy=http://" + f.proxy_addr,
          "NO_PROXY=",
          "no_proxy=",
          "SSL_CERT_FILE=" + f.proxy_ca,
          "REQUESTS_CA_BUNDLE=" + f.proxy_ca};
}

}  // namespace

TEST_CASE("Python urllib through the explicit proxy") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  const char* script = R"PY(
import sys, urllib.request, urllib.error
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
try:
    urllib.request.urlopen(sys.argv[2], timeout=10)
except urllib.error.URLError as e:
    print("blocked:", e)
)PY";
  auto r = run({"/usr/bin/python3", "-c", script, f.url("api.example.test", "/echo?from=urllib"),
                f.url("blocked.example.test", "/echo")},
               30s, proxy_env(f));
  INFO(r.err);
  CHECK(r.out.find("/echo?from=urllib") != std::string::npos);
  CHECK(r.out.find("blocked:") != std::string::npos);
  CHECK(r.out.find("403") != std::string::npos);
}

TEST_CASE("Python requests through the explicit proxy, with a secret") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.secrets = {SecretSpec{"TOKEN", "requests-real-token-77", {"api.example.test"}}};
  ProxyFixture f(std::move(o));
  const char* script = R"PY(
import sys, requests
s = requests.Session()
for i in range(3):
    r = s.post(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]}, json={"i": i}, timeout=10)
    print(r.status_code, r.json()["body"], [v for k, v in r.json()["headers"] if k == "Authorization"])
)PY";
  std::string ph = f.proxy->placeholder("TOKEN");
  auto r = run({"/usr/bin/python3", "-c", script, f.url("api.example.test", "/echo"), ph}, 30s,
               proxy_env(f));
  INFO(r.err);
  CHECK(r.out.find("200 {\"i\": 2}") != std::string::npos);
  CHECK(r.out.find("requests-real-token-77") == std::string::npos);  // redacted on the way back
  CHECK(r.out.find(ph) != std::string::npos);
  CHECK(read_text(f.upstream_log).find("Bearer requests-real-token-77") != std::string::npos);
}

TEST_CASE("Node https against the transparent listener (SNI routing, NODE_EXTRA_CA_CERTS)") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o));
  const char* script = R"JS(
const https = require('https');
const [proxyPort, upstreamPort] = process.argv.slice(-2);  // node -e: no script path in argv
function get(name) {
  return new Promise((resolve, reject) => {
    // Connect to the proxy as if it were the server (what DNS pointing at the proxy does).
    const req = https.request({host: name, port: +proxyPort, path: '/echo?from=node',
        headers: {Host: name + ':' + upstreamPort}, servername: name, agent: false,
        lookup: (h, opts, cb) => opts.all ? cb(null, [{address: '127.0.0.1', family: 4}])
                                          : cb(null, '127.0.0.1', 4)},
      (res) => { let b = ''; res.on('data', d => b += d); res.on('end', () => resolve(res.statusCode + ' ' + b)); });
    req.on('error', reject);
    req.end();
  });
}
(async () => {
  console.log(await get('api.example.test'));
  console.log(await get('blocked.example.test'));
})().catch(e => { console.log('error', e.message); process.exit(1); });
)JS";
  auto r = run({"node", "-e", script, port_of(f.proxy_addr), std::to_string(f.upstream->port())},
               30s, {"NODE_EXTRA_CA_CERTS=" + f.proxy_ca});
  INFO(r.err);
  INFO(r.out);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("200 {") != std::string::npos);
  CHECK(r.out.find("/echo?from=node") != std::string::npos);
  CHECK(r.out.find("403 airlock: request to blocked.example.test refused") != std::string::npos);
}

TEST_CASE("1000 concurrent connections are all served") {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 8192);
  setrlimit(RLIMIT_NOFILE, &lim);
  REQUIRE(lim.rlim_cur >= 4000);
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.limits.max_connections = 4096;
  ProxyFixture f(std::move(o), /*tls_upstream=*/false);
  // 1000 connections opened at once, each held open until all are connected, then one request
  // each (absolute-form through the explicit proxy to the plain upstream).
  const char* script = R"PY(
import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
host, port = sys.argv[1].rsplit(":", 1)
target = sys.argv[2]
N = 1000
async def main():
    conns = await asyncio.gather(*[asyncio.open_connection(host, int(port)) for _ in range(N)])
    async def one(i, rw):
        r, w = rw
        w.write(("GET %s/echo?i=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                 % (target, i, target[len("http://"):])).encode())
        data = await r.read()
        w.close()
        return data.startswith(b"HTTP/1.1 200") and (b"i=%d" % i) in data
    ok = await asyncio.gather(*[one(i, c) for i, c in enumerate(conns)])
    print("ok", sum(ok))
asyncio.run(asyncio.wait_for(main(), 100))
)PY";
  auto t0 = std::chrono::steady_clock::now();
  auto r = run({"/usr/bin/python3", "-c", script, f.proxy_addr,
                "http://api.example.test:" + std::to_string(f.upstream->port())},
               120s);
  INFO(r.err);
  CHECK(r.out.find("ok 1000") != std::string::npos);
  MESSAGE("1000 concurrent requests took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::steady_clock::now() - t0)
                                                  .count()
                                           << " ms");
  CHECK(f.proxy->stats().connections >= 1000);
}
