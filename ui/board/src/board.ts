// The task board: an MCP App (ext-apps `App`) that shows the list_tasks result it was opened with
// and lets the person complete, reopen and re-prioritize tasks through the host's tools/call.
import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";

type CallToolResult = Awaited<ReturnType<App["callServerTool"]>>;

const PRIORITIES = ["urgent", "high", "medium", "low", "none"] as const;
type Priority = (typeof PRIORITIES)[number];

interface Task {
  id: number;
  title: string;
  status: "open" | "completed" | string;
  priority?: Priority;
  due?: string | null;
  tags?: string[];
  assignee?: string | null;
  blocked?: boolean;
  blocked_by?: number[];
  parent_id?: number | null;
  repeat?: string | null;
  [key: string]: unknown;
}

interface TaskList {
  workspace?: string;
  tasks?: Task[];
  next_cursor?: string | null;
  total?: number;
  now?: string;
}

/** Optional hint from the server, in the list_tasks result's `_meta`: the tools it offers this caller. */
const TOOLS_META_KEY = "task-mcp/tools";

const state = {
  loaded: false,
  workspace: undefined as string | undefined,
  tasks: [] as Task[],
  total: undefined as number | undefined,
  more: false,
  now: undefined as string | undefined,
  timeZone: undefined as string | undefined,
  locale: undefined as string | undefined,
  canCallTools: false,
  offered: null as Set<string> | null,
  busy: new Set<number>(),
  rowErrors: new Map<number, string>(),
  changed: new Set<number>(),
};

const $ = (id: string) => document.getElementById(id) as HTMLElement;

type Child = Node | string | null | undefined | false;
function h(tag: string, attrs: Record<string, string | boolean | undefined> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

// ---- dates ----------------------------------------------------------------------------------------

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

function nowMs(): number {
  const parsed = state.now ? Date.parse(state.now) : NaN;
  return Number.isNaN(parsed) ? Date.now() : parsed;
}

function tzOrUndefined(): string | undefined {
  try {
    if (state.timeZone) new Intl.DateTimeFormat("en", { timeZone: state.timeZone });
    return state.timeZone;
  } catch {
    return undefined;
  }
}

/** YYYY-MM-DD of an instant in the list's time zone. */
function dayOf(ms: number): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone: tzOrUndefined(), year: "numeric", month: "2-digit", day: "2-digit" }).format(ms);
}

function isOverdue(task: Task): boolean {
  if (task.status !== "open" || !task.due) return false;
  if (DATE_ONLY.test(task.due)) return task.due < dayOf(nowMs()); // a date is overdue once its day has ended
  const due = Date.parse(task.due);
  return !Number.isNaN(due) && due < nowMs();
}

function formatDue(due: string): string {
  const today = dayOf(nowMs());
  if (DATE_ONLY.test(due)) {
    if (due === today) return "today";
    if (due === dayOf(nowMs() + 86_400_000)) return "tomorrow";
    if (due === dayOf(nowMs() - 86_400_000)) return "yesterday";
    const [y, m, d] = due.split("-").map(Number);
    const opts: Intl.DateTimeFormatOptions = { month: "short", day: "numeric", timeZone: "UTC" };
    if (due.slice(0, 4) !== today.slice(0, 4)) opts.year = "numeric";
    return new Intl.DateTimeFormat(state.locale, opts).format(Date.UTC(y, m - 1, d));
  }
  const ms = Date.parse(due);
  if (Number.isNaN(ms)) return due;
  const tz = tzOrUndefined();
  const time = new Intl.DateTimeFormat(state.locale, { hour: "numeric", minute: "2-digit", timeZone: tz }).format(ms);
  const day = dayOf(ms);
  if (day === today) return `today ${time}`;
  const opts: Intl.DateTimeFormatOptions = { month: "short", day: "numeric", timeZone: tz };
  if (day.slice(0, 4) !== today.slice(0, 4)) opts.year = "numeric";
  return `${new Intl.DateTimeFormat(state.locale, opts).format(ms)} ${time}`;
}

// ---- tool results --------------------------------------------------------------------------------

function resultText(result: CallToolResult): string {
  const parts = (result.content ?? []).flatMap((c) => (c.type === "text" ? [c.text] : []));
  return parts.join("\n").trim() || (result.isError ? "The tool call failed and said nothing more." : "");
}

function showError(text: string | null): void {
  const el = $("error");
  el.textContent = text ?? "";
  el.hidden = !text;
}

function notify(text: string): void {
  $("notice").textContent = text;
}

function takeList(result: CallToolResult): void {
  state.loaded = true;
  $("board").removeAttribute("aria-busy");
  if (result.isError) {
    showError(resultText(result));
    render();
    return;
  }
  const data = (result.structuredContent ?? {}) as TaskList;
  state.workspace = typeof data.workspace === "string" ? data.workspace : undefined;
  state.tasks = Array.isArray(data.tasks) ? data.tasks.filter((t) => t && typeof t.id === "number") : [];
  state.total = typeof data.total === "number" ? data.total : undefined;
  state.more = !!data.next_cursor;
  state.now = typeof data.now === "string" ? data.now : undefined;
  const offered = result._meta?.[TOOLS_META_KEY];
  state.offered = Array.isArray(offered) ? new Set(offered.filter((t): t is string => typeof t === "string")) : null;
  state.rowErrors.clear();
  state.changed.clear();
  showError(null);
  render();
}

// ---- actions -------------------------------------------------------------------------------------

function offers(tool: string): boolean {
  return state.canCallTools && (state.offered === null || state.offered.has(tool));
}

const app = new App({ name: "task-mcp-board", version: "1.0.0" }, {}, { autoResize: true });

/** `verb` says what the click does ("complete"); `done` what the board then says ("completed"). */
async function act(task: Task, tool: string, args: Record<string, unknown>, verb: string, done: string): Promise<void> {
  if (state.busy.has(task.id)) return;
  state.busy.add(task.id);
  state.rowErrors.delete(task.id);
  render();
  try {
    const callArgs: Record<string, unknown> = { task_id: task.id, ...args };
    if (state.workspace !== undefined) callArgs.workspace = state.workspace;
    const result = await app.callServerTool({ name: tool, arguments: callArgs });
    if (result.isError) {
      fail(task, verb, resultText(result));
    } else {
      const updated = (result.structuredContent as { task?: Task } | undefined)?.task;
      if (updated && typeof updated.id === "number") {
        const i = state.tasks.findIndex((t) => t.id === task.id);
        if (i >= 0) state.tasks[i] = updated;
      }
      state.changed.add(task.id);
      showError(null);
      notify(`#${task.id} ${done}.`);
    }
  } catch (err) {
    // The host answered with an error instead of a tool result (no connection, refused token, ...).
    fail(task, verb, err instanceof Error ? err.message : String(err));
  } finally {
    state.busy.delete(task.id);
    render();
  }
}

function fail(task: Task, verb: string, text: string): void {
  state.rowErrors.set(task.id, "Not changed: see the message above.");
  state.changed.delete(task.id);
  showError(`Could not ${verb} #${task.id}:\n${text}`);
  notify("");
}

// ---- rendering -----------------------------------------------------------------------------------

function chip(cls: string, text: string, title?: string): HTMLElement {
  return h("span", { class: `chip ${cls}`, title }, text);
}

function renderTask(task: Task): HTMLElement {
  const open = task.status === "open";
  const busy = state.busy.has(task.id);
  const priority: Priority = (PRIORITIES as readonly string[]).includes(task.priority ?? "") ? task.priority! : "none";
  const overdue = isOverdue(task);
  const blockedBy = Array.isArray(task.blocked_by) ? task.blocked_by : [];

  const meta = h("div", { class: "meta" });
  if (offers("update_task")) {
    const select = h("select", { class: `prio p-${priority}`, "aria-label": `Priority of task ${task.id}`, "data-action": "priority", disabled: busy }) as HTMLSelectElement;
    for (const p of PRIORITIES) select.append(h("option", { value: p, selected: p === priority }, p === "none" ? "no priority" : p));
    select.addEventListener("change", () => {
      void act(task, "update_task", { priority: select.value }, "change the priority of", `priority set to ${select.value}`);
    });
    meta.append(select);
  } else if (priority !== "none") {
    meta.append(chip(`prio p-${priority}`, priority));
  }
  if (task.due) meta.append(chip(overdue ? "due overdue" : "due", `due ${formatDue(task.due)}`, task.due));
  if (task.repeat) meta.append(chip("repeat", "repeats", task.repeat));
  if (task.assignee) meta.append(chip("assignee", `@${task.assignee}`));
  if (blockedBy.length) meta.append(chip("blocked", `blocked by ${blockedBy.map((b) => `#${b}`).join(", ")}`));
  else if (task.blocked === true) meta.append(chip("blocked", "blocked"));
  if (typeof task.parent_id === "number") meta.append(chip("parent", `sub of #${task.parent_id}`));
  for (const tag of Array.isArray(task.tags) ? task.tags : []) meta.append(chip("tag", `#${tag}`));

  let action: HTMLElement | null = null;
  if (open && offers("complete_task")) {
    action = h("button", { type: "button", class: "act", "data-action": "complete", disabled: busy, "aria-label": `Complete task ${task.id}` }, busy ? "…" : "Complete");
    action.addEventListener("click", () => void act(task, "complete_task", {}, "complete", "completed"));
  } else if (!open && task.status === "completed" && offers("update_task")) {
    action = h("button", { type: "button", class: "act secondary", "data-action": "reopen", disabled: busy, "aria-label": `Reopen task ${task.id}` }, busy ? "…" : "Reopen");
    action.addEventListener("click", () => void act(task, "update_task", { status: "open" }, "reopen", "reopened"));
  }

  const error = state.rowErrors.get(task.id);
  return h(
    "li",
    {
      class: `task${open ? "" : " done"}${state.changed.has(task.id) ? " changed" : ""}${error ? " failed" : ""}`,
      "data-task-id": String(task.id),
      "data-status": task.status,
      "aria-busy": busy ? "true" : undefined,
    },
    h("div", { class: "line" }, h("span", { class: "id" }, `#${task.id}`), h("span", { class: "title" }, task.title), action),
    meta.childNodes.length ? meta : null,
    error ? h("div", { class: "row-error" }, error) : null,
  );
}

function renderGroup(key: string, label: string, tasks: Task[]): HTMLElement | null {
  if (!tasks.length) return null;
  return h(
    "section",
    { class: `group g-${key}`, "data-group": key },
    h("h2", {}, label, h("span", { class: "count" }, String(tasks.length))),
    h("ul", {}, ...tasks.map(renderTask)),
  );
}

function render(): void {
  const groups = $("groups");
  if (!state.loaded) return;
  const overdue: Task[] = [];
  const open: Task[] = [];
  const completed: Task[] = [];
  for (const t of state.tasks) {
    if (t.status === "completed") completed.push(t);
    else if (isOverdue(t)) overdue.push(t);
    else open.push(t);
  }
  $("title").textContent = state.workspace ? `Tasks · ${state.workspace}` : "Tasks";
  const shown = state.tasks.length;
  $("summary").textContent =
    state.total !== undefined && (state.total !== shown || state.more) ? `${shown} of ${state.total}` : `${shown} ${shown === 1 ? "task" : "tasks"}`;
  const sections = [renderGroup("overdue", "Overdue", overdue), renderGroup("open", "Open", open), renderGroup("completed", "Completed", completed)];
  const nodes: Node[] = sections.filter((s): s is HTMLElement => s !== null);
  if (!nodes.length && !$("error").textContent) nodes.push(h("p", { class: "muted empty" }, "No tasks here."));
  if (state.more) nodes.push(h("p", { class: "muted more" }, "More tasks exist; ask for the next page."));
  if (shown && !state.canCallTools) nodes.push(h("p", { class: "muted more" }, "This host does not let the board change tasks; ask the assistant instead."));
  groups.replaceChildren(...nodes);
}

// ---- host context: theme, fonts, locale ----------------------------------------------------------

function applyContext(ctx: Partial<McpUiHostContext> | undefined): void {
  if (!ctx) return;
  if (ctx.theme === "light" || ctx.theme === "dark") applyDocumentTheme(ctx.theme);
  if (ctx.styles?.variables) applyHostStyleVariables(ctx.styles.variables);
  if (ctx.styles?.css?.fonts) applyHostFonts(ctx.styles.css.fonts);
  if (typeof ctx.locale === "string") state.locale = ctx.locale;
  if (typeof ctx.timeZone === "string" && !state.timeZone) state.timeZone = ctx.timeZone;
  const inset = ctx.safeAreaInsets;
  if (inset) document.body.style.padding = `${inset.top}px ${inset.right}px ${inset.bottom}px ${inset.left}px`;
  render();
}

app.ontoolinput = (params) => {
  // list_tasks' own `timezone` argument decides what "today" and "overdue" mean, as on the server.
  const tz = params.arguments?.timezone;
  if (typeof tz === "string") state.timeZone = tz;
};
app.ontoolresult = (result) => takeList(result as CallToolResult);
app.ontoolcancelled = (params) => {
  state.loaded = true;
  showError(`The list_tasks call was cancelled${params.reason ? `: ${params.reason}` : "."}`);
  render();
};
app.onhostcontextchanged = (ctx) => applyContext(ctx);
app.onteardown = async () => ({});

app
  .connect()
  .then(() => {
    state.canCallTools = !!app.getHostCapabilities()?.serverTools;
    applyContext(app.getHostContext());
  })
  .catch((err: unknown) => {
    state.loaded = true;
    showError(`Could not connect to the host: ${err instanceof Error ? err.message : String(err)}`);
    render();
  });
