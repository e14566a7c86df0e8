"""Command line of ``streamer train``.

Examples::

    # the bundled demo model's recipe (from scratch, dynamic chunks, 2 CPU threads)
    streamer train --train data/corpus/train.tsv --dev data/corpus/dev.tsv --out runs/demo-en

    # fine-tune a real XLSR-53 checkpoint the XLSR way (frozen conv encoder, SpecAugment, warm-up)
    streamer train --init-from facebook/wav2vec2-large-xlsr-53 --freeze-feature-encoder \\
        --peak-lr 3e-4 --warmup-steps 500 --grad-accum 4 --train cv/train.tsv --dev cv/dev.tsv --out runs/xlsr

    # a new language the XLSR way: the English demo's encoder, a new CTC head on the Russian text's letters
    streamer train --init-from models/demo-en --language ru --train data/corpus-ru/train.tsv \\
        --dev data/corpus-ru/dev.tsv --out runs/xlsr-ru

    # distil real-speech teachers into the demo model: hama's phone posteriors (stored beforehand
    # with tools/data/teacher_targets.py) on synthetic speech with transcripts and real speech without
    streamer train --init-from models/demo-en --train data/corpus/train.tsv data/real/real.tsv \
        --distill data/targets/hama --dev data/corpus/dev.tsv --out runs/distill
"""

from __future__ import annotations

import argparse
import dataclasses

from streamer.errors import ConfigError
from streamer.model.config import PRESETS, DropoutConfig
from streamer.train.config import DistillConfig, DistillTarget, TrainConfig
from streamer.train.augment import AugmentConfig
from streamer.train.masking import DynamicChunkConfig, SpecAugmentConfig

_D = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
_DROPOUT = TrainConfig.__dataclass_fields__["dropout"].default_factory()  # type: ignore[misc]
_SPEC = SpecAugmentConfig()
_CHUNK = DynamicChunkConfig()
_DISTILL = {f.name: f.default for f in dataclasses.fields(DistillConfig) if f.default is not dataclasses.MISSING}


#: Modifiers of a ``--distill`` HEAD (joined to it with ``+``).
HEAD_MODIFIERS = ("norm", "fixed")


def _distill_target(text: str) -> DistillTarget:
    """``STORE[:WEIGHT[:LAYER[:HEAD]]]`` → a `DistillTarget`.

    LAYER: a transformer layer count, 0 (the projected conv features) or ``final``; HEAD: ``linear``
    (default), a hidden width for a two-layer head, ``direct`` (no head) or ``shareK`` (the head of
    the K-th ``--distill``, counted from 0), with ``+norm`` (a LayerNorm first) and ``+fixed`` (the
    weight does not decay) added as wanted: ``linear+norm+fixed``.
    """
    parts = text.split(":")
    usage = (f"expected STORE[:WEIGHT[:LAYER[:HEAD]]] (HEAD: linear, direct, a width or shareK, with +norm or "
             f"+fixed), found {text!r}")
    if len(parts) > 4:
        raise argparse.ArgumentTypeError(usage)
    head, *mods = (parts[3] if len(parts) > 3 and parts[3] else "linear").split("+")
    if any(m not in HEAD_MODIFIERS for m in mods):
        raise argparse.ArgumentTypeError(usage)
    try:
        weight = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
        layer = int(parts[2]) if len(parts) > 2 and parts[2] not in ("", "final") else None
        share = int(head[5:]) if head.startswith("share") else None
        hidden = 0 if head in ("linear", "direct") or share is not None else int(head)
    except ValueError:
        raise argparse.ArgumentTypeError(usage) from None
    try:
        return DistillTarget(parts[0], weight, layer, head_hidden=hidden, direct=head == "direct",
                             head_norm="norm" in mods, share_head=share, decays="fixed" not in mods)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the training options to a parser (defaults come from `TrainConfig`)."""
    p.add_argument("--train", nargs="+", required=True, metavar="TSV",
                   help="training manifest(s) (path<TAB>text; an empty text teaches through --distill only) or packed corpus folders")
    p.add_argument("--dev", metavar="TSV", help="held-out manifest for WER/CER during training")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds checkpoint.pt)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", default=_D["preset"], choices=sorted(PRESETS), help="model shape from scratch (default: %(default)s)")
    g.add_argument("--init-from", metavar="MODEL", help="pre-trained or fine-tuned wav2vec2/XLSR/streamer folder or hub id to start from; its CTC head is kept when its vocabulary matches (warm restart), else a new head is trained")
    p.add_argument("--transplant", choices=["whisper-tiny.en"],
                   help="start the preset's first transformer layers from this teacher's (needs the distill extra; "
                        "then teach the front-end with --distill STORE:1:0:direct --ctc-weight 0, see docs/training.md)")
    p.add_argument("--vocab", metavar="VOCAB_JSON", help="output vocabulary (Hugging Face vocab.json); default: the fine-tuning source's when it fits the training text, else built from the training text")
    p.add_argument("--language", metavar="CODE", help="ISO 639-1 code of the training language (stored with a new vocabulary; digits are spelled in it; a source head for another language is replaced)")
    p.add_argument("--centred-pos-conv", action="store_true", help="centred positional conv (default: causal, for exact cached streaming)")
    p.add_argument("--freeze-feature-encoder", action="store_true", help="keep the conv feature encoder fixed")
    p.add_argument("--max-steps", type=int, default=_D["max_steps"], help="(default: %(default)s)")
    p.add_argument("--peak-lr", type=float, default=_D["peak_lr"], help="(default: %(default)s)")
    p.add_argument("--warmup-steps", type=int, default=_D["warmup_steps"], help="(default: %(default)s)")
    p.add_argument("--final-lr-ratio", type=float, default=_D["final_lr_ratio"], help="(default: %(default)s)")
    p.add_argument("--time-budget-minutes", type=float, default=_D["time_budget_minutes"],
                   help="wall-clock budget of the run, summed over resumes; the LR anneals inside it and the run stops when it is spent")
    p.add_argument("--batch-seconds", type=float, default=_D["max_batch_seconds"], help="padded audio per batch, s (default: %(default)s)")
    p.add_argument("--max-utterance-seconds", type=float, default=_D["max_utterance_seconds"], help="(default: %(default)s)")
    p.add_argument("--grad-accum", type=int, default=_D["grad_accum"], help="(default: %(default)s)")
    p.add_argument("--dropout", type=float, default=_DROPOUT.hidden, help="hidden and attention dropout (default: %(default)s)")
    p.add_argument("--layerdrop", type=float, default=_DROPOUT.layerdrop, help="(default: %(default)s)")
    p.add_argument("--mask-time-prob", type=float, default=_SPEC.time_prob, help="(default: %(default)s)")
    p.add_argument("--mask-channel-prob", type=float, default=_SPEC.channel_prob, help="(default: %(default)s)")
    p.add_argument("--full-attention", action="store_true", help="no dynamic chunk masks (offline-only model)")
    p.add_argument("--full-attention-prob", type=float, default=_CHUNK.full_prob, help="share of batches with full attention (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="no waveform augmentation")
    p.add_argument("--from-files", action="store_true", help="read each batch's audio from its files instead of holding the training set in memory")
    p.add_argument("--buckets", type=int, default=_D["buckets"], help="fixed batch shapes (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward pass (one graph per bucket)")
    p.add_argument("--reread-manifests", action="store_true",
                   help="re-read the training manifests at each epoch (a corpus still being synthesized)")
    p.add_argument("--no-curriculum", action="store_true",
                   help="shuffle the first epoch too (default: shortest utterances first, which helps a run from scratch)")
    p.add_argument("--clean-steps", type=int, default=_D["clean_steps"],
                   help="first steps without augmentation, masks or chunked attention (default: %(default)s)")
    p.add_argument("--distill", action="append", type=_distill_target, metavar="STORE[:WEIGHT[:LAYER[:HEAD]]]",
                   help="learn a teacher's stored targets (frame targets from tools/data/teacher_targets.py: KL or "
                        "L1+cosine; label strings from tools/data/teacher_labels.py: CTC) through a small head on the "
                        "final encoder output, after LAYER transformer layers, or on the projected conv features "
                        "(LAYER 0); HEAD: linear (default), a hidden width, direct (no head) or shareK (the head of the "
                        "K-th --distill, from 0), with +norm (LayerNorm first) and +fixed (weight not decayed); "
                        "repeat for several teachers")
    p.add_argument("--ctc-grad-layer", type=int, metavar="K",
                   help="with --distill: scale the character CTC's gradient into transformer layers 1..K by "
                        "--ctc-grad-scale, so they learn from the teachers (default: not scaled)")
    p.add_argument("--ctc-grad-scale", type=float, default=_DISTILL["ctc_grad_scale"],
                   help="factor on that gradient: 0 stops it, 0.1 lets a little through (default: %(default)s)")
    p.add_argument("--ctc-weight", type=float, default=_DISTILL["ctc_weight"], help="CTC loss weight with --distill (default: %(default)s)")
    p.add_argument("--distill-decay-steps", type=int, default=_DISTILL["decay_steps"],
                   help="steps over which the distillation weights fall to --distill-final-ratio (default: %(default)s = constant)")
    p.add_argument("--distill-final-ratio", type=float, default=_DISTILL["final_ratio"], help="(default: %(default)s)")
    p.add_argument("--distill-heldout", nargs="+", default=[], metavar="TSV",
                   help="audio not trained on (real speech, say) where the teacher gap is measured at each evaluation")
    p.add_argument("--eval-every", type=int, default=_D["eval_every"], help="(default: %(default)s)")
    p.add_argument("--log-every", type=int, default=_D["log_every"], help="(default: %(default)s)")
    p.add_argument("--eval-utterances", type=int, default=_D["eval_max_utterances"], help="(default: %(default)s)")
    p.add_argument("--save-minutes", type=float, default=_D["save_every_minutes"], help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=_D["seed"], help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=_D["threads"], help="CPU threads (pick deliberately: more than the free cores slows training; default: %(default)s)")
    p.add_argument("--device", default=_D["device"], choices=["auto", "cpu", "cuda"], help="(default: %(default)s)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast (default: on for GPUs and CPUs with native bf16)")
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed arguments."""
    distill = None
    if args.distill:
        distill = DistillConfig(tuple(args.distill), ctc_weight=args.ctc_weight, decay_steps=args.distill_decay_steps,
                                final_ratio=args.distill_final_ratio, heldout=tuple(args.distill_heldout),
                                ctc_grad_layer=args.ctc_grad_layer, ctc_grad_scale=args.ctc_grad_scale)
    elif args.ctc_grad_layer is not None:
        raise ConfigError("--ctc-grad-layer: expected --distill beside it (the layers below it learn from the teachers)")
    return TrainConfig(
        train_manifests=tuple(args.train), dev_manifest=args.dev, out_dir=args.out, preset=args.preset,
        init_from=args.init_from, transplant=args.transplant, vocab_path=args.vocab, language=args.language, causal_pos_conv=not args.centred_pos_conv,
        freeze_feature_encoder=args.freeze_feature_encoder, max_steps=args.max_steps, peak_lr=args.peak_lr,
        warmup_steps=args.warmup_steps, final_lr_ratio=args.final_lr_ratio,
        time_budget_minutes=args.time_budget_minutes, max_batch_seconds=args.batch_seconds,
        max_utterance_seconds=args.max_utterance_seconds, grad_accum=args.grad_accum,
        dropout=DropoutConfig(hidden=args.dropout, attention=args.dropout, activation=args.dropout / 2,
                              feat_proj=args.dropout / 2, layerdrop=args.layerdrop),
        specaugment=SpecAugmentConfig(time_prob=args.mask_time_prob, channel_prob=args.mask_channel_prob),
        dynamic_chunk=None if args.full_attention else DynamicChunkConfig(full_prob=args.full_attention_prob),
        augment=None if args.no_augment else AugmentConfig(), in_memory=not args.from_files, buckets=args.buckets,
        compile=args.compile, reread_manifests=args.reread_manifests, sorted_first_epoch=not args.no_curriculum,
        clean_steps=args.clean_steps, distill=distill,
        eval_every=args.eval_every, log_every=args.log_every, eval_max_utterances=args.eval_utterances,
        save_every_minutes=args.save_minutes, seed=args.seed, threads=args.threads, device=args.device,
        amp=not args.no_amp,
    )


def run(args: argparse.Namespace) -> int:
    """Runs training from parsed arguments; prints the summary. Returns the exit code (143 when a
    signal stopped the run: its checkpoint is saved and a rerun resumes it)."""
    from streamer.train.run import EXIT_TERMINATED, train

    summary = train(config_from_args(args), show_progress=not args.no_progress)
    best = summary.best
    print(f"{'interrupted' if summary.interrupted else 'done'}: {summary.steps} steps, {summary.audio_hours:.1f} h of "
          f"audio in {summary.seconds / 60:.1f} min; "
          + (f"best dev WER {best.wer:.3f} CER {best.cer:.3f} at step {best.step}; " if best else "")
          + f"models in {summary.out_dir}/best and {summary.out_dir}/last")
    return EXIT_TERMINATED if summary.interrupted else 0


def main(argv: list[str] | None = None) -> int:
    """Runs ``streamer train`` with ``argv`` (the command line when None)."""
    p = argparse.ArgumentParser(prog="streamer train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
