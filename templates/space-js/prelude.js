// Written by `micros import`: what npm packages expect of Node, for a JavaScript Micro. The top
// level of the bundle runs once, when componentize-js builds the component, where WASI cannot be
// called: the environment is read only while a request is served.
import { getEnvironment } from "wasi:cli/environment@0.2.10";

let serving = false;
/** Called by the entry module when the first request arrives. */
export const startServing = () => {
  serving = true;
};

// While the component is built, DETA_PROJECT_KEY is a stand-in, so that a module-level `Deta()`
// works; the fetch below puts the real key and project id into the requests such a Deta makes.
const STAND_IN = "buildtime_deferred";
const assigned = new Map();
const environment = () => (serving ? getEnvironment() : [["DETA_PROJECT_KEY", STAND_IN]]);
const read = (name) => (assigned.has(name) ? assigned.get(name) : new Map(environment()).get(name));
const env = new Proxy(
  {},
  {
    get: (_, name) => (typeof name === "string" ? read(name) : undefined),
    set: (_, name, value) => (assigned.set(name, String(value)), true),
    has: (_, name) => read(name) !== undefined,
    ownKeys: () => [...new Set([...environment().map(([key]) => key), ...assigned.keys()])],
    getOwnPropertyDescriptor: (_, name) => {
      const value = read(name);
      return value === undefined
        ? undefined
        : { value, enumerable: true, configurable: true, writable: true };
    },
  },
);
// No `process.versions`: libraries that test for Node take their browser path (Deta's SDK would
// otherwise look for `Buffer`, which this engine does not have).
globalThis.process ??= {
  env,
  argv: [],
  platform: "wasi",
  cwd: () => "/",
  nextTick: (fn, ...args) => queueMicrotask(() => fn(...args)),
};
globalThis.global ??= globalThis;

const engineFetch = globalThis.fetch;
globalThis.fetch = function fetch(input, init) {
  const headers = init?.headers;
  if (typeof input === "string" && headers && headers["X-API-Key"] === STAND_IN) {
    const key = read("DETA_PROJECT_KEY");
    input = input.replace(`/v1/${STAND_IN.split("_")[0]}/`, `/v1/${key.split("_")[0]}/`);
    init = { ...init, headers: { ...headers, "X-API-Key": key } };
  }
  return engineFetch(input, init);
};
