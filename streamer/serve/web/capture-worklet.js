// Microphone capture for streamer serve's page: the AudioContext's samples (mono, any rate)
// resampled to 16 kHz with a windowed-sinc low-pass, posted to the page as 0.1-s int16 frames.
//
// Messages to the page: an ArrayBuffer per frame (1600 little-endian int16 samples, fewer for the
// last one), and {flushed: true} after a "flush" request has posted what was left.

const OUT_RATE = 16000;
const FRAME = 1600;        // 0.1 s at 16 kHz
const TAPS_PER_SIDE = 8;   // zero crossings of the sinc on each side, in output samples

class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate;                        // input samples per output sample
    this.passthrough = inRate === outRate;
    this.cutoff = 0.5 * Math.min(1, outRate / inRate) * 0.92;  // cycles per input sample, below the new Nyquist
    this.half = Math.ceil(TAPS_PER_SIDE * Math.max(1, this.step));
    this.buf = new Float32Array(4096);
    this.len = 0;          // samples held in buf
    this.pos = 0;          // input position (in buf) of the next output sample
  }

  kernel(x) {              // Blackman-windowed sinc, x in input samples
    const u = x / this.half;
    if (u <= -1 || u >= 1) return 0;
    const w = 0.42 + 0.5 * Math.cos(Math.PI * u) + 0.08 * Math.cos(2 * Math.PI * u);
    const a = 2 * Math.PI * this.cutoff * x;
    return w * (x === 0 ? 1 : Math.sin(a) / a);
  }

  push(input, out) {       // appends input samples; pushes output samples onto `out` (an array)
    if (this.passthrough) { for (const v of input) out.push(v); return; }
    if (this.len + input.length > this.buf.length) {
      const grown = new Float32Array(2 * (this.len + input.length));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    while (this.pos + this.half < this.len) {
      const centre = Math.floor(this.pos);
      let sum = 0, norm = 0;
      for (let k = centre - this.half + 1; k <= centre + this.half; k++) {
        const h = this.kernel(this.pos - k);
        norm += h;
        if (k >= 0) sum += this.buf[k] * h;
      }
      out.push(sum / norm);
      this.pos += this.step;
    }
    const drop = Math.max(0, Math.floor(this.pos) - this.half);   // keep what later outputs still need
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.pos -= drop;
    }
  }
}

class Capture16k extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, OUT_RATE);   // sampleRate: the context's, a worklet global
    this.pending = [];
    this.port.onmessage = (e) => {
      if (e.data === "flush") {
        this.post(true);
        this.port.postMessage({ flushed: true });
      }
    };
  }

  post(all) {
    while (this.pending.length >= FRAME || (all && this.pending.length > 0)) {
      const n = Math.min(FRAME, this.pending.length);
      const frame = new Int16Array(n);
      for (let i = 0; i < n; i++) {
        frame[i] = Math.max(-32768, Math.min(32767, Math.round(this.pending[i] * 32768)));  // v / 32768 on the wire
      }
      this.pending.splice(0, n);
      this.port.postMessage(frame.buffer, [frame.buffer]);
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      let mono = input[0];
      if (input.length > 1) {                               // average the channels
        mono = new Float32Array(input[0].length);
        for (const ch of input) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / input.length;
      }
      this.resampler.push(mono, this.pending);
      this.post(false);
    }
    return true;
  }
}

registerProcessor("capture-16k", Capture16k);
