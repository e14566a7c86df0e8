"""Waveform augmentation as batched torch operations on the training device.

The chain, each step drawn per row on the device, with no host synchronisation and no numpy or
soxr in the hot path (the same code runs on a CPU or a GPU). Input and output are a padded batch ``(B, N)`` with its ``(B,)`` valid lengths; samples
past a row's length are zero on output.

1. **speed**: polyphase windowed-sinc resampling by a factor in ``speed_range`` (rounded to n/20;
   the chosen rows of one batch share it, so it is one ``conv1d``), cut-off following the factor
   (no aliasing when speeding up). Pitch, formants and duration change together; lengths change.
   A row that would outgrow the batch width when slowed down keeps its speed.
2. **vocal-tract warp**: the piecewise-linear VTLN warp of the STFT along frequency with a phase
   vocoder (duration kept, RMS matched).
3. **reverb**: FFT convolution with a room impulse response made on the device (direct path and a
   Gaussian tail decaying 60 dB in RT60, at a given direct-to-reverberant ratio).
4. **noise**: white, pink, brown (spectrally shaped Gaussian noise) or babble at an SNR; babble is
   3–6 time-reversed, shifted *other* utterances of the batch (other voices; the row itself when
   the batch has one row).
5. **channel**: a telephone line (brick-wall 8-kHz band, then 8-bit µ-law companding at 8 kHz with
   probability ``mulaw_prob``, band-limited interpolation back to 16 kHz) or a low-pass at a
   random cut-off.
6. **gain** in dB, then a per-row **peak limit** (a scale, never a clip).

Expensive steps (speed, warp, reverb, noise, channel) run on a row subset whose size is the
probability times B, rounded stochastically on the host (so the expected share is exact and no
device value is read); gain runs on every row and selects with ``torch.where``. Speed is decided
on the host (`Augmenter.draw_speed`) because it changes lengths, which the loss needs there.
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import torch
from torch import Tensor

from streamer.constants import SAMPLE_RATE
from streamer.errors import ConfigError

#: Noise kinds the chain can add.
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "babble")
#: Rate of the telephone channel, in Hz.
TELEPHONE_RATE = 8000
#: µ-law companding constant (G.711).
MULAW_MU = 255.0
#: RT60 decay: exp(-ln(1000) t / RT60) is 60 dB down at t = RT60.
_LN_1000 = math.log(1000.0)
#: Lowest frequency of pink and brown noise, in Hz.
_NOISE_LOW_HZ = 20.0
#: Direct-path to tail delay of the synthetic room impulse response, in seconds.
_RIR_DELAY_S = 0.001
#: The telephone line's pass band edge (a brick wall, 95 % of its Nyquist).
_TELEPHONE_EDGE_HZ = 0.95 * TELEPHONE_RATE / 2
#: STFT of the vocal-tract warp: 32-ms Hann frames every 8 ms at 16 kHz.
_WARP_FFT = 512
_WARP_HOP = 128
#: Exponents of the noise power spectra 1/f**e: white, pink, brown (babble is handled apart).
_NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"AugmentConfig.{name}: expected (lo, hi) with {low} <= lo <= hi <= {high}, "
                          f"found {value!r}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation step (values are drawn uniformly).

    Attributes:
        speed_prob: Probability of speed perturbation.
        speed_range: Speed factors (> 1 faster and higher), within [0.5, 2].
        warp_prob: Probability of the spectral warp.
        warp_range: Warp factors alpha (> 1 moves spectra up), within [0.7, 1.4].
        warp_cutoff_hz: Frequency up to which the warp is a pure scaling by alpha, in Hz; above
            it the warp bends so that the Nyquist frequency maps to itself.
        reverb_prob: Probability of reverberation.
        rt60_range: Reverberation times in seconds (60-dB decay), within [0.05, 2].
        drr_db_range: Direct-to-reverberant energy ratios in dB, within [-10, 30].
        noise_prob: Probability of additive noise.
        snr_db_range: Signal-to-noise ratios in dB (power of the whole utterance), within [-10, 60].
        noise_kinds: Kinds drawn from, each equally likely (a subset of :data:`NOISE_KINDS`).
        channel_prob: Probability of a channel degradation (telephone band or band limit).
        mulaw_prob: Probability, given a telephone channel, of 8-bit µ-law companding too.
        lowpass_hz_range: Cut-offs of the band limit, in Hz (below Nyquist).
        gain_prob: Probability of a gain change.
        gain_db_range: Gains in dB, within [-40, 40].
        peak_limit: Largest absolute sample of the output, in (0, 1].
        speed_denominator: Speed factors are rounded to fractions n / 20 (0.9, 0.95, 1, 1.05, 1.1 in
            the default range): one polyphase kernel per batch.
    """

    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    warp_prob: float = 0.3
    warp_range: tuple[float, float] = (0.9, 1.1)
    warp_cutoff_hz: float = 4800.0
    reverb_prob: float = 0.3
    rt60_range: tuple[float, float] = (0.1, 0.6)
    drr_db_range: tuple[float, float] = (0.0, 12.0)
    noise_prob: float = 0.5
    snr_db_range: tuple[float, float] = (5.0, 30.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    channel_prob: float = 0.2
    mulaw_prob: float = 0.5
    lowpass_hz_range: tuple[float, float] = (3400.0, 7000.0)
    gain_prob: float = 0.8
    gain_db_range: tuple[float, float] = (-6.0, 6.0)
    peak_limit: float = 0.99
    speed_denominator: int = 20

    def __post_init__(self) -> None:
        for name in ("speed_prob", "warp_prob", "reverb_prob", "noise_prob", "channel_prob", "mulaw_prob",
                     "gain_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"AugmentConfig.{name}: expected a probability in [0, 1], found {value!r}")
        _check_range("speed_range", self.speed_range, 0.5, 2.0)
        _check_range("warp_range", self.warp_range, 0.7, 1.4)
        _check_range("rt60_range", self.rt60_range, 0.05, 2.0)
        _check_range("drr_db_range", self.drr_db_range, -10.0, 30.0)
        _check_range("snr_db_range", self.snr_db_range, -10.0, 60.0)
        _check_range("gain_db_range", self.gain_db_range, -40.0, 40.0)
        nyquist = SAMPLE_RATE / 2
        _check_range("lowpass_hz_range", self.lowpass_hz_range, 1000.0, 0.95 * nyquist)
        if not 0.1 * nyquist <= self.warp_cutoff_hz <= 0.9 * nyquist / self.warp_range[1]:
            raise ConfigError(
                f"AugmentConfig.warp_cutoff_hz: expected {0.1 * nyquist:.0f}..{0.9 * nyquist / self.warp_range[1]:.0f}"
                f" Hz (below Nyquist / max warp), found {self.warp_cutoff_hz!r}"
            )
        if not self.noise_kinds or any(k not in NOISE_KINDS for k in self.noise_kinds):
            raise ConfigError(f"AugmentConfig.noise_kinds: expected a non-empty subset of {NOISE_KINDS}, "
                              f"found {self.noise_kinds!r}")
        if not 0.0 < self.peak_limit <= 1.0:
            raise ConfigError(f"AugmentConfig.peak_limit: expected a level in (0, 1], found {self.peak_limit!r}")
        if not 1 <= self.speed_denominator <= 100:
            raise ConfigError(f"AugmentConfig.speed_denominator: expected 1..100, found {self.speed_denominator}")


def valid_mask(lengths: Tensor, width: int) -> Tensor:
    """(B,) lengths → (B, width) bool, True on valid samples."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def _next_pow2(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator, device: torch.device) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def speed_fraction(factor: float, denominator: int) -> tuple[int, int]:
    """A speed factor as a reduced fraction ``p / q`` with ``q`` dividing ``denominator``."""
    p = max(1, round(factor * denominator))
    g = math.gcd(p, denominator)
    return p // g, denominator // g


def resample_rows(wave: Tensor, lengths: Tensor, p: int, q: int, zeros: int = 4) -> tuple[Tensor, Tensor]:
    """Plays every row ``p / q`` times faster by polyphase windowed-sinc resampling (one `conv1d`).

    Output sample ``m`` is the band-limited value at input time ``m * p / q``; the low-pass cut-off
    is ``min(1, q / p)`` of the input Nyquist (no aliasing when speeding up). Each of the ``q``
    output phases is a fixed kernel applied with stride ``p``.

    Args:
        wave: (B, N) float samples, zero past each length.
        lengths: (B,) valid samples.
        p: Input samples per block.
        q: Output samples per block (``p / q`` is the speed factor).
        zeros: Zero crossings of the Lanczos kernel on each side.

    Returns:
        (B, N) rows (cut to N) and their (B,) lengths ``floor(length * q / p)`` (at most N).
    """
    b, n = wave.shape
    cutoff = min(1.0, q / p) * 0.97  # of the input Nyquist, a little below to leave a transition band
    half = math.ceil(zeros / cutoff)
    r = torch.arange(-half, half + p, device=wave.device, dtype=torch.float64)[None, :]
    x = r - torch.arange(q, device=wave.device, dtype=torch.float64)[:, None] * p / q
    kernel = cutoff * torch.sinc(cutoff * x) * torch.sinc(cutoff * x / zeros) * (x.abs() * cutoff < zeros)
    padded = torch.nn.functional.pad(wave[:, None, :], (half, half + p))
    out = torch.nn.functional.conv1d(padded, kernel.to(wave.dtype)[:, None, :], stride=p)  # (B, q, J)
    out = out.transpose(1, 2).reshape(b, -1)
    out = torch.nn.functional.pad(out, (0, max(0, n - out.shape[1])))[:, :n]
    new_lengths = torch.clamp(torch.div(lengths * q, p, rounding_mode="floor"), max=n)
    return out * valid_mask(new_lengths, n), new_lengths


def _warp_source_bins(alpha: Tensor, cutoff_hz: float, n_fft: int) -> Tensor:
    """(B,) warp factors → (B, F) fractional source bin of each output bin (piecewise-linear VTLN map)."""
    nyquist = SAMPLE_RATE / 2
    f_break = cutoff_hz * torch.clamp(1.0 / alpha, max=1.0)[:, None]  # input frequency of the bend
    out_hz = torch.arange(n_fft // 2 + 1, device=alpha.device, dtype=torch.float32)[None, :] * SAMPLE_RATE / n_fft
    knee = alpha[:, None] * f_break  # output frequency of the bend
    below = out_hz / alpha[:, None]
    above = f_break + (out_hz - knee) * (nyquist - f_break) / (nyquist - knee)
    return torch.where(out_hz <= knee, below, above) * n_fft / SAMPLE_RATE


def warp_rows(wave: Tensor, lengths: Tensor, alpha: Tensor, cutoff_hz: float) -> Tensor:
    """Vocal-tract-like frequency warp of each row by a phase vocoder, duration kept, RMS matched.

    Args:
        wave: (B, N) float samples, zero past each length.
        lengths: (B,) valid samples.
        alpha: (B,) warp factors.
        cutoff_hz: End of the linear part of the warp, in Hz.

    Returns:
        (B, N) warped rows, zero past each length.
    """
    b, n = wave.shape
    window = torch.hann_window(_WARP_FFT, device=wave.device)
    spec = torch.stft(wave, _WARP_FFT, _WARP_HOP, window=window, pad_mode="constant", return_complex=True)  # (B, F, T)
    bins = spec.shape[1]
    src = _warp_source_bins(alpha, cutoff_hz, _WARP_FFT)  # (B, F)
    lo = torch.clamp(torch.floor(src).long(), max=bins - 1)
    hi = torch.clamp(lo + 1, max=bins - 1)
    frac = (src - lo)[:, :, None]
    magnitude = spec.abs()
    frames = magnitude.shape[2]
    take = lambda x, i: x.gather(1, i[:, :, None].expand(-1, -1, frames))  # noqa: E731
    warped = take(magnitude, lo) * (1 - frac) + take(magnitude, hi) * frac
    nearest = torch.clamp(torch.round(src).long(), max=bins - 1)
    phase = take(spec.angle(), nearest)
    bin_rad = (2 * math.pi / _WARP_FFT * nearest.float())[:, :, None]
    deviation = torch.diff(phase, dim=2, prepend=phase[:, :, :1]) - bin_rad * _WARP_HOP
    deviation = deviation - 2 * math.pi * torch.round(deviation / (2 * math.pi))
    inst = bin_rad + deviation / _WARP_HOP
    f_break = (cutoff_hz * torch.clamp(1.0 / alpha, max=1.0) * 2 * math.pi / SAMPLE_RATE)[:, None, None]
    a = alpha[:, None, None]
    slope = (math.pi - a * f_break) / (math.pi - f_break)
    inst_out = torch.where(inst <= f_break, a * inst, a * f_break + (inst - f_break) * slope)
    step = inst_out * _WARP_HOP
    step = step - 2 * math.pi * torch.floor(step / (2 * math.pi))  # wrapped increments keep the sum small
    step = torch.cat([phase[:, :, :1], step[:, :, 1:]], dim=2)
    # float32 sum: < 2π per frame, so after 2,000 frames (16 s) the phase is off by ~1e-3 rad at most.
    out_phase = torch.cumsum(step, dim=2)
    out = torch.istft(torch.polar(warped, out_phase), _WARP_FFT, _WARP_HOP, window=window, length=n)
    valid = valid_mask(lengths, n)
    out = out * valid
    energy_in = (wave * wave).sum(1)
    energy_out = (out * out).sum(1)
    return out * torch.sqrt(energy_in / energy_out.clamp(min=1e-12))[:, None]


def room_impulse_responses(rt60_s: Tensor, drr_db: Tensor, gen: torch.Generator, max_rt60_s: float) -> Tensor:
    """Synthetic room impulse responses, one a row: a direct path and a decaying Gaussian tail.

    Args:
        rt60_s: (B,) reverberation times in seconds.
        drr_db: (B,) direct-to-reverberant energy ratios in dB.
        gen: Random generator on the device.
        max_rt60_s: Longest RT60 (sets the width).

    Returns:
        (B, L) float32 responses of unit energy, ``L = 1 ms + max_rt60_s`` at 16 kHz.
    """
    b = rt60_s.shape[0]
    delay = max(1, int(_RIR_DELAY_S * SAMPLE_RATE))
    length = max(2, int(max_rt60_s * SAMPLE_RATE))
    t = torch.arange(length, device=rt60_s.device, dtype=torch.float32)[None, :] / SAMPLE_RATE
    envelope = torch.exp(-_LN_1000 * t / rt60_s[:, None]) * (t < rt60_s[:, None])
    tail = torch.randn((b, length), generator=gen, device=rt60_s.device) * envelope
    tail = tail * torch.sqrt(10.0 ** (-drr_db / 10.0) / (tail * tail).sum(1).clamp(min=1e-12))[:, None]
    h = torch.cat([torch.ones(b, 1, device=rt60_s.device), torch.zeros(b, delay - 1, device=rt60_s.device), tail], 1)
    return h / torch.sqrt((h * h).sum(1, keepdim=True))


def fft_convolve_rows(wave: Tensor, kernel: Tensor) -> Tensor:
    """Row-wise linear convolution by FFT, cut to the input width: (B, N) * (B, L) → (B, N)."""
    n = wave.shape[1]
    size = _next_pow2(n + kernel.shape[1] - 1)
    y = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(kernel, size), size)
    return y[:, :n]


def mulaw_roundtrip(x: Tensor) -> Tensor:
    """Compands samples in [-1, 1] to 8-bit µ-law codes and back (G.711)."""
    x = x.clamp(-1.0, 1.0)
    code = torch.round(torch.sign(x) * torch.log1p(MULAW_MU * x.abs()) / math.log1p(MULAW_MU) * 127.0)
    return torch.sign(code) * torch.expm1(code.abs() / 127.0 * math.log1p(MULAW_MU)) / MULAW_MU


@dataclasses.dataclass(frozen=True)
class SpeedDraw:
    """The speed step of one batch, decided on the host."""

    rows: np.ndarray
    """(K,) int64 rows played faster or slower (all by ``p / q``)."""
    p: int
    q: int
    lengths: np.ndarray
    """(B,) int64 valid samples of every row after the step."""


class Augmenter:
    """Applies the random chain of the module docstring to a padded batch, on its device.

    Args:
        config: Probabilities and ranges.
        device: Where the batches live (draws are made there).
        seed: Seed of the device generator and of the host generator of the subset sizes.

    Example:
        >>> aug = Augmenter(AugmentConfig(), torch.device("cpu"), seed=0)
        >>> wave, lengths = aug(torch.randn(4, 32000) * 0.1, torch.tensor([32000, 30000, 20000, 16000]))
    """

    def __init__(self, config: AugmentConfig, device: torch.device, seed: int = 0) -> None:
        self.config = config
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.host = random.Random(seed)
        colours = [_NOISE_EXPONENTS[name] for name in config.noise_kinds if name != "babble"]
        self._colours = torch.tensor(colours or [0.0], device=device)  # made once: no per-step copy

    def _rows(self, prob: float, b: int) -> Tensor | None:
        """A random subset of about ``prob * b`` rows (stochastic rounding on the host), or None."""
        k = self._count(prob, b)
        return None if k == 0 else torch.randperm(b, generator=self.gen, device=self.device)[:k]

    def _count(self, prob: float, b: int) -> int:
        want = prob * b
        return int(want) + (self.host.random() < want - int(want))

    def _u(self, k: int, lo_hi: tuple[float, float]) -> Tensor:
        return _uniform((k,), lo_hi[0], lo_hi[1], self.gen, self.device)

    def draw_speed(self, lengths: np.ndarray, width: int) -> SpeedDraw:
        """Decides the speed step of a batch on the host, where the lengths are known.

        Rows whose slowed-down length would exceed ``width`` are left out, so every length after
        the step is a host fact (the loss needs lengths on the host; reading them back from the
        device would stall the pipeline every step).

        Args:
            lengths: (B,) valid samples of each row before the step.
            width: Batch width N.
        """
        b = len(lengths)
        p, q = speed_fraction(self.host.uniform(*self.config.speed_range), self.config.speed_denominator)
        k = self._count(self.config.speed_prob, b)
        chosen = np.array(sorted(self.host.sample(range(b), k)), dtype=np.int64)
        chosen = chosen[(lengths[chosen] * q) // p <= width] if p != q else chosen[:0]
        after = np.asarray(lengths, dtype=np.int64).copy()
        after[chosen] = (after[chosen] * q) // p
        return SpeedDraw(chosen, p, q, after)

    def __call__(self, wave: Tensor, lengths: Tensor, speed: SpeedDraw | None = None,
                 speed_rows: Tensor | None = None, lengths_after: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Augments a batch.

        Args:
            wave: (B, N) float32 samples on the device, zero past each length.
            lengths: (B,) int64 valid samples on the device.
            speed: The batch's `draw_speed` (None: drawn here from ``lengths``, which reads them
                back from the device once).
            speed_rows: ``speed.rows`` already on the device (else copied here).
            lengths_after: ``speed.lengths`` already on the device (else copied here).

        Returns:
            The augmented (B, N) batch (zero past each new length, peak at most ``peak_limit``) and
            its (B,) lengths (changed by speed only; equal to ``speed.lengths``).
        """
        c = self.config
        b, n = wave.shape
        wave = wave.clone()
        if speed is None:
            speed = self.draw_speed(lengths.cpu().numpy(), n)
        if speed_rows is None:
            speed_rows = torch.from_numpy(speed.rows).to(self.device)
        if lengths_after is None:
            lengths_after = torch.from_numpy(speed.lengths).to(self.device)
        if len(speed.rows):
            wave[speed_rows] = resample_rows(wave[speed_rows], lengths[speed_rows], speed.p, speed.q)[0]
        lengths = lengths_after
        if (rows := self._rows(c.warp_prob, b)) is not None:
            wave[rows] = warp_rows(wave[rows], lengths[rows], self._u(len(rows), c.warp_range), c.warp_cutoff_hz)
        if (rows := self._rows(c.reverb_prob, b)) is not None:
            h = room_impulse_responses(self._u(len(rows), c.rt60_range), self._u(len(rows), c.drr_db_range),
                                       self.gen, c.rt60_range[1])
            wave[rows] = fft_convolve_rows(wave[rows], h) * valid_mask(lengths[rows], n)
        if (rows := self._rows(c.noise_prob, b)) is not None:
            wave[rows] = self._noisy(wave, lengths, rows)
        if (rows := self._rows(c.channel_prob, b)) is not None:
            wave[rows] = self._channel(wave[rows], lengths[rows])
        gain_db = self._u(b, c.gain_db_range)
        use = torch.rand(b, generator=self.gen, device=self.device) < c.gain_prob
        wave = wave * torch.where(use, 10.0 ** (gain_db / 20.0), 1.0)[:, None]
        peak = wave.abs().amax(1)
        wave = wave * torch.clamp(c.peak_limit / peak.clamp(min=1e-12), max=1.0)[:, None]
        return wave, lengths

    def _noisy(self, wave: Tensor, lengths: Tensor, rows: Tensor) -> Tensor:
        """Rows ``rows`` of ``wave`` plus noise of a random kind each, at a random SNR.

        The kinds are drawn on the host: the first rows of the (random) subset get babble, the
        others coloured noise, so each kind is computed only for its own rows.
        """
        c = self.config
        b, n = wave.shape
        k = len(rows)
        dev = self.device
        kb = sum(self.host.choice(c.noise_kinds) == "babble" for _ in range(k))
        parts = []
        if kb:
            parts.append(self._babble(wave, lengths, rows[:kb]))
        if kb < k:
            # Coloured noise: Gaussian noise shaped by f**(-e/2) above 20 Hz (white: unshaped).
            size = _next_pow2(n)
            spectrum = torch.fft.rfft(torch.randn((k - kb, size), generator=self.gen, device=dev))
            freqs = torch.fft.rfftfreq(size, 1.0 / SAMPLE_RATE, device=dev)[None, :]
            pick = torch.randint(len(self._colours), (k - kb, 1), generator=self.gen, device=dev)
            exponent = self._colours[pick]
            shape = torch.where(freqs >= _NOISE_LOW_HZ, freqs.clamp(min=_NOISE_LOW_HZ) ** (-exponent / 2), 0.0)
            shape = torch.where(exponent == 0, 1.0, shape)
            parts.append(torch.fft.irfft(spectrum * shape, size)[:, :n])
        x = wave[rows]
        noise = (parts[0] if len(parts) == 1 else torch.cat(parts)) * valid_mask(lengths[rows], n)
        signal_power = (x * x).sum(1) / lengths[rows].clamp(min=1)
        noise_power = (noise * noise).sum(1) / lengths[rows].clamp(min=1)
        snr_db = self._u(k, c.snr_db_range)
        scale = torch.sqrt(signal_power / (noise_power.clamp(min=1e-20) * 10.0 ** (snr_db / 10.0)))
        return x + noise * scale[:, None]

    def _babble(self, wave: Tensor, lengths: Tensor, rows: Tensor) -> Tensor:
        """Babble for ``rows``: 3–6 time-reversed, circularly shifted other rows of the batch, weighted 0.5–1."""
        b, n = wave.shape
        k = len(rows)
        dev = self.device
        reversed_rows = self._reversed(wave, lengths)
        babble = torch.zeros(k, n, device=dev)
        pos = torch.arange(n, device=dev, dtype=torch.float32)[None, :]
        for j in range(6):
            other = (rows + torch.randint(1, max(2, b), (k,), generator=self.gen, device=dev)) % b
            src_len = lengths[other].clamp(min=1)[:, None].float()
            at = pos + torch.floor(torch.rand((k, 1), generator=self.gen, device=dev) * src_len)
            at = at - src_len * torch.floor(at / src_len)  # circular shift (exact in float32 below 2**24)
            weight = _uniform((k, 1), 0.5, 1.0, self.gen, dev)
            if j >= 3:  # copies 4-6 each present with probability 1/2: 3-6 in all
                weight = weight * (torch.rand((k, 1), generator=self.gen, device=dev) < 0.5)
            babble = babble + weight * reversed_rows[other].gather(1, at.long())
        return babble

    @staticmethod
    def _reversed(wave: Tensor, lengths: Tensor) -> Tensor:
        """Each row's valid samples in reverse order, from position 0."""
        n = wave.shape[1]
        idx = (lengths[:, None] - 1 - torch.arange(n, device=wave.device)[None, :]).clamp(min=0)
        return wave.gather(1, idx) * valid_mask(lengths, n)

    def _channel(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Telephone line or band limit per row (rate and length kept)."""
        c = self.config
        k, n = x.shape
        dev = self.device
        telephone = torch.rand(k, generator=self.gen, device=dev) < 0.5
        cutoff = torch.where(telephone, _TELEPHONE_EDGE_HZ, self._u(k, c.lowpass_hz_range))
        freqs = torch.fft.rfftfreq(n, 1.0 / SAMPLE_RATE, device=dev)[None, :]
        narrow = torch.fft.irfft(torch.fft.rfft(x) * (freqs <= cutoff[:, None]), n)
        # µ-law at 8 kHz: every other sample of the band-limited row, companded, then interpolated
        # back by zero-padding its spectrum (exact band-limited upsampling by 2).
        half = (n + 1) // 2
        coded = mulaw_roundtrip(narrow[:, ::2])
        up = torch.fft.irfft(torch.fft.rfft(coded), half * 2) * 2.0
        up = torch.nn.functional.pad(up, (0, max(0, n - up.shape[1])))[:, :n]
        mulaw = telephone & (torch.rand(k, generator=self.gen, device=dev) < c.mulaw_prob)
        return torch.where(mulaw[:, None], up, narrow) * valid_mask(lengths, n)
