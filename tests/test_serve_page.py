"""The page `streamer serve` answers at /, in a real headless Chromium (Debian's package).

Chromium's fake capture device plays examples/hello.wav as the microphone; the page captures it with
getUserMedia, resamples it to 16 kHz in its AudioWorklet and streams it to the server. Two checks:

* the audio the server received is the file: the same samples up to the browser's resampling (a
  correlation of at least 0.98 once aligned), less at most 0.1 s the capture missed at the start;
* the page shows the finals of that audio: its final text equals the received audio decoded as one
  stream in-process by the same recognizer.

The words are not compared with the file's own transcript: the capture starts a few milliseconds
into the file (4 ms in a typical run), which moves every 20-ms encoder frame, and the bundled
demo model changes words for that. The test prints both for the record.

``STREAMER_PAGE_SCREENSHOT=docs/serve-page.png`` saves the page between the two utterances.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from itertools import count
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("websockets", reason="the server's tests need the 'serve' extra")
from serve_util import HELLO, reference_finals, running  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from streamer.metrics import edit_distance  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page (commands and their answers only)."""

    def __init__(self, url: str) -> None:
        self.ws = connect(url, max_size=None)
        self.ids = count(1)

    def call(self, method: str, **params):
        my_id = next(self.ids)
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        status = self.eval("document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {expression}; page status: {status}")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (tools/install.sh installs it)")
def test_page_transcribes_the_fake_microphone(tmp_path, monkeypatch):
    import streamer
    from streamer.results import Final

    rec = streamer.load()
    reference = " ".join(reference_finals(rec) * 2)
    received: list[np.ndarray] = []  # every block the server's stream accepted
    create_stream = rec.create_stream

    def recording_stream(hotwords=()):
        stream = create_stream(hotwords)
        accept = stream.accept_waveform

        def accept_and_record(samples, sample_rate=16000):
            assert sample_rate == 16000  # the page resamples
            received.append(np.array(samples, dtype=np.float32))
            accept(samples, sample_rate)
        stream.accept_waveform = accept_and_record
        return stream

    monkeypatch.setattr(rec, "create_stream", recording_stream)
    # The microphone says the file twice, 2 s of silence after each (the fake device plays it once: %noloop).
    audio, rate = sf.read(HELLO, dtype="int16")
    pause = np.zeros(2 * rate, dtype=np.int16)
    audio = np.concatenate([audio, pause, audio, pause])
    mic = tmp_path / "mic.wav"
    sf.write(mic, audio, rate, subtype="PCM_16")
    with running(rec) as (_, url):
        page = url.replace("ws:", "http:") + "/"
        browser = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
             f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-port=0", "--window-size=900,640",
             "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
             "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}%noloop", "about:blank"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            devtools_url = None
            deadline = time.monotonic() + 60
            while devtools_url is None and time.monotonic() < deadline:
                line = browser.stderr.readline()
                found = re.search(r"DevTools listening on (ws://\S+)", line)
                devtools_url = found.group(1) if found else None
                assert line or browser.poll() is None, "chromium exited before it listened"
            port = devtools_url.split(":")[2].split("/")[0]
            targets = json.loads(subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/json/list"],
                                                capture_output=True, text=True, timeout=30).stdout)
            tab = DevTools(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
            tab.call("Page.enable")
            tab.call("Page.navigate", url=page)
            tab.wait_for("document.readyState === 'complete' && document.body.dataset.state === 'idle'", 30)
            tab.eval("document.getElementById('start').click()")
            tab.wait_for("document.body.dataset.state === 'streaming'", 30)
            streaming_since = time.monotonic()
            # The file plays in real time; each utterance ends in the silence after it (an endpoint).
            tab.wait_for("document.querySelectorAll('#finals .final').length === 1", 30)
            tab.wait_for("document.querySelector('#partial .committed').textContent.split(' ').length > 4", 30)
            shot = os.environ.get("STREAMER_PAGE_SCREENSHOT")
            if shot:  # a final, and the next utterance's partial as it comes
                png = tab.call("Page.captureScreenshot", format="png")["data"]
                Path(shot).write_bytes(base64.b64decode(png))
            time.sleep(max(0.0, streaming_since + len(audio) / rate + 0.5 - time.monotonic()))  # all played
            tab.eval("document.getElementById('start').click()")  # Stop: the last frame, then end
            tab.wait_for("document.body.dataset.state === 'closed'", 30)
            status = tab.eval("document.getElementById('status').textContent")
            finals = tab.eval("Array.from(document.querySelectorAll('#finals .final')).map(e => e.dataset.text)")
            hover = tab.eval("Array.from(document.querySelectorAll('#finals .word')).map(e => e.title)")
        finally:
            browser.terminate()
            browser.wait(30)
    assert status == "closed: 1000 end of stream"
    # The audio: the file's samples, less what the capture missed at the start.
    got = np.concatenate(received)
    want = audio.astype(np.float32) / 32768
    lag = _lag(got, want)
    blocks = _block_similarity(got, want, lag)
    print(f"capture began {lag / 16:.1f} ms into the file; correlation {_similarity(got[max(0, -lag):], want[max(0, lag):]):.4f}; "
          f"0.5-s blocks found: {sum(b >= 0.98 for b in blocks)}/{len(blocks)}")
    assert -1600 <= lag <= 1600 and len(got) >= len(want) - lag - 4800
    # A starved audio thread may drop or repeat a few milliseconds: each stretch is looked for near its place.
    assert sum(b >= 0.98 for b in blocks) >= 0.9 * len(blocks), blocks
    # The page shows the finals of that audio.
    stream = create_stream()
    events = []
    for i in range(0, len(got), 1600):
        events += rec.feed(stream, got[i:i + 1600])
    events += rec.input_finished(stream)
    expected = [e.text for e in events if isinstance(e, Final)]
    assert finals == expected
    assert hover and all(re.fullmatch(r"\d+\.\d\d–\d+\.\d\d s(, confidence .*)?", h) for h in hover)
    words = reference.split()
    print(f"page: {' '.join(finals)!r}\nfile: {reference!r} "
          f"({edit_distance(words, ' '.join(finals).split())} of {len(words)} words differ)")


def _lag(got: np.ndarray, want: np.ndarray) -> int:
    """Samples of the file before the capture's first sample (negative: the capture began before it)."""
    n = len(got) + len(want)
    corr = np.fft.irfft(np.fft.rfft(want, n) * np.conj(np.fft.rfft(got, n)), n)
    k = int(np.argmax(corr))
    return k if k < len(want) else k - n


def _block_similarity(got: np.ndarray, want: np.ndarray, lag: int, block: int = 8000) -> list[float]:
    """For each 0.5-s block of the file that holds sound, the best normalized correlation with the
    capture within 0.1 s of where it should be."""
    out = []
    for at in range(0, len(want) - block + 1, block):
        piece = want[at:at + block]
        if np.sqrt(np.mean(piece ** 2)) < 1e-3:
            continue
        lo = max(0, at - lag - 1600)
        region = got[lo:at - lag + block + 1600]
        if len(region) < block:
            out.append(0.0)
            continue
        corr = np.correlate(region, piece, mode="valid")
        energy = np.convolve(region ** 2, np.ones(block), mode="valid")
        out.append(float(np.max(corr / (np.sqrt(energy * (piece @ piece)) + 1e-12))))
    return out


def _similarity(got: np.ndarray, want: np.ndarray) -> float:
    """Normalized correlation of two signals over the file's length (the capture's silence after it left out)."""
    n = min(len(got), len(want))
    a, b = got[:n], want[:n]
    return float(a @ b / (np.sqrt((a @ a) * (b @ b)) + 1e-12))
