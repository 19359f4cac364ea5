// Bundles GraphiQL (from node_modules, installed by npm ci) into dist/,
// which web/graphiql.go embeds: graphiql.js + graphiql.css for the page,
// one file per Monaco worker, and the fonts the CSS names. Run by
// scripts/build-graphiql.sh; dist/ is not committed.
import { build } from "esbuild";
import { readdir, rm } from "node:fs/promises";

// Clear the last build but keep the committed README.txt.
const out = new URL("./dist/", import.meta.url).pathname;
for (const name of await readdir(out)) {
  if (name !== "README.txt") await rm(out + name, { recursive: true, force: true });
}

const common = {
  bundle: true,
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
  outdir: out,
};
await build({
  ...common,
  entryPoints: { graphiql: "src/main.js" },
  format: "esm",
  splitting: false,
  loader: { ".ttf": "file", ".woff": "file", ".woff2": "file", ".svg": "dataurl" },
  assetNames: "[name]-[hash]",
});
await build({
  ...common,
  entryPoints: {
    "editor.worker": "monaco-editor/esm/vs/editor/editor.worker.js",
    "json.worker": "monaco-editor/esm/vs/language/json/json.worker.js",
    "graphql.worker": "monaco-graphql/esm/graphql.worker.js",
  },
  format: "iife",
});
