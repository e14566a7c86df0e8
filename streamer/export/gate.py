"""The export gate: an exported program scored against its eager model on held-out speech.

int8 quantization can cost a model far more than its usual point or two of WER (a layer whose
activations have outliers, a kernel that rounds badly), and such a regression is usually found only
after release. `streamer export --check MANIFEST` streams the manifest's audio through the program
alone and through the PyTorch model with the same streaming setup (greedy, one stream per file), and
refuses the program, removing it and its sidecar, when its WER is worse than the model's by more
than ``margin`` (absolute WER; `DEFAULT_MARGIN`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamer.errors import ConfigError

#: Largest WER increase (absolute) a program may have over its eager model.
DEFAULT_MARGIN = 0.02
#: Utterances of the manifest scored by default (the first ones).
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class GateResult:
    """What the gate measured."""

    utterances: int
    model_wer: float
    program_wer: float
    model_cer: float
    program_cer: float
    margin: float

    @property
    def passed(self) -> bool:
        """The program's WER is at most ``margin`` above the model's."""
        return self.program_wer <= self.model_wer + self.margin

    def line(self) -> str:
        """One line for a person."""
        return (f"export check on {self.utterances} utterances: program WER {self.program_wer:.3f} (CER "
                f"{self.program_cer:.3f}), model WER {self.model_wer:.3f} (CER {self.model_cer:.3f}); "
                f"allowed +{self.margin:.3f}")


def score_program(program: str | os.PathLike[str], model: str | os.PathLike[str], manifest: str | os.PathLike[str],
                  margin: float = DEFAULT_MARGIN, limit: int = DEFAULT_LIMIT) -> GateResult:
    """Scores a program and its model on a manifest's transcribed utterances (see the module docstring).

    Args:
        program: The ``.pte`` (its sidecar beside it).
        model: The model it was exported from (folder, bundled name or hub id).
        manifest: ``path<TAB>text`` lines (`streamer.train.data`).
        margin: Allowed WER increase, absolute.
        limit: Utterances scored (the manifest's first ones with a transcript).

    Raises:
        ConfigError: A margin outside [0, 1], or a manifest with no transcribed utterance.
    """
    from streamer.metrics import corpus_rates
    from streamer.recognizer import Recognizer
    from streamer.text import normalize_text
    from streamer.train.data import read_manifest

    if not 0 <= margin <= 1:
        raise ConfigError(f"export check margin: expected a WER from 0 to 1, found {margin}")
    prog = Recognizer.from_program(program, lm=None, search="greedy")
    utts = [u for u in read_manifest(manifest, vocab=prog.vocab) if u.text][:limit]  # normalized for its letters
    if not utts:
        raise ConfigError(f"export check: expected transcribed utterances in {manifest}, found none")
    eager = Recognizer.load(model, lm=None, search="greedy", stream_files=True, two_pass=False,
                            streaming=prog.config.streaming)
    pairs: dict[str, list[tuple[str, str]]] = {"model": [], "program": []}
    for u in utts:
        for name, rec in (("model", eager), ("program", prog)):
            pairs[name].append((u.text, normalize_text(rec.transcribe(Path(u.path)).text, rec.vocab)))
    (mw, mc), (pw, pc) = corpus_rates(pairs["model"]), corpus_rates(pairs["program"])
    return GateResult(len(utts), mw, pw, mc, pc, margin)
