"""CTC training of the XLSR-architecture model: from scratch, or fine-tuning a pre-trained checkpoint.

One loop serves both recipes:

* **from scratch** (the bundled demo model): a preset shape, random init, dynamic chunk masks so one
  model serves offline, window-streaming and cached-streaming use.
* **fine-tuning** (``init_from`` = an XLSR-53 / wav2vec2 checkpoint): new CTC head, frozen conv
  feature encoder, SpecAugment-style masks, LR warm-up, gradient accumulation, bf16 autocast on GPU.

Runs on CPU (threads set deliberately) or one GPU, or several processes through ``torchrun``
(DDP; NCCL on GPU, gloo on CPU). Checkpoints are written atomically every few minutes and on exit;
a run resumes from ``<out_dir>/checkpoint.pt`` when it exists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamer.checkpoint import load_pretrained_encoder, save_checkpoint
from streamer.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from streamer.decoding.greedy import greedy_text
from streamer.errors import CheckpointError, ConfigError
from streamer.metrics import corpus_rates
from streamer.model.config import PRESETS, DropoutConfig, EncoderConfig
from streamer.model.masks import ChunkAttention
from streamer.model.model import Wav2Vec2CTC, count_parameters
from streamer.text import normalize_text
from streamer.train.data import BatchIterator, Utterance, collate, length_batches, load_waveform, read_manifest
from streamer.train.masking import DynamicChunkConfig, SpecAugmentConfig, span_mask
from streamer.vocab import (
    Vocabulary,
    english_characters,
    load_vocab_json,
    model_vocabulary,
    new_letters,
    save_vocab_json,
    vocabulary_from_text,
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved in the run folder and the checkpoint)."""

    train_manifests: tuple[str, ...]
    """Training manifests (TSV, see `streamer.train.data`)."""
    out_dir: str
    """Run folder: checkpoint.pt, best/ (streamer format), log.jsonl, config.json."""
    dev_manifest: str | None = None
    """Held-out manifest for CER/WER during training."""
    preset: str = "demo-small"
    """Model shape for training from scratch (a key of `streamer.model.config.PRESETS`)."""
    init_from: str | None = None
    """Pre-trained checkpoint (folder or hub id) to fine-tune instead of a preset."""
    vocab_path: str | None = None
    """Output vocabulary to train (a Hugging Face ``vocab.json``); None = chosen by `choose_vocabulary`."""
    language: str | None = None
    """ISO 639-1 code of the training language (stored with a new vocabulary; a fine-tuning source
    whose vocabulary names another language gets a new CTC head)."""
    causal_pos_conv: bool = True
    """Causal positional conv (needed for exact cached streaming)."""
    freeze_feature_encoder: bool = False
    """Keep the conv feature encoder fixed (the XLSR fine-tuning recipe does)."""
    max_steps: int = 20000
    """Optimizer steps of the whole run (the LR schedule spans them)."""
    peak_lr: float = 1e-3
    """Learning rate after warm-up."""
    warmup_steps: int = 1000
    """Linear warm-up steps."""
    final_lr_ratio: float = 0.05
    """LR at the last step relative to the peak (cosine decay)."""
    time_budget_minutes: float | None = None
    """Wall-clock budget of the whole run in minutes, summed over resumed calls (None = no budget).
    The cosine decay follows whichever is further along, steps or time, so the LR is annealed
    inside the budget, and the run stops when the budget is spent."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases, norms and the mask embedding)."""
    max_batch_seconds: float = 160.0
    """Padded audio per batch, in seconds."""
    max_utterance_seconds: float = 16.0
    """Longer training utterances are skipped."""
    grad_accum: int = 1
    """Batches per optimizer step."""
    clip_grad: float = 5.0
    """Gradient-norm clip."""
    dropout: DropoutConfig = field(default_factory=lambda: DropoutConfig(hidden=0.1, attention=0.1, activation=0.05, feat_proj=0.05))
    """Regularization."""
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    """Time/channel masks on the projected features."""
    dynamic_chunk: DynamicChunkConfig | None = field(default_factory=DynamicChunkConfig)
    """Block-causal masks per batch (None = always full attention)."""
    augment: bool = True
    """Online waveform augmentation (speed, warp, gain, noise, reverb)."""
    pad_seconds: float = 0.3
    """Random silence added at each end of training utterances, up to this many seconds."""
    reread_manifests: bool = False
    """Re-read the training manifests at each new epoch, so a corpus still being synthesized is used
    as it grows."""
    sorted_first_epoch: bool = True
    """First epoch from shortest to longest utterance."""
    clean_steps: int = 0
    """Steps at the start without augmentation, SpecAugment or chunk masks (lets CTC find its
    alignment before the regularization makes the task harder)."""
    eval_every: int = 500
    """Steps between dev evaluations."""
    eval_max_utterances: int = 300
    """Dev utterances used per evaluation."""
    save_every_minutes: float = 10.0
    """Minutes between checkpoints."""
    log_every: int = 20
    """Steps between log lines."""
    seed: int = 0
    """Seed of model init, batching, masks and augmentation."""
    threads: int = 2
    """CPU threads for PyTorch (intra-op)."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    amp: bool = True
    """bf16 autocast on GPU, and on CPUs with native bf16 (AMX / AVX512-BF16: 1.5x faster steps here)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_manifests", tuple(self.train_manifests))
        if not self.train_manifests:
            raise ConfigError("train_manifests: expected at least one manifest, found none")
        if self.init_from is None and self.preset not in PRESETS:
            raise ConfigError(f"preset: expected one of {sorted(PRESETS)}, found {self.preset!r}")
        if self.clean_steps < 0:
            raise ConfigError(f"clean_steps: expected >= 0, found {self.clean_steps}")
        for name in ("max_steps", "grad_accum", "eval_every", "log_every", "threads", "eval_max_utterances"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, found {getattr(self, name)}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.max_steps:
            raise ConfigError(f"warmup_steps: expected 0 <= warmup_steps < max_steps={self.max_steps}, found {self.warmup_steps}")
        if not self.peak_lr > 0:
            raise ConfigError(f"peak_lr: expected > 0, found {self.peak_lr}")
        if not 0 <= self.final_lr_ratio <= 1:
            raise ConfigError(f"final_lr_ratio: expected [0, 1], found {self.final_lr_ratio}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: expected auto, cpu or cuda, found {self.device!r}")
        if self.time_budget_minutes is not None and not self.time_budget_minutes > 0:
            raise ConfigError(f"time_budget_minutes: expected > 0 or None, found {self.time_budget_minutes}")
        if self.pad_seconds < 0:
            raise ConfigError(f"pad_seconds: expected >= 0, found {self.pad_seconds}")
        if self.max_batch_seconds <= 0 or self.max_utterance_seconds <= 0:
            raise ConfigError("max_batch_seconds and max_utterance_seconds: expected > 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`."""
        d = dict(data)
        d["dropout"] = DropoutConfig(**d.get("dropout", {}))
        d["specaugment"] = SpecAugmentConfig(**d.get("specaugment", {}))
        dc = d.get("dynamic_chunk")
        d["dynamic_chunk"] = None if dc is None else DynamicChunkConfig(**{**dc, "left_choices": tuple(dc["left_choices"])})
        return cls(**d)


@dataclass(frozen=True)
class EvalResult:
    """Dev-set error rates of one evaluation."""

    step: int
    wer: float
    cer: float
    wer_chunked: float | None
    """WER with 0.64-s block-causal attention (4 chunks of left context), for streaming-trained models."""
    utterances: int


@dataclass(frozen=True)
class TrainSummary:
    """What a finished (or interrupted) run reached."""

    steps: int
    best: EvalResult | None
    last: EvalResult | None
    seconds: float
    audio_hours: float
    """Audio processed (training passes), in hours."""
    out_dir: str


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def cpu_supports_bf16() -> bool:
    """True when oneDNN can run bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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


#: Letters rarer than this share of a training text's letters stay out of a vocabulary built from
#: it (stray foreign letters; Russian's rarest letter, ъ, is about 3e-4).
VOCAB_MIN_SHARE = 5e-5


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
    return model


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or name.endswith("masked_spec_embed") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def ctc_loss(logits: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor,
             label_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """Mean per-utterance CTC loss, each divided by its label count (float32 log-softmax)."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)
    return F.ctc_loss(log_probs, labels, frame_lengths, label_lengths, blank=blank, reduction="mean",
                      zero_infinity=True)


@torch.no_grad()
def evaluate(model: Wav2Vec2CTC, utterances: Sequence[Utterance], vocab: Vocabulary, device: torch.device,
             chunk: ChunkAttention | None = None, batch_seconds: float = 120.0) -> tuple[float, float]:
    """Greedy (WER, CER) of a model on a set of utterances.

    Args:
        model: The model (switched to eval mode for the call).
        utterances: Evaluation set.
        vocab: Its vocabulary.
        device: Where to compute.
        chunk: Block-causal attention to evaluate with (None = full attention).
        batch_seconds: Padded audio per batch.
    """
    was_training = model.training
    model.eval()
    pairs = []
    for idx in length_batches([u.duration for u in utterances], batch_seconds, rng=None):
        batch = collate([load_waveform(utterances[i].path) for i in idx], [utterances[i].text for i in idx], vocab)
        logits, flen = model(batch.waveform.to(device), batch.lengths.to(device), chunk=chunk)
        for row, n, ref in zip(logits.float().cpu(), flen.cpu(), batch.texts):
            hyp = greedy_text(row[: int(n)], vocab)
            # per-character scripts: a '|' the model emits is no space in the scored text (CER)
            pairs.append((ref, normalize_text(hyp, vocab) if vocab.per_character else hyp))
    model.train(was_training)
    return corpus_rates(pairs)


def _filter(utterances: list[Utterance], cfg: TrainConfig, vocab: Vocabulary) -> list[Utterance]:
    keep = []
    for u in utterances:
        if not u.text or u.duration > cfg.max_utterance_seconds:
            continue
        frames = math.floor(u.duration * FRAMES_PER_SECOND) - 1
        if len(vocab.encode(u.text)) * 1.1 >= frames:  # CTC needs room for repeats
            continue
        keep.append(u)
    return keep


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
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, show_progress: bool = True) -> TrainSummary:
    """Runs (or resumes) a training run; see the module docstring.

    Args:
        cfg: The run's configuration.
        show_progress: Show a progress bar with loss, learning rate and ETA (main process only).

    Returns:
        What the run reached. The best model by dev WER is in ``<out_dir>/best``, the last one in
        ``<out_dir>/last``.
    """
    from tqdm import tqdm

    device_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist = _init_distributed(device_name)
    if device_name == "cuda":
        torch.cuda.set_device(dist.local_rank)
        device = torch.device("cuda", dist.local_rank)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    saved_vocab = out / "vocabulary.json"  # the run's vocabulary, fixed at its start (resumes reuse it)
    if saved_vocab.is_file():
        vocab, origin = Vocabulary.from_dict(json.loads(saved_vocab.read_text(encoding="utf-8"))), f"from {saved_vocab}"
    else:
        raw = [u.text for m in cfg.train_manifests for u in read_manifest(m, normalize=False)]
        vocab, origin = choose_vocabulary(cfg, raw)
        if dist.main:
            saved_vocab.write_text(json.dumps(vocab.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            save_vocab_json(vocab, out / "vocab.json")
    model = build_model(cfg, vocab)
    if cfg.freeze_feature_encoder:
        for p in model.feature_extractor.parameters():
            p.requires_grad = False
    model.to(device)

    def read_train_set() -> tuple[list[Utterance], int]:
        found: list[Utterance] = []
        for m in cfg.train_manifests:
            found.extend(read_manifest(m, vocab=vocab))
        kept = _filter(found, cfg, vocab)
        if not kept:
            raise ConfigError(f"training set: no usable utterance among {len(found)} (too long, empty text, or too many labels for their frames)")
        return kept, len(found)

    train_set, before = read_train_set()
    dev_set = read_manifest(cfg.dev_manifest, vocab=vocab)[: cfg.eval_max_utterances] if cfg.dev_manifest else []

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.peak_lr, betas=(0.9, 0.98), eps=1e-8)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "audio_seconds": 0.0, "train_seconds": 0.0,
                             "best": None, "history": []}
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.is_file():
        saved = load_training_checkpoint(ckpt_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.update(saved["state"])
        if dist.main:
            print(f"resumed from {ckpt_path} at step {state['step']} (epoch {state['epoch']}, batch {state['position']})", flush=True)
    use_amp = cfg.amp and (device.type == "cuda" or cpu_supports_bf16())
    if dist.main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        hours = sum(u.duration for u in train_set) / 3600
        print(f"model: {count_parameters(model) / 1e6:.2f}M parameters; training set: {len(train_set)} utterances, "
              f"{hours:.2f} h ({before - len(train_set)} skipped); dev: {len(dev_set)} utterances; device {device}, "
              f"{dist.world} process(es), {torch.get_num_threads()} threads, "
              f"bf16 autocast {'on' if use_amp else 'off'}; vocabulary: {origin}", flush=True)

    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if device.type == "cuda" else None,
            find_unused_parameters=cfg.dropout.layerdrop > 0 or cfg.freeze_feature_encoder)

    augmenter = None
    if cfg.augment:
        from streamer.corpus.augment import AugmentConfig, Augmenter
        augmenter = Augmenter(AugmentConfig(), seed=cfg.seed * 7919 + state["epoch"] * 31 + dist.rank)
    mask_gen = torch.Generator().manual_seed(cfg.seed + 17 * state["step"] + dist.rank)
    chunk_rng = random.Random(cfg.seed * 1009 + state["step"] + dist.rank)

    stop = {"now": False}

    def _request_stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        stop["now"] = True

    old_handler = signal.signal(signal.SIGTERM, _request_stop) if dist.main else None

    def checkpoint() -> None:
        if not dist.main:
            return
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                      "config": cfg.to_dict()}, ckpt_path)
        save_checkpoint(out / "last", model, vocab, {"training": cfg.to_dict(), "step": state["step"]})

    def run_eval() -> EvalResult | None:
        if not dev_set or not dist.main:
            return None
        wer, cer = evaluate(model, dev_set, vocab, device)
        wer_c = None
        if cfg.dynamic_chunk is not None:
            wer_c, _ = evaluate(model, dev_set, vocab, device, chunk=ChunkAttention(32, 4, 1))
        res = EvalResult(state["step"], wer, cer, wer_c, len(dev_set))
        state["history"].append(dataclasses.asdict(res))
        key = "cer" if vocab.per_character else "wer"  # words are characters there: score per character
        if state["best"] is None or getattr(res, key) < state["best"][key]:
            state["best"] = dataclasses.asdict(res)
            save_checkpoint(out / "best", model, vocab, {"training": cfg.to_dict(), "step": state["step"],
                                                         "dev": dataclasses.asdict(res)})
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"eval": dataclasses.asdict(res), "time": time.time()}) + "\n")
        return res

    start_time = time.time()
    budget_start = time.time() - state["train_seconds"]  # seconds spent in earlier calls count too
    if cfg.time_budget_minutes is not None and state["train_seconds"] >= cfg.time_budget_minutes * 60:
        stop["now"] = True
    last_save = time.time()
    bar = tqdm(total=cfg.max_steps, initial=state["step"], disable=not (show_progress and dist.main),
               dynamic_ncols=True, desc="train", unit="step")
    running, running_n, last_eval = 0.0, 0, None
    model.train()
    try:
        while state["step"] < cfg.max_steps and not stop["now"]:
            rng = random.Random(cfg.seed * 100003 + state["epoch"])
            first = state["epoch"] == 0 and cfg.sorted_first_epoch
            batches = length_batches([u.duration for u in train_set], cfg.max_batch_seconds, rng, sorted_order=first)
            per_rank = len(batches) // dist.world
            if per_rank == 0:
                raise ConfigError(
                    f"training set: {len(batches)} batch(es) of {cfg.max_batch_seconds} s cannot feed {dist.world} "
                    "process(es); lower --batch-seconds or add data")
            batches = batches[dist.rank::dist.world][:per_rank]
            it = BatchIterator(train_set, vocab, batches, augmenter, start=state["position"],
                               pad_seconds=cfg.pad_seconds, seed=cfg.seed * 7 + state["epoch"] * 1009 + dist.rank)
            micro = 0
            it.augment = augmenter if state["step"] >= cfg.clean_steps else None
            for batch in it:
                regularize = state["step"] >= cfg.clean_steps
                it.augment = augmenter if regularize else None  # applies from the next batch on
                chunk = cfg.dynamic_chunk.sample(chunk_rng) if cfg.dynamic_chunk is not None and regularize else None
                frames = model.frame_lengths(batch.lengths)
                t_max = int(frames.max())
                time_mask = span_mask((len(frames), t_max), cfg.specaugment.time_prob, cfg.specaugment.time_length,
                                      frames, mask_gen) if cfg.specaugment.time_prob > 0 and regularize else None
                chan_mask = span_mask((len(frames), model.config.hidden_size), cfg.specaugment.channel_prob,
                                      cfg.specaugment.channel_length, None, mask_gen) if cfg.specaugment.channel_prob > 0 and regularize else None
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    logits, flen = net(batch.waveform.to(device), batch.lengths.to(device), chunk=chunk,
                                       time_mask=None if time_mask is None else time_mask.to(device),
                                       channel_mask=None if chan_mask is None else chan_mask.to(device))
                loss = ctc_loss(logits, flen, batch.labels.to(device), batch.label_lengths.to(device), vocab.blank_id)
                (loss / cfg.grad_accum).backward()
                micro += 1
                state["audio_seconds"] += float(batch.lengths.sum()) / SAMPLE_RATE * dist.world
                running += float(loss.detach())
                running_n += 1
                if micro % cfg.grad_accum:
                    continue
                state["train_seconds"] = time.time() - budget_start
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(state["step"], cfg, state["train_seconds"])
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                if torch.isfinite(grad_norm):
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["position"] = it.position
                bar.update(1)
                if state["step"] % cfg.log_every == 0 and dist.main:
                    avg = running / max(1, running_n)
                    bar.set_postfix(loss=f"{avg:.3f}", lr=f"{lr_at(state['step'], cfg, state['train_seconds']):.2e}",
                                    epoch=state["epoch"], audio_h=f"{state['audio_seconds'] / 3600:.1f}")
                    with open(out / "log.jsonl", "a") as f:
                        f.write(json.dumps({"step": state["step"], "loss": avg, "lr": lr_at(state["step"], cfg, state["train_seconds"]),
                                            "grad_norm": float(grad_norm), "epoch": state["epoch"],
                                            "audio_hours": state["audio_seconds"] / 3600,
                                            "elapsed": time.time() - start_time}) + "\n")
                    running, running_n = 0.0, 0
                if state["step"] % cfg.eval_every == 0:
                    last_eval = run_eval() or last_eval
                    if last_eval is not None and dist.main:
                        tqdm.write(f"step {last_eval.step}: dev WER {last_eval.wer:.3f} CER {last_eval.cer:.3f}"
                                   + (f" chunked WER {last_eval.wer_chunked:.3f}" if last_eval.wer_chunked is not None else ""))
                if time.time() - last_save > cfg.save_every_minutes * 60:
                    checkpoint()
                    last_save = time.time()
                if cfg.time_budget_minutes is not None and state["train_seconds"] >= cfg.time_budget_minutes * 60:
                    stop["now"] = True
                if state["step"] >= cfg.max_steps or stop["now"]:
                    break
            else:
                state["epoch"] += 1
                state["position"] = 0
                if cfg.reread_manifests:
                    grown, _ = read_train_set()
                    if dist.main and len(grown) != len(train_set):
                        tqdm.write(f"epoch {state['epoch']}: training set {len(train_set)} -> {len(grown)} utterances")
                    train_set = grown
                if augmenter is not None:
                    from streamer.corpus.augment import AugmentConfig, Augmenter
                    augmenter = Augmenter(AugmentConfig(), seed=cfg.seed * 7919 + state["epoch"] * 31 + dist.rank)
    except KeyboardInterrupt:
        stop["now"] = True
    finally:
        bar.close()
        checkpoint()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    budget_spent = cfg.time_budget_minutes is not None and state["train_seconds"] >= cfg.time_budget_minutes * 60
    if (state["step"] >= cfg.max_steps or budget_spent) and (last_eval is None or last_eval.step != state["step"]):
        last_eval = run_eval() or last_eval
        checkpoint()
    if dist.world > 1:
        import torch.distributed as tdist
        tdist.barrier()
        tdist.destroy_process_group()
    best = EvalResult(**state["best"]) if state["best"] else None
    return TrainSummary(state["step"], best, last_eval, time.time() - start_time, state["audio_seconds"] / 3600, str(out))
