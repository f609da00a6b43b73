// Encode a UTF-8 text file with tiktoken's "gpt2" encoding (npm package
// tiktoken, WASM build) and write the ids as little-endian int32.
// Usage: node dev/data/tiktoken_encode.mjs IN.txt OUT.i32 [--allow-special]
// Resolves tiktoken from dev/data/cache/node/node_modules.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "cache", "node", "package.json"));

const args = process.argv.slice(2);
const allowSpecial = args.includes("--allow-special");
const files = args.filter((a) => a !== "--allow-special");
if (files.length !== 2) {
  console.error("usage: node tiktoken_encode.mjs IN.txt OUT.i32 [--allow-special]");
  process.exit(2);
}
let tiktoken;
try {
  tiktoken = require("tiktoken");
} catch (e) {
  console.error("error: cannot load tiktoken from dev/data/cache/node (npm install --prefix dev/data/cache/node tiktoken)");
  process.exit(1);
}
const text = readFileSync(files[0], "utf8");
const enc = tiktoken.get_encoding("gpt2");
const ids = allowSpecial ? enc.encode(text, "all") : enc.encode(text);
enc.free();
const out = Buffer.alloc(ids.length * 4);
for (let i = 0; i < ids.length; i++) out.writeInt32LE(ids[i], i * 4);
writeFileSync(files[1], out);
