# Shared compile settings and the helper that defines one static library per layer.
add_library(airlock_options INTERFACE)
target_compile_options(airlock_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>)
if(AIRLOCK_WERROR)
  target_compile_options(airlock_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
if(AIRLOCK_SANITIZE)
  add_compile_options(-fsanitize=${AIRLOCK_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${AIRLOCK_SANITIZE})
endif()
target_include_directories(airlock_options INTERFACE
  ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)

# airlock_layer(NAME DIR [DEPS ...]): a static library of every .cc in src/DIR.
function(airlock_layer name dir)
  cmake_parse_arguments(L "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${dir}/*.cc)
  if(NOT srcs)
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE airlock_options ${L_DEPS})
    return()
  endif()
  add_library(${name} STATIC ${srcs})
  target_link_libraries(${name} PUBLIC airlock_options ${L_DEPS})
  set_target_properties(${name} PROPERTIES CXX_VISIBILITY_PRESET hidden)
endfunction()
