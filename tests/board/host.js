// The host side of the board test: the ext-apps AppBridge talks to the board in the iframe over
// postMessage; its tools/call requests go to Node (window.mcpCallTool, a playwright binding) where
// the real MCP client lives. run.mjs drives it through window.host.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

const iframe = document.getElementById("frame");
const log = [];
let bridge;

window.host = {
  log,
  /**
   * Load the board's HTML into the sandboxed iframe under an AppBridge and wait for the board's
   * ui/initialize handshake. `tool` is the list_tasks definition (hostContext.toolInfo).
   */
  async load(html, { tool, theme = "light", timeZone = "UTC", serverTools = true } = {}) {
    bridge = new AppBridge(
      null, // no MCP client in the page: tools/call goes through oncalltool to Node
      { name: "task-mcp-e2e-host", version: "1.0.0" },
      { ...(serverTools ? { serverTools: {} } : {}), logging: {} },
      {
        hostContext: {
          theme,
          platform: "web",
          displayMode: "inline",
          availableDisplayModes: ["inline"],
          locale: "en-US",
          timeZone,
          ...(tool ? { toolInfo: { tool } } : {}),
        },
      },
    );
    const ready = new Promise((resolve) => (bridge.oninitialized = () => resolve()));
    bridge.onsizechange = ({ height }) => {
      if (typeof height === "number") iframe.style.height = `${Math.ceil(height)}px`;
    };
    bridge.onloggingmessage = (m) => log.push({ log: m });
    bridge.oncalltool = async (request) => {
      log.push({ call: request.name, arguments: request.arguments });
      return window.mcpCallTool(request.name, request.arguments ?? {});
    };
    await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
    iframe.srcdoc = html;
    await ready;
  },
  /** What a host does after the model's tools/call: send the arguments, then the result. */
  async show(args, result) {
    await bridge.sendToolInput({ arguments: args });
    await bridge.sendToolResult(result);
  },
};
