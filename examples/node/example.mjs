// airlock from Node: run a command, give the guest a secret it only sees as a placeholder, and
// watch a request to a host outside allow_net be refused.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const airlock = require(process.env.AIRLOCK_NODE_PACKAGE ?? '../../bindings/node/index.js');
const REAL_KEY = 'sk-example-0123456789abcdef-not-real';

const sb = await airlock.Sandbox.create({
  allowNet: ['api.example.com'],
  secrets: { API_KEY: { value: REAL_KEY, hosts: ['api.example.com'] } },
  bootTimeout: 240000,
});

// With Node >= 24: `await using box = sb;`. Node 20 disposes explicitly:
const box = sb;
try {
  console.log('command:', await box.sh`echo hello from $(uname -s) $(uname -r)`.text());
  const seen = await box.sh`printf %s "$API_KEY"`.text();
  console.log(`guest sees API_KEY=${seen}`);
  if (!seen || seen.includes(REAL_KEY)) throw new Error('the guest saw the real key or nothing');
  // The interpolated value is quoted for the shell by the tagged template.
  const url = 'http://example.org/';
  const out = await box.sh`wget -q -O /dev/null ${url} 2>&1; echo " exit=$?"`.text();
  console.log('request to example.org:', out);
  if (!out.includes('403') || out.includes('exit=0')) {
    throw new Error("expected the proxy's 403 for example.org");
  }
} finally {
  await box[Symbol.asyncDispose]();
}
console.log('EXAMPLE ok command=ok secret=placeholder egress=refused');
