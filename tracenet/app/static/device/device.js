// Main-thread side of the on-device mode: checks what the browser can do, starts the worker (worker.js), decodes
// photos to pixels, and wraps the worker's messages in promises with time limits, so nothing waits forever.

const WORKER_URL = new URL("./worker.js", import.meta.url);
const VENDOR_URL = new URL("../vendor/onnxruntime-web/", import.meta.url).href;
// Canvas pixel reads are limited to 16.7 MP on iOS; larger photos are refused in this mode (server mode takes them).
export const MAX_PIXELS = 16_000_000;
const MAX_BYTES = 64 << 20;  // files larger than this are refused before decoding
const LIMITS_MS = { init: 180_000, setImage: 120_000, tap: 60_000, edit: 120_000, networkImage: 10_000 };

// The smallest module using a SIMD instruction (i32x4.splat): validates only where WebAssembly SIMD exists.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8,
  0, 65, 0, 253, 17, 253, 98, 11]);

/** {ok, reason}: whether this browser can run the model (WebAssembly with SIMD, module workers). */
export function browserSupport() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") {
    return { ok: false, reason: "this browser has no WebAssembly" };
  }
  try {
    if (!WebAssembly.validate(SIMD_PROBE)) return { ok: false, reason: "this browser's WebAssembly has no SIMD" };
  } catch (_) { return { ok: false, reason: "this browser's WebAssembly has no SIMD" }; }
  if (typeof Worker !== "function" || typeof createImageBitmap !== "function") {
    return { ok: false, reason: "this browser has no Web Workers or createImageBitmap" };
  }
  return { ok: true, reason: "" };
}

/** Start the engine: fetch model.json, load both graphs in the worker. Resolves to a DeviceEngine. */
export async function startEngine({ threads } = {}) {
  const support = browserSupport();
  if (!support.ok) throw new Error(support.reason);
  const res = await fetch("/api/device/model.json");
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  const contract = await res.json();
  if (contract.format !== "tracenet-onnx" || contract.format_version !== 2) {
    throw new Error(`model.json is not a tracenet ONNX contract of format 2 (${contract.format} ${contract.format_version})`);
  }
  const isolated = self.crossOriginIsolated === true;
  const n = threads ?? (isolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1);
  const engine = new DeviceEngine(contract);
  engine.info = await engine.call("init", { contract, threads: n, vendorUrl: VENDOR_URL });
  return engine;
}

export class DeviceEngine {
  constructor(contract) {
    this.contract = contract;
    this.pending = new Map();
    this.nextId = 1;
    this.worker = new Worker(WORKER_URL, { type: "module", name: "tracenet-device" });
    this.worker.onmessage = ({ data }) => {
      const p = this.pending.get(data.id);
      if (!p) return;
      this.pending.delete(data.id);
      clearTimeout(p.timer);
      if (data.ok) p.resolve(data.result); else p.reject(new Error(data.error));
    };
    this.worker.onerror = (e) => this.failAll(`the on-device engine crashed (${e.message || "worker error"})`);
  }

  failAll(message) {
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(new Error(message)); }
    this.pending.clear();
  }

  call(op, args = {}, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the on-device engine did not finish '${op}' within ${LIMITS_MS[op] / 1000} s`));
      }, LIMITS_MS[op]);
      this.pending.set(id, { resolve, reject, timer });
      this.worker.postMessage({ id, op, ...args }, transfer);
    });
  }

  /** Decode and hand a photo (Blob) to the worker; resolves to {width, height, encoder_ms, ...}. */
  async setImage(blob, name) {
    const { rgba, width, height } = await decodePhoto(blob, name);
    const r = await this.call("setImage", { rgba: rgba.buffer, width, height }, [rgba.buffer]);
    return { ...r, width, height };
  }

  tap(x, y) { return this.call("tap", { x, y }); }

  edit(effect, keys, options) { return this.call("edit", { effect, keys, options }); }

  /** The photo as the network sees it: {data (RGB bytes), width, height} (for tests). */
  networkImage() { return this.call("networkImage"); }
}

/** Blob -> {rgba: Uint8ClampedArray, width, height}, EXIF-rotated, without colour management or premultiplication
 * (Pillow reads the stored values). Refuses unreadable files and photos over MAX_PIXELS with a clear message. */
export async function decodePhoto(blob, name = "the file") {
  if (blob.size > MAX_BYTES) {
    throw new Error(`${name}: ${(blob.size / 2 ** 20).toFixed(0)} MB is larger than the ${MAX_BYTES / 2 ** 20} MB ` +
      "this device mode reads; downscale or re-encode it as JPEG");
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", premultiplyAlpha: "none",
      colorSpaceConversion: "none" });
  } catch (err) {
    throw new Error(`${name}: not an image this browser can read (${(err && err.message) || err})`);
  }
  const { width, height } = bitmap;
  if (!width || !height) throw new Error(`${name}: the image is empty (${width}x${height})`);
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    throw new Error(`${name}: ${width}x${height} = ${(width * height / 1e6).toFixed(1)} MP is over the ` +
      `${MAX_PIXELS / 1e6} MP this device mode takes; downscale it, or switch to server mode`);
  }
  const canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(width, height)
    : Object.assign(document.createElement("canvas"), { width, height });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { rgba: new Uint8ClampedArray(ctx.getImageData(0, 0, width, height).data.buffer), width, height };
}
