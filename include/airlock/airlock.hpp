// airlock: everything a C++ host application needs, in one include.
#pragma once

#include "airlock/sandbox.hpp"  // IWYU pragma: export
#include "airlock/status.hpp"   // IWYU pragma: export
