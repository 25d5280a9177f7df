// llama.cpp side of the CPU comparison (issue 14): prefill and decode throughput of a GGUF file
// through node-llama-cpp's prebuilt llama.cpp (CPU build, no GPU), or its logits on given ids
// for the agreement check. Nothing of llama.cpp is vendored: node-llama-cpp is installed outside
// the repository, in LLAMACPP_DIR (default /tmp/llamacpp; scripts/llamacpp_bench.sh installs it).
//
//   node scripts/llamacpp_bench.mjs bench --model m.gguf --threads 1 [--pp 128] [--tg 64]
//        [--prompt 16] [--repeat 3] [--seed 0] [--vocab 32000] [--flash-attention off|on]
//     One JSON line: pp_tok_s (best of --repeat prefills of --pp random ids into an empty
//     sequence, after one warm-up) and tg_tok_s (best of --repeat greedy generations of --tg
//     tokens after a --prompt-token prompt: forward passes after the first sampled id, i.e.
//     (tg - 1) / seconds from the first sampled id to the last); pp_cpu_seconds and
//     tg_cpu_seconds_per_token: the least CPU time (user + system, all threads) of those runs.
//   node scripts/llamacpp_bench.mjs logits --model m.gguf --ids 1,2,3 [--top 0]
//     One JSON line: the raw logits at every position (or the top --top ids and values), and
//     greedy: the argmax at each position.
//   node scripts/llamacpp_bench.mjs generate --model m.gguf --ids 1,2,3 --new 16
//     One JSON line: the greedy continuation of the ids.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const DIR = process.env.LLAMACPP_DIR || "/tmp/llamacpp";
const PKG = join(DIR, "node_modules", "node-llama-cpp");
let lib;
try {
  lib = await import(pathToFileURL(join(PKG, "dist", "index.js")).href);
} catch (e) {
  console.error(`llamacpp_bench: cannot load node-llama-cpp from ${PKG} (${e.message}); ` +
                "run scripts/llamacpp_bench.sh install");
  process.exit(1);
}
const {getLlama, LlamaLogLevel} = lib;

function parseArgs(argv) {
  const out = {_: []};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith("--")) throw new Error(`${a} needs a value`);
      out[a.slice(2)] = v;
      i++;
    } else {
      out._.push(a);
    }
  }
  return out;
}

function int(args, key, def) {
  if (args[key] === undefined) return def;
  const v = Number(args[key]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${key} must be a non-negative integer`);
  return v;
}

// xorshift32: deterministic random ids in [16, min(vocab, 32000)) (as `ingot bench` draws them).
function randomIds(n, vocab, seed) {
  let s = (seed * 2654435761 + 12345) >>> 0 || 1;
  const hi = Math.max(17, Math.min(vocab, 32000));
  const ids = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    ids.push(16 + (s % (hi - 16)));
  }
  return ids;
}

function version() {
  return JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")).version;
}

async function open(args, threads, ctxSize) {
  const llama = await getLlama({gpu: false, build: "never", maxThreads: threads,
                                logLevel: LlamaLogLevel.error});
  const model = await llama.loadModel({modelPath: args.model});
  const fa = (args["flash-attention"] ?? "off") === "on";
  const context = await model.createContext({contextSize: ctxSize, batchSize: ctxSize,
                                             threads: {ideal: threads, min: threads},
                                             flashAttention: fa});
  return {llama, model, context, fa};
}

function info(llama, model, threads, fa) {
  return {engine: "llama.cpp", node_llama_cpp: version(), llama_cpp_release: llama.llamaCppRelease,
          build: llama.buildType, threads, flash_attention: fa, model_size: model.size,
          system_info: llama.systemInfo};
}

async function bench(args) {
  const threads = int(args, "threads", 1);
  const pp = int(args, "pp", 128), tg = int(args, "tg", 64), prompt = int(args, "prompt", 16);
  const repeat = int(args, "repeat", 3), seed = int(args, "seed", 0);
  if (threads < 1 || pp < 1 || tg < 2 || prompt < 1 || repeat < 1)
    throw new Error("--threads, --pp, --prompt, --repeat >= 1 and --tg >= 2");
  const {llama, model, context, fa} = await open(args, threads,
                                                 Math.max(pp, prompt + tg) + 64);
  const vocab = int(args, "vocab", 32000);  // ids below min(vocab, 32000)
  const seq = context.getSequence();

  // CPU seconds of the whole process (every thread), for runs on a shared machine.
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  let ppBest = Infinity, ppCpu = Infinity;
  for (let r = 0; r <= repeat; r++) {  // run 0 is the warm-up
    await seq.clearHistory();
    const ids = randomIds(pp, vocab, seed + r);
    const c0 = cpu();
    const t0 = process.hrtime.bigint();
    await seq.evaluateWithoutGeneratingNewTokens(ids);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = cpu() - c0;
    if (r > 0) {
      ppBest = Math.min(ppBest, s);
      ppCpu = Math.min(ppCpu, c);
    }
  }

  let tgBest = Infinity, tgCpu = Infinity;
  for (let r = 0; r <= repeat; r++) {
    await seq.clearHistory();
    const ids = randomIds(prompt, vocab, seed + 1000 + r);
    let n = 0, tFirst = 0n, tLast = 0n, cFirst = 0, cLast = 0;
    for await (const _tok of seq.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
      const t = process.hrtime.bigint(), c = cpu();
      if (n === 0) {
        tFirst = t;
        cFirst = c;
      }
      tLast = t;
      cLast = c;
      if (++n >= (r === 0 ? Math.min(tg, 8) : tg)) break;
    }
    const s = Number(tLast - tFirst) / 1e9;
    if (r > 0) {
      tgBest = Math.min(tgBest, s / (tg - 1));
      tgCpu = Math.min(tgCpu, (cLast - cFirst) / (tg - 1));
    }
  }
  const out = {...info(llama, model, threads, fa), model: args.model, pp, tg, prompt, repeat,
               pp_tok_s: pp / ppBest, pp_seconds: ppBest, tg_tok_s: 1 / tgBest,
               pp_cpu_seconds: ppCpu, tg_cpu_seconds_per_token: tgCpu};
  console.log(JSON.stringify(out));
  await context.dispose();
  await model.dispose();
}

function parseIds(args) {
  if (!args.ids) throw new Error("--ids 1,2,3 is required");
  const ids = args.ids.split(",").map(Number);
  if (ids.some(x => !Number.isInteger(x) || x < 0)) throw new Error("--ids: integers >= 0");
  return ids;
}

async function logits(args) {
  const ids = parseIds(args);
  const top = int(args, "top", 0);
  const threads = int(args, "threads", 1);
  const {llama, model, context, fa} = await open(args, threads, Math.max(64, ids.length + 8));
  const seq = context.getSequence();
  const res = await seq.controlledEvaluate(ids.map(t => [t, {generateNext: {logits: true}}]));
  const rows = [], greedy = [];
  for (const r of res) {
    const m = r?.next?.logits;
    if (!m) throw new Error("no logits returned");
    const entries = [...m.entries()];
    let best = entries[0];
    for (const e of entries) if (e[1] > best[1]) best = e;
    greedy.push(best[0]);
    if (top > 0) {
      entries.sort((a, b) => b[1] - a[1]);
      rows.push(entries.slice(0, top));
    } else {
      const dense = new Array(entries.length);
      for (const [k, v] of entries) dense[k] = v;
      rows.push(dense);
    }
  }
  console.log(JSON.stringify({...info(llama, model, threads, fa), ids, greedy, logits: rows}));
  await context.dispose();
  await model.dispose();
}

async function generate(args) {
  const ids = parseIds(args);
  const n = int(args, "new", 16);
  const threads = int(args, "threads", 1);
  const {llama, model, context, fa} = await open(args, threads, ids.length + n + 64);
  const seq = context.getSequence();
  const tokens = [];
  if (n > 0) {
    for await (const t of seq.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
      tokens.push(t);
      if (tokens.length >= n) break;
    }
  }
  console.log(JSON.stringify({...info(llama, model, threads, fa), ids, tokens}));
  await context.dispose();
  await model.dispose();
}

const args = parseArgs(process.argv.slice(2));
const cmd = args._[0];
if (!args.model) {
  console.error("usage: llamacpp_bench.mjs bench|logits|generate --model FILE.gguf ...");
  process.exit(2);
}
try {
  if (cmd === "bench") await bench(args);
  else if (cmd === "logits") await logits(args);
  else if (cmd === "generate") await generate(args);
  else throw new Error(`unknown command ${cmd}`);
} catch (e) {
  console.error(`llamacpp_bench: ${e.message}`);
  process.exit(1);
}
