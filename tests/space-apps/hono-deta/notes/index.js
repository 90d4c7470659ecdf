// A fetch-style Hono app with Deta's SDK (2.0.0, an ES module), as a Space Node Micro.
import { Hono } from "hono";
import { Deta } from "deta";

const app = new Hono();
const deta = Deta(); // the key comes from DETA_PROJECT_KEY
const notes = deta.Base("notes");
const files = deta.Drive("files");

app.get("/", (c) => c.text("hello from hono\n"));
app.post("/notes", async (c) => c.json(await notes.put(await c.req.json()), 201));
app.get("/notes", async (c) => {
  const { items, count } = await notes.fetch();
  return c.json({ count, keys: items.map((item) => item.key).sort() });
});
app.get("/notes/:key", async (c) => {
  const item = await notes.get(c.req.param("key"));
  return item ? c.json(item) : c.json({ error: "not found" }, 404);
});
app.put("/files/:name", async (c) =>
  c.json({ name: await files.put(c.req.param("name"), { data: await c.req.text() }) }));
app.get("/files/:name", async (c) => {
  const blob = await files.get(c.req.param("name"));
  return blob ? c.text(await blob.text()) : c.json({ error: "not found" }, 404);
});
// Space delivered scheduled actions here.
app.post("/__space/v0/actions", async (c) => {
  const { event } = await c.req.json();
  await notes.put({ event: event.id }, "last-action");
  return c.json({ ran: event.id });
});

export default app;
