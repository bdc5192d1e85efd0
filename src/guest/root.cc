#include "guest/root.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "guest/init.h"

namespace airlock::guest {

namespace {

struct VolumeRequest {
  std::string serial;
  bool read_only = false;
  std::string path;
};

struct StoragePlan {
  bool root = false;
  int layers = 0;
  bool disk_upper = false;
  std::vector<VolumeRequest> volumes;
};

std::string read_text(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX unescaping; false on a malformed escape.
bool unescape(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex_digit(in[i + 1]), lo = hex_digit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

bool parse_plan(StoragePlan& plan) {
  const std::string cmdline = read_text("/proc/cmdline");
  size_t pos = 0;
  while (pos < cmdline.size()) {
    size_t end = cmdline.find(' ', pos);
    if (end == std::string::npos) end = cmdline.size();
    const std::string word = cmdline.substr(pos, end - pos);
    pos = end + 1;
    if (word == "airlock.root=1") {
      plan.root = true;
    } else if (word.rfind("airlock.layers=", 0) == 0) {
      plan.layers = atoi(word.c_str() + 15);
      if (plan.layers < 0 || plan.layers > 64) {
        console_log("bad %s", word.c_str());
        return false;
      }
    } else if (word == "airlock.upper=disk") {
      plan.disk_upper = true;
    } else if (word.rfind("airlock.vol=", 0) == 0) {
      // SERIAL,rw|ro,PATH
      const std::string v = word.substr(12);
      size_t c1 = v.find(','), c2 = c1 == std::string::npos ? c1 : v.find(',', c1 + 1);
      VolumeRequest req;
      if (c2 == std::string::npos || !unescape(v.substr(c2 + 1), req.path) || req.path.empty() ||
          req.path[0] != '/') {
        console_log("bad volume request %s", word.c_str());
        return false;
      }
      req.serial = v.substr(0, c1);
      req.read_only = v.substr(c1 + 1, c2 - c1 - 1) == "ro";
      plan.volumes.push_back(req);
    }
  }
  return true;
}

void mkdir_p(const std::string& path, mode_t mode = 0755) {
  for (size_t i = 1; i <= path.size(); ++i)
    if (i == path.size() || path[i] == '/') mkdir(path.substr(0, i).c_str(), mode);
}

// /dev/vdX of the disk with this serial; waits up to 5 s for the driver to bind it.
std::string find_disk(const std::string& serial) {
  struct timespec pause = {0, 20 * 1000 * 1000};
  for (int attempt = 0; attempt < 250; ++attempt) {
    if (DIR* d = opendir("/sys/block")) {
      while (struct dirent* e = readdir(d)) {
        if (strncmp(e->d_name, "vd", 2) != 0) continue;
        std::string name = e->d_name;
        if (read_text("/sys/block/" + name + "/serial") == serial) {
          closedir(d);
          return "/dev/" + name;
        }
      }
      closedir(d);
    }
    nanosleep(&pause, nullptr);
  }
  return {};
}

bool mount_disk(const std::string& serial, const std::string& target, bool read_only) {
  const std::string dev = find_disk(serial);
  if (dev.empty()) {
    console_log("no disk with serial %s", serial.c_str());
    return false;
  }
  mkdir_p(target);
  // noload: a read-only device cannot replay a journal (the host replays it in snapshots).
  unsigned long flags = MS_NOATIME | (read_only ? MS_RDONLY : 0);
  if (mount(dev.c_str(), target.c_str(), "ext4", flags, read_only ? "noload" : "") != 0) {
    console_log("mount %s (%s) on %s: %s", dev.c_str(), serial.c_str(), target.c_str(),
                strerror(errno));
    return false;
  }
  return true;
}

bool switch_into(const StoragePlan& plan) {
  const std::string run = "/run/airlock";
  mkdir_p(run);
  if (!mount_disk("airlock-root", run + "/lower0", true)) return false;
  std::string lowers = run + "/lower0";
  for (int i = 1; i <= plan.layers; ++i) {
    const std::string dir = run + "/layer" + std::to_string(i);
    if (!mount_disk("airlock-layer" + std::to_string(i), dir, true)) return false;
    lowers = dir + "/upper:" + lowers;  // overlayfs lists lower dirs top first
  }
  const std::string rw = kUpperMount;
  if (plan.disk_upper) {
    if (!mount_disk("airlock-upper", rw, false)) return false;
  } else {
    mkdir_p(rw);
    if (mount("tmpfs", rw.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) {
      console_log("mount tmpfs upper: %s", strerror(errno));
      return false;
    }
  }
  mkdir(std::string(rw + "/upper").c_str(), 0755);
  mkdir(std::string(rw + "/work").c_str(), 0755);
  const std::string options =
      "lowerdir=" + lowers + ",upperdir=" + rw + "/upper,workdir=" + rw + "/work";
  mkdir("/newroot", 0755);
  if (mount("overlay", "/newroot", "overlay", 0, options.c_str()) != 0) {
    console_log("mount overlay root (%s): %s", options.c_str(), strerror(errno));
    return false;
  }
  // The agent binary stays reachable in the new root (the host runs its freeze tools).
  int fd = open(kAgentPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd >= 0) close(fd);
  if (mount("/init", kAgentPath, nullptr, MS_BIND, nullptr) != 0)
    console_log("bind /init on %s: %s", kAgentPath, strerror(errno));
  for (const char* m : {"/proc", "/sys", "/dev", "/run", "/tmp"}) {
    const std::string target = std::string("/newroot") + m;
    mkdir(target.c_str(), 0755);
    if (mount(m, target.c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      console_log("moving %s into the new root: %s", m, strerror(errno));
      return false;
    }
  }
  if (chdir("/newroot") != 0 || mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 ||
      chroot(".") != 0 || chdir("/") != 0) {
    console_log("switching to the new root: %s", strerror(errno));
    return false;
  }
  return true;
}

int freeze_ioctl(const char* path, unsigned long request, const char* what) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "%s: open %s: %s\n", what, path, strerror(errno));
    return 1;
  }
  int rc = ioctl(fd, request, 0);
  int err = errno;
  close(fd);
  if (rc != 0) {
    fprintf(stderr, "%s %s: %s\n", what, path, strerror(err));
    return 1;
  }
  return 0;
}

}  // namespace

bool setup_storage() {
  StoragePlan plan;
  if (!parse_plan(plan)) return false;
  if (plan.root && !switch_into(plan)) return false;
  for (const auto& v : plan.volumes)
    if (!mount_disk(v.serial, v.path, v.read_only)) return false;
  return true;
}

int run_fsfreeze(const char* path) {
  sync();
  return freeze_ioctl(path, FIFREEZE, "fsfreeze");
}

int run_fsthaw(const char* path) {
  return freeze_ioctl(path, FITHAW, "fsthaw");
}

}  // namespace airlock::guest
