// End-to-end test of `ingot serve` with the official `openai` npm client: completions, chat,
// streaming, embeddings, structured output (every json_schema answer is validated by ajv) and
// tool calls; greedy answers must equal `ingot generate`'s.
// Usage: node openai_e2e.mjs INGOT_BIN MODEL_DIR NODE_PREFIX (node_modules with openai + ajv)
import { spawn, execFileSync } from "node:child_process";
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
