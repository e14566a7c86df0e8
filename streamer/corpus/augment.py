"""Online waveform augmentation for training on synthetic speech (numpy + soxr only).

The training loop calls an :class:`Augmenter` on every utterance it loads, so each epoch hears
a different version of each file. The steps, in order, each applied with its own probability:

1. **speed** (:func:`speed_perturb`): resampling by a factor in 0.9–1.1. Duration, pitch and
   formants all change together, as in Kaldi's 3-way speed perturbation.
2. **spectral warp** (:func:`spectral_warp`): a VTLP-style piecewise-linear warp of the STFT
   magnitude along frequency, duration kept.
3. **reverb** (:func:`add_reverb`): FFT convolution with a synthetic room impulse response
   (direct path plus exponentially decaying noise, RT60 0.1–0.6 s).
4. **noise** (:func:`add_noise`): white, pink, brown, or babble-like noise made from the
   utterance itself, at an SNR of 5–30 dB.
5. **channel** (:func:`degrade_channel`): a telephone line (8-kHz band, optionally 8-bit µ-law
   companding) or a band limit by a random low-pass between 3.4 and 7 kHz.
6. **gain** (:func:`apply_gain`): ±6 dB.
7. **peak limit** (:func:`limit_peak`): the whole utterance is scaled down if its peak exceeds
   ``peak_limit``, so no sample clips (a scale, never a hard clip).

All randomness comes from one ``numpy.random.Generator``: an :class:`Augmenter` with a given seed
produces the same sequence of outputs for the same sequence of inputs. When several data-loader
workers each hold a copy, give each its own seed (e.g. ``base_seed + worker_id``), or they repeat
one another. Measured cost: a few milliseconds per 3-s utterance at 16 kHz on one core.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from streamer.constants import SAMPLE_RATE
from streamer.errors import AudioError, ConfigError


def _resample(wave: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """soxr resampling, imported here so that `AugmentConfig` loads without soxr (GPU machines)."""
    import soxr

    return np.asarray(soxr.resample(wave, rate_in, rate_out, quality="MQ"), dtype=np.float32)

#: Noise kinds :func:`make_noise` can produce.
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "babble")

#: Lowest frequency of pink and brown noise, in Hz (below it their 1/f spectra are rumble).
_NOISE_LOW_HZ = 20.0
#: STFT of the spectral warp: 32-ms Hann frames every 8 ms at 16 kHz.
_WARP_FFT = 512
_WARP_HOP = 128
#: RT60 decay: exp(-ln(1000) t / RT60) is 60 dB down at t = RT60.
_LN_1000 = float(np.log(1000.0))


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"AugmentConfig.{name}: expected (lo, hi) with {low} <= lo <= hi <= {high}, "
                          f"found {value!r}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation step (values are drawn uniformly).

    Attributes:
        sample_rate: Rate of the audio, in Hz.
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
    """

    sample_rate: int = SAMPLE_RATE
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

    def __post_init__(self) -> None:
        if self.sample_rate < 4000:
            raise ConfigError(f"AugmentConfig.sample_rate: expected >= 4000 Hz, found {self.sample_rate!r}")
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
        nyquist = self.sample_rate / 2
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


# ---------------------------------------------------------------------------------------------
# Steps (pure functions; randomness only through an explicit generator)


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Plays ``wave`` ``factor`` times faster by resampling (pitch and formants move with it).

    Args:
        wave: Mono float32 samples.
        factor: Speed factor; 1.1 gives 1/1.1 of the samples, 10% higher in frequency.
        sample_rate: Rate of ``wave`` in Hz (the output keeps it).

    Returns:
        ``round(len(wave) / factor)`` samples (±1), float32.
    """
    if factor == 1.0:
        return wave
    return _resample(wave, sample_rate * factor, sample_rate)


def _warp_source_bins(alpha: float, cutoff_hz: float, sample_rate: int, n_fft: int) -> np.ndarray:
    """For each output STFT bin, the (fractional) input bin its magnitude comes from."""
    nyquist = sample_rate / 2
    # Forward map: f -> alpha * f below the break, then linear up to (nyquist, nyquist).
    f_break = cutoff_hz * min(1.0, 1.0 / alpha)
    out_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    src_hz = np.interp(out_hz, [0.0, alpha * f_break, nyquist], [0.0, f_break, nyquist])
    return src_hz * n_fft / sample_rate


def spectral_warp(wave: np.ndarray, alpha: float, sample_rate: int = SAMPLE_RATE,
                  cutoff_hz: float = 4800.0) -> np.ndarray:
    """Warps the frequency axis of the short-time spectrum, keeping the duration (VTLP-like).

    What it really does: each 32-ms STFT frame's magnitude is resampled along frequency by the
    piecewise-linear VTLN map (``f -> alpha * f`` up to ``cutoff_hz``, then bent so that Nyquist
    stays put); a phase vocoder gives each output bin the instantaneous frequency of its source
    bin mapped through the same warp, and the frames are overlap-added. Formants *and* harmonics
    move by ``alpha``, so it sounds like a different vocal-tract length together with a different
    pitch, at the same speaking rate. It is the waveform counterpart of VTLP (which warps
    filterbank features), not a physical vocal-tract model, and like any phase vocoder it smears
    transients a little ("phasiness"). The output RMS is matched to the input.

    Args:
        wave: Mono float32 samples.
        alpha: Warp factor (> 1 moves spectral content up).
        sample_rate: Rate of ``wave`` in Hz.
        cutoff_hz: End of the linear part of the warp, in Hz.

    Returns:
        ``len(wave)`` float32 samples.
    """
    n = len(wave)
    if alpha == 1.0 or n == 0:
        return wave
    n_fft, hop = _WARP_FFT, _WARP_HOP
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    pad = n_fft // 2
    n_frames = (n + 2 * pad - n_fft) // hop + 2
    padded = np.zeros((n_frames - 1) * hop + n_fft)  # float64: numpy's float32 FFT is slower
    padded[pad:pad + n] = wave
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames] * window
    spec = np.fft.rfft(frames, axis=1)
    magnitude = np.abs(spec)
    src = _warp_source_bins(alpha, cutoff_hz, sample_rate, n_fft)
    lo = np.minimum(np.floor(src).astype(np.int64), n_fft // 2)
    hi = np.minimum(lo + 1, n_fft // 2)
    frac = src - lo
    warped = magnitude[:, lo] * (1.0 - frac) + magnitude[:, hi] * frac
    # Phase vocoder: each output bin takes the instantaneous frequency of its source bin, mapped
    # through the warp, and accumulates phase at that frequency from frame to frame.
    nearest = np.minimum(np.rint(src).astype(np.int64), n_fft // 2)
    phase = np.angle(spec[:, nearest])
    bin_rad = 2.0 * np.pi / n_fft * nearest  # centre frequency of each source bin, rad/sample
    deviation = np.diff(phase, axis=0, prepend=phase[:1]) - bin_rad * hop
    deviation -= 2.0 * np.pi * np.round(deviation / (2.0 * np.pi))
    inst = bin_rad + deviation / hop
    f_break = cutoff_hz * min(1.0, 1.0 / alpha) * 2.0 * np.pi / sample_rate
    slope = (np.pi - alpha * f_break) / (np.pi - f_break)
    inst_out = np.where(inst <= f_break, alpha * inst, alpha * f_break + (inst - f_break) * slope)
    step = inst_out * hop
    step -= 2.0 * np.pi * np.floor(step / (2.0 * np.pi))  # wrapped increments keep the sum small
    step[0] = phase[0]
    out_phase = np.cumsum(step, axis=0)
    out_phase = (out_phase - 2.0 * np.pi * np.floor(out_phase / (2.0 * np.pi))).astype(np.float32)
    rotated = np.empty(warped.shape, dtype=np.complex128)
    rotated.real = warped * np.cos(out_phase)  # float32 cos/sin: several times faster here
    rotated.imag = warped * np.sin(out_phase)
    out_frames = np.fft.irfft(rotated, n=n_fft, axis=1) * window
    # Overlap-add in n_fft / hop strided passes, and the same for the squared window.
    ratio = n_fft // hop
    blocks = np.zeros((n_frames + ratio - 1, hop))
    norm = np.zeros_like(blocks)
    squared = window * window
    for j in range(ratio):
        blocks[j:j + n_frames] += out_frames[:, j * hop:(j + 1) * hop]
        norm[j:j + n_frames] += squared[j * hop:(j + 1) * hop]
    out = blocks.reshape(-1)[pad:pad + n] / np.maximum(norm.reshape(-1)[pad:pad + n], 1e-3)
    in_rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    out_rms = float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
    if out_rms > 0.0:
        out *= in_rms / out_rms
    return out.astype(np.float32)


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return y[: len(x)]


def room_impulse_response(rt60_s: float, drr_db: float, rng: np.random.Generator,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Builds a synthetic room impulse response: a direct path and a decaying noise tail.

    The tail is Gaussian noise under an envelope that falls 60 dB in ``rt60_s`` seconds and
    lasts ``rt60_s``; it starts 1 ms after the direct path. The tail's energy is ``drr_db`` below
    the direct path's, and the whole response has unit energy.

    Args:
        rt60_s: Reverberation time in seconds.
        drr_db: Direct-to-reverberant energy ratio in dB.
        rng: Random generator.
        sample_rate: Rate in Hz.

    Returns:
        float32 impulse response, ``1 ms + rt60_s`` long.
    """
    delay = max(1, int(0.001 * sample_rate))
    length = max(2, int(rt60_s * sample_rate))
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-_LN_1000 * t / rt60_s)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail * tail))
    h = np.zeros(delay + length)
    h[0] = 1.0
    h[delay:] = tail
    h /= np.sqrt(np.sum(h * h))
    return h.astype(np.float32)


def add_reverb(wave: np.ndarray, rt60_s: float, drr_db: float, rng: np.random.Generator,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Convolves ``wave`` with :func:`room_impulse_response` (FFT), keeping its length.

    The tail that rings past the end is cut, so labels and lengths stay aligned.

    Returns:
        ``len(wave)`` float32 samples.
    """
    if len(wave) == 0:
        return wave
    h = room_impulse_response(rt60_s, drr_db, rng, sample_rate)
    return _fft_convolve(wave.astype(np.float64), h.astype(np.float64)).astype(np.float32)


def _colored_noise(n: int, exponent: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Gaussian noise with a power spectrum proportional to 1 / f**exponent above 20 Hz."""
    size = 1 << max(1, (n - 1).bit_length())
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    shape = np.zeros_like(freqs)
    keep = freqs >= _NOISE_LOW_HZ
    shape[keep] = freqs[keep] ** (-exponent / 2.0)
    return np.fft.irfft(spectrum * shape, size)[:n]


def make_noise(kind: str, n: int, rng: np.random.Generator, wave: np.ndarray | None = None,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Makes ``n`` samples of noise of one kind (unscaled).

    Kinds: ``white`` (flat spectrum), ``pink`` (power ~ 1/f), ``brown`` (power ~ 1/f²), both
    above 20 Hz; ``babble``: the sum of 3–6 copies of ``wave`` itself, each time-reversed (so the
    babble holds no words of the label), circularly shifted by a random offset and given a random
    weight of 0.5–1 — speech-shaped, speech-modulated, unintelligible.

    Args:
        kind: One of :data:`NOISE_KINDS`.
        n: Number of samples.
        rng: Random generator.
        wave: The utterance (needed for ``babble``).
        sample_rate: Rate in Hz.

    Returns:
        float64 noise of length ``n``.
    """
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return _colored_noise(n, 1.0, rng, sample_rate)
    if kind == "brown":
        return _colored_noise(n, 2.0, rng, sample_rate)
    if kind == "babble":
        if wave is None or len(wave) == 0:
            raise ConfigError("make_noise: expected the utterance for 'babble' noise, found none")
        source = np.resize(wave[::-1].astype(np.float64), n)
        noise = np.zeros(n)
        for _ in range(int(rng.integers(3, 7))):
            noise += float(rng.uniform(0.5, 1.0)) * np.roll(source, int(rng.integers(0, n)))
        return noise
    raise ConfigError(f"noise kind: expected one of {NOISE_KINDS}, found {kind!r}")


def add_noise(wave: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator,
              sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Adds noise so that 10·log10(P_wave / P_noise) equals ``snr_db`` exactly.

    Powers are means over the whole utterance. A silent (all-zero) ``wave`` is returned as is,
    since no SNR can be defined for it.

    Args:
        wave: Mono float32 samples.
        snr_db: Signal-to-noise ratio in dB.
        kind: One of :data:`NOISE_KINDS`.
        rng: Random generator.
        sample_rate: Rate in Hz.

    Returns:
        ``len(wave)`` float32 samples.
    """
    signal_power = float(np.mean(np.square(wave, dtype=np.float64))) if len(wave) else 0.0
    if signal_power == 0.0:
        return wave
    noise = make_noise(kind, len(wave), rng, wave, sample_rate)
    noise_power = float(np.mean(noise * noise))
    if noise_power == 0.0:
        return wave
    noise *= np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (wave + noise).astype(np.float32)


#: Telephone line rate, in Hz, and the µ-law constant of G.711.
TELEPHONE_RATE = 8000
MULAW_MU = 255.0


def mulaw_roundtrip(wave: np.ndarray) -> np.ndarray:
    """Compands ``wave`` (in [-1, 1]) to 8-bit µ-law codes and back, as a G.711 line would."""
    x = np.clip(wave, -1.0, 1.0)
    code = np.round(np.sign(x) * np.log1p(MULAW_MU * np.abs(x)) / np.log1p(MULAW_MU) * 127.0)
    y = np.sign(code) * np.expm1(np.abs(code) / 127.0 * np.log1p(MULAW_MU)) / MULAW_MU
    return y.astype(np.float32)


def degrade_channel(wave: np.ndarray, kind: str, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
                    mulaw_prob: float = 0.5, lowpass_hz_range: tuple[float, float] = (3400.0, 7000.0)) -> np.ndarray:
    """Passes ``wave`` through a narrower channel; the rate and length are kept.

    Args:
        wave: Mono float32 samples.
        kind: ``"telephone"`` (down to 8 kHz and back, optionally µ-law) or ``"lowpass"`` (a
            brick-wall FFT low-pass at a cut-off drawn from ``lowpass_hz_range``).
        rng: Random generator.
        sample_rate: Rate of ``wave`` in Hz.
        mulaw_prob: Probability of µ-law companding on a telephone line.
        lowpass_hz_range: Cut-off range of the low-pass, in Hz.

    Returns:
        ``len(wave)`` float32 samples.
    """
    n = len(wave)
    if n == 0:
        return wave
    if kind == "telephone":
        if sample_rate <= TELEPHONE_RATE:
            return wave
        narrow = _resample(wave, sample_rate, TELEPHONE_RATE)
        if rng.random() < mulaw_prob:
            narrow = mulaw_roundtrip(narrow)
        out = _resample(narrow, TELEPHONE_RATE, sample_rate)
        if len(out) < n:
            out = np.pad(out, (0, n - len(out)))
        return out[:n]
    if kind == "lowpass":
        cutoff = float(rng.uniform(*lowpass_hz_range))
        spec = np.fft.rfft(wave.astype(np.float64))
        spec[int(cutoff / sample_rate * n) + 1:] = 0.0
        return np.fft.irfft(spec, n).astype(np.float32)
    raise ConfigError(f"degrade_channel: expected kind 'telephone' or 'lowpass', found {kind!r}")


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Scales ``wave`` by ``gain_db`` decibels; returns float32."""
    return (wave * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)


def limit_peak(wave: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scales ``wave`` down (never up) so that its largest absolute sample is at most ``peak``."""
    top = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if top > peak:
        return (wave * np.float32(peak / top)).astype(np.float32, copy=False)
    return wave


# ---------------------------------------------------------------------------------------------


class Augmenter:
    """Applies the configured random augmentation chain to one utterance per call.

    Args:
        config: Probabilities and ranges.
        seed: Seed of the internal ``numpy.random.Generator``; equal seeds give equal outputs
            for equal input sequences.

    Example:
        >>> augment = Augmenter(AugmentConfig(), seed=0)
        >>> noisy = augment(np.zeros(16000, np.float32) + 0.1)
    """

    def __init__(self, config: AugmentConfig = AugmentConfig(), seed: int = 0) -> None:
        self.config = config
        self._rng = np.random.default_rng(seed)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """Augments ``wave`` with the internal generator (see :meth:`apply`)."""
        return self.apply(wave, self._rng)

    def apply(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augments ``wave`` with draws from ``rng`` (the input is not modified).

        Args:
            wave: Mono samples, 1-D float32 (or float64) at ``config.sample_rate``.
            rng: Random generator.

        Returns:
            A new float32 array; its length differs from the input only by speed perturbation,
            its peak is at most ``config.peak_limit`` and every sample is finite.

        Raises:
            AudioError: ``wave`` is not 1-D float audio or holds NaN/inf.
        """
        wave = np.asarray(wave)
        if wave.ndim != 1 or wave.dtype.kind != "f":
            raise AudioError(f"Augmenter input: expected 1-D float samples, found shape {wave.shape}, "
                             f"dtype {wave.dtype}")
        if not np.all(np.isfinite(wave)):
            raise AudioError("Augmenter input: expected finite samples, found NaN or inf")
        c, sr = self.config, self.config.sample_rate
        out = wave.astype(np.float32, copy=True)
        if rng.random() < c.speed_prob:
            out = speed_perturb(out, float(rng.uniform(*c.speed_range)), sr)
        if rng.random() < c.warp_prob:
            out = spectral_warp(out, float(rng.uniform(*c.warp_range)), sr, c.warp_cutoff_hz)
        if rng.random() < c.reverb_prob:
            out = add_reverb(out, float(rng.uniform(*c.rt60_range)), float(rng.uniform(*c.drr_db_range)),
                             rng, sr)
        if rng.random() < c.noise_prob:
            kind = c.noise_kinds[int(rng.integers(len(c.noise_kinds)))]
            out = add_noise(out, float(rng.uniform(*c.snr_db_range)), kind, rng, sr)
        if rng.random() < c.channel_prob:
            kind = "telephone" if rng.random() < 0.5 else "lowpass"
            out = degrade_channel(out, kind, rng, sr, c.mulaw_prob, c.lowpass_hz_range)
        if rng.random() < c.gain_prob:
            out = apply_gain(out, float(rng.uniform(*c.gain_db_range)))
        return limit_peak(out, c.peak_limit)
