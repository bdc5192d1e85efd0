// bench/bindings, Node side: sh("true") round trips through the Node binding (`await sb.sh`)
// and, on the same sandbox in the same process, through the C ABI (the addon's internal
// _benchShLoop: the same airlock_sandbox_sh call in a loop on a pool thread, on this sandbox's
// handle). Rounds alternate so drift on the (nested, shared) machine hits both alike.
// Prints c_ns and node_ns medians.
//   node bench_node.mjs [N]
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Sandbox } = require('../../bindings/node/index.js');

const n = Number(process.argv[2] ?? 200);
const rounds = 10;
const perRound = Math.max(1, Math.floor(n / rounds));
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

async function nodeRound(sb, k) {
  const ns = [];
  for (let i = 0; i < k; i++) {
    const t = process.hrtime.bigint();
    const r = await sb.sh`true`;
    ns.push(Number(process.hrtime.bigint() - t));
    if (r.exitCode !== 0) throw new Error('true failed');
  }
  return ns;
}

const sb = await Sandbox.create({ bootTimeout: 600000 });
try {
  await sb._benchShLoop(10);  // warm-up, both paths
  await nodeRound(sb, 10);
  const c = [], js = [];
  for (let r = 0; r < rounds; r++) {
    c.push(...await sb._benchShLoop(perRound));
    js.push(...await nodeRound(sb, perRound));
  }
  console.log(`c_ns=${median(c).toFixed(0)} node_ns=${median(js).toFixed(0)} n=${js.length}`);
} finally {
  await sb.close();
}
