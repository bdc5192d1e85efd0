// File helpers shared by the image store: atomic publication, non-blocking image locks,
// directory listings. Internal to src/image. Thread-safety: reentrant.
#pragma once

#include <string>
#include <vector>

#include "airlock/status.hpp"
#include "base/fd.h"

namespace airlock::image {

inline constexpr const char* kImageSuffix = ".ext4";
inline constexpr const char* kManifestSuffix = ".root";

Status mkdir_p(const std::string& path);

// Errc::invalid_argument unless ImageStore::valid_name(name); `kind` names it ("volume").
Status check_name(const char* kind, const std::string& name);

// A dot-name in `dir`: never listed, never mistaken for a finished image.
std::string temp_path(const std::string& dir, const std::string& name);

// Moves tmp to path unless path exists; either way tmp is gone afterwards. `what` names the
// object for errors ("volume data already exists").
Status publish(const std::string& tmp, const std::string& path, const std::string& what);

// Opens `path` and takes flock(lock | LOCK_NB). A missing file is Errc::not_found ("<what> does
// not exist"); a conflicting lock is Errc::unavailable with `busy_message`.
Result<UniqueFd> open_locked(const std::string& path, int flags, int lock, const std::string& what,
                             const std::string& busy_message);

// Whether someone holds an exclusive flock on path (a sandbox writing it).
bool held_exclusively(const std::string& path);

// Valid store names of the "<name><suffix>" entries of dir, sorted.
Result<std::vector<std::string>> names_in(const std::string& dir, const std::string& suffix);

// Creates path (must not exist) with `text`, fsynced.
Status write_new_file(const std::string& path, const std::string& text);

}  // namespace airlock::image
