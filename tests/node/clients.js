// Drives ioredis and node-redis (their defaults) against a Redis-compatible server and prints
// one JSON object of what they saw. Usage: node clients.js PORT PREFIX KEY1 KEY2, where KEY1
// and KEY2 live on different shards (a transaction over both must be refused).
// Run by tests/test_npm_clients.py, which asserts on the output.
"use strict";
const Redis = require("ioredis");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const prefix = process.argv[3];
const [crossA, crossB] = process.argv.slice(4, 6);

async function withIoredis() {
  const r = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  try {
    const exec = await r.multi()
      .set(`${prefix}:{io}a`, "1").incr(`${prefix}:{io}b`).get(`${prefix}:{io}a`).exec();
    r.defineCommand("addTwo", {
      numberOfKeys: 1,
      lua: "return redis.call('INCRBY', KEYS[1], 2)",
    });
    const added = [await r.addTwo(`${prefix}:io:n`), await r.addTwo(`${prefix}:io:n`)];
    let failedTransaction = null;
    try {
      await r.multi().set(crossA, "1").set(crossB, "2").exec();
    } catch (e) {
      failedTransaction = String(e.message || e);
    }
    const scanned = [];
    await new Promise((resolve, reject) => {
      r.scanStream({ match: `${prefix}:scan:*`, count: 100 })
        .on("data", (keys) => scanned.push(...keys)).on("end", resolve).on("error", reject);
    });
    return { exec, added, failedTransaction, scanned: scanned.sort() };
  } finally {
    r.disconnect();
  }
}

async function withNodeRedis() {
  const c = createClient({ socket: { host: "127.0.0.1", port } });
  await c.connect();
  try {
    const exec = await c.multi()
      .set(`${prefix}:{nr}a`, "1").incr(`${prefix}:{nr}b`).get(`${prefix}:{nr}a`).exec();
    const scanned = [];
    for await (const key of c.scanIterator({ MATCH: `${prefix}:scan:*`, COUNT: 100 })) {
      scanned.push(key);
    }
    return { exec, scanned: scanned.sort() };
  } finally {
    await c.quit();
  }
}

(async () => {
  const out = { ioredis: await withIoredis(), noderedis: await withNodeRedis() };
  process.stdout.write(JSON.stringify(out) + "\n");
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
