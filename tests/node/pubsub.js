// ioredis's subscriber (its defaults) on one server, messages published on another.
// Usage: node pubsub.js SUB_PORT PUB_PORT CHANNEL... ; prints the messages heard as JSON.
// Run by tests/test_npm_clients.py.
"use strict";
const Redis = require("ioredis");

const [subPort, pubPort, ...channels] = process.argv.slice(2);

(async () => {
  const sub = new Redis({ host: "127.0.0.1", port: Number(subPort) });
  const pub = new Redis({ host: "127.0.0.1", port: Number(pubPort) });
  const heard = [];
  const all = new Promise((resolve) => {
    sub.on("message", (channel, message) => {
      heard.push([channel, message]);
      if (heard.length === channels.length * 5) resolve();
    });
  });
  await sub.subscribe(...channels);
  for (let i = 0; i < 5; i++) {
    for (const channel of channels) await pub.publish(channel, `${channel}#${i}`);
  }
  const timer = setTimeout(() => { process.stderr.write("timed out\n"); process.exit(2); }, 10000);
  await all;
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(heard) + "\n");
  sub.disconnect();
  pub.disconnect();
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
