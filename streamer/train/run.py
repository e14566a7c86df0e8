"""The training run: CTC (and distillation) training of the XLSR-architecture model.

One loop serves every recipe:

* **from scratch** (the bundled demo model): a preset shape, random init, dynamic chunk masks so one
  model serves offline, window-streaming and cached-streaming use.
* **fine-tuning** (``init_from`` = an XLSR-53 / wav2vec2 / streamer checkpoint): the source's CTC
  head when its vocabulary fits, frozen conv feature encoder if asked, SpecAugment-style masks, LR
  warm-up, gradient accumulation, bf16 autocast where the hardware has it.
* **distillation** (``distill``): teacher targets stored beside the audio (`streamer.train.targets`)
  are learned through small heads, with or without transcripts.

The `run` owns the state, checkpoints, evaluation, the time budget, signals and the log; the batch
source (`streamer.train.bank`: in memory or from files) and the step (`streamer.train.step`:
augmentation, masks, forward, losses and update on the training device) are its parts. It runs on
a CPU (threads set deliberately) or one GPU. Checkpoints are written atomically every few minutes
and on exit; a run resumes from ``<out_dir>/checkpoint.pt`` when it exists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from streamer.checkpoint import load_pretrained_encoder, model_vocabulary, save_checkpoint
from streamer.constants import SAMPLE_RATE
from streamer.decoding.greedy import greedy_text
from streamer.errors import CheckpointError, ConfigError
from streamer.files import atomic_files, is_temporary, write_atomic
from streamer.metrics import corpus_rates
from streamer.model.config import PRESETS, EncoderConfig
from streamer.model.masks import ChunkAttention
from streamer.model.model import Wav2Vec2CTC, count_parameters
from streamer.text import normalize_text
from streamer.train.bank import AudioBank, load_source, open_store
from streamer.train.config import EvalResult, TrainConfig, TrainSummary
from streamer.train.data import length_batches, read_manifest
from streamer.train.labels import LabelStore
from streamer.train.step import TrainStep, teacher_gap
from streamer.vocab import (
    Vocabulary,
    english_characters,
    load_vocab_json,
    new_letters,
    save_vocab_json,
    vocabulary_from_text,
)

#: Letters rarer than this share of a training text's letters stay out of a vocabulary built from
#: it (stray foreign letters; Russian's rarest letter, ъ, is about 3e-4).
VOCAB_MIN_SHARE = 5e-5
#: Exit status of a run stopped by SIGTERM (128 + 15), as the shell reports it.
EXIT_TERMINATED = 143


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Learning rate at an optimizer step: linear warm-up, then cosine decay to ``final_lr_ratio``.

    Args:
        step: Optimizer steps taken.
        cfg: The run's configuration.
        elapsed_s: Training wall-clock seconds so far; with ``cfg.time_budget_minutes`` the decay
            follows whichever of steps and time is further along.
    """
    if step < cfg.warmup_steps:
        return cfg.peak_lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if cfg.time_budget_minutes is not None:
        progress = max(progress, min(1.0, elapsed_s / (cfg.time_budget_minutes * 60.0)))
    floor = cfg.final_lr_ratio
    return cfg.peak_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def choose_vocabulary(cfg: TrainConfig, texts: Sequence[str]) -> tuple[Vocabulary, str]:
    """The output vocabulary of a new run, and why it was chosen.

    * ``cfg.vocab_path`` given: that ``vocab.json``.
    * Fine-tuning (``cfg.init_from``) a checkpoint with a CTC head: its vocabulary is kept when it
      is for the same language (no ``cfg.language``, or an equal or unknown one on the source) and
      writes every letter of the training text (`streamer.vocab.new_letters`: ``ü`` is new to an
      a-z head); the head is then kept too (warm restart). Otherwise, as from scratch: a new head.
    * From scratch: built from the training text (`vocabulary_from_text`, letters under
      `VOCAB_MIN_SHARE` of the text left out); text with no letter the bundled English vocabulary
      lacks (`new_letters`) gets that vocabulary, in its order.

    Args:
        cfg: The run's configuration.
        texts: The training transcripts as written (not normalized).
    """
    if cfg.vocab_path is not None:
        return load_vocab_json(cfg.vocab_path, language=cfg.language), f"from {cfg.vocab_path}"
    if cfg.init_from is not None:
        source = model_vocabulary(cfg.init_from)
        if source is not None:
            other_language = cfg.language is not None and source.language not in (None, cfg.language)
            missing = new_letters(source, texts)
            if not other_language and not missing:
                return source, f"the CTC head of {cfg.init_from} (same language)"
            why = (f"the source is {source.language!r}" if other_language
                   else f"the source head cannot write {''.join(missing[:20])!r}")
        else:
            why = "the source has no CTC head"
    english = english_characters()
    if cfg.language in (None, "en") and not new_letters(english, texts):
        built = english
    else:
        built = vocabulary_from_text(texts, language=cfg.language, min_share=VOCAB_MIN_SHARE)
    origin = f"built from the training text ({len(built)} tokens)"
    return built, origin if cfg.init_from is None else f"{origin}, new CTC head: {why}"


def build_model(cfg: TrainConfig, vocab: Vocabulary) -> Wav2Vec2CTC:
    """The model a run starts from (before any checkpoint is restored)."""
    if cfg.init_from is not None:
        model = load_pretrained_encoder(cfg.init_from, vocab, pos_conv_causal=cfg.causal_pos_conv)
        # Rebuild with training dropout, then copy the weights over.
        trained = Wav2Vec2CTC(model.config, cfg.dropout)
        trained.load_state_dict(model.state_dict())
        return trained
    shape = PRESETS[cfg.preset](vocab_size=len(vocab))
    shape = EncoderConfig.from_dict({**shape.to_dict(), "pos_conv_causal": cfg.causal_pos_conv})
    model = Wav2Vec2CTC(shape, cfg.dropout)
    model.reset_parameters()
    if cfg.transplant is not None:
        from streamer.convert.whisper import transplant_layers
        from streamer.train.teachers import load_whisper_encoder

        transplant_layers(model, load_whisper_encoder()[0])
    return model


@torch.no_grad()
def evaluate_bank(model: Wav2Vec2CTC, bank: AudioBank, vocab: Vocabulary, chunk: ChunkAttention | None = None,
                  batch_seconds: float = 120.0) -> tuple[float, float]:
    """Greedy (WER, CER) of a model on a bank's transcribed utterances (no augmentation; batches
    padded to their longest).

    Per-character scripts: a word delimiter the model emits is no space in the scored text (CER).
    """
    was_training = model.training
    model.eval()
    pairs = []
    lengths = bank.lengths.tolist()
    for idx in length_batches([n / SAMPLE_RATE for n in lengths], batch_seconds, rng=None):
        rows = torch.tensor(idx, device=bank.samples.device)
        wave = bank.take(rows, max(lengths[i] for i in idx))
        logits, flen = model(wave, bank.lengths[rows], chunk=chunk)
        for row, n, i in zip(logits.float().cpu(), flen.cpu(), idx):
            if not bank.texts[i]:  # untranscribed audio (real speech with teacher labels only)
                continue
            hyp = greedy_text(row[: int(n)], vocab)
            pairs.append((bank.texts[i], normalize_text(hyp, vocab) if vocab.per_character else hyp))
    model.train(was_training)
    return corpus_rates(pairs)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a run's ``checkpoint.pt`` without unpickling code (``weights_only=True``).

    Raises:
        CheckpointError: The file is not a training checkpoint written by `train` (including any
            pickle that would need to import or call code to load).
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes; the error below says it all
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        # Quote only the reason: torch's own text suggests weights_only=False, which is the unsafe path.
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", str(err), re.S)
        detail = " ".join(reason.group(1).split()) if reason else type(err).__name__
        raise CheckpointError(f"resume: {path} is not a training checkpoint that loads safely ({detail}); "
                              "move it away to start a new run in this folder") from None
    if not isinstance(saved, dict) or not {"model", "optimizer", "state"} <= set(saved):
        raise CheckpointError(f"resume: {path} is not a training checkpoint (expected model, optimizer and state)")
    return saved


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_files([path], overwrite=True) as (tmp,):
        torch.save(obj, tmp)


#: What a run folder holds (anything else there, but a temporary file of a killed write, means it is not
#: this run's folder).
RUN_FILES = frozenset({"checkpoint.pt", ".checkpoint.pt.tmp", "config.json", "vocabulary.json", "vocab.json",
                       "log.jsonl", "best", "last"})


def _check_run_folder(out: Path) -> None:
    """Refuses a run folder that holds anything but a training run's own files (a model folder, say:
    training would overwrite its config.json and vocabulary).

    Raises:
        ConfigError: Foreign files in ``out``, or a ``config.json`` that is not a training run's.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out: expected a folder for the run, found a file at {out}")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not is_temporary(p.name))
    config = out / "config.json"
    if not foreign and config.is_file():
        try:
            saved = json.loads(config.read_text(encoding="utf-8"))
        except ValueError:
            saved = None
        if not isinstance(saved, dict) or "train_manifests" not in saved:
            foreign = ["config.json (not a training run's)"]
    if foreign:
        raise ConfigError(f"--out: {out} holds files that are not a training run's ({', '.join(foreign[:5])}); "
                          "give a new or empty folder, or the folder of a run to resume")


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    torch.set_num_threads(cfg.threads)
    return torch.device("cpu")


def _run_vocabulary(cfg: TrainConfig, out: Path) -> tuple[Vocabulary, str]:
    """The run's vocabulary, fixed at its start (resumes reuse the saved one)."""
    saved = out / "vocabulary.json"
    if saved.is_file():
        return Vocabulary.from_dict(json.loads(saved.read_text(encoding="utf-8"))), f"from {saved}"
    raw = [u.text for m in cfg.train_manifests if not Path(m).is_dir() for u in read_manifest(m, normalize=False)]
    vocab, origin = choose_vocabulary(cfg, [t for t in raw if t])
    write_atomic(saved, json.dumps(vocab.to_dict(), ensure_ascii=False, indent=1) + "\n", overwrite=True)
    save_vocab_json(vocab, out / "vocab.json")
    return vocab, origin


def train(cfg: TrainConfig, show_progress: bool = True, log: Callable[[str], None] = print) -> TrainSummary:
    """Runs (or resumes) a training run; see the module docstring.

    Args:
        cfg: The run's configuration.
        show_progress: Print a line every ``cfg.log_every`` steps.
        log: Where lines go.

    Returns:
        What the run reached. The best model by dev WER (CER for per-character scripts) is in
        ``<out_dir>/best``, the last one in ``<out_dir>/last``.

    Raises:
        ConfigError: No usable training data, or a resumed run whose configuration differs in
            something that shapes the model or its data.
    """
    out = Path(cfg.out_dir)
    _check_run_folder(out)
    device = _device(cfg)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    saved = load_training_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    if saved is not None and "config" in saved:
        changed = cfg.differences(TrainConfig.from_dict(saved["config"]))
        if changed:
            raise ConfigError(f"resume: {out} was trained with other settings ({', '.join(changed)} differ); "
                              "use the same settings, or another --out for a new run")
    torch.manual_seed(cfg.seed)
    vocab, origin = _run_vocabulary(cfg, out)
    model = build_model(cfg, vocab)
    if cfg.freeze_feature_encoder:
        for p in model.feature_extractor.parameters():
            p.requires_grad = False
    model.to(device)
    stores = [open_store(t.store) for t in cfg.distill.targets] if cfg.distill is not None else []

    def read_train_set(reopen: bool = False) -> tuple[Any, int]:
        # a re-read takes the stores anew too: labels written while the run goes on are learned
        fresh = [open_store(t.store) for t in cfg.distill.targets] if reopen and cfg.distill else stores
        source, skipped = load_source(cfg.train_manifests, vocab, device, in_memory=cfg.in_memory,
                                      max_seconds=min(cfg.max_utterance_seconds, cfg.max_batch_seconds), stores=fresh)
        if len(source) == 0:
            raise ConfigError(f"training set: no usable utterance ({skipped} skipped: too long, empty text, "
                              "or too many labels for their frames)")
        return source, skipped

    source, skipped = read_train_set()
    dev = None
    if cfg.dev_manifest:
        dev_source, _ = load_source([cfg.dev_manifest], vocab, device, max_seconds=math.inf, stores=stores)
        dev = dev_source.head(cfg.eval_max_utterances) if isinstance(dev_source, AudioBank) else None
    heldout = {m: load_source([m], vocab, device, max_seconds=math.inf, stores=stores)[0]
               for m in (cfg.distill.heldout if cfg.distill is not None else ())}

    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "audio_seconds": 0.0, "train_seconds": 0.0,
                             "best": None, "history": []}
    if saved is not None:
        model.load_state_dict(saved["model"])
        state.update(saved["state"])
    metas = [s.meta for s in stores]
    # word boundaries and other markers stay out of a label store's token error rate
    ignore = [[i for i, t in enumerate(s.tokens) if t.startswith("<")] if isinstance(s, LabelStore) else []
              for s in stores]
    step = TrainStep(model, source, cfg, device, vocab.blank_id, metas, seed=cfg.seed * 7919 + state["step"])
    if saved is not None:
        if step.heads is not None and saved.get("heads"):
            step.heads.load_state_dict(saved["heads"])
        step.optimizer.load_state_dict(saved["optimizer"])
        log(f"resumed from {ckpt_path} at step {state['step']} (epoch {state['epoch']}, batch {state['position']})")
    write_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n", overwrite=True)
    lengths = source.lengths.tolist()
    texts = int((source.label_lengths > 0).sum())
    log(f"model: {count_parameters(model) / 1e6:.2f}M parameters; training set: {len(source)} utterances "
        f"({texts} with text), {sum(lengths) / SAMPLE_RATE / 3600:.2f} h ({skipped} skipped), "
        f"{'in memory' if cfg.in_memory else 'read from files'}; dev: {0 if dev is None else len(dev)}; "
        f"device {device}, {torch.get_num_threads()} threads; bf16 autocast {'on' if step.use_amp else 'off'}; "
        f"buckets {[round(w / SAMPLE_RATE, 1) for w in step.buckets.widths]} s x rows {list(step.buckets.rows)}, "
        f"padding {step.buckets.padding_share(lengths):.0%}; vocabulary: {origin}"
        + "".join(f"; teacher {m.teacher} ({m.kind}, {m.dim}) from {s.folder}" for m, s in zip(metas, stores)))
    if isinstance(source, AudioBank):
        for m, t in zip(metas, source.teacher):
            log(f"teacher {m.teacher}: targets for {int((t.frames > 0).sum())} of {len(source)} utterances")

    stop = {"now": False, "signal": False}

    def _request_stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        stop["now"] = stop["signal"] = True

    old_handler = signal.signal(signal.SIGTERM, _request_stop)

    def checkpoint() -> None:
        _save_atomic({"model": model.state_dict(), "optimizer": step.optimizer.state_dict(), "state": state,
                      "config": cfg.to_dict(), "heads": None if step.heads is None else step.heads.state_dict()},
                     ckpt_path)
        save_checkpoint(out / "last", model, vocab, {"training": cfg.to_dict(), "step": state["step"]})

    def run_eval() -> EvalResult | None:
        if dev is None:
            return None
        wer, cer = evaluate_bank(model, dev, vocab)
        wer_c = evaluate_bank(model, dev, vocab, chunk=ChunkAttention(32, 4, 1))[0] if cfg.dynamic_chunk is not None else None
        res = EvalResult(state["step"], wer, cer, wer_c, len(dev))
        state["history"].append(dataclasses.asdict(res))
        gaps: dict[str, list[float]] = {}
        if step.heads is not None:  # the mimicry gap: the teachers' losses on audio not trained on
            gaps = {name: teacher_gap(model, step.heads, bank, ignore=ignore)
                    for name, bank in [("dev", dev), *heldout.items()] if len(bank)}
        # the character output on held-out audio that has a (teacher's) transcript
        rates = {name: evaluate_bank(model, bank, vocab) for name, bank in heldout.items()
                 if isinstance(bank, AudioBank) and any(bank.texts)}
        key = "cer" if vocab.per_character else "wer"  # words are characters there: score per character
        if state["best"] is None or getattr(res, key) < state["best"][key]:
            state["best"] = dataclasses.asdict(res)
            save_checkpoint(out / "best", model, vocab, {"training": cfg.to_dict(), "step": state["step"],
                                                         "dev": dataclasses.asdict(res)})
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"eval": dataclasses.asdict(res), "teacher_gap": gaps, "heldout_rates": rates,
                                "time": time.time()}) + "\n")
        log(f"step {res.step}: dev WER {res.wer:.3f} CER {res.cer:.3f}"
            + (f" chunked WER {res.wer_chunked:.3f}" if res.wer_chunked is not None else "")
            + "".join(f"; teacher gap on {name}: " + " ".join(f"{g:.3f}" for g in values) for name, values in gaps.items())
            + "".join(f"; {name} WER {w:.3f} CER {c:.3f}" for name, (w, c) in rates.items()))
        return res

    budget_s = None if cfg.time_budget_minutes is None else cfg.time_budget_minutes * 60.0
    start_time = time.time()
    budget_start = start_time - state["train_seconds"]
    if budget_s is not None and state["train_seconds"] >= budget_s:
        stop["now"] = True
    last_save, last_line, last_eval = time.time(), time.time(), None
    model.train()
    try:
        while state["step"] < cfg.max_steps and not stop["now"]:
            plan = step.buckets.epoch(cfg.seed * 100003 + state["epoch"])
            if state["epoch"] == 0 and cfg.sorted_first_epoch:  # curriculum: shortest buckets first
                plan.sort(key=lambda item: item[0])
            while state["position"] < len(plan):
                bucket, rows = plan[state["position"]]
                state["position"] += 1
                regularize = state["step"] >= cfg.clean_steps
                state["train_seconds"] = time.time() - budget_start
                batch = step.batch(bucket, rows, regularize)
                scale = cfg.distill.scale(state["step"]) if cfg.distill is not None else 1.0
                step.model_step(batch, lr_at(state["step"], cfg, state["train_seconds"]), scale)
                if step.micro % cfg.grad_accum:
                    continue
                state["step"] += 1
                if state["step"] % cfg.log_every == 0:
                    losses, seconds = step.read_and_reset()
                    state["audio_seconds"] += seconds
                    record = {"step": state["step"], **losses, "lr": lr_at(state["step"], cfg, state["train_seconds"]),
                              "grad_norm": float(step.grad_norm), "epoch": state["epoch"],
                              "audio_hours": state["audio_seconds"] / 3600, "elapsed": time.time() - start_time}
                    with open(out / "log.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if show_progress:
                        parts = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                        log(f"step {state['step']}: {parts} lr {record['lr']:.2e} epoch {state['epoch']} "
                            f"audio {record['audio_hours']:.2f} h, {cfg.log_every / max(1e-9, time.time() - last_line):.2f} steps/s")
                    last_line = time.time()
                if state["step"] % cfg.eval_every == 0:
                    last_eval = run_eval() or last_eval
                if time.time() - last_save > cfg.save_every_minutes * 60:
                    checkpoint()
                    last_save = time.time()
                if budget_s is not None and state["train_seconds"] >= budget_s:
                    stop["now"] = True
                if state["step"] >= cfg.max_steps or stop["now"]:
                    break
            else:
                state["epoch"] += 1
                state["position"] = 0
                if cfg.reread_manifests:
                    grown, skipped = read_train_set(reopen=True)
                    if len(grown) != len(source):
                        log(f"epoch {state['epoch']}: training set {len(source)} -> {len(grown)} utterances")
                    source = grown  # its teacher targets may have grown too
                    step.use(source)
    except KeyboardInterrupt:
        stop["now"] = stop["signal"] = True
    finally:
        losses, seconds = step.read_and_reset()
        state["audio_seconds"] += seconds
        checkpoint()
        signal.signal(signal.SIGTERM, old_handler)
    spent = budget_s is not None and state["train_seconds"] >= budget_s
    if (state["step"] >= cfg.max_steps or spent) and (last_eval is None or last_eval.step != state["step"]):
        last_eval = run_eval() or last_eval
        checkpoint()
    best = EvalResult(**state["best"]) if state["best"] else None
    return TrainSummary(state["step"], best, last_eval, time.time() - start_time, state["audio_seconds"] / 3600,
                        str(out), interrupted=stop["signal"])
