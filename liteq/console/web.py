"""The console's web application: pages, actions, security (Starlette and Jinja2).

Pages only read the store (:mod:`liteq.console.data`). Actions are POSTs carrying a
CSRF token (a random cookie the form must repeat, and an ``Origin`` that must be this
host), and are not routed at all with ``read_only``. With a ``token``, every request
must carry it: once as ``?token=`` (which sets a cookie), as that cookie, or as
``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from liteq.console.data import STATES, ConsoleData, TaskFilter
from liteq.console.metrics import metrics_response, registry_for
from liteq.resend import not_retriable, send_again
from liteq.states import FAILURE

if TYPE_CHECKING:
    from liteq.app import LiteQ

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "liteq_console_token"
CSRF_COOKIE = "liteq_csrf"
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 50
#: The task list's time filter: label -> seconds back (0: the last 7 days).
SINCE = {"15m": 900, "1h": 3600, "1d": 86400, "7d": 0}


def _when(value: float | None) -> str:
    if not value:
        return ""
    return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Security(BaseHTTPMiddleware):
    """The token check, and the CSRF cookie every page hands out."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint
                       ) -> Response:
        if request.url.path.startswith("/static/"):
            return await call_next(request)
        if self.token:
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given, self.token):
                response: Response = RedirectResponse(
                    request.url.remove_query_params("token"), status_code=303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True,
                                    samesite="strict")
                return response
            if not self._authorized(request):
                return HTMLResponse(
                    "<h1>liteq console</h1><p>This console needs its token: open it with "
                    "<code>?token=…</code>.</p>", status_code=401)
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf = csrf
        response = await call_next(request)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        header = request.headers.get("authorization", "")
        candidates = [request.cookies.get(TOKEN_COOKIE) or "",
                      header[7:] if header.lower().startswith("bearer ") else ""]
        return any(c and hmac.compare_digest(c, self.token) for c in candidates)


class Console:
    """The routes of one console over one app."""

    def __init__(self, app: LiteQ, *, read_only: bool = False,
                 hidden: tuple[str, ...] = ()) -> None:
        self.app = app
        self.read_only = read_only
        self.data = ConsoleData(app, hidden)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]))
        self.templates.filters.update(when=_when, age=_age)
        self.registry, self.collector = registry_for(app)

    def render(self, request: Request, name: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        template = self.templates.get_template(name)
        html = template.render(request=request, read_only=self.read_only,
                               csrf=request.state.csrf, csrf_field=CSRF_FIELD,
                               location=self.app.broker.location, now=time.time(),
                               **context)
        return HTMLResponse(html, status_code=status_code)

    # -- pages -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        data = self.data
        workers = data.workers()
        charts = data.throughput({"hour": (3600, 60), "day": (86400, 900)})
        return self.render(request, "overview.html", queues=data.queues(), **charts,
                           alive=sum(1 for w in workers if w["alive"]), workers=workers)

    def _filter(self, request: Request) -> tuple[TaskFilter, dict[str, str]]:
        params = {k: v for k, v in request.query_params.items()
                  if k in ("state", "name", "queue", "since", "q") and v}
        back = SINCE.get(params.get("since", ""), 0)
        return TaskFilter(state=params.get("state"), name=params.get("name"),
                          queue=params.get("queue"),
                          since=time.time() - back if back else None,
                          search=params.get("q")), params

    async def tasks(self, request: Request) -> Response:
        where, params = self._filter(request)
        page = max(1, _int(request.query_params.get("page"), 1))
        found, total = self.data.tasks(where, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        context: dict[str, Any] = dict(tasks=found, total=total, page=page, page_size=PAGE_SIZE,
                       params=params, query=urlencode(params), states=STATES,
                       names=self.data.task_names(), since_choices=list(SINCE),
                       queue_names=[q["name"] for q in self.data.queues()])
        if request.query_params.get("partial"):
            return self.render(request, "task_rows.html", **context)
        return self.render(request, "tasks.html", **context)

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        task = self.data.task(task_id)
        if task is None:
            return self.render(request, "missing.html", status_code=404, task_id=task_id)
        children = [self.data.task(c) for c in task.children[:200]]
        return self.render(request, "task.html", task=task,
                           children=[c for c in children if c is not None],
                           message=request.query_params.get("message"))

    async def workers(self, request: Request) -> Response:
        return self.render(request, "workers.html", workers=self.data.workers(),
                           sqlite=getattr(self.app.broker, "path", None) is not None)

    async def beat(self, request: Request) -> Response:
        return self.render(request, "beat.html", entries=self.data.beat())

    async def metrics(self, request: Request) -> Response:
        body, content_type = metrics_response(self.registry)
        return Response(body, media_type=content_type)

    async def api_tasks(self, request: Request) -> Response:
        where, _ = self._filter(request)
        found, total = self.data.tasks(where, 0, PAGE_SIZE)
        return JSONResponse({"total": total, "tasks": [t.as_dict() for t in found]})

    # -- actions -----------------------------------------------------------------------

    async def _checked_form(self, request: Request) -> dict[str, str] | Response:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        cookie = request.cookies.get(CSRF_COOKIE, "")
        given = fields.get(CSRF_FIELD, "")
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
            return PlainForbidden("cross-origin request refused")
        if not cookie or not given or not hmac.compare_digest(cookie, given):
            return PlainForbidden("missing or wrong CSRF token: reload the page and try again")
        return fields

    async def retry(self, request: Request) -> Response:
        fields = await self._checked_form(request)
        if isinstance(fields, Response):
            return fields
        task_id = request.path_params["task_id"]
        message = _retry_one(self.app, task_id)
        return _back(f"/task/{task_id}", message)

    async def revoke(self, request: Request) -> Response:
        fields = await self._checked_form(request)
        if isinstance(fields, Response):
            return fields
        task_id = request.path_params["task_id"]
        terminate = fields.get("terminate") == "1"
        self.app.control.revoke(task_id, terminate=terminate)
        return _back(f"/task/{task_id}", "terminated" if terminate else "revoked")

    async def retry_failed(self, request: Request) -> Response:
        fields = await self._checked_form(request)
        if isinstance(fields, Response):
            return fields
        back = SINCE.get(fields.get("since", ""), 0)
        where = TaskFilter(state=FAILURE, name=fields.get("name") or None,
                           queue=fields.get("queue") or None,
                           since=time.time() - back if back else None,
                           search=fields.get("q") or None)
        found, _ = self.data.tasks(where, 0, 10000)
        retried = sum(1 for task in found if task.can_retry and
                      _retry_one(self.app, task.id).startswith("retried"))
        params = {k: v for k, v in fields.items() if k in ("name", "queue", "since", "q") and v}
        return RedirectResponse(f"/tasks?{urlencode(params)}&retried={retried}",
                                status_code=303)

    async def purge(self, request: Request) -> Response:
        fields = await self._checked_form(request)
        if isinstance(fields, Response):
            return fields
        removed = self.app.broker.purge([request.path_params["queue"]])
        return RedirectResponse(f"/?purged={removed}", status_code=303)

    async def pause(self, request: Request) -> Response:
        """Pause a queue (``app.control.pause_queue``), or resume it with resume=1."""
        fields = await self._checked_form(request)
        if isinstance(fields, Response):
            return fields
        queue = request.path_params["queue"]
        if fields.get("resume") == "1":
            self.app.control.resume_queue(queue)
            return RedirectResponse(f"/?resumed={quote(queue)}", status_code=303)
        self.app.control.pause_queue(queue)
        return RedirectResponse(f"/?paused={quote(queue)}", status_code=303)

    def routes(self) -> list[Route | Mount]:
        routes: list[Route | Mount] = [
            Route("/", self.overview), Route("/tasks", self.tasks),
            Route("/task/{task_id}", self.task), Route("/workers", self.workers),
            Route("/beat", self.beat), Route("/metrics", self.metrics),
            Route("/api/tasks", self.api_tasks),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        if not self.read_only:
            routes += [
                Route("/task/{task_id}/retry", self.retry, methods=["POST"]),
                Route("/task/{task_id}/revoke", self.revoke, methods=["POST"]),
                Route("/tasks/retry-failed", self.retry_failed, methods=["POST"]),
                Route("/queue/{queue}/purge", self.purge, methods=["POST"]),
                Route("/queue/{queue}/pause", self.pause, methods=["POST"]),
            ]
        return routes


def PlainForbidden(reason: str) -> Response:
    return Response(f"403 Forbidden: {reason}\n", status_code=403, media_type="text/plain")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _back(path: str, message: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'message': message})}", status_code=303)


def _retry_one(app: LiteQ, task_id: str) -> str:
    """Send a failed or revoked task again (as ``liteq retry``); says what happened."""
    record = app.backend.get_result(task_id)
    if record is None:
        return "no such task result (PENDING or expired)"
    reason = not_retriable(record)
    if reason:
        return reason
    return f"retried as {send_again(app, record)}"


def create_app(app: LiteQ, *, token: str | None = None, read_only: bool = False,
               hidden: tuple[str, ...] = ()) -> Starlette:
    """The console as an ASGI application (serve it with uvicorn, or mount it).

    Args:
        app: the liteq app whose store the console shows.
        token: required on every request when given (see the module docstring).
        read_only: no actions at all (no buttons, no POST routes).
        hidden: glob patterns of task names whose arguments and results are hidden
            (``console_hidden_tasks`` is added to them).

    Example:
        >>> asgi = create_app(app, read_only=True)  # doctest: +SKIP
    """
    hidden = tuple(hidden) + tuple(app.conf.get("console_hidden_tasks") or ())
    console = Console(app, read_only=read_only, hidden=hidden)

    return Starlette(routes=console.routes(),
                     middleware=[Middleware(Security, token=token)])

__all__ = ["Console", "create_app"]
