// Linux's own virtio-net driver through airlock's device, the sandbox namespace and the egress
// proxy: boots the test initramfs on KVM with a NetDevice on a SandboxNetwork tap, configures
// eth0 from the console as the agent will, and checks DNS, proxied and transparent HTTP, a 403,
// and that nothing else answers. Label `kvm` (needs /dev/kvm and root; CI runs it through
// scripts/kvm-run). The upstream is the proxy tests' server on the host's 127.0.0.1.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "../proxy/harness.h"
#include "devices/net.h"
#include "devices/net_tap.h"
#include "net/sandbox_network.h"
#include "vmm/defaults.h"
#include "vmm/machine.h"

using namespace airlock;
using namespace std::chrono_literals;

namespace {

bool wait_for(const vmm::Machine& m, const std::string& marker, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (m.console_output().find(marker) != std::string::npos) return true;
    if (!m.running()) break;
    std::this_thread::sleep_for(50ms);
  }
  return m.console_output().find(marker) != std::string::npos;
}

// The value printed after `key` on the console ("KEY=value"), or "" if absent.
std::string console_value(const std::string& out, const std::string& key) {
  size_t at = out.rfind(key + "=");
  while (at != std::string::npos) {
    size_t start = at + key.size() + 1;
    size_t end = out.find_first_of("\r\n", start);
    std::string v = out.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!v.empty() && v[0] != '$') return v;  // skip the echoed command line itself
    if (at == 0) break;
    at = out.rfind(key + "=", at - 1);
  }
  return "";
}

}  // namespace

TEST_CASE("guest virtio-net: DNS, proxied and transparent HTTP, 403, nothing else reachable") {
  auto kernel = vmm::default_kernel_path();
  auto initramfs = vmm::default_initramfs_path();
  REQUIRE_MESSAGE(kernel.ok(), kernel.status().to_string());
  REQUIRE_MESSAGE(initramfs.ok(), initramfs.status().to_string());

  auto network = net::SandboxNetwork::create({});
  REQUIRE_MESSAGE(network.ok(), network.status().to_string());
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = (*network)->take_proxy_listeners();
  test::ProxyFixture proxy(std::move(o), /*tls_upstream=*/false);
  const std::string port = std::to_string(proxy.upstream->port());

  auto backend = devices::TapBackend::create((*network)->take_tap());
  REQUIRE(backend.ok());
  auto dev = std::make_shared<devices::NetDevice>(std::move(backend).value());

  vmm::MachineConfig config;
  config.kernel_path = *kernel;
  config.initramfs_path = *initramfs;
  config.memory_bytes = 256ull << 20;
  config.vcpus = 1;
  auto machine = vmm::Machine::create(config);
  REQUIRE_MESSAGE(machine.ok(), machine.status().to_string());
  auto& m = **machine;
  REQUIRE(m.add_virtio_device(dev).ok());
  REQUIRE(m.start().ok());
  REQUIRE_MESSAGE(wait_for(m, "AIRLOCK_USERSPACE_READY", 240s), m.console_output());

  const std::string proxy_env = "http_proxy=http://10.213.0.1:3128 ";
  const std::string script[] = {
      "ip link set eth0 up && ip addr add 10.213.0.2/30 dev eth0 && "
      "ip route add default via 10.213.0.1 && echo nameserver 10.213.0.1 > /etc/resolv.conf",
      "echo MAC=$(cat /sys/class/net/eth0/address)", "ip -4 addr show dev eth0; ip route",
      "nslookup api.example.test 10.213.0.1 2>&1 | sed 's/^/DNS: /'",
      // Diagnostics, shown when a check fails.
      "cd /sys/class/net/eth0/statistics && for f in rx_packets rx_dropped rx_errors "
      "rx_length_errors rx_frame_errors tx_packets; do echo \"STAT $f $(cat $f)\"; done; cd /",
      "grep -i virtio /proc/interrupts; ip neigh; cat /sys/bus/virtio/devices/*/features; "
      "dmesg | tail -n 8",
      "echo DNS_A=$(nslookup api.example.test 10.213.0.1 2>&1 | sed -n '/^Name:/,$p' | "
      "grep -o '[0-9][0-9.]*$' | head -n 1)",
      proxy_env + "wget -q -O - 'http://api.example.test:" + port + "/echo?via=proxy'; echo",
      "echo PROXIED_RC=$?",
      proxy_env + "wget -q -O /dev/null 'http://blocked.example.test:" + port + "/echo'",
      "echo BLOCKED_RC=$?",
      // Transparent: the name resolves to the proxy, port 80 is its transparent HTTP listener.
      "wget -q -O - 'http://api.example.test/echo?via=transparent'; echo", "echo TRANSPARENT_RC=$?",
      "T0=$(cut -d' ' -f1 /proc/uptime); " + proxy_env +
          "wget -q -O /tmp/big 'http://api.example.test:" + port +
          "/bytes?n=16777216'; T1=$(cut -d' ' -f1 /proc/uptime)",
      "echo BIG_BYTES=$(wc -c < /tmp/big) BIG_SECONDS=$T0-$T1; rm -f /tmp/big",
      "nc -w 2 10.213.0.1 22 </dev/null; echo PORT22_RC=$?",
      "ping -c 1 -W 1 10.213.0.1 >/dev/null 2>&1; echo PING_RC=$?",
      "nc -w 2 192.0.2.1 80 </dev/null; echo OUTSIDE_RC=$?",
      "echo NET_SCRIPT_$((40 + 2))_DONE",  // the echoed command must not match the marker
  };
  // Typed as a file first and run at once, so the console's echo of typed-ahead input never
  // interleaves with the output.
  REQUIRE(m.write_console("cat > /tmp/net.sh <<'AIRLOCK_EOF'\n").ok());
  for (const auto& line : script) {
    REQUIRE(m.write_console(line + "\n").ok());
    std::this_thread::sleep_for(100ms);
  }
  REQUIRE(m.write_console("AIRLOCK_EOF\nsh /tmp/net.sh\n").ok());
  const bool done = wait_for(m, "NET_SCRIPT_42_DONE", 600s);
  (void)m.write_console("reboot -f\n");
  (void)m.wait(60s);
  m.kill();
  const std::string out = m.console_output();
  INFO(out);
  REQUIRE(done);

  CHECK(console_value(out, "MAC") == "02:41:4c:00:00:02");
  CHECK(console_value(out, "DNS_A") == "10.213.0.1");
  CHECK(out.find("\"path\": \"/echo?via=proxy\"") != std::string::npos);
  CHECK(console_value(out, "PROXIED_RC") == "0");
  CHECK(console_value(out, "BLOCKED_RC") != "0");
  CHECK(out.find("\"path\": \"/echo?via=transparent\"") != std::string::npos);
  CHECK(console_value(out, "TRANSPARENT_RC") == "0");
  CHECK(console_value(out, "PORT22_RC") != "0");
  CHECK(console_value(out, "PING_RC") != "0");
  CHECK(console_value(out, "OUTSIDE_RC") != "0");

  const std::string big = console_value(out, "BIG_BYTES");
  CHECK(big.rfind("16777216", 0) == 0);
  MESSAGE("16 MiB through virtio-net + proxy: " << big);

  // The proxy saw the guest's requests coming from the guest's address on the tap.
  auto events = proxy.audit.snapshot();
  bool saw_guest = false, saw_denied = false;
  for (const auto& e : events) {
    if (e.client.rfind("10.213.0.2", 0) == 0 && e.host == "api.example.test") saw_guest = true;
    if (e.host == "blocked.example.test" && e.decision == AuditEvent::Decision::denied)
      saw_denied = true;
  }
  CHECK(saw_guest);
  CHECK(saw_denied);
  auto st = dev->stats();
  CHECK(st.rx_bytes > (16u << 20));  // the download went through the device
  CHECK(st.tx_frames > 10);
  CHECK(st.rx_dropped == 0);
  MESSAGE("net device stats: rx " << st.rx_frames << " frames " << st.rx_bytes << " bytes, tx "
                                  << st.tx_frames << " frames, dropped rx " << st.rx_dropped
                                  << " tx " << st.tx_dropped);
}
