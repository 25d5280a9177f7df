// Encodes texts with two Hugging Face tokenizer implementations, as references for the
// tokenizer.json that `ingot tokenizer train` writes: the Rust `tokenizers` library (node
// binding) and Tokenizers.js (@huggingface/tokenizers, pure JavaScript).
// Usage: node train_hf_ref.mjs NODE_MODULES_DIR TOKENIZER_DIR TEXTS_JSONL
// Prints {"rust": [...], "js": [...]}: per text {"ids": with special tokens, "plain": without,
// "decoded": decode(plain)}.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [modules, dir, textsFile] = process.argv.slice(2);
const require = createRequire(path.resolve(modules) + '/');
const texts = fs.readFileSync(textsFile, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
const out = { rust: [], js: [] };

const rust = require('tokenizers').Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
for (const t of texts) {
  const ids = (await rust.encode(t, null, { addSpecialTokens: true })).getIds();
  const plain = (await rust.encode(t, null, { addSpecialTokens: false })).getIds();
  out.rust.push({ ids, plain, decoded: await rust.decode(plain, false) });
}

const { Tokenizer } = require('@huggingface/tokenizers');
const js = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
  JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
for (const t of texts) {
  const ids = js.encode(t, { add_special_tokens: true }).ids;
  const plain = js.encode(t, { add_special_tokens: false }).ids;
  // Tokenizers.js refuses to decode an empty list: the empty text is its decode.
  out.js.push({ ids, plain, decoded: plain.length ? js.decode(plain, { skip_special_tokens: false }) : '' });
}
process.stdout.write(JSON.stringify(out));
