// The page's logic: read a WAV, score it with MediaPipe's AudioClassifier, embed it with LiteRT.js.
// `?job=URL` runs a job file instead (the check in benchmarks/web_check.py) and POSTs every number to its `report` URL.
import {AudioClassifier, FilesetResolver} from '@mediapipe/tasks-audio';
import {Tensor, loadAndCompile, loadLiteRt} from '@litertjs/core';

const MODEL_RATE_HZ = 16000;
const here = (path) => new URL(path, document.baseURI).href;
const status = (text, error = false) => {
  const line = document.getElementById('status');
  line.textContent = text;
  line.className = error ? 'error' : '';
};

/** float32 mono samples and the rate of a WAV file (16-bit PCM or 32-bit float; channels averaged). */
export function parseWav(buffer) {
  const view = new DataView(buffer);
  const tag = (offset) => String.fromCharCode(...new Uint8Array(buffer, offset, 4));
  if (buffer.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a WAV file (no RIFF/WAVE header)');
  let format = null;
  let data = null;
  for (let offset = 12; offset + 8 <= buffer.byteLength;) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === 'fmt ') {
      let code = view.getUint16(body, true);
      if (code === 0xfffe && size >= 26) code = view.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE
      format = {code, channels: view.getUint16(body + 2, true), rate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true)};
    } else if (id === 'data') {
      data = {offset: body, size: Math.min(size, buffer.byteLength - body)};
    }
    offset = body + size + (size & 1);
  }
  if (!format || !data) throw new Error('WAV file without a fmt or data chunk');
  const {code, channels, rate, bits} = format;
  const read = code === 1 && bits === 16 ? (o) => view.getInt16(o, true) / 32768 : code === 3 && bits === 32 ? (o) => view.getFloat32(o, true) : null;
  if (!read) throw new Error(`WAV format ${code} with ${bits}-bit samples; expected 16-bit PCM or 32-bit float`);
  const step = bits / 8;
  const frames = Math.floor(data.size / (channels * step));
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(data.offset + (i * channels + c) * step);
    samples[i] = sum / channels;
  }
  return {rate, samples};
}

/** The samples at 16 kHz (the browser's resampler when the file has another rate; MediaPipe resamples itself). */
async function at16k(samples, rate) {
  if (rate === MODEL_RATE_HZ) return samples;
  const context = new OfflineAudioContext(1, Math.ceil((samples.length * MODEL_RATE_HZ) / rate), MODEL_RATE_HZ);
  const buffer = context.createBuffer(1, samples.length, rate);
  buffer.copyToChannel(samples, 0);
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  source.start();
  return (await context.startRendering()).getChannelData(0);
}

let fileset = null;
/** A MediaPipe AudioClassifier on a .tflite with TFLite Model Metadata (AudioProperties; labels optional). */
async function openClassifier(url) {
  fileset ??= await FilesetResolver.forAudioTasks(here('vendor/tasks-audio/wasm'));
  return AudioClassifier.createFromOptions(fileset, {baseOptions: {modelAssetPath: url, delegate: 'CPU'}, maxResults: -1});
}

/** One row of scores per window, in the model's column order (MediaPipe sorts categories by score). */
function classify(task, samples, rate) {
  const start = performance.now();
  const results = task.classify(samples, rate);
  const ms = performance.now() - start;
  const labels = [];
  const scores = results.map((result) => {
    const row = [];
    for (const category of result.classifications[0].categories) {
      row[category.index] = category.score;
      labels[category.index] = category.categoryName || `score_${category.index}`;
    }
    return row;
  });
  return {timestamps_ms: results.map((r) => Number(r.timestampMs)), labels, scores, ms};
}

let liteRt = null;
/** A LiteRT.js model on the CPU (WebAssembly). */
async function openEmbedder(url) {
  liteRt ??= await loadLiteRt(here('vendor/litertjs-core/wasm/'));
  return loadAndCompile(url, {accelerator: 'wasm'});
}

/** The model's first output per call: one call on the whole clip for a dynamic input, else one per
 * non-overlapping window of its fixed length (the last zero-padded, as MediaPipe cuts a clip). */
async function embed(model, samples) {
  const width = model.getInputDetails()[0].shape.at(-1);
  const windows = [];
  if (width > 0) {
    for (let start = 0; start < Math.max(samples.length, 1); start += width) {
      const window = new Float32Array(width);
      window.set(samples.subarray(start, start + width));
      windows.push(window);
    }
  } else {
    windows.push(samples);
  }
  const start = performance.now();
  const vectors = [];
  for (const window of windows) {
    const input = new Tensor(window, [1, window.length]);
    const outputs = await model.run([input]);
    vectors.push(Array.from(outputs[0].toTypedArray()));
    input.delete();
    for (const output of outputs) output.delete();
  }
  return {vectors, ms: performance.now() - start};
}

function showScores(result) {
  const table = document.getElementById('scores');
  const head = `<tr><th>window start s</th>${result.labels.map((l) => `<th>${l}</th>`).join('')}</tr>`;
  const rows = result.scores.map((row, i) => `<tr><td>${(result.timestamps_ms[i] / 1000).toFixed(2)}</td>${row.map((v) => `<td>${v.toFixed(4)}</td>`).join('')}</tr>`);
  table.innerHTML = head + rows.join('');
}

function showEmbedding(result) {
  const vector = result.vectors.length === 1 ? result.vectors[0] : result.vectors[0].map((_, i) => result.vectors.reduce((s, v) => s + v[i], 0) / result.vectors.length);
  const norm = Math.hypot(...vector);
  document.getElementById('embedding').textContent =
    `${vector.length} values, norm ${norm.toPrecision(4)}` + (result.vectors.length > 1 ? ` (mean of ${result.vectors.length} windows)` : '') +
    `\n[${vector.map((v) => v.toPrecision(4)).join(', ')}]`;
}

async function runPage() {
  try {
    status('Reading the WAV…');
    const file = document.getElementById('wav').files[0];
    const bytes = file ? await file.arrayBuffer() : await (await fetchOk(document.getElementById('wav-url').value)).arrayBuffer();
    const {rate, samples} = parseWav(bytes);
    status(`Scoring ${(samples.length / rate).toFixed(2)} s at ${rate} Hz…`);
    const classifier = await openClassifier(here(document.getElementById('classifier').value));
    showScores(classify(classifier, samples, rate));
    classifier.close();
    const embedder = await openEmbedder(here(document.getElementById('embedder').value));
    showEmbedding(await embed(embedder, await at16k(samples, rate)));
    embedder.delete();
    status(`Done: ${(samples.length / rate).toFixed(2)} s of audio.`);
  } catch (error) {
    status(String(error), true);
  }
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

/** The check's job: every classifier and embedder on every clip; the numbers go to job.report. */
async function runJob(jobUrl) {
  const job = await (await fetchOk(jobUrl)).json();
  const report = {user_agent: navigator.userAgent, versions: await (await fetchOk('vendor/versions.json')).json(), classifiers: {}, embedders: {}};
  try {
    const clips = {};
    for (const url of job.clips) clips[url] = parseWav(await (await fetchOk(url)).arrayBuffer());
    for (const url of job.classifiers) {
      status(`AudioClassifier: ${url}`);
      const task = await openClassifier(here(url));
      report.classifiers[url] = {};
      for (const [clip, {rate, samples}] of Object.entries(clips)) report.classifiers[url][clip] = classify(task, samples, rate);
      task.close();
    }
    for (const url of job.embedders) {
      status(`LiteRT.js: ${url}`);
      const model = await openEmbedder(here(url));
      report.embedders[url] = {};
      for (const [clip, {rate, samples}] of Object.entries(clips)) report.embedders[url][clip] = await embed(model, await at16k(samples, rate));
      model.delete();
    }
    status('Job done.');
  } catch (error) {
    report.error = `${error}\n${error.stack || ''}`;
    status(String(error), true);
  }
  await fetch(job.report, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(report)});
}

const job = new URLSearchParams(location.search).get('job');
if (job) {
  runJob(job);
} else {
  document.getElementById('run').addEventListener('click', runPage);
  status('Pick a WAV file (or keep the URL) and press Run.');
}
