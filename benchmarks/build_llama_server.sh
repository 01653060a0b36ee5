#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the source that llama-cpp-python vendors, so the
# served runtime and the in-process binding run the same llama.cpp revision.
#
# Usage: benchmarks/build_llama_server.sh [BUILD_DIR]
#   LLAMA_CPP_PYTHON_VERSION (default: the installed llama-cpp-python's version)
#   LLAMA_CPP_SRC            (default: unpack the binding's sdist into $BUILD_DIR.src)
#   JOBS                     (default: 2)
# The binary ends up at $BUILD_DIR/bin/llama-server. The build runs at idle priority
# (chrt -i 0 nice -n 19) so it does not disturb timed benchmarks on the same cores.
set -euo pipefail

BUILD_DIR="${1:-/tmp/llama-server-build}"
JOBS="${JOBS:-2}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-$(python -c 'import llama_cpp; print(llama_cpp.__version__)')}"

if [[ -z "${LLAMA_CPP_SRC:-}" ]]; then
  SRC_PARENT="${BUILD_DIR}.src"
  LLAMA_CPP_SRC="${SRC_PARENT}/llama_cpp_python-${VERSION}/vendor/llama.cpp"
  if [[ ! -f "${LLAMA_CPP_SRC}/CMakeLists.txt" ]]; then
    mkdir -p "${SRC_PARENT}"
    python -m pip download "llama-cpp-python==${VERSION}" --no-deps --no-binary :all: -d "${SRC_PARENT}"
    tar -xzf "${SRC_PARENT}/llama_cpp_python-${VERSION}.tar.gz" -C "${SRC_PARENT}"
  fi
fi

# -mno-amx-int8: some CPUs report AMX that the kernel/VM does not enable; GGML_NATIVE would
# otherwise emit AMX instructions that fault at run time.
cmake -S "${LLAMA_CPP_SRC}" -B "${BUILD_DIR}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF \
  -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS=-mno-amx-int8 \
  -DCMAKE_CXX_FLAGS=-mno-amx-int8 \
  -DLLAMA_BUILD_SERVER=ON
time chrt -i 0 nice -n 19 cmake --build "${BUILD_DIR}" --target llama-server -j"${JOBS}"
echo "built ${BUILD_DIR}/bin/llama-server (llama-cpp-python ${VERSION} vendored llama.cpp)"
