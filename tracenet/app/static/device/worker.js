// The on-device engine, in a module worker so the page stays responsive: onnxruntime-web (WebAssembly, SIMD, with
// threads when the page is cross-origin isolated) runs encoder.onnx once per photo and decoder.onnx per tap;
// pre- and post-processing follow model.json (pixels.js, masks.js); with model.json's "zoom" a small object is
// segmented again on an enlarged crop (zoom.js; each crop's encoder outputs kept for further taps, as in Python);
// edits run here too (effects.js).
// Messages: {id, op, ...} in; {id, ok, result | error} out. Times are performance.now() milliseconds.

import * as ort from "../vendor/onnxruntime-web/ort.wasm.bundle.min.mjs";
import { EFFECTS } from "./effects.js";
import { alignTap, chooseMask } from "./masks.js";
import { compositeOnWhite, fitLongSide, normalize } from "./pixels.js";
import { enlargeCrop, zoomTapPoint, zoomWindow, zoomedChoice } from "./zoom.js";

const ENCODER_OUTPUTS = ["p3", "p4", "p5", "p6", "p7", "mask_feats"];
const MASK_BYTES = 256 << 20;  // masks of the current photo kept for the edits
const engine = { contract: null, encoder: null, decoder: null, photo: null, net: null, feats: null, masks: new Map(),
  zoomed: new Map() };

async function init({ contract, threads, vendorUrl }) {
  ort.env.wasm.wasmPaths = { wasm: `${vendorUrl}ort-wasm-simd-threaded.wasm` };  // the glue is in the bundle
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  const t0 = performance.now();
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const load = async (url) => {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`could not download ${url}: ${res.status} ${res.statusText}`);
    return ort.InferenceSession.create(new Uint8Array(await res.arrayBuffer()), options);
  };
  engine.contract = contract;
  [engine.encoder, engine.decoder] = await Promise.all([load(contract.encoder_url), load(contract.decoder_url)]);
  return { load_ms: performance.now() - t0, threads: ort.env.wasm.numThreads, isolated: self.crossOriginIsolated === true };
}

async function setImage({ rgba, width, height }) {
  const c = engine.contract, t0 = performance.now();
  const photo = compositeOnWhite(new Uint8Array(rgba), width, height);
  const { image: net, scale } = fitLongSide(photo, c.preprocess.max_side);
  const input = new ort.Tensor("float32", normalize(net, c.preprocess.mean, c.preprocess.std), [1, 3, net.height, net.width]);
  const t1 = performance.now();
  const outs = await engine.encoder.run({ image: input }, ENCODER_OUTPUTS);
  const t2 = performance.now();
  engine.photo = photo; engine.net = { width: net.width, height: net.height, scale };
  engine.feats = outs; engine.masks = new Map(); engine.zoomed = new Map();
  return { preprocess_ms: t1 - t0, encoder_ms: t2 - t1, net_width: net.width, net_height: net.height, scale };
}

async function decode(feats, cells, netH, netW) {
  const c = engine.contract;
  const feeds = { ...feats,
    cells: new ort.Tensor("int64", BigInt64Array.from(cells.flat().map(BigInt)), [cells.length, 2]),
    net_hw: new ort.Tensor("int64", BigInt64Array.from([BigInt(netH), BigInt(netW)]), [2]),
    min_score: new ort.Tensor("float32", Float32Array.from([c.selection.min_score]), []) };
  for (const name of Object.keys(feeds)) if (!engine.decoder.inputNames.includes(name)) delete feeds[name];
  const raw = await engine.decoder.run(feeds);
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.data]));
}

async function zoomedCrop(window) {
  // the enlarged crop's encoder outputs, kept for the zoom's `cache` most recent windows of this photo
  const key = window.join(","), c = engine.contract;
  let crop = engine.zoomed.get(key);
  if (crop) { engine.zoomed.delete(key); engine.zoomed.set(key, crop); return crop; }
  const image = enlargeCrop(engine.photo, window, c.preprocess.max_side);
  const input = new ort.Tensor("float32", normalize(image, c.preprocess.mean, c.preprocess.std), [1, 3, image.height, image.width]);
  crop = { feats: await engine.encoder.run({ image: input }, ENCODER_OUTPUTS), width: image.width, height: image.height };
  engine.zoomed.set(key, crop);
  while (engine.zoomed.size > c.zoom.cache) engine.zoomed.delete(engine.zoomed.keys().next().value);
  return crop;
}

async function zoomIn(first, cells) {
  // TapCore._zoom_answer: the zoomed answer, or null when the first one stands
  const c = engine.contract, { scale } = engine.net, { width: photoW, height: photoH } = engine.photo;
  const window = zoomWindow(first.box, photoH, photoW, c.preprocess.max_side, scale, c.zoom);
  if (!window) return null;
  const crop = await zoomedCrop(window);
  const [tx, ty] = zoomTapPoint(cells[0], scale, window, crop.width, crop.height, c.geometry.strides[0]);
  const innerCells = alignTap(tx, ty, crop.height, crop.width, c.geometry.strides);
  const out = await decode(crop.feats, innerCells, crop.height, crop.width);
  const zoomed = zoomedChoice(out, { selection: c.selection.default, minScore: c.selection.min_score,
    requireTapInside: true, innerH: crop.height, innerW: crop.width, innerCell: innerCells[0], window, photoH,
    photoW, scale, p3Cell: cells[0], firstMask: first.mask, minInside: c.zoom.min_inside });
  return zoomed && { ...zoomed, window };
}

async function tap({ x, y }) {
  if (!engine.feats) throw new Error("no photo: open one first");
  const c = engine.contract, { width: netW, height: netH, scale } = engine.net;
  const { width: photoW, height: photoH } = engine.photo;
  if (!(x >= 0 && x < photoW && y >= 0 && y < photoH)) throw new Error(`tap (${x}, ${y}) is outside the ${photoW}x${photoH} photo`);
  const cells = alignTap(x * scale, y * scale, netH, netW, c.geometry.strides);
  const t0 = performance.now();
  const out = await decode(engine.feats, cells, netH, netW);
  const t1 = performance.now();
  let chosen = chooseMask(out, { selection: c.selection.default, minScore: c.selection.min_score, requireTapInside: true,
    netH, netW, photoH, photoW, scale, p3Cell: cells[0] });
  const t2 = performance.now();
  const zoomed = c.zoom && chosen.found ? await zoomIn(chosen, cells) : null;
  if (zoomed) chosen = zoomed;
  const t3 = performance.now();
  const key = `${x},${y}`;
  engine.masks.delete(key);
  engine.masks.set(key, chosen.mask);  // kept for the edits; the oldest go past MASK_BYTES
  while (engine.masks.size > 1 && engine.masks.size * chosen.mask.length > MASK_BYTES) {
    engine.masks.delete(engine.masks.keys().next().value);
  }
  let area = 0;
  for (const v of chosen.mask) area += v;
  return { found: chosen.found, score: chosen.score, box: chosen.box, reason: chosen.reason, area, key,
    mask: chosen.mask.slice(), zoom_window: zoomed ? zoomed.window : null, decoder_ms: t1 - t0, select_ms: t2 - t1,
    zoom_ms: t3 - t2, tap_ms: t3 - t0 };
}

function edit({ effect, keys, options }) {
  const { width: w, height: h, data } = engine.photo, mask = new Uint8Array(w * h);
  for (const key of keys) {
    const m = engine.masks.get(key);
    if (!m) throw new Error(`no mask for the tap ${key}: tap again`);
    for (let i = 0; i < m.length; i++) mask[i] |= m[i];
  }
  if (!EFFECTS[effect]) throw new Error(`unknown effect ${effect}`);
  const t0 = performance.now(), rgba = EFFECTS[effect](data, mask, h, w, options);
  return { rgba: rgba.buffer, width: w, height: h, edit_ms: performance.now() - t0 };
}

function networkImage() {
  const { width, height } = engine.net, c = engine.contract;
  const { image } = fitLongSide(engine.photo, c.preprocess.max_side);
  return { data: Array.from(image.data), width, height };
}

const OPS = { init, setImage, tap, edit, networkImage };

self.onmessage = async ({ data }) => {
  const { id, op, ...args } = data;
  try {
    const result = await OPS[op](args);
    const transfer = [result.rgba, result.mask && result.mask.buffer].filter(Boolean);
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    self.postMessage({ id, ok: false, error: String((err && err.message) || err) });
  }
};
