from task_mcp.cli import main

raise SystemExit(main())
