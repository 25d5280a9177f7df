// End-to-end test of `ingot serve` with the official `openai` npm client: completions, chat,
// streaming, embeddings, structured output (every json_schema answer is validated by ajv),
// tool calls and logprobs; greedy answers must equal `ingot generate`'s, logprobs the float64
// log-softmax of `ingot logits`.
// Usage: node openai_e2e.mjs INGOT_BIN MODEL_DIR NODE_PREFIX (node_modules with openai + ajv)
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import assert from "node:assert/strict";

const [ingot, modelDir, prefix] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(prefix), "package.json"));
const OpenAI = require("openai");
const Ajv = require("ajv");

const MODEL = "tiny";
let failures = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(ingot, ["serve", "--model", modelDir, "--dtype", "float32", "--port", "0",
                            "--model-name", MODEL, "--quiet"], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error("server did not start: " + err)), 60000);
    p.stderr.on("data", (d) => {
      err += d.toString();
      const m = err.match(/on http:\/\/[^:]+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc: p, port: Number(m[1]) });
      }
    });
    p.on("exit", (code) => reject(new Error(`server exited (${code}): ${err}`)));
  });
}

// `ingot generate` greedy output for the same prompt (the reference for the server's text).
function generateCli(prompt, maxTokens, chat) {
  const args = ["generate", "--model", modelDir, "--dtype", "float32", "--prompt", prompt,
                "--max-tokens", String(maxTokens), "--quiet"];
  if (chat) args.push("--chat");
  return execFileSync(ingot, args, { encoding: "utf8" });
}

const { proc, port } = await startServer();
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });

try {
  await check("models.list", async () => {
    const page = await client.models.list();
    assert.deepEqual(page.data.map((m) => m.id), [MODEL]);
  });

  await check("completions greedy = ingot generate", async () => {
    for (const prompt of ["Hello world", "The quick brown fox"]) {
      const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 24, temperature: 0 });
      assert.equal(r.object, "text_completion");
      assert.equal(r.choices[0].text, generateCli(prompt, 24, false));
      assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 24);
    }
  });

  await check("chat greedy = ingot generate --chat", async () => {
    const r = await client.chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Say hi" }], max_tokens: 24, temperature: 0 });
    assert.equal(r.choices[0].message.role, "assistant");
    assert.equal(r.choices[0].message.content, generateCli("Say hi", 24, true));
  });

  await check("streaming completions and chat equal the whole answers", async () => {
    const whole = await client.completions.create({ model: MODEL, prompt: "Once upon", max_tokens: 20, temperature: 0 });
    let text = "";
    let finish = null;
    const s = await client.completions.create({ model: MODEL, prompt: "Once upon", max_tokens: 20,
                                                temperature: 0, stream: true });
    for await (const c of s) {
      text += c.choices[0]?.text ?? "";
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finish, whole.choices[0].finish_reason);

    const msgs = [{ role: "user", content: "Tell me" }];
    const wc = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 20, temperature: 0 });
    let ct = "";
    let usage = null;
    const cs = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 20,
                                                      temperature: 0, stream: true,
                                                      stream_options: { include_usage: true } });
    for await (const c of cs) {
      ct += c.choices[0]?.delta?.content ?? "";
      if (c.usage) usage = c.usage;
    }
    assert.equal(ct, wc.choices[0].message.content);
    // The same counts, except that the second request reuses the first one's prompt from the
    // prompt cache: its whole 16-token blocks below the last prompt token.
    const { prompt_tokens_details: wd, ...wrest } = wc.usage;
    const { prompt_tokens_details: sd, ...srest } = usage;
    assert.deepEqual(srest, wrest);
    assert.equal(sd.cached_tokens, Math.floor((usage.prompt_tokens - 1) / 16) * 16);
    assert.ok(wd.cached_tokens >= 0);
  });

  await check("sampling with a seed repeats", async () => {
    const req = { model: MODEL, prompt: "Seeded", max_tokens: 16, temperature: 0.9, seed: 42 };
    const a = await client.completions.create(req);
    const b = await client.completions.create(req);
    assert.equal(a.choices[0].text, b.choices[0].text);
  });

  await check("embeddings", async () => {
    const r = await client.embeddings.create({ model: MODEL, input: ["alpha", "beta gamma"] });
    assert.equal(r.data.length, 2);
    const one = await client.embeddings.create({ model: MODEL, input: "beta gamma" });
    const a = r.data[1].embedding;
    const b = one.data[0].embedding;
    assert.ok(a.length > 0 && a.every(Number.isFinite));
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-4 * (1 + Math.abs(b[i])));
  });

  // ---- structured output ----
  const ajv = new Ajv({ strict: false });
  const schemas = {
    person: {
      type: "object",
      properties: {
        name: { type: "string", maxLength: 8 },
        age: { type: "integer" },
        mood: { enum: ["happy", "sad", null] },
        admin: { type: "boolean" },
      },
      required: ["name", "age", "mood", "admin"],
      additionalProperties: false,
    },
    list: {
      type: "object",
      properties: {
        items: { type: "array", items: { $ref: "#/$defs/pt" }, minItems: 1, maxItems: 3 },
        kind: { anyOf: [{ type: "null" }, { const: "point" }] },
      },
      required: ["items", "kind"],
      additionalProperties: false,
      $defs: {
        pt: { type: "object", properties: { x: { type: "number" }, y: { type: ["integer", "null"] } },
              required: ["x", "y"], additionalProperties: false },
      },
    },
    flags: { type: "array", items: { type: "boolean" }, minItems: 2, maxItems: 4 },
  };
  await check("json_schema answers parse and validate (greedy, sampled, streamed)", async () => {
    for (const [name, schema] of Object.entries(schemas)) {
      const validate = ajv.compile(schema);
      for (const [i, extra] of [{ temperature: 0 }, { temperature: 1, seed: 1 }, { temperature: 1, seed: 2 },
                                { temperature: 0.7, seed: 3, stream: true }].entries()) {
        const req = { model: MODEL, messages: [{ role: "user", content: `Give a ${name}` }],
                      max_tokens: 200, ...extra,
                      response_format: { type: "json_schema", json_schema: { name, schema, strict: true } } };
        let content = "";
        let finish = null;
        if (extra.stream) {
          for await (const c of await client.chat.completions.create(req)) {
            content += c.choices[0]?.delta?.content ?? "";
            finish = c.choices[0]?.finish_reason ?? finish;
          }
        } else {
          const r = await client.chat.completions.create(req);
          content = r.choices[0].message.content;
          finish = r.choices[0].finish_reason;
        }
        assert.equal(finish, "stop", `${name}#${i} did not finish: ${content}`);
        const doc = JSON.parse(content);
        assert.ok(validate(doc), `${name}#${i}: ${content} ${JSON.stringify(validate.errors)}`);
      }
    }
  });

  await check("json_object answers are JSON objects", async () => {
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model: MODEL, messages: [{ role: "user", content: "json please" }], max_tokens: 150,
        temperature: 1, seed, response_format: { type: "json_object" } });
      const c = r.choices[0];
      if (c.finish_reason === "stop") {
        const doc = JSON.parse(c.message.content);
        assert.ok(doc !== null && typeof doc === "object" && !Array.isArray(doc), c.message.content);
      } else {
        assert.equal(c.finish_reason, "length");
        assert.ok(c.message.content.startsWith("{"), c.message.content);
      }
    }
  });

  await check("schemas it cannot enforce are 400 naming the keyword", async () => {
    for (const [kw, schema] of [["pattern", { type: "string", pattern: "^a" }],
                                ["minimum", { type: "integer", minimum: 3 }],
                                ["recursive", { $defs: { n: { type: "array", items: { $ref: "#/$defs/n" } } },
                                                $ref: "#/$defs/n" }]]) {
      await assert.rejects(
        client.chat.completions.create({
          model: MODEL, messages: [{ role: "user", content: "x" }],
          response_format: { type: "json_schema", json_schema: { name: "s", schema } } }),
        (e) => e.status === 400 && e.message.includes(kw) && e.param === "response_format");
    }
  });

  if (process.env.INGOT_E2E_TOOLS !== "0") {
    await check("tool calls: required / named produce parseable tool_calls", async () => {
      const tools = [{
        type: "function",
        function: { name: "get_weather", description: "Weather of a city",
                    parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 },
                                                                unit: { enum: ["c", "f"] } },
                                  required: ["city", "unit"], additionalProperties: false } },
      }];
      const validate = ajv.compile(tools[0].function.parameters);
      for (const tool_choice of ["required", { type: "function", function: { name: "get_weather" } }]) {
        const r = await client.chat.completions.create({
          model: MODEL, messages: [{ role: "user", content: "Weather in Paris?" }], tools, tool_choice,
          max_tokens: 120, temperature: 0 });
        const c = r.choices[0];
        assert.equal(c.finish_reason, "tool_calls", JSON.stringify(c));
        assert.equal(c.message.tool_calls.length, 1);
        const call = c.message.tool_calls[0];
        assert.equal(call.type, "function");
        assert.equal(call.function.name, "get_weather");
        assert.ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);
        // The call and its result go back into the history.
        const r2 = await client.chat.completions.create({
          model: MODEL, max_tokens: 8, temperature: 0, tools,
          messages: [{ role: "user", content: "Weather in Paris?" }, c.message,
                     { role: "tool", tool_call_id: call.id, content: "{\"temp\": 21}" }] });
        assert.ok(["stop", "length", "tool_calls"].includes(r2.choices[0].finish_reason));
      }
      const none = await client.chat.completions.create({
        model: MODEL, messages: [{ role: "user", content: "hi" }], tools, tool_choice: "none",
        max_tokens: 8, temperature: 0 });
      assert.notEqual(none.choices[0].finish_reason, "tool_calls");
    });
  }

  // ---- logprobs ----
  // The reference: `ingot logits` of prompt + generated ids (one full-sequence pass, no KV
  // cache) and a float64 log-softmax here. Generated ids come from the tokens' bytes through
  // tokenizer.json's vocabulary (ByteLevel: GPT-2's byte alphabet).
  const vocab = JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer.json"), "utf8")).model.vocab;
  const byteOfChar = new Map();
  {
    const bs = [];
    for (let b = 33; b <= 126; b++) bs.push(b);
    for (let b = 161; b <= 172; b++) bs.push(b);
    for (let b = 174; b <= 255; b++) bs.push(b);
    const cs = bs.slice();
    for (let b = 0, n = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
    bs.forEach((b, i) => byteOfChar.set(String.fromCodePoint(cs[i]), b));
  }
  const idOfBytes = new Map();
  for (const [tok, id] of Object.entries(vocab)) {
    const bytes = [...tok].map((c) => byteOfChar.get(c));
    if (!bytes.includes(undefined)) idOfBytes.set(bytes.join(","), id);
  }
  const idOf = (bytes) => {
    const id = idOfBytes.get(bytes.join(","));
    assert.ok(id !== undefined, `no vocabulary entry has the bytes ${bytes}`);
    return id;
  };
  // Float64 log-softmax rows of the logits after every position of `ids`.
  function refLogprobs(ids) {
    const out = execFileSync(ingot, ["logits", "--model", modelDir, "--dtype", "float32", "--ids",
                                     ids.join(","), "--all-positions"], { encoding: "utf8", maxBuffer: 1 << 28 });
    return JSON.parse(out).logits.map((row) => {
      const m = Math.max(...row);
      const z = Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
      return row.map((x) => x - m - z);
    });
  }
  // Server (float32 model, incremental decode with a KV cache, batched rows) vs the reference
  // (float32, one full pass): the logits differ by float32 rounding of differently ordered sums
  // (~1e-6 relative on logits of magnitude < 10), which moves a log-softmax value by ~1e-5;
  // 2e-4 is the bound llm's score tests use for the same comparison. A wrong position or a
  // temperature-scaled distribution is off by > 1e-2.
  const TOL = 2e-4;
  // Checks one choice's entries ([{bytes, logprob, top: [{bytes, logprob}]}]) against the
  // reference for prompt ids `prompt`; `k` alternatives were asked for; `greedy`: the chosen
  // token is the most likely one.
  function checkEntries(entries, prompt, k, greedy, what) {
    assert.ok(entries.length >= 1, `${what}: no logprobs`);
    const gen = entries.map((e) => idOf(e.bytes));
    const ref = refLogprobs([...prompt, ...gen]);
    entries.forEach((e, j) => {
      const at = `${what} token ${j}`;
      const row = ref[prompt.length - 1 + j];
      assert.ok(e.logprob <= 0, at);
      assert.ok(Math.abs(e.logprob - row[gen[j]]) <= TOL, `${at}: ${e.logprob} vs ${row[gen[j]]}`);
      assert.equal(e.top.length, k, at);
      let sum = 0;
      e.top.forEach((t, i) => {
        assert.ok(t.logprob <= 0, at);
        if (i) assert.ok(t.logprob <= e.top[i - 1].logprob, `${at}: top not sorted`);
        assert.ok(Math.abs(t.logprob - row[idOf(t.bytes)]) <= TOL, `${at} top ${i}`);
        sum += Math.exp(t.logprob);
      });
      assert.ok(sum <= 1 + 1e-6, `${at}: exps sum to ${sum}`);
      const best = [...row].sort((a, b) => b - a).slice(0, k);
      best.forEach((v, i) => assert.ok(Math.abs(e.top[i].logprob - v) <= TOL, `${at} best ${i}`));
      if (greedy && k > 0) {
        // The chosen value and the top-1 value are read from the same array: equal bits.
        assert.equal(e.logprob, e.top[0].logprob, at);
        if (e.top.length < 2 || e.top[1].logprob < e.top[0].logprob)
          assert.deepEqual(e.bytes, e.top[0].bytes, at);
      }
    });
  }
  const utf8 = (s) => [...Buffer.from(s, "utf8")];
  const opaque = (s) => s.includes("\uFFFD");  // part of a character: its bytes are unknown
  const chatEntries = (content) =>
    content.map((e) => ({ bytes: e.bytes, logprob: e.logprob,
                          top: e.top_logprobs.map((t) => ({ bytes: t.bytes, logprob: t.logprob })) }));
  // The chat prompt's ids (`ingot chat-template` rendered, `ingot tokenize`d): a completions
  // request with these ids decodes as the chat request does, and the chat entries' `bytes`
  // name the generated ids (the legacy format's texts of partial characters do not).
  const messages = [{ role: "user", content: "Tell me" }];
  const rendered = execFileSync(ingot, ["chat-template", "--tokenizer", modelDir,
                                        "--add-generation-prompt", "true"],
                                { input: JSON.stringify(messages), encoding: "utf8" });
  const PROMPT_IDS = execFileSync(ingot, ["tokenize", "--tokenizer", modelDir, "--add-special", "false"],
                                  { input: rendered, encoding: "utf8" }).trim().split(/\s+/).map(Number);
  // One entry per sampled token but an EOS.
  const expectCount = (r, n) =>
    assert.equal(n, r.usage.completion_tokens - (r.choices[0].finish_reason === "stop" ? 1 : 0));
  // Legacy completions logprobs of prompt + `gen` against the reference; `k` asked for.
  function checkLegacy(lp, prompt, gen, k, greedy, what) {
    assert.equal(lp.tokens.length, gen.length, what);
    assert.equal(lp.token_logprobs.length, gen.length, what);
    assert.equal(lp.top_logprobs.length, gen.length, what);
    const ref = refLogprobs([...prompt, ...gen]);
    let off = 0;
    lp.tokens.forEach((t, j) => {
      const at = `${what} token ${j}`;
      const row = ref[prompt.length - 1 + j];
      const best = [...row].sort((a, b) => b - a).slice(0, k);
      assert.equal(lp.text_offset[j], off, at);
      off += [...t].length;
      const v = lp.token_logprobs[j];
      assert.ok(v <= 0 && Math.abs(v - row[gen[j]]) <= TOL, `${at}: ${v} vs ${row[gen[j]]}`);
      const dict = lp.top_logprobs[j];
      const keys = Object.keys(dict);
      assert.ok(keys.length >= 1 && keys.length <= k + 1, at);
      if (!opaque(t)) assert.equal(dict[t], v, at);  // the chosen token is always there
      let sum = 0;
      for (const [s, x] of Object.entries(dict)) {
        sum += Math.exp(x);
        assert.ok(x === v || best.some((b) => Math.abs(b - x) <= TOL), `${at}: ${s} not in the top ${k}`);
        if (!opaque(s)) assert.ok(Math.abs(x - row[idOf(utf8(s))]) <= TOL, `${at}: ${s}`);
      }
      assert.ok(sum <= 1 + 1e-6, at);
      if (!keys.some(opaque)) {
        // Texts do not collide: the alternatives are exactly the k most likely (plus the
        // chosen token when it is not one of them).
        const alts = Object.values(dict).sort((a, b) => b - a);
        if (alts.length === k + 1) alts.splice(alts.lastIndexOf(v), 1);
        assert.equal(alts.length, k, at);
        alts.forEach((x, i) => assert.ok(Math.abs(x - best[i]) <= TOL, `${at} best ${i}`));
      }
      if (greedy) assert.equal(Math.max(...Object.values(dict)), v, at);
    });
  }

  await check("chat logprobs (top_logprobs 0 / 4, streamed) equal the reference", async () => {
    for (const k of [0, 4]) {
      const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12,
                                                       temperature: 0, logprobs: true,
                                                       ...(k ? { top_logprobs: k } : {}) });
      assert.equal(r.usage.prompt_tokens, PROMPT_IDS.length);
      const c = r.choices[0];
      assert.equal(c.logprobs.refusal, null);
      expectCount(r, c.logprobs.content.length);
      for (const x of c.logprobs.content)
        assert.equal(x.token, Buffer.from(x.bytes).toString("utf8"));  // U+FFFD where partial
      assert.equal(Buffer.concat(c.logprobs.content.map((x) => Buffer.from(x.bytes))).toString("utf8"),
                   c.message.content);
      checkEntries(chatEntries(c.logprobs.content), PROMPT_IDS, k, true, `chat k=${k}`);
      if (k === 4) {
        const streamed = [];
        for await (const ch of await client.chat.completions.create({
          model: MODEL, messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: k,
          stream: true })) {
          const lp = ch.choices[0]?.logprobs;
          if (lp) streamed.push(...lp.content);
        }
        assert.equal(streamed.length, c.logprobs.content.length);
        streamed.forEach((x, j) => {
          assert.deepEqual(x.bytes, c.logprobs.content[j].bytes);
          assert.ok(Math.abs(x.logprob - c.logprobs.content[j].logprob) <= TOL);
        });
      }
    }
    // Sampled (temperature 0.7, top_p 0.9): the logprobs are the model's raw distribution's.
    const s = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12,
                                                     temperature: 0.7, top_p: 0.9, seed: 7,
                                                     logprobs: true, top_logprobs: 3 });
    checkEntries(chatEntries(s.choices[0].logprobs.content), PROMPT_IDS, 3, false, "chat sampled");
    // Without logprobs: null, as OpenAI.
    const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 2, temperature: 0 });
    assert.equal(plain.choices[0].logprobs, null);
  });

  await check("completions logprobs (0 / 5, sampled, streamed, n > 1) equal the reference", async () => {
    // The generated ids: the chat answer's bytes (same prompt ids, same decoding).
    const ids = async (extra) => (await client.chat.completions.create({
      model: MODEL, messages, max_tokens: 12, logprobs: true, ...extra })).choices[0].logprobs.content
      .map((e) => idOf(e.bytes));
    const greedyIds = await ids({ temperature: 0 });
    for (const k of [0, 5]) {
      const r = await client.completions.create({ model: MODEL, prompt: PROMPT_IDS, max_tokens: 12,
                                                  temperature: 0, logprobs: k });
      expectCount(r, r.choices[0].logprobs.tokens.length);
      checkLegacy(r.choices[0].logprobs, PROMPT_IDS, greedyIds, k, true, `completions k=${k}`);
    }
    const sampling = { temperature: 0.7, top_p: 0.9, seed: 7 };
    const s = await client.completions.create({ model: MODEL, prompt: PROMPT_IDS, max_tokens: 12,
                                                ...sampling, logprobs: 3 });
    checkLegacy(s.choices[0].logprobs, PROMPT_IDS, await ids(sampling), 3, false, "completions sampled");

    const req = { model: MODEL, prompt: PROMPT_IDS, max_tokens: 12, temperature: 0, logprobs: 2 };
    const merged = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for await (const c of await client.completions.create({ ...req, stream: true })) {
      const lp = c.choices[0]?.logprobs;
      if (lp) for (const key of Object.keys(merged)) merged[key].push(...lp[key]);
    }
    checkLegacy(merged, PROMPT_IDS, greedyIds, 2, true, "completions streamed");
    // n = 2 and two prompts run alone through generate_text (not the continuous batch).
    const multi = await client.completions.create({ ...req, n: 2, prompt: [PROMPT_IDS, [1, 7, 8]] });
    assert.equal(multi.choices.length, 4);
    checkLegacy(multi.choices[0].logprobs, PROMPT_IDS, greedyIds, 2, true, "n=2 #0");
    checkLegacy(multi.choices[1].logprobs, PROMPT_IDS, greedyIds, 2, true, "n=2 #1");
    const streamed = [{ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] },
                      { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }];
    for await (const c of await client.completions.create({ ...req, n: 2, stream: true })) {
      const ch = c.choices[0];
      if (ch?.logprobs) for (const key of Object.keys(merged)) streamed[ch.index][key].push(...ch.logprobs[key]);
    }
    for (const i of [0, 1]) checkLegacy(streamed[i], PROMPT_IDS, greedyIds, 2, true, `n=2 streamed #${i}`);
  });

  await check("completions echo: prompt + completion, prompt logprobs equal the reference", async () => {
    const text = "The quick brown fox";
    const ids = execFileSync(ingot, ["tokenize", "--tokenizer", modelDir, "--add-special", "true"],
                             { input: text, encoding: "utf8" }).trim().split(/\s+/).map(Number);
    const req = { model: MODEL, prompt: text, max_tokens: 12, temperature: 0, logprobs: 2 };
    const plain = await client.completions.create(req);
    const r = await client.completions.create({ ...req, echo: true });
    const c = r.choices[0];
    assert.equal(c.text, text + plain.choices[0].text);
    assert.equal(r.usage.completion_tokens, plain.usage.completion_tokens);
    const lp = c.logprobs;
    const np = ids.length;
    assert.equal(lp.tokens.length, np + plain.choices[0].logprobs.tokens.length);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    const ref = refLogprobs(ids);
    for (let j = 1; j < np; j++) {
      const at = `echo prompt token ${j}`;
      const v = lp.token_logprobs[j];
      assert.ok(Math.abs(v - ref[j - 1][ids[j]]) <= TOL, `${at}: ${v} vs ${ref[j - 1][ids[j]]}`);
      const dict = lp.top_logprobs[j];
      assert.equal(dict[lp.tokens[j]], v, at);
      const best = [...ref[j - 1]].sort((a, b) => b - a).slice(0, 2);
      for (const [s, x] of Object.entries(dict)) {
        if (!opaque(s)) assert.ok(Math.abs(x - ref[j - 1][idOf(utf8(s))]) <= TOL, `${at}: ${s}`);
        assert.ok(x === v || best.some((b) => Math.abs(b - x) <= TOL), `${at}: ${s} not in the top 2`);
      }
    }
    // text_offset from the start of the echoed text: BOS (not in it) does not advance it.
    assert.equal(lp.text_offset[0], 0);
    assert.equal(lp.tokens.slice(1, np).join(""), text);
    assert.equal(lp.text_offset[np], text.length);
    // The generated part equals the request without echo's.
    plain.choices[0].logprobs.token_logprobs.forEach((v, j) =>
      assert.ok(Math.abs(lp.token_logprobs[np + j] - v) <= TOL, `echo generated ${j}`));
    // max_tokens 0: the prompt alone, scored.
    const s0 = await client.completions.create({ ...req, echo: true, max_tokens: 0 });
    assert.equal(s0.choices[0].text, text);
    assert.equal(s0.usage.completion_tokens, 0);
    assert.deepEqual(s0.choices[0].logprobs.token_logprobs, lp.token_logprobs.slice(0, np));
    // Streamed: the chunks concatenate to the same text.
    let streamed = "";
    for await (const ch of await client.completions.create({ ...req, echo: true, stream: true }))
      streamed += ch.choices[0]?.text ?? "";
    assert.equal(streamed, c.text);
    await assert.rejects(client.completions.create({ ...req, echo: "yes" }),
                         (e) => e.status === 400 && e.param === "echo");
  });

  await check("json_schema with logprobs: the masked distribution (chosen = top-1 under greedy)", async () => {
    const r = await client.chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "flags" }], max_tokens: 40, temperature: 0,
      logprobs: true, top_logprobs: 20,
      response_format: { type: "json_schema", json_schema: { name: "flags", schema: schemas.flags } } });
    const c = r.choices[0];
    assert.ok(c.logprobs.content.length >= 1);
    for (const e of c.logprobs.content) {
      // Masked-out alternatives (-inf) are left out: at most 20, at least the chosen one.
      assert.ok(e.top_logprobs.length >= 1 && e.top_logprobs.length <= 20);
      assert.ok(e.logprob <= 0 && e.logprob > -9999);
      assert.equal(e.logprob, e.top_logprobs[0].logprob);
      const sum = e.top_logprobs.reduce((a, t) => a + Math.exp(t.logprob), 0);
      assert.ok(sum <= 1 + 1e-6);
    }
  });

  await check("bad logprobs requests are 400", async () => {
    const msgs = [{ role: "user", content: "x" }];
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages: msgs, logprobs: true, top_logprobs: 21 }),
                         (e) => e.status === 400 && e.param === "top_logprobs");
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages: msgs, top_logprobs: 2 }),
                         (e) => e.status === 400 && e.param === "top_logprobs");
    await assert.rejects(client.completions.create({ model: MODEL, prompt: "x", logprobs: 6 }),
                         (e) => e.status === 400 && e.param === "logprobs");
  });

  await check("bad requests are 400 and the server keeps serving", async () => {
    await assert.rejects(client.completions.create({ model: MODEL, prompt: "x", max_tokens: 0 }),
                         (e) => e.status === 400);
    await assert.rejects(client.completions.create({ model: "nope", prompt: "x" }),
                         (e) => e.status === 400 && e.code === "model_not_found");
    const r = await client.completions.create({ model: MODEL, prompt: "still", max_tokens: 2, temperature: 0 });
    assert.equal(r.choices.length, 1);
  });
} finally {
  proc.kill("SIGTERM");
}
console.log(failures ? `${failures} check(s) failed` : "all checks passed");
process.exit(failures ? 1 : 0);
