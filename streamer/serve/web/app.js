// streamer serve's page: microphone -> AudioWorklet (16 kHz int16 frames) -> WebSocket (docs/protocol.md),
// partials shown as they change, finals listed below with word times on hover.
//
// document.body.dataset.state follows the session: idle, connecting, streaming, ending, closed.

"use strict";

const PROTOCOL_VERSION = 1;
const $ = (id) => document.getElementById(id);
let session = null;

function setState(state, detail) {
  document.body.dataset.state = state;
  $("status").textContent = detail ? `${state}: ${detail}` : state;
  $("start").textContent = state === "streaming" || state === "connecting" ? "Stop" : "Start";
  $("start").classList.toggle("live", state === "streaming");
}

function showPartial(message) {
  const key = message.committed + "\u0000" + message.tentative;
  if (key === showPartial.last) return;            // only when it changed
  showPartial.last = key;
  $("partial").querySelector(".committed").textContent = message.committed;
  $("partial").querySelector(".tentative").textContent = message.tentative;
}

function addFinal(message) {
  const row = document.createElement("div");
  row.className = "final";
  row.dataset.text = message.text;
  const span = document.createElement("span");
  span.className = "span";
  span.textContent = `${message.start.toFixed(2)}–${message.end.toFixed(2)} s`;
  row.appendChild(span);
  message.words.forEach((w, i) => {
    if (i > 0) row.appendChild(document.createTextNode(" "));
    const word = document.createElement("span");
    word.className = "word";
    word.textContent = w.text;
    word.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s` +
      (w.confidence === null ? "" : `, confidence ${w.confidence.toFixed(2)}`);
    row.appendChild(word);
  });
  if (message.words.length === 0) row.appendChild(document.createTextNode(message.text));
  $("finals").appendChild(row);
  showPartial({ committed: "", tentative: "" });
}

async function start() {
  setState("connecting");
  const s = { ws: null, ctx: null, media: null, node: null, ended: false, ready: false, queued: [] };
  session = s;
  try {
    s.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    s.ctx = new AudioContext();
    await s.ctx.audioWorklet.addModule("capture-worklet.js");
    // Capture starts now; frames wait in `queued` until the server is ready, so nothing said is lost.
    const source = s.ctx.createMediaStreamSource(s.media);
    s.node = new AudioWorkletNode(s.ctx, "capture-16k");
    s.node.port.onmessage = (m) => {
      if (m.data instanceof ArrayBuffer) {
        if (!s.ready) s.queued.push(m.data);
        else if (s.ws.readyState === WebSocket.OPEN && !s.ended) s.ws.send(m.data);
      } else if (m.data.flushed && s.ws && s.ws.readyState === WebSocket.OPEN) {
        s.queued.forEach((frame) => s.ws.send(frame));
        s.queued = [];
        s.ws.send(JSON.stringify({ type: "end" }));
        s.ended = true;
        stopAudio(s);
      }
    };
    source.connect(s.node);
    s.node.connect(s.ctx.destination);   // the worklet writes silence; the connection keeps it running
  } catch (err) {
    setState("closed", `no microphone (${err.message})`);
    stopAudio(s);
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  s.ws = new WebSocket(`${scheme}://${location.host}/`);
  s.ws.binaryType = "arraybuffer";
  s.ws.onopen = () => {
    const hotwords = $("hotwords").value.split(",").map((h) => h.trim()).filter((h) => h);
    const startMessage = { type: "start", version: PROTOCOL_VERSION, sample_rate: 16000, format: "int16",
                           hotwords, word_times: true };
    if ($("token").value) startMessage.token = $("token").value;
    s.ws.send(JSON.stringify(startMessage));
  };
  s.ws.onmessage = (e) => {
    const message = JSON.parse(e.data);
    if (message.type === "ready") {
      setState("streaming", `${message.model}, ${message.sample_rate} Hz`);
      s.queued.forEach((frame) => s.ws.send(frame));
      s.queued = [];
      s.ready = true;
    } else if (message.type === "partial") {
      showPartial(message);
    } else if (message.type === "final") {
      addFinal(message);
    } else if (message.type === "error") {
      $("status").textContent = `error: ${message.message}`;
    }
  };
  s.ws.onclose = (e) => {
    stopAudio(s);
    setState("closed", `${e.code}${e.reason ? " " + e.reason : ""}`);
  };
}

function stop() {
  const s = session;
  if (!s) return;
  setState("ending");
  if (s.node) s.node.port.postMessage("flush");      // the worklet posts what it holds, then {flushed}
  else if (s.ws) s.ws.close();
}

function stopAudio(s) {
  if (s.media) s.media.getTracks().forEach((t) => t.stop());
  if (s.ctx && s.ctx.state !== "closed") s.ctx.close();
}

$("start").addEventListener("click", () => {
  const state = document.body.dataset.state;
  if (state === "streaming" || state === "connecting") stop(); else start();
});
setState("idle");
