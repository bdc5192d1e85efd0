// Helpers for the image tests: a temp directory, and e2fsprogs' debugfs to put files into and
// read files out of ext4 images without mounting them.
#pragma once

#include <stdio.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "../../host_tools.h"

namespace airlock::image::testing {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-image-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

using airlock::test::debugfs;
using airlock::test::shell_output;

// Copies `content` into the image as /<name> (as a guest writing the filesystem would).
inline void put_file(const std::string& image, const std::string& name, const std::string& content,
                     const std::string& scratch_dir) {
  const std::string host = scratch_dir + "/put-" + name;
  write_text(host, content);
  shell_output(debugfs() + " -w -R 'write " + host + " " + name + "' " + image + " 2>&1");
  std::filesystem::remove(host);
}

inline std::string get_file(const std::string& image, const std::string& name) {
  return shell_output(debugfs() + " -R 'cat /" + name + "' " + image + " 2>/dev/null");
}

}  // namespace airlock::image::testing
