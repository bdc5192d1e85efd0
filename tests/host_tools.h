// Host-side helpers for tests that check disk images from the host: the KVM blk and persist
// tests and the image unit tests.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

namespace airlock::test {

// stdout of `sh -c command` (empty if it could not start).
inline std::string shell_output(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// e2fsprogs' debugfs, wherever Debian put it.
inline std::string debugfs() {
  return std::filesystem::exists("/usr/sbin/debugfs") ? "/usr/sbin/debugfs" : "/sbin/debugfs";
}

}  // namespace airlock::test
