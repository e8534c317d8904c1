// bench_tokenize_js.js: the npm package gpt-3-encoder's encode() (the JS
// reference) over the same corpus, same passes, as bench_tokenize.
// Usage: node bench_tokenize_js.js PACKAGE_DIR CORPUS_JSONL [PASSES]
const fs = require('fs');
const path = require('path');
const enc = require(path.join(process.argv[2], 'package', 'Encoder.js'));
const lines = fs.readFileSync(process.argv[3], 'utf-8').split('\n').filter(l => l.length);
const strs = lines.map(l => JSON.parse(l));
const passes = parseInt(process.argv[4] || '5');
const bytes = strs.reduce((a, s) => a + Buffer.byteLength(s, 'utf-8'), 0);
let best = 1e30, bestCpu = 1e30;
for (let p = 0; p < passes; p++) {
  const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
  let ids = 0;
  for (const s of strs) ids += enc.encode(s).length;
  const w = Number(process.hrtime.bigint() - t0) / 1e9;
  const cu = process.cpuUsage(c0), c = (cu.user + cu.system) / 1e6;
  if (p === 0)
    console.log(`js         cold  ${strs.length} strings, ${(bytes / 1e6).toFixed(3)} MB, ${ids} ids: ` +
                `${(bytes / 1e6 / w).toFixed(2)} MB/s wall, ${(bytes / 1e6 / c).toFixed(2)} MB/s CPU`);
  else { best = Math.min(best, w); bestCpu = Math.min(bestCpu, c); }
}
if (passes > 1)
  console.log(`js         warm  best of ${passes - 1} passes: ${(bytes / 1e6 / best).toFixed(2)} MB/s wall, ` +
              `${(bytes / 1e6 / bestCpu).toFixed(2)} MB/s CPU`);
