"""Prometheus metrics on their own port: the p2pconf_* families, counted where things happen."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from p2pconf.appkeys import CONFIG

from .org import next_of, signed_in
from .services import free_port


@pytest.fixture
def metrics_port(org_config) -> int:
    org_config.metrics_port = free_port()
    return org_config.metrics_port


async def scrape(port: int) -> dict[str, dict]:
    """{sample name: {(label, value) pairs but process: value}} from GET /metrics."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as reply:
            assert reply.status == 200 and reply.content_type == "text/plain"
            text = await reply.text()
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels.get("process"), s  # every sample says which process it is from
            samples.setdefault(s.name, {})[tuple(sorted((k, v) for k, v in s.labels.items() if k != "process"))] = s.value
    return samples


async def test_metrics_count_sign_ins_messages_errors_joins_searches_and_rings(metrics_port, org):
    assert org.app[CONFIG].metrics_port == metrics_port
    anna, bert = await signed_in(org, "anna"), await signed_in(org, "bert")
    assert (await org.browser().sign_in("anna", "wrong password")).status == 401
    assert (await anna.json("GET", "/api/users?q=bert"))[0] == 200
    ws_bert = await bert.ws()
    status, call = await anna.json("POST", "/api/calls", {"invitees": ["bert"]})
    assert status == 201
    await next_of(ws_bert, "ring")
    assert (await bert.json("POST", f"/api/calls/{call['id']}/decline"))[0] == 200
    ws_anna = await anna.ws()
    await ws_anna.send_json({"type": "join", "room": call["room"]["id"]})
    await next_of(ws_anna, "joined")
    await ws_anna.send_json({"type": "offer", "to": "nobody00", "sdp": "v=0"})
    assert (await next_of(ws_anna, "error"))["code"] == "unknown-peer"
    m = await scrape(metrics_port)
    assert m["p2pconf_sign_ins_total"] == {(("outcome", "ok"),): 2.0, (("outcome", "failed"),): 1.0}
    assert m["p2pconf_rings_total"] == {(("outcome", "declined"),): 1.0}
    assert m["p2pconf_messages_total"][(("type", "join"),)] == 1.0
    assert m["p2pconf_messages_total"][(("type", "hello"),)] == 2.0
    assert m["p2pconf_errors_total"] == {(("code", "unknown-peer"),): 1.0}
    assert m["p2pconf_join_seconds_count"] == {(): 1.0}
    assert m["p2pconf_directory_search_seconds_count"] == {(): 1.0}
    assert m["p2pconf_connections"] == {(): 2.0} and m["p2pconf_rooms"] == {(): 1.0}
    assert m["p2pconf_participants"] == {(): 1.0}
    await ws_anna.close()
    await ws_bert.close()


async def test_metrics_are_not_on_the_public_port(metrics_port, org):
    async with aiohttp.ClientSession() as http:
        async with http.get(org.make_url("/metrics")) as reply:
            assert reply.status == 404
