// Pre-processing of the on-device mode, as model.json's "preprocess" states it and tracenet.io does it in Python:
// alpha composited on white, the long side fitted to max_side with Pillow's BILINEAR resize (reducing_gap=3.0),
// then (rgb / 255 - mean) / std as float32 [1, 3, H, W]. The resize is a port of Pillow 10-13's integer
// arithmetic (libImaging/Reduce.c and Resample.c), so the network sees the same bytes as in Python.
// Pure functions on typed arrays: they run in the page's worker and under Node (tests/app/test_device_js.py).
// Images are {data: Uint8Array (RGB, 3 bytes per pixel, row-major), width, height}.

const PRECISION_BITS = 32 - 8 - 2;
const F32 = Math.fround;

/** RGBA bytes (unpremultiplied) -> RGB composited on white: round(rgb * a + 255 * (1 - a)) in float32. */
export function compositeOnWhite(rgba, width, height) {
  const n = width * height, out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    if (a === 255) {
      out[3 * i] = rgba[4 * i]; out[3 * i + 1] = rgba[4 * i + 1]; out[3 * i + 2] = rgba[4 * i + 2];
      continue;
    }
    const alpha = F32(a / 255), rest = F32(255 * F32(1 - alpha));
    for (let c = 0; c < 3; c++) out[3 * i + c] = roundHalfEven(F32(F32(rgba[4 * i + c] * alpha) + rest));
  }
  return { data: out, width, height };
}

export function roundHalfEven(v) {  // numpy.rint; also Python's round() on a float
  const r = Math.round(v);
  return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/** tracenet.io.fit_long_side: the network-size image and the scale (network pixels per photo pixel). */
export function fitLongSide(image, maxSide) {
  const { width: w, height: h } = image, longSide = Math.max(w, h);
  if (longSide <= maxSide) return { image, scale: 1.0 };
  const scale = maxSide / longSide;
  const nw = Math.max(1, Math.floor(w * scale + 0.5)), nh = Math.max(1, Math.floor(h * scale + 0.5));
  return { image: resizeBilinearPillow(image, nw, nh), scale };
}

/** Image.resize((nw, nh), BILINEAR, reducing_gap=3.0) of a whole RGB image. */
export function resizeBilinearPillow(image, nw, nh) {
  let src = image, box = [0, 0, image.width, image.height];
  const fx = Math.trunc(image.width / nw / 3.0) || 1, fy = Math.trunc(image.height / nh / 3.0) || 1;
  if (fx > 1 || fy > 1) {
    // Pillow's _get_safe_box is the whole image for a whole-image resize; reduce() by (fx, fy), then resample
    // the box (0, 0, w / fx, h / fy) of the reduced image.
    src = reduce(image, fx, fy);
    box = [0, 0, image.width / fx, image.height / fy];
  }
  return resample(src, nw, nh, box.map(F32));
}

function divisionUint32(divider) {  // libImaging/Reduce.c division_UINT32(divider, 8), float arithmetic
  return Math.trunc(F32(4294967296 / F32(256 * divider)));
}

export function reduce(image, fx, fy) {
  // ImagingReduce on box (0, 0, w, h): each output pixel averages its fx x fy block (partial blocks at the right
  // and bottom edges average what they have): ((sum + n / 2) * multiplier) >> 24.
  const { data, width: w, height: h } = image;
  const ow = Math.floor((w - 1) / fx) + 1, oh = Math.floor((h - 1) / fy) + 1, out = new Uint8Array(ow * oh * 3);
  for (let y = 0; y < oh; y++) {
    const y0 = y * fy, y1 = Math.min(h, y0 + fy);
    for (let x = 0; x < ow; x++) {
      const x0 = x * fx, x1 = Math.min(w, x0 + fx), n = (y1 - y0) * (x1 - x0);
      const mult = divisionUint32(n), amend = Math.floor(n / 2);
      for (let c = 0; c < 3; c++) {
        let ss = amend;
        for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) ss += data[(yy * w + xx) * 3 + c];
        out[(y * ow + x) * 3 + c] = Math.floor((ss * mult) / 16777216);
      }
    }
  }
  return { data: out, width: ow, height: oh };
}

function precomputeCoeffs(inSize, in0, in1, outSize) {
  // Resample.c precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter, support 1.
  const scale = F32(in1 - in0) / outSize, filterscale = Math.max(scale, 1.0), support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1, kk = new Int32Array(outSize * ksize), bounds = new Int32Array(outSize * 2);
  const pre = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale, ss = 1.0 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      let t = Math.abs((x + xmin - center + 0.5) * ss);
      const wgt = t < 1.0 ? 1.0 - t : 0.0;
      pre[x] = wgt; ww += wgt;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0.0 ? pre[x] / ww : pre[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin; bounds[2 * xx + 1] = xmax;
  }
  return { ksize, kk, bounds };
}

function clip8(ss) {
  const v = Math.floor(ss / (1 << PRECISION_BITS));  // arithmetic shift of a value that may exceed int32
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function passHorizontal(image, xsize, rowOffset, rows, c) {
  const { data, width } = image, out = new Uint8Array(xsize * rows * 3);
  for (let yy = 0; yy < rows; yy++) {
    const line = (yy + rowOffset) * width * 3;
    for (let xx = 0; xx < xsize; xx++) {
      const xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1], k0 = xx * c.ksize;
      let s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
      for (let x = 0; x < xmax; x++) {
        const k = c.kk[k0 + x], p = line + (x + xmin) * 3;
        s0 += data[p] * k; s1 += data[p + 1] * k; s2 += data[p + 2] * k;
      }
      const o = (yy * xsize + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width: xsize, height: rows };
}

function passVertical(image, ysize, c) {
  const { data, width } = image, out = new Uint8Array(width * ysize * 3);
  for (let yy = 0; yy < ysize; yy++) {
    const ymin = c.bounds[2 * yy], ymax = c.bounds[2 * yy + 1], k0 = yy * c.ksize;
    for (let xx = 0; xx < width; xx++) {
      let s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
      for (let y = 0; y < ymax; y++) {
        const k = c.kk[k0 + y], p = ((y + ymin) * width + xx) * 3;
        s0 += data[p] * k; s1 += data[p + 1] * k; s2 += data[p + 2] * k;
      }
      const o = (yy * width + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width, height: ysize };
}

export function resample(image, xsize, ysize, box) {
  // ImagingResampleInner (Pillow 13): two passes; horizontal first (over only the rows the vertical pass reads)
  // unless the height shrinks more than twice as much as the width.
  const { width, height } = image;
  const needH = xsize !== width || box[0] !== 0 || box[2] !== xsize;
  const needV = ysize !== height || box[1] !== 0 || box[3] !== ysize;
  const horizontalFirst = !(height - ysize > 0 && height - ysize > (width - xsize) * 2);
  const vert = precomputeCoeffs(height, box[1], box[3], ysize);
  const hor = needH ? precomputeCoeffs(width, box[0], box[2], xsize) : null;
  let out = image;
  if (horizontalFirst) {
    if (needH) {
      const yFirst = vert.bounds[0], yLast = vert.bounds[2 * ysize - 2] + vert.bounds[2 * ysize - 1];
      for (let i = 0; i < ysize; i++) vert.bounds[2 * i] -= yFirst;
      out = passHorizontal(out, xsize, yFirst, yLast - yFirst, hor);
    }
    if (needV) out = passVertical(out, ysize, vert);
  } else {
    if (needV) out = passVertical(out, ysize, vert);
    if (needH) out = passHorizontal(out, xsize, 0, ysize, hor);
  }
  return out === image ? { data: image.data.slice(), width, height } : out;
}

/** RGB image -> Float32Array [1, 3, H, W] = (rgb / 255 - mean) / std, float32 like tracenet.tap.normalize_image. */
export function normalize(image, mean, std) {
  const { data, width, height } = image, n = width * height, out = new Float32Array(3 * n);
  for (let c = 0; c < 3; c++) {
    const m = F32(mean[c]), s = F32(std[c]), lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = F32(F32(F32(v) / F32(255)) - m) / s;
    for (let i = 0; i < n; i++) out[c * n + i] = lut[data[3 * i + c]];
  }
  return out;
}
