# Every dependency comes from Debian's packages (scripts/setup.sh installs them).
find_package(fmt 9 REQUIRED)
find_package(Threads REQUIRED)

# BoringSSL from android-libboringssl-dev. Its headers live in /usr/include/android/openssl and
# must come before any system include path so OpenSSL's headers never mix in.
set(BORINGSSL_INCLUDE_DIR /usr/include/android)
set(BORINGSSL_LIB_DIR /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android)
if(NOT EXISTS ${BORINGSSL_INCLUDE_DIR}/openssl/ssl.h OR NOT EXISTS ${BORINGSSL_LIB_DIR}/libssl.so)
  message(FATAL_ERROR "BoringSSL not found: run scripts/setup.sh (android-libboringssl-dev)")
endif()
add_library(boringssl_crypto SHARED IMPORTED GLOBAL)
set_target_properties(boringssl_crypto PROPERTIES
  IMPORTED_LOCATION ${BORINGSSL_LIB_DIR}/libcrypto.so
  IMPORTED_NO_SONAME OFF)
target_include_directories(boringssl_crypto SYSTEM BEFORE INTERFACE ${BORINGSSL_INCLUDE_DIR})
add_library(boringssl_ssl SHARED IMPORTED GLOBAL)
set_target_properties(boringssl_ssl PROPERTIES IMPORTED_LOCATION ${BORINGSSL_LIB_DIR}/libssl.so)
target_include_directories(boringssl_ssl SYSTEM BEFORE INTERFACE ${BORINGSSL_INCLUDE_DIR})
target_link_libraries(boringssl_ssl INTERFACE boringssl_crypto)
set(CMAKE_BUILD_RPATH ${BORINGSSL_LIB_DIR})
set(CMAKE_INSTALL_RPATH ${BORINGSSL_LIB_DIR})

# llhttp from node-llhttp: C sources compiled into a private static library.
set(LLHTTP_SRC_DIR /usr/share/llhttp)
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp)
if(NOT EXISTS ${LLHTTP_SRC_DIR}/llhttp.c)
  message(FATAL_ERROR "llhttp sources not found: run scripts/setup.sh (node-llhttp)")
endif()
add_library(llhttp STATIC ${LLHTTP_SRC_DIR}/llhttp.c ${LLHTTP_SRC_DIR}/api.c ${LLHTTP_SRC_DIR}/http.c)
target_include_directories(llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
set_target_properties(llhttp PROPERTIES C_STANDARD 99 C_VISIBILITY_PRESET hidden)
target_compile_options(llhttp PRIVATE -w)

if(AIRLOCK_BUILD_TESTS)
  find_package(doctest REQUIRED)
  include(/usr/lib/cmake/doctest/doctest.cmake)
endif()
