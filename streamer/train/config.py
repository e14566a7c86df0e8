"""The configuration of a training run, and what a run reports back.

`TrainConfig` is saved in the run folder and in every checkpoint; a resumed run must have the same
one (`TrainConfig.differences` names what changed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from streamer.errors import ConfigError
from streamer.model.config import PRESETS, DropoutConfig
from streamer.train.augment import AugmentConfig
from streamer.train.masking import DynamicChunkConfig, SpecAugmentConfig


#: Teachers whose layers can start a student (`TrainConfig.transplant`).
TRANSPLANTS = ("whisper-tiny.en",)


@dataclass(frozen=True)
class DistillTarget:
    """One teacher whose stored targets the student learns to predict through a small head.

    The loss follows what the store holds (`streamer.train.targets.StoreMeta.kind`):
    log-posteriors are matched by frame-level KL divergence (teacher ‖ student), hidden states by
    L1 plus cosine distance (as DistilHuBERT).
    """

    store: str
    """Target store folder (``tools/data/teacher_targets.py``)."""
    weight: float = 1.0
    """Weight of this loss."""
    layer: int | None = None
    """Student layer that feeds the head: k = the output of the first k transformer layers, 0 = the
    projected conv features (before the positional conv and masking), None = the encoder's final
    output (what the CTC head reads)."""
    head_hidden: int = 0
    """Hidden width of the prediction head (0 = one Linear layer)."""
    direct: bool = False
    """No head: the student's states themselves are compared with the targets (widths must match),
    e.g. a front-end taught to produce what transplanted teacher layers expect."""
    head_norm: bool = False
    """A LayerNorm before the head (for a tapped layer of a pre-LN model, whose states are the
    un-normalized residual stream)."""
    share_head: int | None = None
    """Index of an earlier target whose head (same layer, same classes) this one uses too: hama's
    frame KL and its CTC labels through one phone head, say."""
    decays: bool = True
    """Whether `DistillConfig.decay_steps` lowers this target's weight (False: constant)."""

    def __post_init__(self) -> None:
        if self.share_head is not None and self.share_head < 0:
            raise ConfigError(f"distill target share_head: expected an earlier target's index >= 0, found {self.share_head}")
        if not self.weight >= 0:
            raise ConfigError(f"distill target weight: expected >= 0, found {self.weight}")
        if self.layer is not None and self.layer < 0:
            raise ConfigError(f"distill target layer: expected >= 0 or None, found {self.layer}")
        if self.head_hidden < 0:
            raise ConfigError(f"distill target head_hidden: expected >= 0, found {self.head_hidden}")


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from stored teacher targets beside (or instead of) CTC on transcripts."""

    targets: tuple[DistillTarget, ...]
    """The teachers."""
    ctc_weight: float = 1.0
    """Weight of the CTC loss (rows without a transcript never have one)."""
    decay_steps: int = 0
    """Steps over which the distillation weights fall linearly to ``final_ratio`` of their value
    (0 = constant), so CTC takes over."""
    final_ratio: float = 0.0
    """Distillation weight after ``decay_steps``, relative to the start."""
    heldout: tuple[str, ...] = ()
    """Manifests of audio not trained on (real speech, say) where the teacher gap (`teacher_gap`) is
    measured at each evaluation, beside the dev set."""
    ctc_grad_layer: int | None = None
    """Transformer layer count k below which the CTC loss's gradient is scaled by `ctc_grad_scale`
    (None = not scaled): layers 1..k then learn from the teachers alone (0) or mostly (a small
    scale), while the layers above k learn to spell from them."""
    ctc_grad_scale: float = 1.0
    """Factor on the CTC gradient that reaches layers 1..`ctc_grad_layer` (0 = none reaches them)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "heldout", tuple(self.heldout))
        if not self.targets:
            raise ConfigError("distill: expected at least one target store, found none")
        for i, t in enumerate(self.targets):
            if t.share_head is not None and (t.share_head >= i or self.targets[t.share_head].layer != t.layer
                                             or self.targets[t.share_head].share_head is not None):
                raise ConfigError(f"distill target {i} ({t.store}): share_head expected an earlier target with its "
                                  f"own head on the same layer, found {t.share_head}")
        if self.ctc_grad_layer is not None and self.ctc_grad_layer < 1:
            raise ConfigError(f"distill ctc_grad_layer: expected a layer count >= 1 or None, found {self.ctc_grad_layer}")
        if not 0 <= self.ctc_grad_scale <= 1:
            raise ConfigError(f"distill ctc_grad_scale: expected 0 to 1, found {self.ctc_grad_scale}")
        if not self.ctc_weight >= 0:
            raise ConfigError(f"distill ctc_weight: expected >= 0, found {self.ctc_weight}")
        if self.decay_steps < 0 or not 0 <= self.final_ratio <= 1:
            raise ConfigError(f"distill decay: expected decay_steps >= 0 and final_ratio in [0, 1], found "
                              f"{self.decay_steps} and {self.final_ratio}")

    def scale(self, step: int) -> float:
        """Factor on the (decaying) distillation weights at an optimizer step."""
        if self.decay_steps == 0:
            return 1.0
        done = min(1.0, step / self.decay_steps)
        return 1.0 - (1.0 - self.final_ratio) * done

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DistillConfig":
        """Inverse of `dataclasses.asdict`."""
        d = dict(data)
        d["targets"] = tuple(DistillTarget(**t) for t in d.get("targets", ()))
        return cls(**d)


#: Ranges of `TrainConfig`'s numeric fields (the command line's options share them). Seconds of audio
#: are bounded because a batch's memory grows with its padded length (and attention's with its square).
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "max_steps": (1, 100_000_000), "warmup_steps": (0, 100_000_000), "grad_accum": (1, 1024),
    "peak_lr": (1e-9, 1.0), "final_lr_ratio": (0.0, 1.0), "weight_decay": (0.0, 1.0), "clip_grad": (1e-6, 1e6),
    "max_batch_seconds": (0.1, 3600.0), "max_utterance_seconds": (0.1, 600.0), "pad_seconds": (0.0, 10.0),
    "buckets": (1, 256), "clean_steps": (0, 100_000_000), "eval_every": (1, 100_000_000),
    "eval_max_utterances": (1, 10_000_000), "save_every_minutes": (0.01, 10_000.0), "log_every": (1, 100_000_000),
    "threads": (1, 1024), "seed": (0, 2**63 - 1),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved in the run folder and the checkpoint)."""

    train_manifests: tuple[str, ...]
    """Training manifests (TSV, see `streamer.train.data`) or packed corpus folders
    (`streamer.train.pack`)."""
    out_dir: str
    """Run folder: checkpoint.pt, best/ and last/ (streamer format), log.jsonl, config.json."""
    dev_manifest: str | None = None
    """Held-out manifest for CER/WER during training."""
    preset: str = "demo-small"
    """Model shape for training from scratch (a key of `streamer.model.config.PRESETS`)."""
    init_from: str | None = None
    """Pre-trained checkpoint (folder or hub id) to fine-tune instead of a preset."""
    transplant: str | None = None
    """Teacher whose transformer layers start a preset's first layers (``whisper-tiny.en``; see
    `streamer.convert.whisper.transplant_layers`), or None."""
    vocab_path: str | None = None
    """Output vocabulary to train (a Hugging Face ``vocab.json``); None = chosen by
    `streamer.train.run.choose_vocabulary`."""
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
    """Longer training utterances are skipped (and so are those longer than a batch)."""
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
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    """Waveform augmentation on the training device (None = none)."""
    pad_seconds: float = 0.3
    """Random silence added at each end of training utterances, up to this many seconds."""
    in_memory: bool = True
    """Decode the training audio once and keep it in memory as int16 (1 h = 115 MB); False reads
    each batch's files from disk (corpora larger than memory)."""
    buckets: int = 8
    """Fixed batch shapes (length buckets; fewer = fewer compiles, more padding)."""
    compile: bool = False
    """Compile forward + loss with `torch.compile` (one graph per bucket)."""
    reread_manifests: bool = False
    """Re-read the training manifests (and the teacher stores) at each new epoch, so a corpus still
    being synthesized or labelled is used as it grows."""
    sorted_first_epoch: bool = True
    """First epoch from the shortest bucket to the longest."""
    clean_steps: int = 0
    """Steps at the start without augmentation, SpecAugment or chunk masks (lets CTC find its
    alignment before the regularization makes the task harder)."""
    distill: DistillConfig | None = None
    """Teacher targets to learn beside CTC (None = CTC only)."""
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
    """bf16 autocast on GPU, and on CPUs with native bf16 (AMX / AVX512-BF16)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_manifests", tuple(self.train_manifests))
        if not self.train_manifests:
            raise ConfigError("train_manifests: expected at least one manifest, found none")
        if self.init_from is None and self.preset not in PRESETS:
            raise ConfigError(f"preset: expected one of {sorted(PRESETS)}, found {self.preset!r}")
        if self.transplant is not None:
            if self.transplant not in TRANSPLANTS:
                raise ConfigError(f"transplant: expected one of {list(TRANSPLANTS)}, found {self.transplant!r}")
            if self.init_from is not None:
                raise ConfigError("transplant: expected a preset to start from, found --init-from as well")
        if self.clean_steps < 0:
            raise ConfigError(f"clean_steps: expected >= 0, found {self.clean_steps}")
        for name in ("max_steps", "grad_accum", "eval_every", "log_every", "threads", "eval_max_utterances", "buckets"):
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
            raise ConfigError("max_batch_seconds and max_utterance_seconds: expected > 0, found "
                              f"{self.max_batch_seconds} and {self.max_utterance_seconds}")
        for name, (low, high) in TRAIN_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                    or (isinstance(low, int) and isinstance(high, int) and not isinstance(value, int)):
                raise ConfigError(f"{name}: expected {'an integer' if isinstance(low, int) else 'a number'} from "
                                  f"{low:g} to {high:g}, found {value!r}")

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
        aug = d.get("augment")
        d["augment"] = None if aug is None else AugmentConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        dist = d.get("distill")
        d["distill"] = None if dist is None else DistillConfig.from_dict(dist)
        return cls(**d)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Names of the fields that shape the model or its data and differ from ``other``
        (budgets, logging and the run's length may change on a resume)."""
        free = {"max_steps", "time_budget_minutes", "eval_every", "eval_max_utterances", "save_every_minutes",
                "log_every", "threads", "device", "train_manifests", "dev_manifest", "reread_manifests", "compile",
                "in_memory", "out_dir"}
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in free and mine[k] != theirs.get(k))


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
    interrupted: bool = False
    """True when a signal or Ctrl-C stopped the run before its steps or budget were spent."""
