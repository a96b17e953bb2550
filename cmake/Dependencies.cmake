# Every dependency comes from a Debian 12 package (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(Protobuf REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
find_package(nlohmann_json REQUIRED)

# OpenBLAS: CPU matrix products (cblas_sgemm).
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)

# gRPC: Debian's CMake package config can fail to import on some installs; fall back to
# pkg-config, which Debian ships for grpc++ as well.
find_package(gRPC CONFIG QUIET)
if(gRPC_FOUND AND TARGET gRPC::grpc++)
  set(TAPELOOP_GRPCXX gRPC::grpc++)
  set(TAPELOOP_GRPCXX_REFLECTION gRPC::grpc++_reflection)
  message(STATUS "tapeloop: gRPC ${gRPC_VERSION} from its CMake config")
else()
  pkg_check_modules(GRPCXX REQUIRED IMPORTED_TARGET grpc++)
  add_library(tapeloop_grpc_reflection INTERFACE)
  target_link_libraries(tapeloop_grpc_reflection INTERFACE -lgrpc++_reflection PkgConfig::GRPCXX)
  set(TAPELOOP_GRPCXX PkgConfig::GRPCXX)
  set(TAPELOOP_GRPCXX_REFLECTION tapeloop_grpc_reflection)
  message(STATUS "tapeloop: gRPC ${GRPCXX_VERSION} from pkg-config (CMake config did not import)")
endif()
find_program(TAPELOOP_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_program(TAPELOOP_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
