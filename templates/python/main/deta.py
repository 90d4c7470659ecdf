"""deta: Deta's Python SDK as Space apps used it (`from deta import Deta`), for Python Micros.

Written for micros from the public reference of Deta's Base and Drive HTTP APIs, with the SDK's
public names and signatures: `Deta(project_key=None, *, project_id=None)`, `Deta().Base(name)`
with `put`, `put_many`, `get`, `insert`, `update` (and `Base.util`), `delete`, `fetch`, and
`Deta().Drive(name)` with `put`, `get`, `list`, `delete`, `delete_many`. It reaches the app's own
Base and Drive through `wasi:http`, as the SDK reached Deta's hosts; `DETA_PROJECT_KEY` (set for
every Micro) is the key, `DETA_BASE_HOST` and `DETA_DRIVE_HOST` override the hosts.
"""

import datetime
import json
import os
import urllib.error
from urllib.parse import quote, quote_plus

import micro

__all__ = ["Deta", "Base", "Drive", "FetchResponse", "DriveStreamingBody"]

#: Items one `put_many` takes, as Deta's API.
MAX_PUT_MANY = 25
#: Names one `delete_many` takes, as Deta's API.
MAX_DELETE_MANY = 1000
#: Bytes of a Drive upload sent in one request; larger ones go in parts of this size.
UPLOAD_PART = 10 * 1024 * 1024


class Deta:
    """The entry point: a project key (from `DETA_PROJECT_KEY` when not given) and its id.

    The key is read when the first request is made, not here: a Micro's module (and its
    `deta = Deta()`) is run when the component is built, where no key exists yet.
    """

    def __init__(self, project_key=None, *, project_id=None):
        if project_key and not project_id and "_" not in project_key:
            raise ValueError("Bad project key provided")
        self._project_key = project_key
        self._project_id = project_id

    @property
    def project_key(self):
        key = self._project_key or os.environ.get("DETA_PROJECT_KEY")
        if not key:
            raise AssertionError("No project key defined: set DETA_PROJECT_KEY or pass one")
        return key

    @property
    def project_id(self):
        if self._project_id:
            return self._project_id
        key = self.project_key
        if "_" not in key:
            raise ValueError("Bad project key provided")
        return key.split("_")[0]

    def Base(self, name, host=None):  # noqa: N802 (the SDK's name)
        """The Base `name`."""
        return _Base(name, self, host)

    def AsyncBase(self, name, host=None):  # noqa: N802
        raise NotImplementedError("AsyncBase is not provided in a Python Micro: use Base")

    def Drive(self, name, host=None):  # noqa: N802
        """The Drive `name`."""
        return _Drive(name, self, host)

    def send_email(self, to, subject, message, charset="utf-8"):
        raise NotImplementedError("Deta's mailer is gone; send mail through an HTTP API")


def Base(name, host=None):  # noqa: N802
    """The Base `name` of the project whose key is `DETA_PROJECT_KEY`."""
    return Deta().Base(name, host)


def Drive(name, host=None):  # noqa: N802
    """The Drive `name` of the project whose key is `DETA_PROJECT_KEY`."""
    return Deta().Drive(name, host)


class _Service:
    """Requests to one Base or Drive: its URL, the key, JSON in and out."""

    def __init__(self, name, deta, host, default_host, env):
        if not name:
            raise AssertionError("No name provided")
        self._name = name
        self._deta = deta
        self._host = host
        self._default_host = default_host
        self._env = env

    def _url(self, path):
        host = self._host or os.environ.get(self._env) or self._default_host
        return f"https://{host}/v1/{self._deta.project_id}/{self._name}{path}"

    def _request(self, method, path, body=None, content_type="application/json", ok=(200, 201, 202, 207)):
        headers = [("x-api-key", self._deta.project_key)]
        if body is not None:
            if content_type == "application/json":
                body = json.dumps(body).encode("utf-8")
            headers.append(("content-type", content_type))
        url = self._url(path)
        fetched = micro.fetch(method, url, headers, body or b"")
        if fetched.status == 404:
            return 404, None
        if fetched.status not in ok:
            raise urllib.error.HTTPError(
                url, fetched.status, fetched.body.decode("utf-8", "replace"), None, None
            )
        kind = (fetched.headers.get("content-type") or "").split(";")[0].strip()
        if kind == "application/json":
            return fetched.status, json.loads(fetched.body or b"null")
        return fetched.status, fetched.body


def _expires(expire_in, expire_at):
    """`__expires` for `expire_in` (seconds from now) or `expire_at` (a time), or None."""
    if expire_in is not None and expire_at is not None:
        raise ValueError("both expire_in and expire_at provided")
    if expire_in is not None:
        return int(datetime.datetime.now(datetime.timezone.utc).timestamp() + expire_in)
    if expire_at is None:
        return None
    if isinstance(expire_at, datetime.datetime):
        return int(expire_at.timestamp())
    if isinstance(expire_at, (int, float)):
        return int(expire_at)
    raise TypeError("expire_at should be a datetime, an int or a float")


class _Update:
    """One operation of `Base.update`."""

    def __init__(self, kind, value=None):
        self.kind = kind
        self.value = value


class _Util:
    """`Base.util`: operations for `update`."""

    @staticmethod
    def trim():
        return _Update("delete")

    @staticmethod
    def increment(value=1):
        return _Update("increment", value)

    @staticmethod
    def append(value):
        return _Update("append", value if isinstance(value, list) else [value])

    @staticmethod
    def prepend(value):
        return _Update("prepend", value if isinstance(value, list) else [value])


class FetchResponse:
    """A page of `fetch`: `count` items, the `last` key to continue from (None at the end)."""

    def __init__(self, count=0, last=None, items=None):
        self.count = count
        self.last = last
        self.items = items if items is not None else []

    def __eq__(self, other):
        return isinstance(other, FetchResponse) and (self.count, self.last, self.items) == (
            other.count, other.last, other.items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return self.count

    def __repr__(self):
        return f"FetchResponse(count={self.count}, last={self.last!r}, items={self.items!r})"


class _Base(_Service):
    """A Base: items of JSON under a `key`."""

    util = _Util()

    def __init__(self, name, deta, host=None):
        super().__init__(name, deta, host, "database.deta.sh", "DETA_BASE_HOST")

    @staticmethod
    def _item(data, key, expire_in, expire_at):
        item = dict(data) if isinstance(data, dict) else {"value": data}
        if key:
            item["key"] = key
        expires = _expires(expire_in, expire_at)
        if expires is not None:
            item["__expires"] = expires
        return item

    def put(self, data, key=None, *, expire_in=None, expire_at=None):
        """Stores an item (replacing one of the same key); the item stored, key included."""
        item = self._item(data, key, expire_in, expire_at)
        status, answer = self._request("PUT", "/items", {"items": [item]})
        return answer["processed"]["items"][0] if status == 207 and answer.get("processed") else None

    def put_many(self, items, *, expire_in=None, expire_at=None):
        """Stores up to 25 items; the API's answer (`processed` and `failed`)."""
        if len(items) > MAX_PUT_MANY:
            raise AssertionError(f"We can't put more than {MAX_PUT_MANY} items at a time")
        batch = [self._item(item, None, expire_in, expire_at) for item in items]
        return self._request("PUT", "/items", {"items": batch})[1]

    def get(self, key):
        """The item of `key`, or None."""
        if not key:
            raise ValueError("Key is empty")
        status, answer = self._request("GET", "/items/" + quote(key, safe=""))
        return None if status == 404 else answer

    def insert(self, data, key=None, *, expire_in=None, expire_at=None):
        """Stores an item whose key is not taken; the item stored. A taken key raises."""
        item = self._item(data, key, expire_in, expire_at)
        try:
            return self._request("POST", "/items", {"item": item}, ok=(201,))[1]
        except urllib.error.HTTPError as error:
            if error.code == 409:
                raise Exception(f"Item with key '{item.get('key')}' already exists") from None
            raise

    def update(self, updates, key, *, expire_in=None, expire_at=None):
        """Changes some fields of the item of `key`: values are set, `Base.util` operations
        applied. A missing item raises."""
        if not key:
            raise ValueError("Key is empty")
        body = {"set": {}, "increment": {}, "append": {}, "prepend": {}, "delete": []}
        for field, value in updates.items():
            if isinstance(value, _Update):
                if value.kind == "delete":
                    body["delete"].append(field)
                else:
                    body[value.kind][field] = value.value
            else:
                body["set"][field] = value
        expires = _expires(expire_in, expire_at)
        if expires is not None:
            body["set"]["__expires"] = expires
        status, _ = self._request("PATCH", "/items/" + quote(key, safe=""), body)
        if status == 404:
            raise Exception(f"Key '{key}' not found")

    def delete(self, key):
        """Deletes the item of `key` (nothing if there is none)."""
        if not key:
            raise ValueError("Key is empty")
        self._request("DELETE", "/items/" + quote(key, safe=""))

    def fetch(self, query=None, *, limit=1000, last=None, desc=False):
        """One page of the items matching `query` (a dict, or a list of dicts for OR)."""
        body = {"limit": limit, "last": last if not isinstance(last, bool) else None}
        if desc:
            body["sort"] = "desc"
        if query:
            body["query"] = [query] if isinstance(query, dict) else list(query)
        _, answer = self._request("POST", "/query", body)
        paging = answer.get("paging", {})
        return FetchResponse(paging.get("size", 0), paging.get("last"), answer.get("items", []))


class DriveStreamingBody:
    """A file of `Drive.get`: read whole, in chunks or by lines."""

    def __init__(self, data):
        self._data = data
        self._offset = 0
        self._closed = False

    @property
    def closed(self):
        return self._closed

    def read(self, size=None):
        if self._closed:
            raise ValueError("the body is closed")
        end = len(self._data) if size is None or size < 0 else self._offset + size
        chunk = self._data[self._offset:end]
        self._offset += len(chunk)
        return chunk

    def iter_chunks(self, chunk_size=1024):
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def iter_lines(self, chunk_size=1024):
        pending = b""
        for chunk in self.iter_chunks(chunk_size):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines
        if pending:
            yield pending

    def close(self):
        self._closed = True


class _Drive(_Service):
    """A Drive: files under names (a `/` in a name is a folder)."""

    def __init__(self, name, deta, host=None):
        super().__init__(name, deta, host, "drive.deta.sh", "DETA_DRIVE_HOST")

    def put(self, name, data=None, *, path=None, content_type=None):
        """Stores a file from `data` (bytes, text or a file object) or the file at `path`;
        its name."""
        if not name:
            raise AssertionError("No name provided")
        if (data is None) == (path is None):
            raise AssertionError("Please provide data or a path, not both")
        if path is not None:
            with open(path, "rb") as f:
                data = f.read()
        elif hasattr(data, "read"):
            data = data.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        content_type = content_type or "binary/octet-stream"
        named = "?name=" + quote_plus(name)
        if len(data) <= UPLOAD_PART:
            self._request("POST", "/files" + named, data, content_type)
            return name
        _, started = self._request("POST", "/uploads" + named, b"", content_type)
        upload = started["upload_id"]
        try:
            for part, offset in enumerate(range(0, len(data), UPLOAD_PART), start=1):
                self._request(
                    "POST", f"/uploads/{upload}/parts{named}&part={part}",
                    data[offset:offset + UPLOAD_PART], content_type,
                )
            self._request("PATCH", f"/uploads/{upload}{named}")
        except Exception:
            self._request("DELETE", f"/uploads/{upload}{named}")
            raise
        return name

    def get(self, name):
        """The file `name` as a `DriveStreamingBody`, or None."""
        if not name:
            raise AssertionError("No name provided")
        status, body = self._request("GET", "/files/download?name=" + quote_plus(name))
        if status == 404:
            return None
        if not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        return DriveStreamingBody(body)

    def list(self, limit=1000, prefix=None, last=None):
        """A page of names (`{"names": [...], "paging": {"size", "last"}}`, `paging` only when
        more follow)."""
        query = f"?limit={int(limit)}"
        if prefix:
            query += "&prefix=" + quote_plus(prefix)
        if last:
            query += "&last=" + quote_plus(last)
        return self._request("GET", "/files" + query)[1]

    def delete_many(self, names):
        """Deletes up to 1000 files; `{"deleted": [...], "failed": {...}}`."""
        if not names:
            raise ValueError("Names can't be empty")
        if len(names) > MAX_DELETE_MANY:
            raise ValueError(f"We can't delete more than {MAX_DELETE_MANY} files at a time")
        return self._request("DELETE", "/files", {"names": list(names)})[1]

    def delete(self, name):
        """Deletes the file `name`; its name."""
        if not name:
            raise ValueError("Name not provided or empty")
        answer = self.delete_many([name])
        failed = (answer or {}).get("failed") or {}
        if name in failed:
            raise Exception(f"Failed to delete '{name}': {failed[name]}")
        return name
