"""A small Hugging Face Hub stand-in on 127.0.0.1: the endpoints that create_repo, create_branch,
upload_folder (preupload + commit), repo info and file download use, with tokens and errors."""

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

VALID_TOKEN = "hf_test_token"
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


class FakeHub:
    def __init__(self, port):
        self.repos = {}  # repo id -> {"private": bool, "branches": {name: {"sha", "files"}}}
        self.requests = []  # (method, path), for tests that want to see what was asked
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.handle(self, "GET")

            def do_HEAD(self):
                hub.handle(self, "HEAD")

            def do_POST(self):
                hub.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- plumbing

    def handle(self, request, method):
        path = request.path.split("?")[0]
        self.requests.append((method, path))
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", self.create_branch),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", self.preupload),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", self.commit),
            ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", self.repo_info),
            ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<folder>.*))?", self.tree),
            ("GET|HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
        ]
        for methods, pattern, route in routes:
            match = re.fullmatch(pattern, path)
            if method in methods.split("|") and match:
                status, headers, payload = route(token=token, body=body, **match.groupdict())
                break
        else:
            status, headers, payload = 404, {}, {"error": f"fake hub: no route for {method} {path}"}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(data)

    @staticmethod
    def error(status, code, message):
        return status, {"X-Error-Code": code, "X-Error-Message": message}, {"error": message}

    def writable_branch(self, repo, rev, token):
        if token != VALID_TOKEN:
            return None, self.error(401, "Unauthorized", "Invalid credentials in Authorization header")
        return self.branch(repo, rev, token)

    def branch(self, repo, rev, token):
        if repo not in self.repos or (self.repos[repo]["private"] and token != VALID_TOKEN):
            return None, self.error(404, "RepoNotFound", f"Repository Not Found for url: {repo}")
        branches = self.repos[repo]["branches"]
        by_sha = {b["sha"]: b for b in branches.values()}
        if (rev or "main") not in branches and rev not in by_sha:
            return None, self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return branches.get(rev or "main") or by_sha[rev], None

    # ---------------------------------------------------------------- endpoints

    def create_repo(self, token, body, **_):
        if token != VALID_TOKEN:
            return self.error(401, "Unauthorized", "Invalid credentials in Authorization header")
        request = json.loads(body)
        repo = f"{request.get('organization') or 'user'}/{request['name']}"
        url = {"url": f"{self.url}/{repo}", "name": repo}
        if repo in self.repos:
            return 409, {}, {"error": "You already created this model repo", **url}
        self.repos[repo] = {"private": bool(request.get("private")),
                            "branches": {"main": {"sha": "0" * 40, "files": {}}}}
        return 200, {}, url

    def validate_yaml(self, body, **_):
        """The Hub refuses a README whose metadata block is not YAML; so do we."""
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as e:
            return 400, {}, {"errors": [{"message": f"invalid YAML: {e}"}]}
        if not isinstance(metadata, dict):
            return 400, {}, {"errors": [{"message": "metadata must be a mapping"}]}
        return 200, {}, {"warnings": [] if metadata else [{"message": "empty metadata"}]}

    def create_branch(self, token, repo, branch, **_):
        main, refused = self.writable_branch(repo, "main", token)
        if refused:
            return refused
        branches = self.repos[repo]["branches"]
        if branch in branches:
            return 409, {}, {"error": "Reference already exists"}
        branches[branch] = {"sha": main["sha"], "files": dict(main["files"])}
        return 200, {}, {}

    def preupload(self, token, repo, rev, body, **_):
        _, refused = self.writable_branch(repo, rev, token)
        if refused:
            return refused
        files = json.loads(body)["files"]
        return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in files]}

    def commit(self, token, repo, rev, body, **_):
        branch, refused = self.writable_branch(repo, rev, token)
        if refused:
            return refused
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                branch["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        branch["sha"] = hashlib.sha1(json.dumps(sorted(
            (p, hashlib.sha1(c).hexdigest()) for p, c in branch["files"].items())).encode()).hexdigest()
        return 200, {}, {"commitUrl": f"{self.url}/{repo}/commit/{branch['sha']}",
                         "commitOid": branch["sha"], "pullRequestUrl": None}

    def repo_info(self, token, repo, rev=None, **_):
        branch, refused = self.branch(repo, rev, token)
        if refused:
            return refused
        return 200, {}, {"id": repo, "modelId": repo, "sha": branch["sha"],
                         "private": self.repos[repo]["private"],
                         "siblings": [{"rfilename": p} for p in sorted(branch["files"])]}

    def tree(self, token, repo, rev, folder=None, **_):
        branch, refused = self.branch(repo, rev, token)
        if refused:
            return refused
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        return 200, {}, [{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                         for p, c in sorted(branch["files"].items()) if p.startswith(prefix)]

    def resolve(self, token, repo, rev, file, **_):
        branch, refused = self.branch(repo, rev, token)
        if refused:
            return refused
        if file not in branch["files"]:
            return self.error(404, "EntryNotFound", f"{file} does not exist")
        content = branch["files"][file]
        etag = '"' + hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() + '"'
        return 200, {"X-Repo-Commit": branch["sha"], "ETag": etag,
                     "Content-Type": "application/octet-stream"}, content
