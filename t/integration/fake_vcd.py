"""A fake vCloud Director API for tests: the few endpoints warren uses, in the JSON form of vCD's
API (Accept: application/*+json;version=...), over TLS with a test CA, on 127.0.0.1.

    with FakeVcd(tls=make_cert(dir, "vcd")) as vcd:  # a backend.Backend answering as vCD
        vcd.add_org("acme")                       # -> its uuid
        vcd.add_user_token("tok", ["<org uuid>"]) # a user's own session, member of those orgs
        vcd.add_right("UI Plugins: View")         # -> "urn:vcloud:right:<uuid>"
        ... vcd.url ... vcd.calls ...             # Call(method, path, headers, body)
        vcd.expire_sessions()                     # every session vCD issued is gone: 401

Endpoints, as the vCD API reference describes them:
  POST /api/sessions                      Basic user@System:password -> x-vcloud-authorization and
                                          X-VMWARE-VCLOUD-ACCESS-TOKEN (Bearer)
  GET  /api/org                           the orgs of the session's user (OrgList)
  GET  /api/query?type=right              the rights (records, paged; System administrators only)
  GET  /api/query?type=adminService       extension services (records; filter=name==X)
  POST /api/admin/extension/service       register (AdminServiceType, 201)
  GET|PUT /api/admin/extension/service/ID
  GET|POST /api/admin/extension/service/ID/apifilters
  DELETE /api/admin/extension/service/apifilter/ID
Payloads are checked (content types, required fields); a bad one is a 400 in vCD's error
document, and the test sees it in `calls` with the answer given.
"""
import base64
import collections
import json
import time
import urllib.parse
import uuid

from backend import Backend

Call = collections.namedtuple("Call", "method path headers body status")

SERVICE_TYPE = "application/vnd.vmware.admin.service+json"
FILTER_TYPE = "application/vnd.vmware.admin.apiFilter+json"


class Refusal(Exception):
    def __init__(self, status, minor, message):
        super().__init__(message)
        self.status, self.minor, self.message = status, minor, message


class FakeVcd(Backend):
    def __init__(self, tls, admin=("administrator", "s3cret"), api_version="33.0"):
        super().__init__(tls=tls)
        self.admin = admin
        self.api_version = api_version
        self.calls = []
        self.sessions = {}       # x-vcloud-authorization or access token -> user ("" : admin)
        self.user_tokens = {}    # a user's own token -> [org uuid]
        self.orgs = {}           # uuid -> name
        self.rights = {}         # uuid -> name
        self.services = {}       # id -> AdminServiceType
        self.filters = {}        # id -> (service id, urlPattern)
        self.delay = 0.0         # seconds before each answer (a slow vCD)
        self.access_tokens = True  # False: an older vCD, only x-vcloud-authorization
        self.max_page_size = 128   # a query's largest page (vCD's restapi.queryservice.maxPageSize)
        self.garbled = False       # queries answer members of the wrong types (a broken vCD)

    # --- what a test sets up and asserts ---
    def add_org(self, name):
        org = str(uuid.uuid4())
        self.orgs[org] = name
        return org

    def add_user_token(self, token, orgs):
        self.user_tokens[token] = list(orgs)

    def add_right(self, name):
        right = str(uuid.uuid4())
        self.rights[right] = name
        return f"urn:vcloud:right:{right}"

    def expire_sessions(self):
        with self.lock:
            self.sessions.clear()

    def made(self, method, path_prefix=""):
        with self.lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def writes(self):
        """The calls that change something in vCD (logins aside)."""
        with self.lock:
            return [c for c in self.calls
                    if c.method in ("POST", "PUT", "DELETE") and c.path != "/api/sessions"]

    def clear_calls(self):
        with self.lock:
            self.calls.clear()

    # --- the API ---
    def _href(self, path):
        return f"{self.url}{path}"

    def _service_doc(self, sid):
        s = dict(self.services[sid])
        s.update(href=self._href(f"/api/admin/extension/service/{sid}"),
                 id=f"urn:vcloud:service:{sid}", type=SERVICE_TYPE)
        return s

    def _records(self, records, query, page_size_default=25):
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("pageSize", [str(page_size_default)])[0])
        if page < 1 or size < 1:
            raise Refusal(400, "BAD_REQUEST", "page and pageSize must be >= 1")
        size = min(size, self.max_page_size)  # as vCD does: the answer says the size it used
        return {"type": "application/vnd.vmware.vcloud.query.records+json", "total": len(records),
                "page": page, "pageSize": size, "record": records[(page - 1) * size:page * size]}

    def _session_user(self, headers):
        """The session's user: "" for the administrator, a token for a user, None: no session."""
        token = headers.get("x-vcloud-authorization")
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
        if token is None:
            return None
        with self.lock:
            if token in self.sessions:
                return self.sessions[token]
        return token if token in self.user_tokens else None

    def _login(self, headers):
        auth = headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            raise Refusal(401, "UNAUTHORIZED", "Basic credentials required")
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        name, _, org = user.partition("@")
        if (name, password) != self.admin or org != "System":
            raise Refusal(401, "UNAUTHORIZED", "bad credentials")
        token, access = uuid.uuid4().hex, "eyJ" + uuid.uuid4().hex
        with self.lock:
            self.sessions[token] = ""
            self.sessions[access] = ""
        tokens = {"x-vcloud-authorization": token}
        if self.access_tokens:
            tokens.update({"X-VMWARE-VCLOUD-ACCESS-TOKEN": access, "X-VMWARE-VCLOUD-TOKEN-TYPE": "Bearer"})
        return 200, {"user": name, "org": "System", "roles": ["System Administrator"],
                     "href": self._href("/api/session"),
                     "type": "application/vnd.vmware.vcloud.session+json"}, tokens

    @staticmethod
    def _need(body, content_type, headers, fields):
        if not headers.get("Content-Type", "").startswith(content_type):
            raise Refusal(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {content_type}")
        if not isinstance(body, dict):
            raise Refusal(400, "BAD_REQUEST", "the body is not a JSON object")
        for field, kind in fields.items():
            if not isinstance(body.get(field), kind) or body.get(field) in ("",):
                raise Refusal(400, "BAD_REQUEST", f"{field} is required ({kind.__name__})")

    def _service_fields(self, body, headers):
        self._need(body, SERVICE_TYPE, headers, {"name": str, "namespace": str, "routingKey": str,
                                                  "exchange": str, "enabled": bool})
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or not 0 <= priority <= 100:
            raise Refusal(400, "BAD_REQUEST", "priority must be 0 to 100")
        return {k: body[k] for k in ("name", "namespace", "routingKey", "exchange", "enabled")} | {
            "priority": priority, "vendor": "", "authorizationEnabled": bool(body.get("authorizationEnabled"))}

    def handle(self, method, path, headers, body):
        """(status, JSON document or None, extra headers)."""
        accept = headers.get("Accept", "")
        if not accept.startswith("application/*+json;version="):
            raise Refusal(406, "NOT_ACCEPTABLE", "Accept must be application/*+json;version=...")
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        parts = url.path.strip("/").split("/")
        if (method, url.path) == ("POST", "/api/sessions"):
            return self._login(headers)
        user = self._session_user(headers)
        if user is None:
            raise Refusal(401, "UNAUTHORIZED", "no valid session")
        if (method, url.path) == ("GET", "/api/org"):
            orgs = self.orgs if user == "" else self.user_tokens[user]
            return 200, {"type": "application/vnd.vmware.vcloud.orgList+json", "org": [
                {"href": self._href(f"/api/org/{o}"), "name": self.orgs.get(o, o),
                 "type": "application/vnd.vmware.vcloud.org+json"} for o in orgs]}, {}
        if user != "":
            raise Refusal(403, "ACCESS_TO_RESOURCE_IS_FORBIDDEN", "System administrators only")
        with self.lock:
            return self._admin(method, url.path, parts, query, headers, body)

    def _admin(self, method, path, parts, query, headers, body):
        if (method, path) == ("GET", "/api/query"):
            if self.garbled:
                return 200, {"total": "many", "pageSize": None, "page": [], "record": [
                    {"name": 5, "id": 7, "href": ["x"], "urlPattern": {}}, "record", None]}, {}
            if query.get("format") != ["records"]:
                raise Refusal(400, "BAD_REQUEST", "format=records expected")
            kind = query.get("type", [""])[0]
            if kind == "right":
                records = [{"name": n, "href": self._href(f"/api/admin/right/{r}"), "category": "test"}
                           for r, n in sorted(self.rights.items(), key=lambda kv: kv[1])]
                return 200, self._records(records, query), {}
            if kind == "adminService":
                wanted = None
                for f in query.get("filter", []):
                    if not f.startswith("name=="):
                        raise Refusal(400, "BAD_REQUEST", f"unsupported filter {f}")
                    wanted = f[len("name=="):]
                records = [self._service_doc(s) for s in self.services
                           if wanted is None or self.services[s]["name"] == wanted]
                return 200, self._records(records, query), {}
            raise Refusal(400, "BAD_REQUEST", f"unknown query type {kind}")
        if parts[:4] == ["api", "admin", "extension", "service"]:
            rest = parts[4:]
            if method == "POST" and not rest:
                fields = self._service_fields(body, headers)
                if any(s["name"] == fields["name"] and s["namespace"] == fields["namespace"]
                       for s in self.services.values()):
                    raise Refusal(400, "DUPLICATE_NAME", "a service with this name and namespace exists")
                sid = str(uuid.uuid4())
                self.services[sid] = fields
                return 201, self._service_doc(sid), {}
            if len(rest) == 2 and rest[0] == "apifilter" and method == "DELETE":
                if self.filters.pop(rest[1], None) is None:
                    raise Refusal(404, "RESOURCE_NOT_FOUND", "no such API filter")
                return 204, None, {}
            if not rest or rest[0] not in self.services:
                raise Refusal(404, "RESOURCE_NOT_FOUND", "no such service")
            sid = rest[0]
            if len(rest) == 1 and method == "GET":
                return 200, self._service_doc(sid), {}
            if len(rest) == 1 and method == "PUT":
                self.services[sid] = self._service_fields(body, headers)
                return 200, self._service_doc(sid), {}
            if rest[1:] == ["apifilters"] and method == "GET":
                records = [{"href": self._href(f"/api/admin/extension/service/apifilter/{f}"),
                            "urlPattern": p} for f, (s, p) in self.filters.items() if s == sid]
                return 200, self._records(records, {}), {}
            if rest[1:] == ["apifilters"] and method == "POST":
                self._need(body, FILTER_TYPE, headers, {"urlPattern": str})
                fid = str(uuid.uuid4())
                self.filters[fid] = (sid, body["urlPattern"])
                return 201, {"href": self._href(f"/api/admin/extension/service/apifilter/{fid}"),
                             "id": f"urn:vcloud:apiFilter:{fid}", "urlPattern": body["urlPattern"],
                             "type": FILTER_TYPE}, {}
        raise Refusal(404, "RESOURCE_NOT_FOUND", f"{method} {path}")

    def serve(self, handler):
        time.sleep(self.delay)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        try:
            status, doc, extra = self.handle(handler.command, handler.path, handler.headers, body)
        except Refusal as r:
            status, extra = r.status, {}
            doc = {"majorErrorCode": r.status, "minorErrorCode": r.minor, "message": r.message}
        with self.lock:
            self.calls.append(Call(handler.command, handler.path, dict(handler.headers), body, status))
        out = json.dumps(doc).encode() if doc is not None else b""
        handler.send_response(status)
        for k, v in extra.items():
            handler.send_header(k, v)
        if doc is not None:
            handler.send_header("Content-Type", f"application/*+json;version={self.api_version}")
        handler.send_header("Content-Length", str(len(out)))
        handler.end_headers()
        handler.wfile.write(out)
