"""The floor: a minimal MCP server on the same SDK, with one tool that does nothing.

It is built like task_mcp's server (the low-level `Server`, the same transports), so a ratio
`task_mcp / noop` is what task_mcp adds on top of the SDK, the transport and the process.

    python -m benchmarks.noop_server                         # stdio
    python -m benchmarks.noop_server --http --port 8123      # Streamable HTTP at /mcp (stateless)
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

NOOP = Tool(name="noop", description="Does nothing.", input_schema={"type": "object"})


async def _list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
    return ListToolsResult(tools=[NOOP])


async def _call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text="ok")])


def build_server() -> Server[Any]:
    return Server("noop", version="0", on_list_tools=_list_tools, on_call_tool=_call_tool)


async def serve_stdio() -> None:
    server = build_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve_http(host: str, port: int) -> None:
    import uvicorn

    app = build_server().streamable_http_app(stateless_http=True, host=host)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="Streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    if args.http:
        serve_http(args.host, args.port)
    else:
        anyio.run(serve_stdio)


if __name__ == "__main__":
    main()
