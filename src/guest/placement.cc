#include "guest/placement.h"

#include <dirent.h>

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

// The first CPU of a list such as "1" or "0-1" or "0,2"; -1 if none.
int first_cpu(const std::string& list) {
  if (list.empty() || list[0] < '0' || list[0] > '9') return -1;
  return std::atoi(list.c_str());
}

}  // namespace

CpuPlacement place_agent() {
  CpuPlacement p;
  struct sched_param none {};
  p.batch = sched_setscheduler(0, SCHED_BATCH, &none) == 0;
  if (sched_getaffinity(0, sizeof p.all, &p.all) != 0 || CPU_COUNT(&p.all) < 2) return p;
  // The agent goes where the kernel delivers the vsock interrupt; the interrupt itself is left
  // alone (reprogramming the IO-APIC under an emulated, nested machine is one risk more).
  std::string name = vsock_device_name();
  p.vsock_irq = name.empty() ? -1 : irq_named(name);
  if (p.vsock_irq >= 0)
    p.cpu = first_cpu(
        read_line("/proc/irq/" + std::to_string(p.vsock_irq) + "/effective_affinity_list"));
  if (p.cpu < 0 || p.cpu >= CPU_SETSIZE || !CPU_ISSET(p.cpu, &p.all)) {
    p.cpu = -1;  // unknown or not ours: the first CPU we may use
    for (int c = 0; c < CPU_SETSIZE && p.cpu < 0; ++c)
      if (CPU_ISSET(c, &p.all)) p.cpu = c;
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(p.cpu, &one);
  p.pinned = sched_setaffinity(0, sizeof one, &one) == 0;
  return p;
}

}  // namespace airlock::guest
