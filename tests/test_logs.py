"""The event log: one line per event, plain or JSON, with a session id that survives a resume."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from p2pconf import audit

from .test_cli import start_server, stop_server


def test_a_json_line_carries_the_fields_and_a_hostile_value_stays_one_line():
    record = logging.LogRecord("p2pconf.audit", logging.INFO, __file__, 1, "event=x", (), None)
    record.fields = {"event": "sign-in", "login": 'bad\nlogin"}', "retry_after_s": 5}
    line = audit.JsonLines().format(record)
    assert "\n" not in line
    assert json.loads(line) | {"time": 0} == {"time": 0, "level": "info", "logger": "p2pconf.audit",
                                              "event": "sign-in", "login": 'bad\nlogin"}', "retry_after_s": 5}


def test_serve_writes_json_lines_for_start_join_resume_leave_and_stop(tmp_path):
    proc, url = start_server(tmp_path / "data", "--open-rooms", "--log-format", "json")

    async def a_call() -> None:
        async with aiohttp.ClientSession(headers={"Origin": url}) as http:
            ws = await http.ws_connect(url + "/ws")
            await ws.send_json({"type": "hello", "version": 1})
            welcome = await ws.receive_json(timeout=5)
            await ws.send_json({"type": "join", "room": "Daily", "name": "Anna"})
            assert (await ws.receive_json(timeout=5))["type"] == "joined"
            ws._response.connection.transport.abort()  # the network breaks
            for _ in range(50):  # until the server noticed (bounded)
                back = await http.ws_connect(url + "/ws")
                await back.send_json({"type": "hello", "version": 1, "resume": welcome["resume"]})
                again = await back.receive_json(timeout=5)
                if again["resumed"]:
                    break
                await back.close(code=1000)
                await asyncio.sleep(0.1)
            assert again["id"] == welcome["id"]
            await back.send_json({"type": "leave"})
            assert (await back.receive_json(timeout=5))["type"] == "left"
            await back.close(code=1000)

    try:
        asyncio.run(a_call())
    finally:
        output = stop_server(proc)
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert all(e["logger"] == "p2pconf.audit" or "message" in e for e in events)
    kinds = [e.get("event") for e in events]
    for kind in ("process-start", "join", "detached", "resume", "leave", "process-stop"):
        assert kind in kinds, (kind, output)
    peer = next(e["peer"] for e in events if e.get("event") == "join")
    # one id follows the client across its reconnect
    assert {e["peer"] for e in events if e.get("event") in ("join", "detached", "resume", "leave")} == {peer}
    assert next(e for e in events if e.get("event") == "resume")["room"] == "Daily"
