// Calls one exported function of the page's device modules for tests/app/test_device_js.py.
// stdin: JSON {module, fn, args} (or {module, fn, each: [args, ...]}: one call per argument list, results as a list);
// typed arrays travel as {"u8" | "i32" | "f32" | "f64": base64}; objects are walked.
// stdout: JSON of the result, typed arrays encoded the same way.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const TYPES = { u8: Uint8Array, u8c: Uint8ClampedArray, i32: Int32Array, f32: Float32Array, f64: Float64Array };

function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && TYPES[keys[0]]) {
      const buf = Buffer.from(v[keys[0]], "base64");
      return new TYPES[keys[0]](buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }
    return Object.fromEntries(keys.map((k) => [k, decode(v[k])]));
  }
  return v;
}

function encode(v) {
  for (const [tag, T] of Object.entries(TYPES)) {
    if (v instanceof T) return { [tag]: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  }
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  return v;
}

const job = JSON.parse(readFileSync(0, "utf8"));
const mod = await import(pathToFileURL(job.module).href);
const calls = job.each ? job.each.map(decode) : [decode(job.args)];
const results = [];
for (const args of calls) results.push(await mod[job.fn](...args));
process.stdout.write(JSON.stringify(encode(job.each ? results : results[0])));
