// Photo edits of the on-device mode, the formulas of tracenet/edit/effects.py (OpenCV there, plain loops here):
// feathered alpha (Gaussian of `feather` px, 4-sigma kernel, edge pixels replicated, near-0/1 snapped), blurred
// background (a lens-like disk on a copy shrunk to a 6 px radius, the subject left out by normalised
// convolution), replaced background, colour splash (BT.601 grey), cut-out (alpha = round(255 * soft alpha)).
// Pure functions: rgb is Uint8Array (3 bytes per pixel), mask Uint8Array of 0/1; results are RGBA
// Uint8ClampedArray ready for ImageData.

import { resizeBilinear } from "./masks.js";

const WORK_RADIUS = 6.0, ALPHA_SNAP = 1.0 / 512.0;

function gaussianKernel(sigma) {
  const size = Math.round(sigma * 4 * 2 + 1) | 1, half = (size - 1) / 2, k = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) { k[i] = Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)); sum += k[i]; }
  return k.map((v) => v / sum);
}

/** Separable convolution of a float [h, w] map with kernel k, edge pixels replicated. */
function convolveSeparable(x, h, w, k) {
  const half = (k.length - 1) / 2, tmp = new Float32Array(h * w), out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) for (let j = 0; j < w; j++) {
    let s = 0;
    for (let t = 0; t < k.length; t++) s += k[t] * x[y * w + Math.min(w - 1, Math.max(0, j + t - half))];
    tmp[y * w + j] = s;
  }
  for (let y = 0; y < h; y++) for (let j = 0; j < w; j++) {
    let s = 0;
    for (let t = 0; t < k.length; t++) s += k[t] * tmp[Math.min(h - 1, Math.max(0, y + t - half)) * w + j];
    out[y * w + j] = s;
  }
  return out;
}

/** Feathered alpha in [0, 1] of a 0/1 mask (soft_alpha): exactly 1 deep inside, exactly 0 far outside. */
export function softAlpha(mask, h, w, feather) {
  const alpha = Float32Array.from(mask);
  if (feather <= 0 || !mask.some((v) => v)) return alpha;
  let y0 = h, y1 = -1, x0 = w, x1 = -1;  // blur only the mask's box plus the kernel's reach
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (mask[y * w + x]) {
    y0 = Math.min(y0, y); y1 = Math.max(y1, y); x0 = Math.min(x0, x); x1 = Math.max(x1, x);
  }
  const pad = Math.ceil(4 * feather) + 2;
  y0 = Math.max(0, y0 - pad); y1 = Math.min(h, y1 + 1 + pad); x0 = Math.max(0, x0 - pad); x1 = Math.min(w, x1 + 1 + pad);
  const ch = y1 - y0, cw = x1 - x0, crop = new Float32Array(ch * cw);
  for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = alpha[(y + y0) * w + x + x0];
  const blurred = convolveSeparable(crop, ch, cw, gaussianKernel(feather));
  for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) {
    let a = blurred[y * cw + x];
    a = a < ALPHA_SNAP ? 0 : a > 1 - ALPHA_SNAP ? 1 : a;
    alpha[(y + y0) * w + x + x0] = a;
  }
  return alpha;
}

/** alpha * fg + (1 - alpha) * bg per pixel, rounded; fg / bg are RGB Uint8Array or Float32Array. */
function composite(fg, bg, alpha) {
  const n = alpha.length, out = new Uint8ClampedArray(4 * n);
  for (let i = 0; i < n; i++) {
    const a = alpha[i];
    for (let c = 0; c < 3; c++) out[4 * i + c] = Math.round(a * fg[3 * i + c] + (1 - a) * bg[3 * i + c]);
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Area-average resize of a float [h, w, ch] map to [oh, ow] (shrinking, like cv2.INTER_AREA). */
function resizeArea(x, h, w, ch, oh, ow) {
  const weights = (n, on) => {  // per output index: [[source index, fraction], ...]
    const f = n / on, list = [];
    for (let o = 0; o < on; o++) {
      const a = o * f, b = Math.min(n, (o + 1) * f), parts = [];
      for (let i = Math.floor(a); i < Math.ceil(b); i++) parts.push([i, (Math.min(b, i + 1) - Math.max(a, i)) / f]);
      list.push(parts);
    }
    return list;
  };
  const wy = weights(h, oh), wx = weights(w, ow), out = new Float32Array(oh * ow * ch);
  for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) for (let c = 0; c < ch; c++) {
    let s = 0;
    for (const [iy, fy] of wy[oy]) for (const [ix, fx] of wx[ox]) s += fy * fx * x[(iy * w + ix) * ch + c];
    out[(oy * ow + ox) * ch + c] = s;
  }
  return out;
}

function diskKernel(radius) {
  const size = 2 * radius + 1, disk = new Float32Array(size * size);
  for (let y = -radius; y <= radius; y++) for (let x = -radius; x <= radius; x++) {
    disk[(y + radius) * size + x + radius] = x * x + y * y <= radius * radius + 0.5 ? 1 : 0;
  }
  const soft = size >= 3 ? convolveSeparable(disk, size, size, [0.25, 0.5, 0.25]) : disk;  // soften the rim
  const sum = soft.reduce((a, b) => a + b, 0);
  return soft.map((v) => v / sum);
}

function filter2D(x, h, w, ch, kernel, radius) {  // border: reflect (fedcba|abcdef)
  const size = 2 * radius + 1, out = new Float32Array(h * w * ch);
  const reflect = (i, n) => { while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1; return i; };
  for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) {
    for (let c = 0; c < ch; c++) {
      let s = 0;
      for (let dy = -radius; dy <= radius; dy++) {
        const row = reflect(y + dy, h) * w;
        for (let dx = -radius; dx <= radius; dx++) {
          const k = kernel[(dy + radius) * size + dx + radius];
          if (k) s += k * x[(row + reflect(xx + dx, w)) * ch + c];
        }
      }
      out[(y * w + xx) * ch + c] = s;
    }
  }
  return out;
}

/** Depth-of-field look (blur_background): strength 0..1, disk radius strength * max(H, W) / 40 px. */
export function blurBackground(rgb, mask, h, w, { strength = 0.5, feather = 1.5 } = {}) {
  const radius = strength * Math.max(h, w) / 40, n = h * w;
  if (radius < 0.5 || mask.every((v) => v)) return composite(rgb, rgb, new Float32Array(n).fill(1));
  const scale = Math.min(1, WORK_RADIUS / radius);
  const sw = Math.max(1, Math.round(w * scale)), sh = Math.max(1, Math.round(h * scale));
  let weighted = new Float32Array(3 * n), weight = new Float32Array(n), plain = Float32Array.from(rgb);
  for (let i = 0; i < n; i++) {
    weight[i] = mask[i] ? 0 : 1;
    for (let c = 0; c < 3; c++) weighted[3 * i + c] = rgb[3 * i + c] * weight[i];
  }
  if (scale < 1) {
    weighted = resizeArea(weighted, h, w, 3, sh, sw); weight = resizeArea(weight, h, w, 1, sh, sw);
    plain = resizeArea(plain, h, w, 3, sh, sw);
  }
  const r = Math.max(1, Math.round(radius * scale)), kernel = diskKernel(r);
  const num = filter2D(weighted, sh, sw, 3, kernel, r), den = filter2D(weight, sh, sw, 1, kernel, r);
  const blurredPlain = filter2D(plain, sh, sw, 3, kernel, r);
  let blurred = new Float32Array(3 * sh * sw);
  for (let i = 0; i < sh * sw; i++) for (let c = 0; c < 3; c++) {
    const v = den[i] > 1e-3 ? num[3 * i + c] / Math.max(den[i], 1e-6) : blurredPlain[3 * i + c];
    blurred[3 * i + c] = Math.min(255, Math.max(0, Math.round(v)));
  }
  if (scale < 1) {
    const up = new Float32Array(3 * n);
    for (let c = 0; c < 3; c++) {
      const plane = new Float32Array(sh * sw);
      for (let i = 0; i < sh * sw; i++) plane[i] = blurred[3 * i + c];
      const big = resizeBilinear(plane, sh, sw, h, w);
      for (let i = 0; i < n; i++) up[3 * i + c] = Math.round(big[i]);
    }
    blurred = up;
  }
  return composite(rgb, blurred, softAlpha(mask, h, w, feather));
}

/** Subject on a plain colour [r, g, b] (replace_background). */
export function replaceBackground(rgb, mask, h, w, { color = [255, 255, 255], feather = 1.5 } = {}) {
  const back = new Uint8Array(3 * h * w);
  for (let i = 0; i < h * w; i++) back.set(color, 3 * i);
  return composite(rgb, back, softAlpha(mask, h, w, feather));
}

/** Subject in colour, background in BT.601 grey (color_splash; OpenCV's fixed-point RGB2GRAY). */
export function colorSplash(rgb, mask, h, w, { feather = 1.5 } = {}) {
  const grey = new Uint8Array(3 * h * w);
  for (let i = 0; i < h * w; i++) {
    const g = (rgb[3 * i] * 4899 + rgb[3 * i + 1] * 9617 + rgb[3 * i + 2] * 1868 + 8192) >> 14;
    grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = g;
  }
  return composite(rgb, grey, softAlpha(mask, h, w, feather));
}

/** The subject on transparency (cutout_rgba): RGB unchanged, alpha = round(255 * soft alpha). */
export function cutout(rgb, mask, h, w, { feather = 1.5 } = {}) {
  const alpha = softAlpha(mask, h, w, feather), out = new Uint8ClampedArray(4 * h * w);
  for (let i = 0; i < h * w; i++) {
    out[4 * i] = rgb[3 * i]; out[4 * i + 1] = rgb[3 * i + 1]; out[4 * i + 2] = rgb[3 * i + 2];
    out[4 * i + 3] = Math.round(alpha[i] * 255);
  }
  return out;
}

export const EFFECTS = { blur: blurBackground, replace: replaceBackground, splash: colorSplash, cutout };
