// Written by `micros import`: `node-fetch` for bundled packages is the engine's own fetch, which
// goes out through wasi:http.
const fetch = (...args) => globalThis.fetch(...args);
export default fetch;
export const { Headers, Request, Response } = globalThis;
