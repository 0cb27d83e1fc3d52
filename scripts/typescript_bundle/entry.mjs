// The entry of src/codemode/_typescript/strippers.js (built by `make typescript-bundle`).
// Defines one global, `__codemode_typescript__`, in the host's stripper context (never in a
// script's isolate). `strip(code)` returns the script as JavaScript, or null when the script is
// not TypeScript either (V8 then reports its own error on the script as written).
import ts from "typescript";
import { blankSourceFile } from "ts-blank-space";
import { getVersion as sucraseVersion, transform } from "sucrase";
import blankSpacePackage from "ts-blank-space/package.json" with { type: "json" };

const languageOptions = {
  languageVersion: ts.ScriptTarget.ESNext,
  impliedNodeFormat: ts.ModuleKind.ESNext,
  jsDocParsingMode: ts.JSDocParsingMode.ParseNone,
};

// What ts-blank-space refuses (it would have to generate code) and sucrase generates right:
// `enum`, `<T>x` assertions, constructor parameter properties. Anything else it refuses
// (a namespace with values, `import x = require()`, `export =`, an `as` that changes how `??`
// groups) has no faithful JavaScript here: the script is left for V8 to report.
const SUCRASE_KINDS = new Set([
  ts.SyntaxKind.EnumDeclaration,
  ts.SyntaxKind.TypeAssertionExpression,
  ts.SyntaxKind.PublicKeyword,
  ts.SyntaxKind.PrivateKeyword,
  ts.SyntaxKind.ProtectedKeyword,
  ts.SyntaxKind.ReadonlyKeyword,
  ts.SyntaxKind.OverrideKeyword,
]);

function strip(code) {
  const source = ts.createSourceFile("exec.ts", code, languageOptions, false, ts.ScriptKind.TS);
  if (source.parseDiagnostics.length > 0) return null;
  const refused = [];
  // Types are replaced by spaces, so every line and column stays where the model wrote it.
  const blanked = blankSourceFile(source, (node) => refused.push(node.kind));
  if (refused.length === 0) return blanked;
  if (!refused.every((kind) => SUCRASE_KINDS.has(kind))) return null;
  // sucrase keeps every line (not every column); imports stay as written, as with
  // ts-blank-space (TypeScript's verbatimModuleSyntax: only `import type` disappears).
  try {
    return transform(code, { transforms: ["typescript"], disableESTransforms: true, keepUnusedImports: true }).code;
  } catch {
    return null;
  }
}

globalThis.__codemode_typescript__ = {
  strip,
  versions: { "ts-blank-space": blankSpacePackage.version, typescript: ts.version, sucrase: sucraseVersion() },
};
