// The C header test compiled once more as C++ (-pedantic -Werror): airlock.h must be usable from
// C++ translation units exactly as from C.
#include "header_compile.c"
