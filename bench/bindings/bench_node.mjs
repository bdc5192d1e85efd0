// sh("true") round trips through the Node binding: prints the median in microseconds.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Sandbox } = require('../../bindings/node/index.js');

const n = Number(process.argv[2] ?? 200);
const sb = await Sandbox.create({ bootTimeout: 240000 });
for (let i = 0; i < 20; i++) await sb.sh`true`;
const us = [];
for (let i = 0; i < n; i++) {
  const t = process.hrtime.bigint();
  const r = await sb.sh`true`;
  if (r.exitCode !== 0) throw new Error('true failed');
  us.push(Number(process.hrtime.bigint() - t) / 1e3);
}
await sb.close();
us.sort((a, b) => a - b);
console.log(`node_us=${us[Math.floor(n / 2)].toFixed(1)}`);
