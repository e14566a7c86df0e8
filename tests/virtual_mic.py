"""A real capture device on a machine without a sound card: a private PulseAudio server with a null
sink and a remap source (the recipe in shared/RECIPES.md). Audio played into the sink with paplay
arrives at the source in real time, so PortAudio/sounddevice sees an ordinary microphone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"

CONFIG = """load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=vsink format=s16le rate=16000 channels=1
load-module module-remap-source source_name=vmic master=vsink.monitor
set-default-sink vsink
set-default-source vmic
"""


def missing_programs() -> list[str]:
    """Programs of the recipe that are not installed."""
    return [p for p in ("pulseaudio", "pactl", "paplay", "pacat") if shutil.which(p) is None]


@contextmanager
def virtual_microphone() -> Iterator[dict[str, str]]:
    """Starts the server; yields the environment (PULSE_SERVER, ...) that clients must use."""
    root = Path(tempfile.mkdtemp(prefix="vmic-"))
    os.chmod(root, 0o700)
    socket = root / "native"
    (root / "vmic.pa").write_text(CONFIG.format(socket=socket))
    env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root), "XDG_CONFIG_HOME": str(root),
           "PULSE_SERVER": f"unix:{socket}"}
    server = subprocess.Popen(["pulseaudio", "-n", "-F", str(root / "vmic.pa"), "--daemonize=no",
                               "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no", "--log-target=stderr"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    keepalive = None
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                err = server.stderr.read().decode(errors="replace")[-1500:] if server.stderr else ""
                raise RuntimeError(f"pulseaudio did not start: {err}")
            time.sleep(0.2)
        # Without a reader the null sink renders in 2-s blocks and the first read of a stream stalls.
        keepalive = subprocess.Popen(["pacat", "--record", "--latency-msec=20", "-d", "vsink.monitor"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield env
    finally:
        for proc in (keepalive, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(root, ignore_errors=True)
