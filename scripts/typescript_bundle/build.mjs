// Bundles entry.mjs into ../../src/codemode/_typescript/strippers.js (one minified IIFE) and
// writes the licences of everything bundled next to it. Run by `make typescript-bundle`.
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";

const out = new URL("../../src/codemode/_typescript/", import.meta.url);
const lock = JSON.parse(readFileSync(new URL("package-lock.json", import.meta.url), "utf8"));
const result = await build({
  entryPoints: [new URL("entry.mjs", import.meta.url).pathname],
  bundle: true,
  format: "iife",
  platform: "neutral",
  mainFields: ["module", "main"],
  target: "es2022",
  minify: true,
  legalComments: "none",
  metafile: true,
  write: false,
  // TypeScript requires these only on Node (its `sys`), which the stripper context is not.
  external: ["fs", "path", "os", "inspector", "perf_hooks", "crypto", "buffer", "module"],
  logLevel: "warning",
});
const bundled = new Set(
  Object.keys(result.metafile.inputs)
    .map((path) => path.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)?.[1])
    .filter(Boolean),
);
const packages = [...bundled].sort().map((name) => ({ name, version: lock.packages[`node_modules/${name}`].version }));
const header = `/* codemode TypeScript strippers, built by \`make typescript-bundle\` from ${packages
  .map((p) => `${p.name}@${p.version}`)
  .join(", ")}. Licences: NOTICE.md next to this file. */\n`;
writeFileSync(new URL("strippers.js", out), header + result.outputFiles[0].text);

const notice = [
  "# Third-party code in strippers.js",
  "",
  "`strippers.js` bundles these npm packages unchanged (built by `make typescript-bundle` from",
  "`scripts/typescript_bundle/`). Their licences follow.",
  "",
  ...packages.map((p) => `- ${p.name} ${p.version}`),
];
for (const p of packages) {
  const dir = new URL(`node_modules/${p.name}/`, import.meta.url);
  const file = ["LICENSE", "LICENSE.txt", "LICENSE.md", "license"].find((f) => {
    try { readFileSync(new URL(f, dir)); return true; } catch { return false; }
  });
  notice.push("", `## ${p.name} ${p.version}`, "", "```", readFileSync(new URL(file, dir), "utf8").trim(), "```");
}
writeFileSync(new URL("NOTICE.md", out), notice.join("\n") + "\n");
