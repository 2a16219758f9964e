"""A FastAPI app on liteq's asyncio API: handlers ``await add.adelay(...)`` and
``await result.aget(...)``, so a thousand waiting requests hold no thread each.

    liteq -A main worker -l info
    uvicorn main:api

With ``EMBEDDED_WORKER=1`` the app runs its own worker in a background thread
(``app.run_worker``) instead, for a single-process deployment.
"""

import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from liteq import LiteQ, TimeoutError

app = LiteQ("main", broker=os.environ.get("BROKER_URL", "sqlite:///tasks.db"))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def slow_square(x: int, seconds: float) -> int:
    time.sleep(0)

    time.sleep(seconds)
    return x * x


@asynccontextmanager
async def lifespan(_api: FastAPI):
    if os.environ.get("EMBEDDED_WORKER") == "1":
        with app.run_worker(pool="threads", concurrency=4):
            yield
    else:
        yield


api = FastAPI(title="liteq + FastAPI", lifespan=lifespan)


@api.get("/add")
async def add_now(x: int, y: int) -> dict:
    """Send the task and wait for its result, without blocking the event loop."""
    result = await add.adelay(x, y)
    try:
        return {"task_id": result.id, "result": await result.aget(timeout=10)}
    except TimeoutError:
        raise HTTPException(status_code=504, detail="no worker answered in 10s") from None


@api.post("/squares")
async def submit(x: int, seconds: float = 0.0) -> dict:
    """Send a task and answer at once with its id."""
    result = await slow_square.adelay(x, seconds)
    return {"task_id": result.id}


@api.get("/tasks/{task_id}")
async def outcome(task_id: str, wait: float = 0.0) -> dict:
    """The task's result, waiting up to ``wait`` seconds for it."""
    try:
        value = await app.AsyncResult(task_id).aget(timeout=max(wait, 0.001))
    except TimeoutError:
        return {"task_id": task_id, "ready": False}
    return {"task_id": task_id, "ready": True, "result": value}
