#!/usr/bin/env bash
# Builds streamer_runner against the executorch wheel.
#
#   examples/cpp/build.sh [PYTHON]                   # this machine: build/streamer_runner, linked against
#                                                    # the installed wheel (pip install 'streamer[export]')
#   examples/cpp/build.sh --target aarch64 [PYTHON]  # 64-bit Arm Linux (Raspberry Pi 4/5, Graviton, phones'
#                                                    # Linux): a relocatable bundle in build-aarch64/bundle
#
# The aarch64 build fetches the manylinux_2_28_aarch64 wheel of the installed executorch version with
# pip (17.8 MB, cached in build-aarch64/), cross-compiles with Debian's g++-aarch64-linux-gnu, and
# copies the runner with the shared libraries it needs into bundle/ (rpath $ORIGIN/lib), so the
# folder can be copied to the device as it is. It needs glibc 2.28 or newer there (the wheel's
# manylinux tag): Debian 10+, Ubuntu 18.10+, Raspberry Pi OS (bullseye) and newer. Try it here under
# emulation: qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu build-aarch64/bundle/streamer_runner ...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target=host
if [ "${1:-}" = "--target" ]; then target="${2:?--target needs a name (aarch64)}"; shift 2; fi
python="${1:-python3}"
prefix="$("$python" -c 'import executorch, os; print(list(executorch.__path__)[0])' 2>/dev/null)" || {
  echo "error: the Python module 'executorch' is not installed; pip install 'streamer[export]'" >&2; exit 1; }

if [ "$target" = host ]; then
  cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$here/build" -j 2
  echo "built $here/build/streamer_runner"
  exit 0
fi
if [ "$target" != aarch64 ]; then
  echo "error: --target: expected aarch64, found $target" >&2; exit 2
fi
command -v aarch64-linux-gnu-g++ >/dev/null || {
  echo "error: aarch64-linux-gnu-g++ not found; apt-get install g++-aarch64-linux-gnu (tools/install.sh does)" >&2; exit 1; }
version="$("$python" -c 'from importlib.metadata import version; print(version("executorch"))')"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
out="$here/build-aarch64"
wheel_dir="$out/wheel"
mkdir -p "$wheel_dir"
wheel="$(ls "$wheel_dir"/executorch-"$version"-*aarch64.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ]; then
  "$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
      --python-version "$pyver" --implementation cp "executorch==$version" -d "$wheel_dir"
  wheel="$(ls "$wheel_dir"/executorch-"$version"-*aarch64.whl | head -1)"
fi
sysroot="$out/executorch-$version"
if [ ! -f "$sysroot/executorch/share/cmake/executorch-config.cmake" ]; then
  rm -rf "$sysroot.tmp" && mkdir -p "$sysroot.tmp"
  (cd "$sysroot.tmp" && "$python" -m zipfile -e "$wheel" . >/dev/null)
  rm -rf "$sysroot" && mv "$sysroot.tmp" "$sysroot"
fi
cat > "$out/toolchain.cmake" <<'EOF'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
EOF
cmake -S "$here" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$out/toolchain.cmake" \
    -DCMAKE_PREFIX_PATH="$sysroot/executorch" -DSTREAMER_RUNNER_BUNDLE=ON >/dev/null
cmake --build "$out/cmake" -j 2
bundle="$out/bundle"
rm -rf "$bundle" && mkdir -p "$bundle/lib"
cp "$out/cmake/streamer_runner" "$bundle/"
# The wheel's libraries the runner needs, and theirs in turn (the rest of the system is glibc/libstdc++).
need() { aarch64-linux-gnu-readelf -d "$1" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'; }
queue=("$bundle/streamer_runner")
while [ ${#queue[@]} -gt 0 ]; do
  f="${queue[0]}"; queue=("${queue[@]:1}")
  for lib in $(need "$f"); do
    src="$(find "$sysroot" -name "$lib" -print -quit)"
    if [ -n "$src" ] && [ ! -f "$bundle/lib/$lib" ]; then cp "$src" "$bundle/lib/"; queue+=("$bundle/lib/$lib"); fi
  done
done
echo "built $bundle/streamer_runner with $(ls "$bundle/lib" | wc -l) libraries ($(du -sh "$bundle" | cut -f1)); needs glibc >= 2.28"
