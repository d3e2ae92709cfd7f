#!/usr/bin/env node
// End-to-end check of the task board (task_mcp/ui/board.html) in headless Chromium, under the
// ext-apps host bridge (AppBridge, in host.html), against a real task-mcp server reached by the
// MCP TypeScript SDK in this Node process (so the page makes no cross-origin requests).
//
// It seeds a few tasks (unless TASK_MCP_E2E_SEED=0), calls list_tasks, shows the result on the
// board, changes a priority, reopens a task and clicks "Complete" on one open task, waiting each
// time until the board shows what the server answered; then it lays the board out at 320 px and
// 1280 px (screenshots on request). It exits non-zero with a message when the board shows an error
// (or, in expect-error mode, when it does not show the expected one). With TASK_MCP_E2E_REPORT it
// writes what it saw as JSON, for tests/test_board.py to check.
//
// The server, one of:
//   TASK_MCP_E2E_URL       Streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp
//   TASK_MCP_E2E_COMMAND   a stdio command line, e.g. ".venv/bin/task-mcp serve"; it gets this
//                          process's TASK_MCP_* variables and TASK_MCP_TOKEN=<token>
// Tokens:
//   TASK_MCP_E2E_TOKEN       bearer token (HTTP) or launch token (stdio) for listing and seeding
//   TASK_MCP_E2E_BAD_TOKEN   expect-error mode: the token the board's click goes out with
//   TASK_MCP_E2E_BAD_TRANSPORT  stdio: send that click through a stdio server launched with the bad
//                              token (it answers `unauthenticated:` as a tool result, as an IDE
//                              would after its token expired); default: like the listing client
// Options:
//   TASK_MCP_E2E_EXPECT_ERROR  text the board must show (e.g. "unauthenticated:"); the click is
//                              sent with TASK_MCP_E2E_BAD_TOKEN if set; if list_tasks itself
//                              fails, the board must show that error instead
//   TASK_MCP_E2E_SCREENSHOTS   directory for the PNGs, or --out DIR (none unless given; a failure's
//                              screenshot goes to tests/board/out)
//   TASK_MCP_E2E_REPORT        file to write the JSON report to
//   TASK_MCP_E2E_ACTIONS       0 to show the list without clicking anything
//   TASK_MCP_E2E_NAME          file name prefix (default "board", "board-error" when expecting one)
//   TASK_MCP_E2E_THEME         light (default) or dark: the host theme and prefers-color-scheme
//   TASK_MCP_E2E_BOARD         board HTML (default task_mcp/ui/board.html)
//   TASK_MCP_E2E_SEED          0 to list what is there without creating tasks
//   TASK_MCP_E2E_CHROMIUM      browser binary (default /usr/bin/chromium)
//   TASK_MCP_E2E_TIMEOUT_MS    per wait (default 15000)
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const env = process.env;
const { values: args } = parseArgs({ options: { out: { type: "string" } } });

const expectError = env.TASK_MCP_E2E_EXPECT_ERROR || "";
const theme = env.TASK_MCP_E2E_THEME === "dark" ? "dark" : "light";
const shotDir = args.out || env.TASK_MCP_E2E_SCREENSHOTS ? path.resolve(args.out || env.TASK_MCP_E2E_SCREENSHOTS) : null;
const failureDir = shotDir ?? path.join(here, "out");
const actions = env.TASK_MCP_E2E_ACTIONS !== "0";
/** What the board showed, for tests/test_board.py (TASK_MCP_E2E_REPORT). */
const report = { theme, initial: null, final: null, server: {}, error: null, layout: {} };
const name = env.TASK_MCP_E2E_NAME || (expectError ? "board-error" : "board");
const boardPath = path.resolve(env.TASK_MCP_E2E_BOARD || path.join(root, "task_mcp/ui/board.html"));
const timeout = Number(env.TASK_MCP_E2E_TIMEOUT_MS || 15000);
const ORIGIN = "http://host.test";

class Failure extends Error {}
const fail = (message) => {
  throw new Failure(message);
};

// ---- the MCP side (Node) -------------------------------------------------------------------------

async function connect(token, label, { stdio = false } = {}) {
  const client = new Client({ name: `task-mcp-board-e2e-${label}`, version: "1.0.0" });
  let transport;
  if (env.TASK_MCP_E2E_URL && !stdio) {
    transport = new StreamableHTTPClientTransport(new URL(env.TASK_MCP_E2E_URL), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
  } else if (env.TASK_MCP_E2E_COMMAND) {
    const [command, ...commandArgs] = env.TASK_MCP_E2E_COMMAND.split(/\s+/).filter(Boolean);
    const passed = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("TASK_MCP_") && !k.startsWith("TASK_MCP_E2E_")));
    transport = new StdioClientTransport({
      command,
      args: commandArgs,
      env: { ...getDefaultEnvironment(), ...passed, TASK_MCP_TOKEN: token },
      stderr: "pipe",
    });
  } else {
    fail("set TASK_MCP_E2E_URL (Streamable HTTP) or TASK_MCP_E2E_COMMAND (stdio) to reach a task-mcp server");
  }
  await client.connect(transport);
  return client;
}

function resultText(result) {
  return (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

async function ok(client, tool, toolArgs) {
  const result = await client.callTool({ name: tool, arguments: toolArgs });
  if (result.isError) fail(`${tool} failed while seeding: ${resultText(result)}`);
  return result.structuredContent;
}

const isoDay = (offsetDays) => new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);

/** A small, varied board: overdue, due today and later, tags, priorities, one completed task. */
async function seed(client, tools) {
  const createProps = tools.get("create_task")?.inputSchema?.properties ?? {};
  const only = (fields) => Object.fromEntries(Object.entries(fields).filter(([k]) => k in createProps));
  const add = async (fields) => (await ok(client, "create_task", only(fields))).task;
  const report = await add({ title: "Write the quarterly report", priority: "urgent", due: isoDay(2), tags: ["work", "writing"] });
  await add({ title: "Renew passport", priority: "high", due: isoDay(-3), tags: ["admin"] });
  await add({
    title: "Book flights for the conference once the report is approved",
    priority: "medium",
    due: `${isoDay(5)}T09:30:00Z`,
    tags: ["travel", "work"],
    assignee: "user-alice",
    blocked_by: [report.id],
  });
  const plumber = await add({ title: "Call the plumber about the kitchen tap", priority: "low", tags: ["home"] });
  const done = await add({ title: "Pay the electricity bill", priority: "medium", due: isoDay(-1), tags: ["home", "bills"] });
  await ok(client, "complete_task", { task_id: done.id });
  // Complete one without a due date, so the screenshots still show an overdue group.
  return { complete: plumber.id, reprioritize: report.id, reopen: done.id };
}

// ---- the page side (Chromium) --------------------------------------------------------------------

async function hostScript() {
  const built = await esbuild.build({
    entryPoints: [path.join(here, "host.js")],
    bundle: true,
    format: "esm",
    target: "es2022",
    write: false,
    logLevel: "warning",
  });
  return built.outputFiles[0].text;
}

async function main() {
  const token = env.TASK_MCP_E2E_TOKEN || fail("set TASK_MCP_E2E_TOKEN (a JWT the server accepts)");
  const board = await readFile(boardPath, "utf8").catch(() => fail(`no board at ${boardPath}: run make board`));
  const client = await connect(token, "listing").catch((err) =>
    fail(`could not connect to the server with TASK_MCP_E2E_TOKEN: ${err?.message ?? err}`),
  );
  const closers = [() => client.close()];
  const browser = await chromium.launch({
    executablePath: env.TASK_MCP_E2E_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  closers.push(() => browser.close());
  const messages = [];
  let page;
  try {
    const tools = new Map((await client.listTools()).tools.map((t) => [t.name, t]));
    if (!tools.has("list_tasks")) fail("the server offers no list_tasks tool");
    const seeded = env.TASK_MCP_E2E_SEED === "0" ? undefined : await seed(client, tools);
    const listArgs = { status: "all", sort: "due", limit: 50 };
    const listed = await client.callTool({ name: "list_tasks", arguments: listArgs });

    // The board's calls go out with the bad token in expect-error mode, as after a token expired.
    // That client connects at the first call, so a refused connection (HTTP 401) reaches the board
    // as the JSON-RPC error a host would answer with.
    let actionClient;
    const clientForClicks = () => {
      if (!(expectError && env.TASK_MCP_E2E_BAD_TOKEN)) return client;
      actionClient ??= connect(env.TASK_MCP_E2E_BAD_TOKEN, "bad", { stdio: env.TASK_MCP_E2E_BAD_TRANSPORT === "stdio" }).then((c) => {
        closers.unshift(() => c.close());
        return c;
      });
      return actionClient;
    };

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: theme });
    page = await context.newPage();
    page.on("console", (m) => m.type() !== "debug" && messages.push(`console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => messages.push(`pageerror: ${e.message}`));
    // No network: host.html, host.js and nothing else, all answered here.
    const script = await hostScript();
    const html = await readFile(path.join(here, "host.html"), "utf8");
    await page.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (url.origin === ORIGIN && url.pathname === "/host.html") return route.fulfill({ contentType: "text/html", body: html });
      if (url.origin === ORIGIN && url.pathname === "/host.js") return route.fulfill({ contentType: "text/javascript", body: script });
      messages.push(`blocked request: ${url.href}`);
      return route.abort();
    });
    await page.exposeFunction("mcpCallTool", async (tool, toolArgs) => {
      // A host forwards the board's call as is; a thrown error becomes a JSON-RPC error for the board.
      const result = await (await clientForClicks()).callTool({ name: tool, arguments: toolArgs });
      return JSON.parse(JSON.stringify(result));
    });
    await page.goto(`${ORIGIN}/host.html`);
    await page.evaluate(
      ([boardHtml, tool, hostTheme]) => window.host.load(boardHtml, { tool, theme: hostTheme }),
      [board, tools.get("list_tasks"), theme],
    );
    await page.evaluate(([a, r]) => window.host.show(a, r), [listArgs, JSON.parse(JSON.stringify(listed))]);
    const frame = page.frameLocator("#frame");
    const errorBox = frame.locator("#error");

    if (listed.isError) {
      const text = resultText(listed);
      if (!expectError) fail(`list_tasks failed: ${text}`);
      await errorBox.waitFor({ state: "visible", timeout });
      return await finish(page, await errorBox.innerText(), "the failed list_tasks");
    }

    const tasks = listed.structuredContent?.tasks ?? [];
    await frame.locator("li.task").first().waitFor({ timeout });
    const shown = await frame.locator("li.task").evaluateAll((els) => els.map((e) => Number(e.dataset.taskId)));
    const want = tasks.map((t) => t.id);
    if (shown.length !== want.length || !want.every((id) => shown.includes(id)))
      fail(`the board shows tasks ${JSON.stringify(shown)}, list_tasks answered ${JSON.stringify(want)}`);
    report.initial = await observe(frame);
    if (!actions) return await finish(page, null, "showing the list");

    if (seeded && !expectError) {
      // Change a priority and reopen a task through the board; each must show what the server answered.
      const select = frame.locator(`li.task[data-task-id="${seeded.reprioritize}"] select[data-action="priority"]`);
      await select.selectOption("low", { timeout });
      await frame.locator(`li.task.changed[data-task-id="${seeded.reprioritize}"], #error:not([hidden])`).first().waitFor({ timeout });
      if (await errorBox.isVisible()) return await finish(page, await errorBox.innerText(), `re-prioritizing #${seeded.reprioritize}`);
      await expectServer(client, seeded.reprioritize, "priority", "low");
      await frame.locator(`li.task[data-task-id="${seeded.reopen}"] button[data-action="reopen"]`).click({ timeout });
      await frame.locator(`li.task[data-task-id="${seeded.reopen}"][data-status="open"], #error:not([hidden])`).first().waitFor({ timeout });
      if (await errorBox.isVisible()) return await finish(page, await errorBox.innerText(), `reopening #${seeded.reopen}`);
      await expectServer(client, seeded.reopen, "status", "open");
    }
    const target = tasks.find((t) => t.id === seeded?.complete && t.status === "open") ?? tasks.find((t) => t.status === "open");
    if (!target) fail("no open task to complete: seed some, or drop TASK_MCP_E2E_SEED=0");
    const row = frame.locator(`li.task[data-task-id="${target.id}"]`);
    await row.locator('button[data-action="complete"]').click({ timeout });
    // Either the row turns completed, or the board shows an error.
    await frame
      .locator(`[data-group="completed"] li.task[data-task-id="${target.id}"][data-status="completed"], #error:not([hidden])`)
      .first()
      .waitFor({ timeout });
    if (await errorBox.isVisible()) return await finish(page, await errorBox.innerText(), `completing #${target.id}`);
    await row.locator('button[data-action="reopen"]').waitFor({ timeout });
    await expectServer(client, target.id, "status", "completed");
    return await finish(page, null, `completing #${target.id}`);
  } catch (err) {
    if (messages.length) console.error(messages.join("\n"));
    if (page) {
      const file = path.join(failureDir, `${name}-failure.png`);
      await mkdir(failureDir, { recursive: true });
      await page.screenshot({ path: file, fullPage: true }).then(() => console.error(`screenshot of the failure: ${file}`), () => {});
    }
    throw err;
  } finally {
    for (const close of closers) await close().catch(() => {});
  }
}

async function expectServer(client, id, field, value) {
  const got = (await client.callTool({ name: "get_task", arguments: { task_id: id } })).structuredContent?.task?.[field];
  if (got !== value) fail(`the board changed #${id}'s ${field} to ${value}, but get_task says ${got}`);
  report.server[id] = { ...report.server[id], [field]: got };
}

/** The board as a person sees it: its groups and rows, the error box, colors and what overflows. */
function observe(frame) {
  return frame.locator("html").evaluate(() => {
    const groups = {};
    for (const group of document.querySelectorAll("[data-group]"))
      groups[group.dataset.group] = [...group.querySelectorAll("li.task")].map((li) => ({
        id: Number(li.dataset.taskId),
        status: li.dataset.status,
        title: li.querySelector(".title")?.textContent ?? "",
      }));
    const error = document.getElementById("error");
    const colorsOf = (el) => el && { color: getComputedStyle(el).color, background: getComputedStyle(el).backgroundColor };
    const width = document.documentElement.clientWidth;
    const overflowing = [...document.body.querySelectorAll("*")]
      .filter((el) => el.getBoundingClientRect().right > width + 0.5)
      .map((el) => `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).split(" ").join(".")}` : ""}`);
    return {
      groups,
      error: error.hidden ? null : error.innerText,
      colors: { body: colorsOf(document.body), title: colorsOf(document.querySelector(".title")), chip: colorsOf(document.querySelector(".chip")) },
      width,
      scrollWidth: document.documentElement.scrollWidth,
      overflowing,
    };
  });
}

async function settledHeight(page) {
  let last = -1;
  for (let i = 0; i < 50; i++) {
    await page.waitForTimeout(100);
    const now = await page.locator("#frame").evaluate((f) => f.getBoundingClientRect().height);
    if (now === last) return Math.ceil(now);
    last = now;
  }
  return Math.ceil(last);
}

async function finish(page, errorText, what) {
  const frame = page.frameLocator("#frame");
  report.final = await observe(frame);
  report.error = errorText;
  const files = [];
  for (const width of [320, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    // The board reports its new height (autoResize) and the iframe follows; then the viewport is
    // made as tall as the board, as Chromium paints a sandboxed (out-of-process) frame only there.
    const height = await settledHeight(page);
    await page.setViewportSize({ width, height: Math.max(height, 200) });
    await page.waitForTimeout(200);
    const { scrollWidth, overflowing } = await observe(frame);
    report.layout[width] = { scrollWidth, overflowing };
    if (!shotDir) continue;
    await mkdir(shotDir, { recursive: true });
    const file = path.join(shotDir, `${name}-${width}.png`);
    await page.locator("#frame").screenshot({ path: file });
    files.push(file);
  }
  if (env.TASK_MCP_E2E_REPORT) await writeFile(env.TASK_MCP_E2E_REPORT, JSON.stringify(report, null, 2));
  if (errorText !== null) {
    if (!expectError) fail(`the board shows an error after ${what}: ${errorText}`);
    if (!errorText.includes(expectError)) fail(`expected the board to show "${expectError}" after ${what}, it shows: ${errorText}`);
    console.log(`ok: the board shows the error after ${what}: ${errorText}`);
  } else {
    if (expectError) fail(`expected the board to show "${expectError}" after ${what}, it shows no error`);
    console.log(`ok: ${what} through the board`);
  }
  for (const f of files) console.log(`screenshot: ${path.relative(process.cwd(), f)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`board e2e failed: ${err instanceof Failure ? err.message : err?.stack ?? err}`);
    process.exit(1);
  },
);
