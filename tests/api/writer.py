"""A writer process for the live tests: ``python writer.py URL COMMAND ARGS...``; prints JSON.

    setup SESSION                      -> {"orchestrator_agent_id", "agent_id"}
    logs AGENT_ID COUNT PREFIX [LEVEL] -> ["<log id>", ...]
    prompt AGENT_ID CONTENT RESPONSE   -> "<prompt id>"
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from orchestrator_db import DatabaseManager


async def main(url: str, command: str, args: list[str]) -> Any:
    async with DatabaseManager(url=url) as db:
        if command == "setup":
            oa = await db.create_orchestrator_agent(f"writer-{uuid.uuid4().hex[:8]}")
            agent = await db.create_agent(oa, args[0], name="writer", model="test-model",
                                          status="executing")
            return {"orchestrator_agent_id": oa, "agent_id": agent}
        if command == "logs":
            agent_id, count, prefix = args[0], int(args[1]), args[2]
            level = args[3] if len(args) > 3 else "INFO"
            return [await db.create_agent_log(agent_id, f"{prefix} {i}", log_level=level)
                    for i in range(count)]
        if command == "prompt":
            agent_id, content, response = args
            return await db.create_prompt(agent_id, content, response=response, model="m",
                                          status="completed", tokens_input=10,
                                          tokens_output=20, cost_usd=0.01)
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))))
