// The same in CommonJS with Deta's SDK 1.2.0, as older Space apps were written.
const { Hono } = require("hono");
const { Deta } = require("deta");

const app = new Hono();

app.get("/sdk", async (c) => {
  const db = Deta().Base("legacy");
  const out = {};
  out.put = await db.put({ text: "a" }, "k1");
  out.insert = await db.insert({ n: 1 }, "k2");
  out.taken = await db.insert({ n: 1 }, "k2").catch((error) => error.message);
  await db.update({ n: db.util.increment(2), tags: db.util.append("x") }, "k2");
  out.updated = await db.get("k2");
  out.missing = await db.get("nope");
  out.page = await db.fetch({ "n?gt": 0 });
  await db.delete("k1");
  out.deleted = await db.get("k1");
  return c.json(out);
});

module.exports = app;
