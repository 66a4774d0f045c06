#!/usr/bin/env node
// Compiles contracts/src/*.sol with solc-js (standard JSON) and writes
// indexer/localchain/artifacts.json = {ContractName: {abi, bytecode}}.
// `node contracts/build.mjs --check` recompiles and exits 1 if the committed
// artifacts differ from the sources.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const srcDir = path.join(here, "src");
const outFile = path.join(repo, "indexer", "localchain", "artifacts.json");
const EXPECTED_SOLC = "0.8.37";

function readImport(importPath) {
  for (const base of [path.join(repo, "node_modules"), here]) {
    const candidate = path.join(base, importPath);
    if (candidate.startsWith(base + path.sep) && fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `import not found: ${importPath} (run \`npm ci\`)` };
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

function compile() {
  const sources = {};
  for (const file of fs.readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
    sources[`src/${file}`] = { content: fs.readFileSync(path.join(srcDir, file), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      metadata: { bytecodeHash: "none", appendCBOR: false },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: readImport }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) {
    if (e.severity !== "error") process.stderr.write(e.formattedMessage);
  }
  if (errors.length) {
    for (const e of errors) process.stderr.write(e.formattedMessage);
    throw new Error(`solc reported ${errors.length} error(s)`);
  }
  if (!output.contracts) throw new Error("solc produced no contracts");
  const artifacts = {};
  for (const unit of Object.keys(output.contracts).sort()) {
    if (!unit.startsWith("src/")) continue;
    for (const [name, contract] of Object.entries(output.contracts[unit])) {
      const bytecode = contract.evm.bytecode.object;
      if (!bytecode) continue; // interfaces and abstract contracts
      if (name in artifacts) throw new Error(`duplicate contract name ${name}`);
      artifacts[name] = { abi: contract.abi, bytecode: `0x${bytecode}` };
    }
  }
  return JSON.stringify(sortKeys(artifacts), null, 2) + "\n";
}

function main() {
  const version = solc.version();
  if (!version.startsWith(`${EXPECTED_SOLC}+`)) {
    console.error(`expected solc ${EXPECTED_SOLC}, found ${version} (run \`npm ci\`)`);
    process.exit(1);
  }
  const text = compile();
  const rel = path.relative(repo, outFile);
  if (process.argv.includes("--check")) {
    const current = fs.existsSync(outFile) ? fs.readFileSync(outFile, "utf8") : null;
    if (current !== text) {
      let detail = "file is missing";
      if (current !== null) {
        const want = JSON.parse(text);
        const have = JSON.parse(current);
        const names = [...new Set([...Object.keys(want), ...Object.keys(have)])].sort();
        const stale = names.filter((n) => JSON.stringify(want[n]) !== JSON.stringify(have[n]));
        detail = stale.length ? `differs for: ${stale.join(", ")}` : "formatting differs";
      }
      console.error(`${rel} is out of date with contracts/src (${detail}); run \`node contracts/build.mjs\``);
      process.exit(1);
    }
    console.log(`${rel} is up to date`);
    return;
  }
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, text);
  console.log(`wrote ${rel} (${Object.keys(JSON.parse(text)).length} contracts)`);
}

main();
