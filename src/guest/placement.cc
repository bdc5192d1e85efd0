#include "guest/placement.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace airlock::guest {

namespace {

constexpr const char* kVirtioDevices = "/sys/bus/virtio/devices";
constexpr int kVirtioIdVsock = 19;

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// "virtioN" of the vsock device (the name its interrupt has in /proc/interrupts).
std::string vsock_device_name() {
  DIR* d = opendir(kVirtioDevices);
  if (!d) return {};
  std::string found;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string id = read_line(std::string(kVirtioDevices) + "/" + e->d_name + "/device");
    if (!id.empty() && std::strtol(id.c_str(), nullptr, 0) == kVirtioIdVsock) {
      found = e->d_name;
      break;
    }
  }
  closedir(d);
  return found;
}

// The interrupt whose /proc/interrupts line ends with `name`.
int irq_named(const std::string& name) {
  std::ifstream f("/proc/interrupts");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream words(line);
    std::string first, word, last;
    words >> first;
    while (words >> word) last = word;
    if (last == name && !first.empty() && first.back() == ':') return std::atoi(first.c_str());
  }
  return -1;
}

bool write_file(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

}  // namespace

CpuPlacement place_agent() {
  CpuPlacement p;
  struct sched_param none {};
  p.batch = sched_setscheduler(0, SCHED_BATCH, &none) == 0;
  if (sched_getaffinity(0, sizeof p.all, &p.all) != 0 || CPU_COUNT(&p.all) < 2) return p;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &p.all)) {
      p.cpu = c;
      break;
    }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(p.cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) return p;
  p.pinned = true;
  std::string name = vsock_device_name();
  int irq = name.empty() ? -1 : irq_named(name);
  if (irq >= 0 &&
      write_file("/proc/irq/" + std::to_string(irq) + "/smp_affinity_list", std::to_string(p.cpu)))
    p.vsock_irq = irq;
  return p;
}

}  // namespace airlock::guest
