#!/usr/bin/env bash
# Builds KenLM's `lmplz` and `build_binary` from the PyPI source distribution of kenlm, into a
# git-ignored cache folder, so that `streamer lm build` can train n-gram language models.
#
# Usage:
#   tools/build_kenlm.sh                 # build (skipped when both binaries already exist)
#   JOBS=1 nice -n 10 tools/build_kenlm.sh
#   tools/build_kenlm.sh --force         # rebuild even if the binaries exist
#   tools/build_kenlm.sh --sdist kenlm-0.3.0.tar.gz   # use a downloaded sdist (offline)
#
# Where:  ${STREAMER_CACHE:-$HOME/.cache/streamer}/kenlm/bin/{lmplz,build_binary}
#         (streamer.decoding.build_lm looks there, then on PATH).
# Needs:  g++, cmake, make, and Boost (Debian: libboost-program-options-dev libboost-system-dev
#         libboost-thread-dev libboost-test-dev). zlib/bzip2/lzma headers are optional.
# Env:    JOBS (parallel make jobs, default 2), STREAMER_CACHE, KENLM_VERSION (default 0.3.0).
set -euo pipefail

KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
JOBS="${JOBS:-2}"
CACHE_ROOT="${STREAMER_CACHE:-$HOME/.cache/streamer}"
DEST="$CACHE_ROOT/kenlm"
BIN="$DEST/bin"
FORCE=0
SDIST=""

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1; shift ;;
        --sdist) SDIST="$(realpath "$2")"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "build_kenlm.sh: unknown argument '$1' (expected --force or --sdist PATH)" >&2; exit 2 ;;
    esac
done

if [ "$FORCE" = 0 ] && [ -x "$BIN/lmplz" ] && [ -x "$BIN/build_binary" ]; then
    echo "build_kenlm.sh: $BIN/lmplz and $BIN/build_binary already exist; nothing to do (--force rebuilds)"
    exit 0
fi

for tool in cmake make g++; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build_kenlm.sh: '$tool' not found; install it (Debian: apt-get install cmake make g++)" >&2
        exit 1
    fi
done
if [ ! -e /usr/include/boost/program_options.hpp ] && [ ! -e /usr/local/include/boost/program_options.hpp ]; then
    echo "build_kenlm.sh: Boost headers not found; install libboost-program-options-dev" \
         "libboost-system-dev libboost-thread-dev libboost-test-dev" >&2
    exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/build_kenlm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

if [ -z "$SDIST" ]; then
    echo "build_kenlm.sh: downloading the kenlm==$KENLM_VERSION source distribution"
    # --no-build-isolation skips installing build requirements just to read the sdist's metadata.
    python3 -m pip download --no-deps --no-binary :all: --no-build-isolation \
        "kenlm==$KENLM_VERSION" -d "$WORK" >/dev/null \
    || python3 -m pip download --no-deps --no-binary :all: "kenlm==$KENLM_VERSION" -d "$WORK" >/dev/null
    SDIST="$(ls "$WORK"/kenlm-*.tar.gz | head -n 1)"
fi
tar -xzf "$SDIST" -C "$WORK"
SRC="$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kenlm*' | head -n 1)"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    echo "build_kenlm.sh: expected CMakeLists.txt in the sdist, found none in $SRC" >&2
    exit 1
fi

echo "build_kenlm.sh: building lmplz and build_binary with $JOBS job(s) (about 2 min at -j2)"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 \
    || { tail -n 40 "$WORK/cmake.log" >&2; echo "build_kenlm.sh: cmake failed (log above)" >&2; exit 1; }
make -C "$WORK/build" -j"$JOBS" lmplz build_binary >"$WORK/make.log" 2>&1 \
    || { tail -n 40 "$WORK/make.log" >&2; echo "build_kenlm.sh: make failed (log above)" >&2; exit 1; }

mkdir -p "$BIN"
for b in lmplz build_binary; do
    install -m 0755 "$WORK/build/bin/$b" "$BIN/$b.tmp"
    mv -f "$BIN/$b.tmp" "$BIN/$b"
done
echo "build_kenlm.sh: built $BIN/lmplz and $BIN/build_binary in $(( $(date +%s) - start )) s"
