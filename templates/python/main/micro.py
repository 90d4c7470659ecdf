"""micro: a small web toolkit for Python Micros.

It turns `wasi:http` (the bindings componentize-py generates) into a friendly API:

    from micro import Micro

    app = Micro()

    @app.get("/hello/<name>")
    def hello(req, name):
        return {"hello": name}

    IncomingHandler = app.handler()

`micro.wsgi(flask_app)` does the same for any WSGI application (Flask, Bottle...), and
`micro.asgi(fastapi_app)` for any ASGI application (FastAPI, Starlette...).

Importing it also sends the standard library's outbound HTTP (`http.client`, and so
`urllib.request`) through `wasi:http`, the only way out of a Micro; `micro.fetch` is the plain call.
"""

import asyncio
import html as _html
import http
import http.client
import io
import importlib
import importlib.util
import json as _json
import pkgutil
import re
import sys
import time
import traceback
from io import BytesIO
from urllib.parse import parse_qs, unquote, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import outgoing_handler, streams

# componentize-py snapshots the interpreter after importing the app module: a module first
# imported while a request is served is not in the component ("No module named ..." or, for a
# codec, "unknown encoding"). Import what handlers use at module level, or call `preload()`.

try:  # the world micros:micro/micro names it so (wasi:filesystem has `types` too)...
    from wit_world.imports import wasi_http_types as _http
except ImportError:  # ...and wasi:http/proxy alone calls it plain `types`.
    from wit_world.imports import types as _http

__all__ = [
    "Micro", "Request", "Response", "HTTPError", "Headers",
    "text", "html", "json", "redirect", "abort", "escape", "preload", "wsgi", "asgi", "stand_in_ssl",
    "fetch", "Fetched",
]

#: Headers a response may not carry in wasi:http (the runtime manages them).
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "host", "http2-settings",
}
_READ_CHUNK = 1 << 20
_MESSAGES = {
    400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
    405: "method not allowed", 409: "conflict", 413: "payload too large", 422: "unprocessable",
    500: "internal server error",
}


def preload(*packages):
    """Import packages and all their submodules now, so that the component holds them."""
    for name in packages:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
            try:
                importlib.import_module(info.name)
            except Exception:  # e.g. needs a C extension or a module WASI lacks (ssl, ...)
                pass


# Every text codec (Werkzeug looks up `idna` for each request, Jinja `unicode-escape`).
preload("encodings")


def escape(value):
    """Escape a value for HTML text or attributes."""
    return _html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------
# Requests


class Headers:
    """Case-insensitive, multi-valued HTTP headers."""

    def __init__(self, pairs=()):
        self._items = [(name.lower(), value) for name, value in pairs]

    def get(self, name, default=None):
        """The first value of a header, or `default`."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name):
        """Every value of a header, in order."""
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def items(self):
        """(name, value) pairs, names in lower case, repeated names kept."""
        return list(self._items)

    def __getitem__(self, name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        return self.get(name) is not None

    def __iter__(self):
        return iter(dict.fromkeys(key for key, _ in self._items))

    def __repr__(self):
        return f"Headers({self._items!r})"


class Request:
    """An incoming request: method, path, query, headers and the whole body."""

    def __init__(self, method, target, headers, body=b"", authority=None, scheme="http"):
        self.method = method
        #: The path and query exactly as sent, e.g. `/api/notes?limit=5`.
        self.target = target
        raw_path, _, self.query_string = target.partition("?")
        #: The raw (percent-encoded) path.
        self.raw_path = raw_path or "/"
        #: The percent-decoded path, used for routing.
        self.path = unquote(self.raw_path)
        #: Query parameters, first value of each: `?a=1&a=2` gives `{"a": "1"}`.
        self.query = {k: v[0] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}
        self.headers = headers
        self.body = body
        #: The host the client asked for (`Host`), e.g. `127.0.0.1:4200`.
        self.authority = authority
        self.scheme = scheme
        #: Values of the route's `<name>` placeholders.
        self.params = {}

    @property
    def content_type(self):
        """The media type of the body, without parameters, in lower case."""
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()

    @property
    def text(self):
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body parsed as JSON; a body that is not JSON is answered 400."""
        try:
            return _json.loads(self.body)
        except ValueError:
            raise HTTPError(400, "body is not valid JSON") from None

    def form(self):
        """A url-encoded form body as a dict (first value of each field)."""
        fields = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items()}

    def form_all(self):
        """A url-encoded form body as a dict of lists (every value of each field)."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


# ---------------------------------------------------------------------------
# Responses


class Response:
    """An outgoing response: status, headers and a body (bytes or str)."""

    def __init__(self, body=b"", status=200, headers=None, content_type=None):
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self.status = int(status)
        self.headers = list(headers.items() if isinstance(headers, dict) else headers or [])
        if content_type and not any(k.lower() == "content-type" for k, _ in self.headers):
            self.headers.append(("content-type", content_type))


def text(body, status=200, headers=None):
    """A `text/plain; charset=utf-8` response."""
    return Response(body, status, headers, "text/plain; charset=utf-8")


def html(body, status=200, headers=None):
    """A `text/html; charset=utf-8` response."""
    return Response(body, status, headers, "text/html; charset=utf-8")


def json(value, status=200, headers=None):
    """An `application/json` response (compact, UTF-8)."""
    body = _json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status, headers, "application/json")


def redirect(location, status=302):
    """A redirect to `location`."""
    return Response(b"", status, [("location", location)])


class HTTPError(Exception):
    """Raise it in a handler to answer `status` with JSON `{"error": message}`."""

    def __init__(self, status, message=None):
        super().__init__(message)
        self.status = status
        self.message = message or _MESSAGES.get(status, "error")


def abort(status, message=None):
    """Stop the handler and answer `status` with JSON `{"error": message}`."""
    raise HTTPError(status, message)


def _to_response(value):
    """Turn what a handler returned into a Response."""
    status, headers = None, None
    if isinstance(value, tuple):
        value, status, *rest = value
        headers = rest[0] if rest else None
    if isinstance(value, Response):
        response = value
    elif value is None:
        response = Response(b"", 204)
    elif isinstance(value, (dict, list)):
        response = json(value)
    elif isinstance(value, str):
        response = text(value)
    elif isinstance(value, (bytes, bytearray)):
        response = Response(value, content_type="application/octet-stream")
    else:
        raise TypeError(f"a handler returned {type(value).__name__}; return a Response, str, dict or list")
    if status is not None:
        response.status = int(status)
    if headers:
        response.headers.extend(headers.items() if isinstance(headers, dict) else headers)
    return response


# ---------------------------------------------------------------------------
# The router


class _Route:
    def __init__(self, pattern, methods, func):
        self.pattern = pattern
        self.methods = {m.upper() for m in methods}
        self.func = func
        parts = re.split(r"<([A-Za-z_][A-Za-z0-9_]*)>", pattern)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
        )
        self.regex = re.compile(regex + r"\Z")


class Micro:
    """A Micro's routes and scheduled actions; `handler()` exports them."""

    def __init__(self):
        self.routes = []
        self.actions = {}

    def route(self, pattern, methods=("GET",)):
        """Register a handler for `pattern` (`<name>` matches one path segment)."""

        def register(func):
            self.routes.append(_Route(pattern, methods, func))
            return func

        return register

    def get(self, pattern):
        """Register a GET handler (HEAD is answered by it too)."""
        return self.route(pattern, ["GET"])

    def post(self, pattern):
        """Register a POST handler."""
        return self.route(pattern, ["POST"])

    def put(self, pattern):
        """Register a PUT handler."""
        return self.route(pattern, ["PUT"])

    def patch(self, pattern):
        """Register a PATCH handler."""
        return self.route(pattern, ["PATCH"])

    def delete(self, pattern):
        """Register a DELETE handler."""
        return self.route(pattern, ["DELETE"])

    def action(self, action_id):
        """Register the handler of a scheduled action (the `id` in Spacefile.toml)."""

        def register(func):
            self.actions[action_id] = func
            return func

        return register

    def dispatch(self, req):
        """Answer one Request with a Response (routing, 404, 405, errors)."""
        try:
            if req.path == "/__space/v0/actions" and req.method == "POST":
                return self._run_action(req)
            allowed = set()
            for route in self.routes:
                match = route.regex.match(req.path)
                if not match:
                    continue
                if req.method in route.methods or (req.method == "HEAD" and "GET" in route.methods):
                    req.params = match.groupdict()
                    return _to_response(route.func(req, **req.params))
                allowed |= route.methods
            if allowed:
                allow = ", ".join(sorted(allowed | ({"HEAD"} if "GET" in allowed else set())))
                return json({"error": "method not allowed"}, 405, [("allow", allow)])
            return json({"error": "not found"}, 404)
        except HTTPError as error:
            return json({"error": error.message}, error.status)

    def _run_action(self, req):
        body = req.json()
        event = body.get("event") if isinstance(body, dict) else None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise HTTPError(400, "expected {\"event\": {\"id\": ...}}")
        func = self.actions.get(event["id"])
        if func is None:
            raise HTTPError(404, "unknown action")
        return _to_response(func(req, event))

    def handler(self):
        """The class componentize-py exports: `IncomingHandler = app.handler()`."""
        return _handler_class(lambda request: self.dispatch(_read_request(request)))


# ---------------------------------------------------------------------------
# wasi:http plumbing


def _method_name(method):
    if isinstance(method, _http.Method_Other):
        return method.value.upper()
    return type(method).__name__.split("_", 1)[1].upper()


def _drain(body):
    """Read a whole incoming body (a request's or a response's) through its WASI input stream,
    then finish it."""
    chunks = []
    with body.stream() as stream:  # the stream must be dropped before the body is finished
        while True:
            try:
                chunks.append(stream.blocking_read(_READ_CHUNK))
            except Err as error:
                if isinstance(error.value, streams.StreamError_Closed):
                    break
                raise
    _http.IncomingBody.finish(body)
    return b"".join(chunks)


def _read_body(request):
    """Read the whole request body."""
    return _drain(request.consume())


def _read_request(request):
    """Turn a wasi:http incoming-request into a Request."""
    scheme = request.scheme()
    with request.headers() as fields:
        pairs = [(name, value.decode("latin-1")) for name, value in fields.entries()]
    return Request(
        method=_method_name(request.method()),
        target=request.path_with_query() or "/",
        headers=Headers(pairs),
        body=_read_body(request),
        authority=request.authority(),
        scheme="https" if isinstance(scheme, _http.Scheme_Https) else "http",
    )


def _write_all(stream, data):
    """Write bytes to a WASI output stream, waiting whenever it is full."""
    view = memoryview(data)
    with stream.subscribe() as ready:  # the pollable must be dropped before the stream
        while view:
            allowed = stream.check_write()
            if allowed == 0:
                ready.block()
                continue
            stream.write(bytes(view[:allowed]))
            view = view[allowed:]
        stream.flush()
        while stream.check_write() == 0:  # wait for the flush to complete
            ready.block()


def _fields(headers):
    """The headers a response may carry, as wasi:http fields (hop-by-hop ones and
    Content-Length are the host's to set)."""
    pairs = []
    for name, value in headers:
        name = name.lower()
        if name in _HOP_BY_HOP or name == "content-length" or name.startswith("proxy-"):
            continue
        pairs.append((name, value.encode("latin-1") if isinstance(value, str) else bytes(value)))
    return pairs


def _send(response_out, status, headers, body, head_only=False):
    """Send a whole response: head first, then the body through its stream."""
    pairs = _fields(headers)
    if status in (204, 304):  # no body, and no Content-Length either (RFC 9110)
        body = b""
    elif not head_only:
        pairs.append(("content-length", str(len(body)).encode()))
    response = _http.OutgoingResponse(_http.Fields.from_list(pairs))
    response.set_status_code(status)
    outgoing = response.body()
    _http.ResponseOutparam.set(response_out, Ok(response))
    if body and not head_only:
        with outgoing.write() as stream:
            _write_all(stream, body)
    _http.OutgoingBody.finish(outgoing, None)


class _Streaming:
    """A response whose head is out and whose body goes out part by part as the app sends it
    (chunked: its length is not known), never held whole."""

    def __init__(self, response_out, status, headers, head_only):
        response = _http.OutgoingResponse(_http.Fields.from_list(_fields(headers)))
        response.set_status_code(status)
        self._body = response.body()
        _http.ResponseOutparam.set(response_out, Ok(response))
        self._stream = None if head_only else self._body.write()

    def write(self, data):
        if self._stream is not None and data:
            _write_all(self._stream, data)

    def _close_stream(self):
        if self._stream is not None:
            self._stream.__exit__(None, None, None)  # the stream goes before its body
            self._stream = None

    def finish(self):
        """The body is whole: the client sees its end."""
        self._close_stream()
        if self._body is not None:
            _http.OutgoingBody.finish(self._body, None)
            self._body = None

    def abandon(self):
        """The app failed after the head was out: the body is dropped unfinished, so the
        client sees a cut response, not a whole one."""
        self._close_stream()
        if self._body is not None:
            self._body.__exit__(None, None, None)
            self._body = None


def _send_error(response_out):
    try:
        _send(response_out, 500, [("content-type", "text/plain; charset=utf-8")], b"Internal Server Error\n")
    except Exception:
        traceback.print_exc()


def _handler_class(respond, streams=False):
    """An IncomingHandler class whose requests are answered by `respond(request) -> Response`;
    with `streams`, by `respond(request, response_out, head_only)`, which returns None when it
    has sent the response itself."""

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request, response_out):
            head_only = isinstance(request.method(), _http.Method_Head)
            try:
                if streams:
                    response = respond(request, response_out, head_only)
                else:
                    response = respond(request)
            except Exception:
                traceback.print_exc()
                _send_error(response_out)
                return
            try:
                if response is not None:
                    _send(response_out, response.status, response.headers, response.body, head_only)
            except Exception:
                traceback.print_exc()  # the head may be out already: nothing else to send
            finally:
                sys.stdout.flush()
                sys.stderr.flush()

    return IncomingHandler


# ---------------------------------------------------------------------------
# WSGI (PEP 3333): run Flask and friends unchanged


def _split_host(authority):
    if not authority:
        return "localhost", "80"
    if authority.startswith("["):  # [::1]:8080
        host, _, rest = authority[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else "80"
    host, _, port = authority.partition(":")
    return host, port or "80"


def wsgi_environ(req):
    """The PEP 3333 environ of a Request."""
    server_name, server_port = _split_host(req.authority)
    environ = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(req.raw_path, encoding="latin-1"),
        "QUERY_STRING": req.query_string,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_URI": req.target,
        "RAW_URI": req.target,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": True,  # every request runs in a fresh instance
    }
    if req.authority:
        environ["HTTP_HOST"] = req.authority
    forwarded_for = req.headers.get("x-forwarded-for")
    if forwarded_for:
        environ["REMOTE_ADDR"] = forwarded_for.split(",")[0].strip()
    if "content-type" in req.headers:
        environ["CONTENT_TYPE"] = req.headers["content-type"]
    if req.body or "content-length" in req.headers:
        environ["CONTENT_LENGTH"] = str(len(req.body))
    for name in req.headers:
        if name in ("content-type", "content-length"):
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        separator = "; " if name == "cookie" else ", "
        environ[key] = separator.join(req.headers.get_all(name))
    return environ


def call_wsgi(wsgi_app, req):
    """Run a WSGI application on a Request and collect its Response."""
    started = {}
    written = []

    def start_response(status, headers, exc_info=None):
        if exc_info and started.get("sent"):
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = list(headers)
        return written.append

    result = wsgi_app(wsgi_environ(req), start_response)
    try:
        for chunk in result:
            if chunk:
                started["sent"] = True
                written.append(chunk)
    finally:
        if hasattr(result, "close"):
            result.close()
    if "status" not in started:
        raise RuntimeError("the WSGI application never called start_response")
    return Response(b"".join(written), started["status"], started["headers"])


def wsgi(wsgi_app):
    """The class componentize-py exports for a WSGI app: `IncomingHandler = micro.wsgi(app)`."""
    return _handler_class(lambda request: call_wsgi(wsgi_app, _read_request(request)))


# ---------------------------------------------------------------------------
# ASGI (3.0): run FastAPI, Starlette and friends unchanged


class _NoSelector:
    """The event loop's selector: a Micro has no sockets to wait on, only time."""

    def select(self, timeout):
        if timeout is None:
            raise RuntimeError("the ASGI app waits for something that can never happen")
        if timeout > 0:
            time.sleep(timeout)
        return []


class _Loop(asyncio.BaseEventLoop):
    """An asyncio event loop without a self-pipe (a WASI sandbox has no socketpair): callbacks,
    timers and tasks, one request at a time."""

    def __init__(self):
        super().__init__()
        self._selector = _NoSelector()

    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        pass


def _inline_threads():
    """A Micro has no threads: `anyio.to_thread.run_sync` (how Starlette and FastAPI run plain
    `def` endpoints and dependencies) runs the function inline instead."""
    try:
        import anyio.to_thread
    except ImportError:
        return

    async def run_sync(func, *args, abandon_on_cancel=False, cancellable=None, limiter=None):
        return func(*args)

    anyio.to_thread.run_sync = run_sync


class _Lifespan:
    """The app's lifespan, run around each execution: startup before the request, shutdown
    after it (a Micro lives for one request)."""

    def __init__(self, app):
        self.app = app
        self.state = {}
        self.supported = True
        self.to_app = asyncio.Queue()
        self.from_app = asyncio.Queue()
        self.task = None

    async def _run(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.to_app.get, self.from_app.put)
        except Exception:
            # An app that does not speak the lifespan protocol raises for its scope.
            await self.from_app.put({"type": "lifespan.unsupported"})

    async def startup(self):
        self.task = asyncio.ensure_future(self._run())
        await self.to_app.put({"type": "lifespan.startup"})
        message = await self.from_app.get()
        if message["type"] == "lifespan.unsupported":
            self.supported = False
        elif message["type"] == "lifespan.startup.failed":
            raise RuntimeError("the ASGI app's startup failed: " + message.get("message", ""))

    async def shutdown(self):
        if not self.supported:
            return
        await self.to_app.put({"type": "lifespan.shutdown"})
        message = await self.from_app.get()
        if message["type"] == "lifespan.shutdown.failed":
            print("the ASGI app's shutdown failed: " + message.get("message", ""), file=sys.stderr)
        await self.task


def asgi_scope(req, state):
    """The ASGI HTTP scope of a Request."""
    server_name, server_port = _split_host(req.authority)
    forwarded_for = req.headers.get("x-forwarded-for")
    client = (forwarded_for.split(",")[0].strip(), 0) if forwarded_for else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": req.scheme,
        "path": unquote(req.raw_path),
        "raw_path": req.raw_path.encode("latin-1", "replace"),
        "query_string": req.query_string.encode("latin-1", "replace"),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in req.headers.items()],
        "server": (server_name, int(server_port) if server_port.isdigit() else 80),
        "client": client,
        "state": dict(state),
    }


async def _serve_asgi(app, req, response_out=None, head_only=False):
    lifespan = _Lifespan(app)
    await lifespan.startup()
    started = {}
    chunks = []
    streaming = None
    done = asyncio.get_running_loop().create_future()
    body_sent = False

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        # Asked again (to notice a client that left): only once the response is whole, so
        # that a streaming response is not cut short.
        await done
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal streaming
        kind = message["type"]
        if kind == "http.response.start":
            started["status"] = int(message["status"])
            started["headers"] = [
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in message.get("headers", [])
            ]
        elif kind == "http.response.body":
            body = bytes(message.get("body", b""))
            more = message.get("more_body", False)
            if streaming is None and more and response_out is not None and started.get("status") not in (204, 304):
                # A body in parts goes out as it comes: the head now, then each part.
                streaming = _Streaming(response_out, started["status"], started["headers"], head_only)
            if streaming is not None:
                streaming.write(body)
            else:
                chunks.append(body)
            if not more and not done.done():
                if streaming is not None:
                    streaming.finish()  # whole before the background tasks run
                done.set_result(None)

    try:
        await app(asgi_scope(req, lifespan.state), receive, send)
    except Exception:
        if streaming is None:
            raise
        traceback.print_exc()
        streaming.abandon()
    finally:
        if not done.done():
            done.set_result(None)
        await lifespan.shutdown()
    if streaming is not None:
        streaming.finish()  # an app that never said the body was whole
        return None
    if "status" not in started:
        raise RuntimeError("the ASGI app sent no response")
    return Response(b"".join(chunks), started["status"], started["headers"])


def call_asgi(asgi_app, req, response_out=None, head_only=False):
    """Run an ASGI application on a Request, with its lifespan around it, and collect its
    Response (background tasks included: they run before the execution ends). Given the
    execution's `response_out`, a body the app sends in parts is sent as it comes (chunked),
    and None is returned."""
    loop = _Loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve_asgi(asgi_app, req, response_out, head_only))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


#: Packages ASGI apps import parts of only while serving (anyio loads its event-loop backend
#: by name): imported whole at build time, so that the component holds them.
_ASGI_PACKAGES = ("anyio", "sniffio", "starlette", "fastapi", "multipart", "python_multipart")


def stand_in_ssl():
    """This Python has no `ssl` (a Micro's outbound HTTPS goes through wasi:http, not sockets),
    yet anyio's event-loop backend imports it for its TLS streams: a module of the same names
    stands in, each failing with that explanation if it is ever used."""
    try:
        import ssl  # noqa: F401
        return
    except ImportError:
        pass
    import enum
    import types

    reason = "TLS sockets do not exist in a Micro: outbound HTTPS goes through wasi:http"

    class SSLError(OSError):
        pass

    class _Unavailable:
        def __init__(self, *args, **kwargs):
            raise OSError(reason)

    module = types.ModuleType("ssl", "A stand-in for `ssl`, which a Micro does not have.")
    module.SSLError = SSLError
    for name in ("SSLEOFError", "SSLZeroReturnError", "SSLWantReadError", "SSLWantWriteError",
                 "SSLSyscallError", "SSLCertVerificationError", "CertificateError"):
        setattr(module, name, type(name, (SSLError,), {}))
    for name in ("SSLContext", "SSLObject", "SSLSocket", "MemoryBIO", "SSLSession"):
        setattr(module, name, type(name, (_Unavailable,), {}))
    module.Purpose = enum.Enum("Purpose", "SERVER_AUTH CLIENT_AUTH")
    module.TLSVersion = enum.IntEnum(
        "TLSVersion", "MINIMUM_SUPPORTED SSLv3 TLSv1 TLSv1_1 TLSv1_2 TLSv1_3 MAXIMUM_SUPPORTED")
    module.VerifyMode = enum.IntEnum("VerifyMode", {"CERT_NONE": 0, "CERT_OPTIONAL": 1, "CERT_REQUIRED": 2})
    module.create_default_context = _Unavailable
    module.CERT_NONE, module.CERT_OPTIONAL, module.CERT_REQUIRED = 0, 1, 2
    module.PROTOCOL_TLS, module.PROTOCOL_SSLv23 = 2, 2
    module.PROTOCOL_TLS_CLIENT, module.PROTOCOL_TLS_SERVER = 16, 17
    module.OPENSSL_VERSION = "none: TLS is the host's"
    module.OPENSSL_VERSION_NUMBER, module.OPENSSL_VERSION_INFO = 0, (0, 0, 0, 0, 0)
    module.HAS_SNI = module.HAS_ALPN = module.HAS_NEVER_CHECK_COMMON_NAME = False

    def __getattr__(name):
        # Flags and options (OP_..., VERIFY_...) are numbers; anything else cannot be used.
        if name.startswith("_"):
            raise AttributeError(name)
        return 0 if name.isupper() else _Unavailable

    module.__getattr__ = __getattr__
    sys.modules["ssl"] = module


def asgi(asgi_app):
    """The class componentize-py exports for an ASGI app: `IncomingHandler = micro.asgi(app)`."""
    stand_in_ssl()
    for package in _ASGI_PACKAGES:
        if importlib.util.find_spec(package) is not None:
            preload(package)
    _inline_threads()
    return _handler_class(
        lambda request, response_out, head_only: call_asgi(
            asgi_app, _read_request(request), response_out, head_only),
        streams=True,
    )


# ---------------------------------------------------------------------------
# Outbound HTTP through wasi:http: `micro.fetch`, and `http.client` / `urllib.request` on it

#: Headers wasi:http will not send: the host sets them itself.
_NOT_SENT = _HOP_BY_HOP | {"content-length"}


class Fetched:
    """A response to `fetch`: status, headers (a `Headers`) and the whole body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return _json.loads(self.body)

    def __repr__(self):
        return f"Fetched({self.status}, {len(self.body)} bytes)"


def _outgoing_method(name):
    name = name.upper()
    known = getattr(_http, "Method_" + name.capitalize(), None)
    return known() if known is not None and name in (
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"
    ) else _http.Method_Other(name)


def fetch(method, url, headers=(), body=b"", timeout=None):
    """Send one HTTP request through wasi:http and return the whole response as a `Fetched`.

    `headers` is pairs (or a dict); `timeout` (seconds) bounds connecting, the first byte and
    each pause between bytes. A request the runtime refuses (the outbound guard) or that fails
    raises `ConnectionError` saying why.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    pairs = []
    for name, value in (headers.items() if isinstance(headers, dict) else headers):
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if name.lower() in _NOT_SENT:
            continue
        pairs.append((name.lower(), value if isinstance(value, bytes) else str(value).encode("latin-1")))
    request = _http.OutgoingRequest(_http.Fields.from_list(pairs))
    request.set_method(_outgoing_method(method))
    request.set_scheme(_http.Scheme_Https() if parts.scheme == "https" else _http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + ("?" + parts.query if parts.query else ""))
    options = None
    if timeout is not None and timeout > 0:
        options = _http.RequestOptions()
        nanoseconds = int(timeout * 1_000_000_000)
        for setter in ("set_connect_timeout", "set_first_byte_timeout", "set_between_bytes_timeout"):
            try:
                getattr(options, setter)(nanoseconds)
            except Exception:  # a host that does not take this option: its own default holds
                pass
    outgoing = request.body()
    try:
        future = outgoing_handler.handle(request, options)
    except Err as error:
        raise ConnectionError(f"{method} {url}: refused: {error.value}") from None
    if body:
        with outgoing.write() as stream:
            _write_all(stream, body if isinstance(body, bytes) else bytes(body))
    _http.OutgoingBody.finish(outgoing, None)
    with future.subscribe() as ready:
        while True:
            result = future.get()
            if result is not None:
                break
            ready.block()
    future.__exit__(None, None, None)
    if isinstance(result, Err) or isinstance(result.value, Err):
        error = result.value.value if isinstance(result, Ok) else result.value
        raise ConnectionError(f"{method} {url}: {error}")
    response = result.value.value
    status = response.status()
    with response.headers() as fields:
        received = Headers([(name, value.decode("latin-1")) for name, value in fields.entries()])
    try:
        body = _drain(response.consume())
    except Err as error:
        raise ConnectionError(f"{method} {url}: the response broke off: {error.value}") from None
    response.__exit__(None, None, None)
    return Fetched(status, received, body)


class _Canned:
    """What `http.client.HTTPResponse` reads a response from: its bytes, already whole."""

    def __init__(self, data):
        self._data = data

    def makefile(self, mode="rb", *args, **kwargs):
        return io.BytesIO(self._data)

    def close(self):
        pass


class _Connection(http.client.HTTPConnection):
    """`http.client.HTTPConnection` over `fetch`: the request is collected as http.client builds
    it and sent whole when the response is asked for."""

    _scheme = "http"

    def __init__(self, host, port=None, timeout=None, *args, **kwargs):
        if timeout is None or not isinstance(timeout, (int, float)):
            timeout = None
        super().__init__(host, port, timeout=timeout)
        self._pending = None

    def connect(self):
        pass

    def set_tunnel(self, host, port=None, headers=None):
        raise http.client.HTTPException("a Micro reaches hosts through wasi:http, never through a proxy tunnel")

    def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
        self._pending = {"method": method, "url": url, "headers": [], "body": []}

    def putheader(self, header, *values):
        if self._pending is None:
            raise http.client.CannotSendHeader()
        name = header.decode("latin-1") if isinstance(header, bytes) else str(header)
        value = b", ".join(v if isinstance(v, bytes) else str(v).encode("latin-1") for v in values)
        self._pending["headers"].append((name, value))

    def endheaders(self, message_body=None, *, encode_chunked=False):
        if message_body is not None:
            self.send(message_body)

    def send(self, data):
        if self._pending is None:
            raise http.client.CannotSendRequest()
        if hasattr(data, "read"):
            data = data.read()
        if isinstance(data, str):
            data = data.encode("iso-8859-1")
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._pending["body"].append(bytes(data))
        else:
            self._pending["body"].extend(bytes(chunk) if not isinstance(chunk, str) else chunk.encode("iso-8859-1") for chunk in data)

    def getresponse(self):
        pending, self._pending = self._pending, None
        if pending is None:
            raise http.client.ResponseNotReady()
        url = pending["url"]
        if url.startswith("/") or url == "*":
            default = 443 if self._scheme == "https" else 80
            authority = self.host if self.port == default else f"{self.host}:{self.port}"
            if ":" in self.host and not self.host.startswith("["):
                authority = f"[{self.host}]" + ("" if self.port == default else f":{self.port}")
            url = f"{self._scheme}://{authority}{url}"
        fetched = fetch(pending["method"], url, pending["headers"], b"".join(pending["body"]), self.timeout)
        try:
            reason = http.HTTPStatus(fetched.status).phrase
        except ValueError:
            reason = ""
        head = [f"HTTP/1.1 {fetched.status} {reason}"]
        for name, value in fetched.headers.items():
            if name not in ("transfer-encoding", "content-length", "connection"):
                head.append(f"{name}: {value}")
        head.append(f"content-length: {len(fetched.body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + fetched.body
        response = http.client.HTTPResponse(_Canned(raw), method=pending["method"], url=url)
        response.begin()
        return response

    def close(self):
        self._pending = None


class _SecureConnection(_Connection):
    """`http.client.HTTPSConnection` over `fetch`: the host speaks TLS for the Micro."""

    _scheme = "https"
    default_port = http.client.HTTPS_PORT

    def __init__(self, host, port=None, *args, context=None, check_hostname=None, **kwargs):
        timeout = kwargs.pop("timeout", args[0] if args else None)
        super().__init__(host, port, timeout=timeout)


http.client.HTTPConnection = _Connection
http.client.HTTPSConnection = _SecureConnection
if "HTTPSConnection" not in http.client.__all__:
    http.client.__all__.append("HTTPSConnection")
# urllib.request's HTTPSHandler asks http.client for a TLS context, which needs `ssl`: the host
# makes the TLS, so there is none to make.
http.client._create_https_context = lambda *args, **kwargs: None
if "urllib.request" in sys.modules and not hasattr(sys.modules["urllib.request"], "HTTPSHandler"):
    # Imported before HTTPS existed here: again, so that it has its HTTPS handler.
    importlib.reload(sys.modules["urllib.request"])


class _NoSocket:
    """What urllib3 holds as a connection's socket: the host keeps the real one."""

    def settimeout(self, timeout):
        pass

    def shutdown(self, how):
        pass

    def close(self):
        pass


def _urllib3_over_fetch():
    """urllib3 (and so `requests`) subclasses http.client's connections, which reach out
    through `fetch` here; what it does with sockets itself (connecting, TLS, checking a
    connection is alive, certificates) is left to the host."""
    if importlib.util.find_spec("urllib3") is None:
        return
    stand_in_ssl()  # urllib3 offers HTTPS only if `ssl` imports
    try:
        import urllib3.connection as connection
    except Exception:  # an urllib3 this does not know: it fails as it would have
        return

    def connect(self):
        self.sock = _NoSocket()

    for cls in (connection.HTTPConnection, getattr(connection, "HTTPSConnection", None)):
        if cls is not None and issubclass(cls, _Connection):
            cls.connect = connect
            cls.is_connected = property(lambda self: self.sock is not None)
    https = getattr(connection, "HTTPSConnection", None)
    if https is not None and issubclass(https, _Connection):
        https._scheme = "https"
    if importlib.util.find_spec("requests") is not None:
        try:
            import requests.adapters
        except Exception:
            return
        # The host checks every HTTPS server's certificate; requests would look for a CA file
        # that is not in the component.
        requests.adapters.HTTPAdapter.cert_verify = lambda self, conn, url, verify, cert: None


_urllib3_over_fetch()
