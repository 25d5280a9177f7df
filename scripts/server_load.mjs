#!/usr/bin/env node
// Load test of `ingot serve` (Node 20+, no npm packages): N concurrent streaming clients for a
// bounded time, with random disconnects and malformed requests mixed in. Reports total tokens/s,
// time to first token and inter-token latency percentiles, status counts (5xx must be 0), and
// the server's RSS after warm-up and at the end (from /proc). Exit 1 on a 5xx, a crash or a
// valid request left unanswered or refused.
//
// Usage:
//   node scripts/server_load.mjs --ingot build/tools/cli/ingot --model DIR [--dtype float32]
//        [--clients 64] [--seconds 120] [--max-tokens 32] [--warmup 10] [--max-batch 64]
//        [--max-rss-change PCT] [--sample S] [--server-args "ARGS"]
//   node scripts/server_load.mjs --url http://127.0.0.1:8080 --pid PID ...   (a running server)
// --max-rss-change: also exit 1 when the RSS at the end differs from the RSS after warm-up by
// more than PCT percent. The server's allocator keeps freed buffers for reuse up to its cache
// limit, so give the warm-up time to fill it (30 s for the 2-minute CPU run).
// --sample S: a series of the server's memory figures every S seconds (memory_series_mib).
// --server-args: extra options for `ingot serve` (split on spaces).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

// --server-args takes the next argument whatever it is (it starts with "--" itself).
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (all[i - 1] === "--server-args") return acc;
    if (a === "--server-args") acc.push(["server-args", all[i + 1] ?? ""]);
    else if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]?.startsWith("--") ? "1" : all[i + 1]]);
    return acc;
  }, []));
const clients = Number(args.clients ?? 64);
const seconds = Number(args.seconds ?? 120);
const warmup = Number(args.warmup ?? 10);
const maxTokens = Number(args["max-tokens"] ?? 32);
const model = args["model-name"] ?? "load";

function rssKiB(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;  // the server is gone (reported as a crash)
  }
}

async function startServer() {
  if (args.url) return { url: args.url, pid: Number(args.pid), proc: null };
  const a = ["serve", "--model", args.model, "--port", "0", "--model-name", model, "--quiet",
             "--max-queue", String(args["max-queue"] ?? 256), "--max-batch", String(args["max-batch"] ?? 64)];
  if (args.dtype) a.push("--dtype", args.dtype);
  if (args["server-args"]) a.push(...args["server-args"].split(" ").filter(Boolean));
  const proc = spawn(args.ingot, a, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const port = await new Promise((resolve, reject) => {
    proc.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/on http:\/\/[^:]+:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", (c) => reject(new Error(`server exited (${c}): ${err}`)));
  });
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid, proc };
}

const { url, pid, proc } = await startServer();
let crashed = false;
proc?.on("exit", (code, sig) => { if (!stopping) { crashed = true; console.error(`server died: ${code} ${sig}`); } });
let stopping = false;

const prompts = ["Once upon a time", "The weather today", "List three colors:", "def fib(n):",
                 "In 1492,", "Hello, my name is", "The capital of France", "Q: why? A:"];
const stats = {
  started: 0, completed: 0, disconnected: 0, malformed: 0, status: {}, tokens: 0,
  ttft: [], itl: [], unanswered: 0, refused: 0, errors: [],
};
const t0 = performance.now();
const deadline = t0 + seconds * 1000;
let warmTokens = 0;
let warmAt = 0;
let rssWarm = NaN;

function count(status) { stats.status[status] = (stats.status[status] ?? 0) + 1; }

async function malformed() {
  const bodies = ["{not json", JSON.stringify({ model, prompt: "x", max_tokens: 0 }),
                  JSON.stringify({ model: "nope", prompt: "x" }), JSON.stringify({ model, messages: "x" }),
                  JSON.stringify({ model, prompt: [1e12] }), "[]"];
  const body = bodies[Math.floor(Math.random() * bodies.length)];
  const r = await fetch(`${url}/v1/completions`, { method: "POST", body, headers: { "Content-Type": "application/json" } });
  await r.text();
  count(r.status);
  stats.malformed++;
  if (r.status !== 400) stats.errors.push(`malformed request answered ${r.status}`);
}

async function streaming(disconnectAfter) {
  const chat = Math.random() < 0.5;
  const prompt = prompts[Math.floor(Math.random() * prompts.length)];
  const greedy = Math.random() < 0.7;
  const body = { model, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true },
                 temperature: greedy ? 0 : 0.8, seed: Math.floor(Math.random() * 1e6) };
  if (chat) body.messages = [{ role: "user", content: prompt }];
  else body.prompt = prompt;
  const ctl = new AbortController();
  const start = performance.now();
  stats.started++;
  let r;
  try {
    r = await fetch(`${url}/v1/${chat ? "chat/completions" : "completions"}`, {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
      signal: ctl.signal });
  } catch (e) {
    stats.unanswered++;
    stats.errors.push(`connect: ${e.message}`);
    return;
  }
  count(r.status);
  if (r.status !== 200) {
    await r.text();
    stats.refused++;  // a valid request must be served (429 included: the queue is large enough)
    stats.errors.push(`valid request answered ${r.status}`);
    return;
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let last = 0;
  let chunks = 0;
  let done = false;
  try {
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, at);
        buf = buf.slice(at + 2);
        if (!ev.startsWith("data: ")) continue;
        const data = ev.slice(6);
        if (data === "[DONE]") { done = true; break; }
        const j = JSON.parse(data);
        if (j.error) { stats.errors.push(`stream error: ${j.error.message}`); continue; }
        if (j.usage) {
          stats.tokens += j.usage.completion_tokens;
          if (performance.now() > t0 + warmup * 1000) warmTokens += j.usage.completion_tokens;
        }
        const c = j.choices?.[0];
        const text = c ? (chat ? c.delta?.content : c.text) : "";
        if (text) {
          const now = performance.now();
          if (chunks === 0) stats.ttft.push(now - start);
          else stats.itl.push(now - last);
          last = now;
          chunks++;
          if (disconnectAfter !== null && chunks >= disconnectAfter) {
            ctl.abort();
            stats.disconnected++;
            return;
          }
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") stats.errors.push(`read: ${e.message}`);
    return;
  }
  if (done) stats.completed++;
  else { stats.unanswered++; stats.errors.push("stream ended without [DONE]"); }
}

async function client() {
  while (performance.now() < deadline && !crashed) {
    const u = Math.random();
    try {
      if (u < 0.1) await malformed();
      else await streaming(u < 0.2 ? 1 + Math.floor(Math.random() * 4) : null);
    } catch (e) {
      stats.errors.push(`client: ${e.message}`);
    }
  }
}

// The server's allocator figures (bytes in use, bytes cached for reuse) from /metrics.
async function allocBytes() {
  try {
    const m = await (await fetch(`${url}/metrics`)).text();
    const get = (k) => Number(m.match(new RegExp(`^${k} (\\S+)`, "m"))?.[1]) / 1048576;
    return { active: get("ingot_memory_active_bytes"), cache: get("ingot_memory_cache_bytes") };
  } catch {
    return { active: NaN, cache: NaN };
  }
}
let allocWarm = null;
const rssStart = rssKiB(pid);
// --sample S: every S seconds, the RSS and the server's memory figures from /metrics (where
// memory goes over the run: the device allocator's cache, the C library's heap, the KV cache).
const series = [];
const sampleEvery = Number(args.sample ?? 0);
const sampler = sampleEvery > 0 && setInterval(async () => {
  const t = Number(((performance.now() - t0) / 1000).toFixed(0));
  const rss = rssKiB(pid) / 1024;
  let m = "";
  try { m = await (await fetch(`${url}/metrics`)).text(); } catch { return; }
  const mib = (k) => Number((Number(m.match(new RegExp(`^${k} (\\S+)`, "m"))?.[1]) / 1048576).toFixed(1));
  series.push({ t, rss: Number(rss.toFixed(1)), alloc_active: mib("ingot_memory_active_bytes"),
                alloc_cache: mib("ingot_memory_cache_bytes"), malloc_in_use: mib("ingot_malloc_in_use_bytes"),
                malloc_free: mib("ingot_malloc_free_bytes"), kv: mib("ingot_kv_cache_bytes"),
                kv_reserved: mib("ingot_kv_reserved_bytes") });
}, sampleEvery * 1000);
setTimeout(async () => {
  rssWarm = rssKiB(pid);
  warmAt = performance.now();
  allocWarm = await allocBytes();
}, warmup * 1000);
await Promise.all(Array.from({ length: clients }, client));
if (sampler) clearInterval(sampler);
const elapsed = (performance.now() - t0) / 1000;
const rssEnd = rssKiB(pid);
const allocEnd = await allocBytes();
let metrics = "";
try { metrics = await (await fetch(`${url}/metrics`)).text(); } catch { /* reported below */ }
stopping = true;
proc?.kill("SIGTERM");

const pct = (a, p) => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fivexx = Object.entries(stats.status).filter(([s]) => Number(s) >= 500).reduce((n, [, c]) => n + c, 0);
const warmSeconds = warmAt ? (performance.now() - warmAt) / 1000 : elapsed;
const report = {
  clients, seconds: Number(elapsed.toFixed(1)), requests: stats.started, completed: stats.completed,
  disconnected: stats.disconnected, malformed: stats.malformed, status: stats.status,
  server_5xx: fivexx, unanswered: stats.unanswered, refused_valid: stats.refused, crashed,
  tokens: stats.tokens, tokens_per_s: Number((stats.tokens / elapsed).toFixed(1)),
  tokens_per_s_after_warmup: Number((warmTokens / warmSeconds).toFixed(1)),
  ttft_ms: { p50: pct(stats.ttft, 50), p99: pct(stats.ttft, 99) },
  itl_ms: { p50: pct(stats.itl, 50), p99: pct(stats.itl, 99) },
  rss_mib: { start: rssStart / 1024, after_warmup: rssWarm / 1024, end: rssEnd / 1024,
             change_after_warmup_pct: Number((100 * (rssEnd - rssWarm) / rssWarm).toFixed(1)) },
  allocator_mib: {
    after_warmup: allocWarm && { active: Number(allocWarm.active.toFixed(1)), cache: Number(allocWarm.cache.toFixed(1)) },
    end: { active: Number(allocEnd.active.toFixed(1)), cache: Number(allocEnd.cache.toFixed(1)) },
  },
  memory_release_seconds: Number(metrics.match(/^ingot_memory_release_seconds_total (\S+)/m)?.[1] ?? NaN),
  mean_running_batch: (() => {
    const steps = Number(metrics.match(/^ingot_decode_steps_total (\S+)/m)?.[1]);
    const rows = Number(metrics.match(/^ingot_decode_step_rows_total (\S+)/m)?.[1]);
    return steps ? Number((rows / steps).toFixed(2)) : null;
  })(),
  errors: [...new Set(stats.errors)].slice(0, 10),
};
for (const k of ["ttft_ms", "itl_ms"])
  for (const p of ["p50", "p99"]) report[k][p] = Number(report[k][p].toFixed(1));
for (const k of Object.keys(report.rss_mib)) report.rss_mib[k] = Number(report.rss_mib[k].toFixed(1));
if (series.length) {
  // Flatness over the whole run after warm-up, not only at its two ends: the samples' range.
  const after = series.filter((x) => x.t > warmup && Number.isFinite(x.rss));
  if (after.length && Number.isFinite(report.rss_mib.after_warmup)) {
    const lo = Math.min(...after.map((x) => x.rss)), hi = Math.max(...after.map((x) => x.rss));
    const w = report.rss_mib.after_warmup;
    report.rss_mib.samples_after_warmup = { min: lo, max: hi,
      max_change_pct: Number((100 * Math.max(hi - w, w - lo) / w).toFixed(1)) };
  }
  report.memory_series_mib = series;
}
console.log(JSON.stringify(report, null, 2));
const maxRss = args["max-rss-change"] === undefined ? Infinity : Number(args["max-rss-change"]);
const rssBad = !(Math.abs(report.rss_mib.change_after_warmup_pct) <= maxRss);
if (rssBad) console.error(`RSS changed by ${report.rss_mib.change_after_warmup_pct}% after warm-up (limit ${maxRss}%)`);
process.exit(fivexx || crashed || stats.unanswered || stats.refused || rssBad ? 1 : 0);
