// Test helpers: copy Debian programs from the host into a sandbox guest (the sandbox initramfs is
// busybox only), with the shared libraries ldd lists, at the same paths. Used by the kvm net
// tests for curl and python3. Threads: the test's.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../proxy/harness.h"
#include "airlock/sandbox.hpp"

namespace airlock::test {

// Copies a host program and every shared library ldd lists into the guest at the same paths.
inline void upload_program(Sandbox& sb, const std::string& program) {
  using namespace std::chrono_literals;
  auto l = run({"ldd", program}, 20s);
  REQUIRE(l.exit_code == 0);
  std::vector<std::pair<std::string, std::string>> files = {{program, program}};
  std::istringstream in(l.out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    std::string path;
    if (w.size() >= 3 && w[1] == "=>" && w[2][0] == '/')
      path = w[2];
    else if (!w.empty() && w[0][0] == '/')
      path = w[0];
    if (!path.empty()) files.emplace_back(path, path);
  }
  for (auto& [guest, host] : files) {
    auto real = std::filesystem::canonical(host).string();
    auto st = sb.fs().upload(real, guest, 0755);
    REQUIRE_MESSAGE(st.ok(), guest << ": " << st.to_string());
  }
}

// Debian's python3 (as /usr/bin/python3.11) with the stdlib modules that `imports` (a Python
// import statement) loads, and their libraries. Run it as `python3.11 -S -B`.
inline void upload_python(Sandbox& sb, const std::string& imports) {
  using namespace std::chrono_literals;
  auto l = run({"/usr/bin/python3", "-S", "-c",
                imports + "\nimport sys\n"
                          "for m in list(sys.modules.values()):\n"
                          "    f = getattr(m, '__file__', None)\n"
                          "    if f: print(f)\n"},
               30s);
  REQUIRE(l.exit_code == 0);
  upload_program(sb, "/usr/bin/python3.11");
  std::istringstream in(l.out);
  for (std::string path; std::getline(in, path);) {
    if (path.size() > 3 && path.substr(path.size() - 3) == ".so") {
      upload_program(sb, path);
    } else {
      auto st = sb.fs().upload(path, path, 0644);
      REQUIRE_MESSAGE(st.ok(), path << ": " << st.to_string());
    }
  }
}

}  // namespace airlock::test
