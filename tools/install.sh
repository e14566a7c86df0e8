#!/usr/bin/env bash
# Installs streamer and everything it needs on a Debian 12 machine: apt packages, Python packages,
# and KenLM's lmplz/build_binary (built from the kenlm sdist). Idempotent: re-running skips what is there.
#
#   bash tools/install.sh            # everything (runtime, microphone, LM, export, server, Ray, tests, corpus tools)
#
# Why two pip steps: pyctcdecode 0.5.0 (its last release) declares numpy<2, while executorch needs
# numpy>=2. pyctcdecode runs correctly on numpy 2, so it is installed with --no-deps after the rest;
# its real runtime dependency (pygtrie) comes from streamer's "lm" extra.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  ffmpeg sox libsndfile1 libportaudio2                        # audio I/O, m4a/aac, microphone
  pulseaudio pulseaudio-utils libasound2-plugins              # virtual microphone for the live test
  espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts   # TTS for corpus + tests
  fortune-mod fortunes dict-wn sword-text-web diatheke        # corpus text
  asterisk-core-sounds-en asterisk-core-sounds-en-g722        # real-speech TEST set (never trained on)
  tuxpaint-stamps-default fortunes-ru festvox-ru               # Russian training speech/text (tools/data/make_corpus.py --language ru)
  ktuberling-data codec2-examples pocketsphinx-testdata       # real speech for distillation (tools/data/real_audio.py)
  asterisk-core-sounds-ru asterisk-core-sounds-ru-g722        # Russian real-speech TEST set (never trained on)
  cmake g++ libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev  # KenLM
  chromium                                                    # headless browser test of streamer serve's page
  g++-aarch64-linux-gnu qemu-user                             # the aarch64 runner bundle and its test under emulation
)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PIP="python3 -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: an unpinned torch would pull several GB of CUDA wheels.
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[all]"
$PIP install -q --no-deps "pyctcdecode==0.5.0"

if [ -f tools/build_kenlm.sh ]; then bash tools/build_kenlm.sh; fi
echo "streamer installed: $(python3 -c 'import streamer, torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)')"
