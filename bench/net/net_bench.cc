// bench/net host side: one benchmark guest on one VMM, with the network path of a real sandbox.
// Makes a sandbox network (its own namespace, tap, DNS; net::SandboxNetwork) and airlock's
// egress proxy on its listeners (upstream sockets in this namespace, so the upstream on the
// runner's loopback is reachable by name through the resolver override), appends the proxy's
// CA to the initramfs as /etc/bench-ca.pem, then boots the guest either on airlock (virtio-net
// on the tap) or under QEMU, which gets the very same tap as an inherited fd (-netdev
// tap,fd=3,vhost=off). Only the VMM and its virtio-net device differ between the two runs.
//
//   bench_net airlock KERNEL INITRAMFS CMDLINE_EXTRA UPSTREAM_CA ALLOWED_NAME [TIMEOUT_S]
//   bench_net qemu    KERNEL INITRAMFS CMDLINE_EXTRA UPSTREAM_CA ALLOWED_NAME -- QEMU ARGV...
// The guest console goes to stdout. ALLOWED_NAME resolves to 127.0.0.1 for the proxy.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "airlock/proxy.hpp"
#include "devices/net.h"
#include "devices/net_tap.h"
#include "net/sandbox_network.h"
#include "vmm/machine.h"

using namespace airlock;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "bench_net: %s\n", what.c_str());
  return 1;
}

// One newc cpio member (a regular file) and the trailer: the kernel unpacks it over the
// compressed initramfs it follows.
std::string cpio_with_file(const std::string& name, const std::string& data) {
  auto entry = [](const std::string& n, const std::string& d, unsigned mode, unsigned nlink) {
    char hdr[111];
    std::snprintf(hdr, sizeof hdr, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 1u,
                  mode, 0u, 0u, nlink, 0u, static_cast<unsigned>(d.size()), 0u, 0u, 0u, 0u,
                  static_cast<unsigned>(n.size() + 1), 0u);
    std::string out(hdr, 110);
    out += n;
    out.push_back('\0');
    out.resize((out.size() + 3) & ~size_t(3), '\0');
    out += d;
    out.resize((out.size() + 3) & ~size_t(3), '\0');
    return out;
  };
  return entry(name, data, 0100644, 1) + entry("TRAILER!!!", "", 0, 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr,
                 "usage: bench_net airlock|qemu KERNEL INITRAMFS CMDLINE_EXTRA UPSTREAM_CA "
                 "ALLOWED_NAME [TIMEOUT_S | -- QEMU ARGV...]\n");
    return 2;
  }
  const std::string mode = argv[1];
  if (mode != "airlock" && mode != "qemu") return fail("mode must be airlock or qemu");
  ::signal(SIGPIPE, SIG_IGN);

  auto network = net::SandboxNetwork::create({});
  if (!network.ok()) return fail(network.status().to_string());
  ProxyOptions po;
  po.allow_net = {argv[6]};
  po.resolve_override[argv[6]] = "127.0.0.1";
  po.extra_ca_files = {argv[5]};
  po.listeners = (*network)->take_proxy_listeners();
  auto proxy = Proxy::start(std::move(po));
  if (!proxy.ok()) return fail(proxy.status().to_string());

  // The initramfs plus the proxy's CA (4-byte aligned, as the kernel's unpacker expects).
  std::string initramfs;
  {
    std::ifstream in(argv[3], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    initramfs = ss.str();
  }
  if (initramfs.empty()) return fail(std::string("cannot read ") + argv[3]);
  initramfs.resize((initramfs.size() + 3) & ~size_t(3), '\0');
  initramfs += cpio_with_file("etc/bench-ca.pem", (*proxy)->ca_pem());
  char initramfs_path[] = "bench-net-initramfs.XXXXXX";
  int ifd = ::mkstemp(initramfs_path);
  if (ifd < 0) return fail("mkstemp in the current directory");
  bool written =
      ::write(ifd, initramfs.data(), initramfs.size()) == static_cast<ssize_t>(initramfs.size());
  ::close(ifd);
  struct Unlink {
    const char* p;
    ~Unlink() { ::unlink(p); }
  } unlink_initramfs{initramfs_path};
  if (!written) return fail("writing the initramfs copy");

  UniqueFd tap = (*network)->take_tap();
  int rc = 0;
  if (mode == "airlock") {
    const long timeout_s = argc > 7 ? std::atol(argv[7]) : 900;
    auto backend = devices::TapBackend::create(std::move(tap));
    if (!backend.ok()) return fail(backend.status().to_string());
    auto dev = std::make_shared<devices::NetDevice>(std::move(backend).value());
    vmm::MachineConfig config;
    config.kernel_path = argv[2];
    config.initramfs_path = initramfs_path;
    config.cmdline_extra = argv[4];
    config.memory_bytes = 512ull << 20;
    config.vcpus = 1;
    config.on_console = [](std::string_view s) { (void)!::write(1, s.data(), s.size()); };
    auto machine = vmm::Machine::create(config);
    if (!machine.ok()) return fail(machine.status().to_string());
    if (auto r = (*machine)->add_virtio_device(dev); !r.ok()) return fail(r.status().to_string());
    if (Status s = (*machine)->start(); !s.ok()) return fail(s.to_string());
    auto end = (*machine)->wait(std::chrono::seconds(timeout_s));
    (*machine)->kill();
    auto st = dev->stats();
    std::fprintf(stderr,
                 "bench_net: airlock virtio-net rx %llu frames (%llu read straight into guest "
                 "buffers), tx %llu, dropped rx %llu\n",
                 static_cast<unsigned long long>(st.rx_frames),
                 static_cast<unsigned long long>(st.rx_direct),
                 static_cast<unsigned long long>(st.tx_frames),
                 static_cast<unsigned long long>(st.rx_dropped));
    if (!end.ok()) return fail(end.status().to_string());
  } else {
    int sep = 7;
    while (sep < argc && std::string(argv[sep]) != "--") ++sep;
    if (sep + 1 >= argc) return fail("qemu mode needs -- QEMU ARGV...");
    std::vector<std::string> args(argv + sep + 1, argv + argc);
    args.insert(args.end(), {"-kernel", argv[2], "-initrd", initramfs_path, "-append",
                             // reboot=t: microvm has no i8042 to reset through (reboot=k
                             // hung the guest after the benchmark).
                             std::string("console=ttyS0 reboot=t panic=-1 quiet ") + argv[4],
                             "-netdev", "tap,id=n0,fd=3,vhost=off", "-device",
                             "virtio-net-device,netdev=n0,mac=02:41:4c:00:00:02"});
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return fail("pipe");
    pid_t pid = ::fork();
    if (pid < 0) return fail("fork");
    if (pid == 0) {
      // The tap becomes fd 3 of QEMU, blocking as QEMU expects to set it up itself.
      if (::dup2(tap.get(), 3) < 0 || ::fcntl(3, F_SETFD, 0) != 0) ::_exit(126);
      if (::dup2(out[1], 1) < 0) ::_exit(126);
      ::fcntl(3, F_SETFL, ::fcntl(3, F_GETFL) & ~O_NONBLOCK);
      std::vector<char*> cargs;
      for (auto& a : args) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      ::execvp(cargs[0], cargs.data());
      ::_exit(127);
    }
    tap.reset();
    ::close(out[1]);
    // Relay the console; once the guest said it is done, QEMU gets 20 s to exit on its own.
    std::string tail;
    bool guest_done = false;
    std::chrono::steady_clock::time_point done_at;
    for (;;) {
      pollfd pfd{out[0], POLLIN, 0};
      if (guest_done && std::chrono::steady_clock::now() > done_at + std::chrono::seconds(20)) {
        std::fprintf(stderr, "bench_net: qemu did not exit after the guest finished; killed\n");
        ::kill(pid, SIGKILL);
        break;
      }
      if (::poll(&pfd, 1, 1000) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      (void)!::write(1, buf, static_cast<size_t>(n));
      tail.append(buf, static_cast<size_t>(n));
      if (!guest_done && tail.find("AIRLOCK_TEST_EXIT=") != std::string::npos) {
        guest_done = true;
        done_at = std::chrono::steady_clock::now();
      }
      if (tail.size() > 256) tail.erase(0, tail.size() - 64);
    }
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    if (guest_done) rc = 0;  // the benchmark finished; how QEMU ended does not matter
    if (rc != 0) std::fprintf(stderr, "bench_net: qemu exited with status %d\n", rc);
  }
  (*proxy)->stop();
  return rc;
}
