"""The ingest benchmark's baseline: a bare Starlette endpoint that reads the body and answers 200."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def receive(request: Request) -> Response:
    await request.body()
    return Response(b'{"status":"accepted"}', media_type="application/json")


app = Starlette(routes=[Route("/hooks/{source}", receive, methods=["POST"])])
