"""The SPEC's sample endpoints, which the load tests drive."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

router = APIRouter(prefix="/api/v1", tags=["sample"])


class Greeting(BaseModel):
    message: str


class EchoIn(BaseModel):
    message: str = Field(min_length=1, max_length=1000)


class EchoOut(BaseModel):
    message: str
    length: int


class Waited(BaseModel):
    waited_ms: int


@router.get("/hello", response_model=Greeting)
async def hello(
    name: Annotated[str, Query(min_length=1, max_length=64)] = "world",
) -> Greeting:
    return Greeting(message=f"Hello, {name}!")


@router.post("/echo", response_model=EchoOut)
async def echo(body: EchoIn) -> EchoOut:
    return EchoOut(message=body.message, length=len(body.message))


@router.get("/wait", response_model=Waited)
async def wait(ms: Annotated[int, Query(ge=0, le=5000)]) -> Waited:
    """Await ``ms`` milliseconds without blocking the loop: a stand-in for an I/O call."""
    await asyncio.sleep(ms / 1000)
    return Waited(waited_ms=ms)
