// The Micro "main": a page, a small notes API and the "tidy" action.
//
// This file is compiled into a WebAssembly component (app.wasm) by componentize-js. Two things
// differ from Node.js:
// - Code at the top level of this file runs once, at build time, and its result is baked into
//   app.wasm. Read the environment and files inside handlers, never at the top level.
// - There is no `process` and no `fs`: the environment and the filesystem come straight from
//   WASI, imported below (the world in ../world.wit lists what may be imported).

import { getEnvironment } from "wasi:cli/environment@0.2.10";
import { getDirectories } from "wasi:filesystem/preopens@0.2.10";

const NOTES = "/tmp/notes.json";

// ---------------------------------------------------------------------------------------------
// Routing: route(method, path, handler). A handler gets (request, url) and returns a Response
// (or a promise of one). Add a route anywhere in this file, even at the very end.

const routes = new Map(); // path -> Map(method -> handler)

function route(method, path, handler) {
  if (!routes.has(path)) routes.set(path, new Map());
  routes.get(path).set(method.toUpperCase(), handler);
}

addEventListener("fetch", (event) => event.respondWith(dispatch(event.request)));

// A handler may return a Response or a promise of one. One that answers at once is passed on
// as it is: a promise per request costs ~8% of a page's CPU in this engine (no JIT in wasm).
function dispatch(request) {
  const url = new URL(request.url);
  const methods = routes.get(url.pathname);
  if (!methods) return json({ error: "not found" }, 404);
  const handler = methods.get(request.method);
  if (!handler) return json({ error: "method not allowed" }, 405);
  const failed = (error) => {
    console.error(`${request.method} ${url.pathname} failed:`, error);
    return json({ error: "internal error" }, 500);
  };
  try {
    const response = handler(request, url);
    return response instanceof Promise ? response.catch(failed) : response;
  } catch (error) {
    return failed(error);
  }
}

// ---------------------------------------------------------------------------------------------
// The routes.

route("GET", "/", () => {
  const greeting = env("GREETING") ?? "Hello";
  return html(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(greeting)}</title></head>
<body>
  <h1>${escapeHtml(greeting)}</h1>
  <p>This page is public. The API under <code>/api/</code> needs the owner token.</p>
</body>
</html>
`);
});

route("GET", "/api/notes", () => json(readNotes()));

route("POST", "/api/notes", async (request) => {
  const body = await readJson(request);
  if (body === undefined) return json({ error: "invalid JSON" }, 400);
  if (typeof body?.text !== "string") return json({ error: "text must be a string" }, 400);

  const notes = readNotes();
  const id = notes.reduce((max, note) => Math.max(max, note.id), 0) + 1;
  const note = { id, text: body.text };
  notes.push(note);
  writeNotes(notes);
  return json(note, 201);
});

route("GET", "/api/about", () =>
  json({
    micro: env("DETA_SPACE_APP_MICRO_NAME"),
    version: env("DETA_SPACE_APP_VERSION"),
    motd: readText("/motd.txt").trim(),
  }),
);

// Scheduled actions arrive as this request, sent by micros itself (nobody outside can send it).
route("POST", "/__space/v0/actions", async (request) => {
  const body = await readJson(request);
  if (body?.event?.id !== "tidy") return json({ error: "unknown action" }, 404);
  const removed = readNotes().length;
  writeNotes([]);
  return json({ tidied: removed });
});

// ---------------------------------------------------------------------------------------------
// Responses and requests.

function json(value, status = 200) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function html(text, status = 200) {
  return new Response(text, {
    status,
    headers: { "content-type": "text/html; charset=utf-8" },
  });
}

// Plain string replacements: a regular expression is compiled again in every request's fresh
// instance, which cost more than the rest of the page.
function escapeHtml(text) {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

// The parsed JSON body, or undefined when it is not JSON.
async function readJson(request) {
  try {
    return JSON.parse(await request.text());
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Environment and files, through WASI.

let environment; // read once per request: every request runs in a fresh instance

function env(name) {
  environment ??= new Map(getEnvironment());
  return environment.get(name);
}

function readNotes() {
  try {
    return JSON.parse(readText(NOTES));
  } catch (error) {
    if (error?.payload === "no-entry") return [];
    throw error;
  }
}

function writeNotes(notes) {
  writeText(NOTES, JSON.stringify(notes));
}

// The preopened folder holding `path` ("/" is the Micro's read-only src, "/tmp" is writable),
// and the path relative to it.
function locate(path) {
  const [dir, base] = getDirectories()
    .filter(([, base]) => path.startsWith(base === "/" ? "/" : `${base}/`))
    .sort(([, a], [, b]) => b.length - a.length)[0] ?? [];
  if (!dir) throw new Error(`no preopened folder holds ${path}`);
  return [dir, path.slice(base.length).replace(/^\/+/, "")];
}

// A file's contents as text; a missing file throws an error whose `payload` is "no-entry".
function readText(path) {
  const [dir, name] = locate(path);
  const file = dir.openAt({}, name, {}, { read: true });
  const chunks = [];
  let offset = 0n;
  for (;;) {
    const [bytes, end] = file.read(1n << 20n, offset);
    chunks.push(bytes);
    offset += BigInt(bytes.length);
    if (end || bytes.length === 0) break;
  }
  return new TextDecoder().decode(concat(chunks));
}

// Writes the whole file at once: to a fresh file beside it, then renamed over it, so that a
// request reading at the same time sees the old contents or the new, never half of them.
function writeText(path, text) {
  const [dir, name] = locate(path);
  const temporary = `${name}.${crypto.randomUUID()}.tmp`;
  const bytes = new TextEncoder().encode(text);
  const file = dir.openAt({}, temporary, { create: true, exclusive: true }, { write: true });
  let offset = 0;
  while (offset < bytes.length) {
    offset += Number(file.write(bytes.subarray(offset), BigInt(offset)));
  }
  dir.renameAt(temporary, dir, name);
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
