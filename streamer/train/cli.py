"""Command line of ``streamer train`` (also ``python tools/train.py``).

Examples::

    # the bundled demo model's recipe (from scratch, dynamic chunks, 2 CPU threads)
    streamer train --train data/corpus/train.tsv --dev data/corpus/dev.tsv --out runs/demo-en

    # fine-tune a real XLSR-53 checkpoint the XLSR way (frozen conv encoder, SpecAugment, warm-up)
    streamer train --init-from facebook/wav2vec2-large-xlsr-53 --freeze-feature-encoder \\
        --peak-lr 3e-4 --warmup-steps 500 --grad-accum 4 --train cv/train.tsv --dev cv/dev.tsv --out runs/xlsr

    # a new language the XLSR way: the English demo's encoder, a new CTC head on the Russian text's letters
    streamer train --init-from models/demo-en --language ru --train data/corpus-ru/train.tsv \\
        --dev data/corpus-ru/dev.tsv --out runs/xlsr-ru

    # several processes (DDP): torchrun --nproc_per_node 2 -m streamer train ...
"""

from __future__ import annotations

import argparse

from streamer.model.config import PRESETS, DropoutConfig
from streamer.train.masking import DynamicChunkConfig, SpecAugmentConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the training options to a parser."""
    p.add_argument("--train", nargs="+", required=True, metavar="TSV", help="training manifest(s): path<TAB>text")
    p.add_argument("--dev", metavar="TSV", help="held-out manifest for WER/CER during training")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds checkpoint.pt)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", default="demo-small", choices=sorted(PRESETS), help="model shape from scratch (default: demo-small)")
    g.add_argument("--init-from", metavar="MODEL", help="pre-trained or fine-tuned wav2vec2/XLSR/streamer folder or hub id to start from; its CTC head is kept when its vocabulary matches (warm restart), else a new head is trained")
    p.add_argument("--vocab", metavar="VOCAB_JSON", help="output vocabulary (Hugging Face vocab.json); default: the fine-tuning source's when it fits the training text, else built from the training text")
    p.add_argument("--language", metavar="CODE", help="ISO 639-1 code of the training language (stored with a new vocabulary; digits are spelled in it; a source head for another language is replaced)")
    p.add_argument("--centred-pos-conv", action="store_true", help="centred positional conv (default: causal, for exact cached streaming)")
    p.add_argument("--freeze-feature-encoder", action="store_true", help="keep the conv feature encoder fixed")
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--peak-lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=1000)
    p.add_argument("--final-lr-ratio", type=float, default=0.05)
    p.add_argument("--time-budget-minutes", type=float, default=None,
                   help="wall-clock budget of the run, summed over resumes; the LR anneals inside it and the run stops when it is spent")
    p.add_argument("--batch-seconds", type=float, default=160.0, help="padded audio per batch (s)")
    p.add_argument("--max-utterance-seconds", type=float, default=16.0)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout")
    p.add_argument("--layerdrop", type=float, default=0.0)
    p.add_argument("--mask-time-prob", type=float, default=0.05)
    p.add_argument("--mask-channel-prob", type=float, default=0.0)
    p.add_argument("--full-attention", action="store_true", help="no dynamic chunk masks (offline-only model)")
    p.add_argument("--full-attention-prob", type=float, default=0.4, help="share of batches with full attention")
    p.add_argument("--no-augment", action="store_true", help="no online waveform augmentation")
    p.add_argument("--reread-manifests", action="store_true",
                   help="re-read the training manifests at each epoch (a corpus still being synthesized)")
    p.add_argument("--clean-steps", type=int, default=0,
                   help="first steps without augmentation, masks or chunked attention (default: 0)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-utterances", type=int, default=300)
    p.add_argument("--save-minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (pick deliberately: more than the free cores slows training)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast (default: on for GPUs and CPUs with native bf16)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Runs training from parsed arguments; prints the summary. Returns the exit code."""
    from streamer.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        train_manifests=tuple(args.train), dev_manifest=args.dev, out_dir=args.out, preset=args.preset,
        init_from=args.init_from, vocab_path=args.vocab, language=args.language, causal_pos_conv=not args.centred_pos_conv,
        freeze_feature_encoder=args.freeze_feature_encoder, max_steps=args.max_steps, peak_lr=args.peak_lr,
        warmup_steps=args.warmup_steps, final_lr_ratio=args.final_lr_ratio,
        time_budget_minutes=args.time_budget_minutes, max_batch_seconds=args.batch_seconds,
        max_utterance_seconds=args.max_utterance_seconds, grad_accum=args.grad_accum,
        dropout=DropoutConfig(hidden=args.dropout, attention=args.dropout, activation=args.dropout / 2,
                              feat_proj=args.dropout / 2, layerdrop=args.layerdrop),
        specaugment=SpecAugmentConfig(time_prob=args.mask_time_prob, channel_prob=args.mask_channel_prob),
        dynamic_chunk=None if args.full_attention else DynamicChunkConfig(full_prob=args.full_attention_prob),
        augment=not args.no_augment, reread_manifests=args.reread_manifests, clean_steps=args.clean_steps, eval_every=args.eval_every, log_every=args.log_every, eval_max_utterances=args.eval_utterances,
        save_every_minutes=args.save_minutes, seed=args.seed, threads=args.threads, device=args.device,
        amp=not args.no_amp,
    )
    summary = train(cfg, show_progress=not args.no_progress)
    best = summary.best
    print(f"done: {summary.steps} steps, {summary.audio_hours:.1f} h of audio in {summary.seconds / 60:.1f} min; "
          + (f"best dev WER {best.wer:.3f} CER {best.cer:.3f} at step {best.step}; " if best else "")
          + f"models in {summary.out_dir}/best and {summary.out_dir}/last")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tools/train.py``."""
    p = argparse.ArgumentParser(prog="streamer train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
