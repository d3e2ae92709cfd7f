// Builds the board into ONE self-contained HTML file (all JS and CSS inlined, nothing fetched at
// run time): ../../task_mcp/ui/board.html, which ships in the Python package.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, "../../task_mcp/ui/board.html");

// zod's `locales` namespace (about 250 KB of translated error messages) is re-exported by zod's
// index but never used here or by the MCP SDK: only English messages, imported on their own.
const dropZodLocales = {
  name: "drop-zod-locales",
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes(`${path.sep}zod${path.sep}`) ? { path: "zod-locales", namespace: "empty" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "export {};", loader: "js" }));
  },
};

const js = await esbuild.build({
  entryPoints: [path.join(here, "src/board.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  legalComments: "none",
  write: false,
  metafile: true,
  plugins: [dropZodLocales],
  logLevel: "warning",
});
const css = await esbuild.transform(await readFile(path.join(here, "src/board.css"), "utf8"), {
  loader: "css",
  minify: true,
});
const template = await readFile(path.join(here, "src/index.html"), "utf8");
const script = js.outputFiles[0].text.replace(/<\/(script)/gi, "<\\/$1");
const style = css.code.replace(/<\/(style)/gi, "<\\/$1");
const html = template.replace("/*CSS*/", () => style.trim()).replace("/*JS*/", () => script.trim());

await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, html);
const bytes = Buffer.byteLength(html);
console.log(`${path.relative(process.cwd(), out)}: ${bytes} bytes`);
if (process.env.BOARD_SIZES) {
  const inputs = Object.entries(js.metafile.outputs[Object.keys(js.metafile.outputs)[0]].inputs);
  const byPackage = {};
  for (const [file, { bytesInOutput }] of inputs) {
    const m = file.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
    const key = m ? m[1] : file;
    byPackage[key] = (byPackage[key] ?? 0) + bytesInOutput;
  }
  console.table(byPackage);
}
