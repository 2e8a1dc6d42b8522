// Compiles contracts/src/*.sol with solcjs (standard-JSON API) and writes
// <outDir>/<Name>.json = { abi, bytecode, deployedBytecode } for each deployable contract.
// Output is deterministic: no metadata hash/CBOR, sorted keys. Any warning fails the build.
// Usage: node contracts/compile.js [outDir]   (default: contracts/out)
"use strict";
const fs = require("fs");
const path = require("path");

const CONTRACTS_DIR = __dirname;
const SOLC_PATH = path.join(CONTRACTS_DIR, "..", ".tools", "node_modules", "solc");
const SOLC_VERSION = "0.8.37";
const ARTIFACTS = ["EntityProvider", "Depository", "TestToken"];
const MAX_DEPLOYED_SIZE = 24576; // EIP-170

const solc = require(SOLC_PATH);
if (!solc.version().startsWith(SOLC_VERSION + "+")) {
  fail(`expected solc ${SOLC_VERSION}, found ${solc.version()}; run scripts/install-tools.sh`);
}

const outDir = path.resolve(process.argv[2] || path.join(CONTRACTS_DIR, "out"));
const srcDir = path.join(CONTRACTS_DIR, "src");

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
    viaIR: false,
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const diagnostics = output.errors || [];
for (const d of diagnostics) console.error(d.formattedMessage || d.message);
if (diagnostics.length > 0) fail(`${diagnostics.length} compiler diagnostic(s); warnings are errors here`);

fs.mkdirSync(outDir, { recursive: true });
for (const name of ARTIFACTS) {
  const contract = output.contracts[`src/${name}.sol`]?.[name];
  if (!contract) fail(`no output for ${name}`);
  const deployed = contract.evm.deployedBytecode.object;
  if (deployed.length / 2 > MAX_DEPLOYED_SIZE) {
    fail(`${name} runtime code is ${deployed.length / 2} bytes, over the EIP-170 limit`);
  }
  const artifact = {
    abi: sortKeys(contract.abi),
    bytecode: "0x" + contract.evm.bytecode.object,
    deployedBytecode: "0x" + deployed,
  };
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

function fail(message) {
  console.error(`compile: ${message}`);
  process.exit(1);
}
