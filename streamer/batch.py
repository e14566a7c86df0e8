"""Batch transcription of a file list on several worker processes, or on a Ray cluster.

    streamer batch files.tsv --output-dir out/ --format srt                 # local worker processes
    streamer batch files.tsv --output-dir out/ --ray                        # a local Ray instance
    streamer batch files.tsv --output-dir out/ --ray 10.0.0.1:6379          # a running cluster

The manifest is a TSV file whose first column is an audio path (relative to the manifest's folder,
or absolute); other columns (a training manifest's transcripts) are ignored, and so are empty lines,
lines starting with ``#`` and a first line ``path``. Guarantees:

* **One model load per worker.** Each worker process (or Ray actor) builds its `Recognizer` once
  and transcribes the files it is handed, one at a time.
* **The writer's rules.** Output names follow `streamer.output.plan_outputs` (the names
  ``streamer transcribe --output-dir`` gives the same files), and each output is written atomically
  by this process (`streamer.output.write_output`) from the text a worker returns: a worker never
  writes, so a cluster needs the audio on every node but no shared output folder.
* **Resumable.** A file whose output exists is skipped (``--overwrite`` redoes it); an interrupted
  batch leaves only complete outputs, so running it again finishes it.
* **Failures stay with their file.** A file that cannot be read or transcribed is reported on one
  line and the batch goes on; the command exits with 1 if any file failed.

Workers use ``threads`` CPU threads each (default: the CPUs divided among the local workers; one
per Ray actor, which reserves one CPU).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from streamer.errors import ConfigError, StreamerError, missing_dependency
from streamer.recognizer import Recognizer, RecognizerConfig


@dataclass(frozen=True)
class Recipe:
    """How a worker builds its recognizer (picklable: it travels to worker processes and Ray actors).

    Attributes:
        model: Model name, folder or hub id; None runs ``step_program`` alone.
        config: How to run.
        lm: ``"auto"``, a KenLM file, or None.
        step_program: An ExecuTorch program of the streaming step, or None.
    """

    model: str | None
    config: RecognizerConfig
    lm: str | None = "auto"
    step_program: str | None = None

    def build(self) -> Recognizer:
        """Loads the model and builds the recognizer."""
        if self.model is None:
            return Recognizer.from_program(self.step_program, self.config, lm=self.lm)
        return Recognizer.load(self.model, self.config, lm=self.lm, step_program=self.step_program)


@dataclass(frozen=True)
class Job:
    """One file to transcribe and where its output goes."""

    source: str
    dest: Path


@dataclass(frozen=True)
class Outcome:
    """What a worker returns for one file: the rendered output, or the error that stopped it."""

    source: str
    text: str | None
    duration: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class BatchReport:
    """The result of a batch."""

    total: int
    """Files in the manifest."""
    done: int
    """Files transcribed and written in this run."""
    skipped: int
    """Files whose output already existed."""
    failed: tuple[tuple[str, str], ...]
    """(file, reason) of each file that failed."""
    audio_seconds: float
    """Audio transcribed in this run."""
    seconds: float
    """Wall-clock time of the run."""
    workers: int
    """Workers used."""


def read_file_list(manifest: str | os.PathLike[str]) -> list[str]:
    """The audio paths of a manifest (see the module docstring), in order.

    Raises:
        ConfigError: The manifest cannot be read, or lists no file.
    """
    path = Path(manifest)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"manifest {path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    files = []
    for number, line in enumerate(lines, start=1):
        first = line.split("\t", 1)[0].strip()
        if not first or first.startswith("#") or (number == 1 and first.lower() == "path"):
            continue
        source = Path(first)
        files.append(str(source if source.is_absolute() else path.parent / source))
    if not files:
        raise ConfigError(f"manifest {path}: expected audio paths in its first column, found none")
    return files


def transcribe_one(rec: Recognizer, source: str, fmt: str) -> Outcome:
    """A worker's unit of work: one file transcribed and rendered; any failure becomes the outcome."""
    from streamer.formats import render

    try:
        transcript = rec.transcribe(source)
        return Outcome(source, render(transcript, fmt), transcript.duration)
    except StreamerError as err:
        return Outcome(source, None, error=str(err))
    except Exception as err:  # noqa: BLE001  (one file's failure never stops the batch)
        return Outcome(source, None, error=f"internal error: {type(err).__name__}: {err}")


# ---------------------------------------------------------------------------------------- local processes
_local_rec: Recognizer | StreamerError | None = None  # a local worker process's recognizer (or why it has none)


def _init_local(recipe: Recipe, threads: int) -> None:
    import torch

    global _local_rec
    if recipe.config.threads is None:
        torch.set_num_threads(threads)
    try:
        _local_rec = recipe.build()
    except StreamerError as err:  # reported with each file, instead of a broken pool
        _local_rec = err


def _run_local(source: str, fmt: str) -> Outcome:
    if isinstance(_local_rec, StreamerError):
        return Outcome(source, None, error=f"the worker could not load the model: {_local_rec}")
    assert _local_rec is not None  # _init_local ran in this process
    return transcribe_one(_local_rec, source, fmt)


def _local_outcomes(jobs: list[Job], recipe: Recipe, fmt: str, workers: int) -> Iterator[Outcome]:
    """Outcomes in completion order. A worker process that dies (a crash in native code) fails the
    files in flight, which a rerun retries, and a new pool goes on with the rest."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_local, initargs=(recipe, threads))

    pool = new_pool()
    queue = iter(jobs)
    pending: dict[Future[Outcome], Job] = {}

    def refill() -> None:  # a bounded number in flight: thousands of files need not all be queued
        while len(pending) < 2 * workers:
            job = next(queue, None)
            if job is None:
                return
            pending[pool.submit(_run_local, job.source, fmt)] = job

    try:
        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                job = pending.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    yield Outcome(job.source, None, error="a worker process died while this file was in flight")
                except Exception as err:  # noqa: BLE001  (never stops the batch)
                    yield Outcome(job.source, None, error=f"worker failed: {type(err).__name__}: {err}")
            if broken:
                for job in pending.values():
                    yield Outcome(job.source, None, error="a worker process died while this file was in flight")
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
            refill()
    finally:  # on an interrupt too: queued files never start; the workers finish the file they hold
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------- Ray
def _ray_outcomes(jobs: list[Job], recipe: Recipe, fmt: str, workers: int | None, address: str | None,
                  on_start: Callable[[int], None]) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError as err:
        raise missing_dependency("ray", "ray", "Batch transcription on Ray") from err

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({"num_cpus": workers} if address is None and workers else {}))
    try:
        @ray.remote(num_cpus=1)
        class Worker:  # one model load per actor
            def __init__(self, recipe: Recipe) -> None:
                import torch

                if recipe.config.threads is None:
                    torch.set_num_threads(1)
                self.rec = recipe.build()

            def transcribe(self, source: str, fmt: str) -> Outcome:
                return transcribe_one(self.rec, source, fmt)

        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        count = min(count, len(jobs))
        on_start(count)
        actors = [Worker.remote(recipe) for _ in range(count)]
        queue = iter(jobs)
        pending: dict[Any, tuple[Any, Job]] = {}
        for actor in actors:
            job = next(queue, None)
            if job is not None:
                pending[actor.transcribe.remote(job.source, fmt)] = (actor, job)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            actor, job = pending.pop(done[0])
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayActorError as err:  # the actor is gone: its file is reported
                yield Outcome(job.source, None, error=f"worker failed: {err}")
                actors.remove(actor)
                if not actors:
                    raise ConfigError("ray: every worker failed (see the errors above)") from None
                actor = actors[0]
            except ray.exceptions.RayError as err:
                yield Outcome(job.source, None, error=f"worker failed: {type(err).__name__}: {err}")
            nxt = next(queue, None)
            if nxt is not None:
                pending[actor.transcribe.remote(nxt.source, fmt)] = (actor, nxt)
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------- the batch
def run_batch(files: list[str], out_dir: str | os.PathLike[str], fmt: str, recipe: Recipe, *, workers: int | None = None,
              ray_address: str | None = None, use_ray: bool = False, overwrite: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None) -> BatchReport:
    """Transcribes ``files`` into ``out_dir`` (see the module docstring).

    Args:
        files: Audio paths, in batch order (it decides the output names).
        out_dir: Output folder (created if needed).
        fmt: ``txt``, ``json``, ``srt`` or ``vtt``.
        recipe: How each worker builds its recognizer.
        workers: Worker processes or Ray actors (default: local, the CPUs; Ray, the cluster's CPUs).
        ray_address: A running Ray cluster's address; None with ``use_ray`` starts a local instance.
        use_ray: Run on Ray instead of local worker processes.
        overwrite: Redo files whose output exists.
        progress: Show a progress bar (files, audio hours).
        log: Where failure lines go (default: the progress bar's stream).

    Raises:
        ConfigError: A bad format or worker count.
        OutputError: The output folder cannot be used.
        MissingDependencyError: ``use_ray`` without ray installed.
    """
    from tqdm import tqdm

    from streamer.formats import FORMATS
    from streamer.output import input_files, plan_outputs, prepare_output_dir, write_output

    if fmt not in FORMATS:
        raise ConfigError(f"format: expected one of {FORMATS}, found {fmt!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: expected a whole number >= 1, found {workers!r}")
    t0 = time.perf_counter()
    out = prepare_output_dir(out_dir)
    targets = plan_outputs(files, out, fmt)
    inputs = input_files(files)
    jobs = [Job(f, d) for f, d in zip(files, targets) if overwrite or not (d.exists() or d.is_symlink())]
    skipped = len(files) - len(jobs)
    failed: list[tuple[str, str]] = []
    done, audio = 0, 0.0
    bar = tqdm(total=len(jobs), unit="file", desc="batch", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    say = log or (lambda line: bar.write(line, file=sys.stderr))
    used = [0]

    def started(count: int) -> None:
        used[0] = count

    if jobs:
        if use_ray:
            outcomes = _ray_outcomes(jobs, recipe, fmt, workers, ray_address, started)
        else:
            count = min(workers or os.cpu_count() or 1, len(jobs))
            started(count)
            outcomes = _local_outcomes(jobs, recipe, fmt, count)
        dest = {j.source: j.dest for j in jobs}
        for outcome in outcomes:
            if outcome.text is not None:
                try:
                    write_output(dest[outcome.source], outcome.text, overwrite=overwrite, inputs=inputs)
                    done += 1
                    audio += outcome.duration
                except StreamerError as err:
                    failed.append((outcome.source, str(err)))
                    say(f"error: {err}")
            else:
                reason = outcome.error or "unknown error"
                failed.append((outcome.source, reason))
                say(f"error: {reason}" if outcome.source in reason else f"error: {outcome.source}: {reason}")
            bar.set_postfix_str(f"{audio / 3600:.2f} h audio" + (f", {len(failed)} failed" if failed else ""),
                                refresh=False)
            bar.update(1)
    bar.close()
    return BatchReport(len(files), done, skipped, tuple(failed), round(audio, 3),
                       round(time.perf_counter() - t0, 3), used[0])

