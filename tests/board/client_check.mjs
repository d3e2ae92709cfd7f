#!/usr/bin/env node
// What a TypeScript MCP host sees of task-mcp beyond tools (DESIGN §13), printed as one JSON object:
// it lists the prompts, gets plan_my_day, lists the resource templates, creates a task, reads it
// back as task://personal/<id>, reads a task that does not exist (the error), and reads the board.
// tests/test_hosts_e2e.py runs it against a real `task-mcp serve`, over stdio and over HTTP.
//
// The server, one of:
//   TASK_MCP_CHECK_URL       Streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp
//   TASK_MCP_CHECK_COMMAND   a stdio command line as JSON, e.g. '["python", "-m", "task_mcp", "serve"]';
//                            it gets this process's TASK_MCP_* variables and TASK_MCP_TOKEN=<token>
// TASK_MCP_CHECK_TOKEN       bearer token (HTTP) or launch token (stdio)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const token = process.env.TASK_MCP_CHECK_TOKEN ?? "";

function transport() {
  const url = process.env.TASK_MCP_CHECK_URL;
  if (url) {
    return new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
  }
  const [command, ...args] = JSON.parse(process.env.TASK_MCP_CHECK_COMMAND ?? "[]");
  if (!command) throw new Error("set TASK_MCP_CHECK_URL or TASK_MCP_CHECK_COMMAND");
  const taskEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("TASK_MCP_")));
  return new StdioClientTransport({
    command,
    args,
    env: { ...getDefaultEnvironment(), ...taskEnv, TASK_MCP_TOKEN: token },
    stderr: "inherit",
  });
}

const client = new Client({ name: "task-mcp-client-check", version: "1.0.0" });
await client.connect(transport());
try {
  const prompts = (await client.listPrompts()).prompts;
  const prompt = await client.getPrompt({ name: "plan_my_day", arguments: { timezone: "Europe/Paris" } });
  const templates = (await client.listResourceTemplates()).resourceTemplates;
  const resources = (await client.listResources()).resources;
  const tools = (await client.listTools()).tools;
  const created = await client.callTool({ name: "create_task", arguments: { title: "Read me as a resource" } });
  const id = created.structuredContent.task.id;
  const read = await client.readResource({ uri: `task://personal/${id}` });
  let missing = null;
  try {
    await client.readResource({ uri: "task://personal/999" });
  } catch (error) {
    missing = { code: error.code, message: error.message };
  }
  const board = (await client.readResource({ uri: "ui://task-mcp/board.html" })).contents[0];
  console.log(
    JSON.stringify({
      capabilities: Object.keys(client.getServerCapabilities() ?? {}).sort(),
      prompts: prompts.map((p) => ({ name: p.name, arguments: (p.arguments ?? []).map((a) => a.name) })),
      prompt: prompt.messages.map((m) => ({ role: m.role, text: m.content.text })),
      templates: templates.map((t) => ({ uriTemplate: t.uriTemplate, mimeType: t.mimeType })),
      resources: resources.map((r) => ({ uri: r.uri, mimeType: r.mimeType })),
      listTasksMeta: tools.find((t) => t.name === "list_tasks")?._meta ?? null,
      created: created.structuredContent,
      task: read.contents.map((c) => ({ uri: c.uri, mimeType: c.mimeType, json: JSON.parse(c.text) })),
      missing,
      board: { uri: board.uri, mimeType: board.mimeType, length: board.text.length },
    }),
  );
} finally {
  await client.close();
}
