#!/usr/bin/env bash
# Builds examples/cpp/build/streamer_runner against the installed executorch wheel (pip install 'streamer[export]').
#   examples/cpp/build.sh [PYTHON]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${1:-python3}"
prefix="$("$python" -c 'import executorch, os; print(list(executorch.__path__)[0])' 2>/dev/null)" || {
  echo "error: the Python module 'executorch' is not installed; pip install 'streamer[export]'" >&2; exit 1; }
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$here/build" -j 2
echo "built $here/build/streamer_runner"
