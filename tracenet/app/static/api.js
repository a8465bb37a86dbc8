// Renders /openapi.json as a plain list of operations (FastAPI's Swagger UI needs a CDN; this page does not).
"use strict";

function el(tag, attrs = {}, text = "") {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}

function resolveRef(spec, schema) {
  if (schema && schema.$ref) {
    return schema.$ref.split("/").slice(1).reduce((o, k) => o[k], spec);
  }
  return schema || {};
}

function typeOf(s) {
  if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
  if (s.format === "binary" || s.contentMediaType) return "file";
  return s.type || "object";
}

(async () => {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("description").textContent = spec.info.description || "";
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = el("div", { class: "op" });
      const h = el("h3");
      h.append(el("span", { class: "method" }, method.toUpperCase()), el("code", {}, path));
      box.append(h, el("p", {}, op.summary || ""));
      const rows = [];
      for (const p of op.parameters || []) rows.push([p.name, p.in, typeOf(p.schema || {}), p.description || ""]);
      const body = op.requestBody && Object.values(op.requestBody.content)[0];
      if (body) {
        const schema = resolveRef(spec, body.schema);
        const required = new Set(schema.required || []);
        for (const [name, prop] of Object.entries(schema.properties || {})) {
          const d = prop.default !== undefined ? ` (default ${JSON.stringify(prop.default)})` : "";
          rows.push([name + (required.has(name) ? " *" : ""), "form", typeOf(prop), (prop.description || "") + d]);
        }
      }
      if (rows.length) {
        const t = el("table");
        const head = el("tr");
        for (const c of ["field", "in", "type", "meaning"]) head.append(el("th", {}, c));
        t.append(head);
        for (const r of rows) {
          const tr = el("tr");
          for (const c of r) tr.append(el("td", {}, c));
          t.append(tr);
        }
        box.append(t);
      }
      ops.append(box);
    }
  }
})();
