#!/usr/bin/env python3
"""The one host port a QEMU guest reaches (user networking with restrict=on
and a guestfwd): routes by path prefix to the graph server, the FleetLock
server, and static files (the release repository, the metadata).

usage: router.py PORT_FILE graph=http://127.0.0.1:P fleetlock=http://127.0.0.1:Q \
                 repo=DIR meta=DIR
Listens on 127.0.0.1 (port 0: the kernel picks one) and writes the port to
PORT_FILE. /graph/X -> graph server /X, /fleetlock/X -> FleetLock /X,
/repo/X and /meta/X -> files. Every request is logged on stderr."""
import http.client
import http.server
import os
import sys
import urllib.parse

routes = dict(a.split("=", 1) for a in sys.argv[2:])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("router: %s\n" % (fmt % args))

    def route(self):
        path = urllib.parse.urlsplit(self.path).path
        parts = path.split("/", 2)
        name = parts[1] if len(parts) > 1 else ""
        rest = "/" + (parts[2] if len(parts) > 2 else "")
        query = urllib.parse.urlsplit(self.path).query
        return name, rest + ("?" + query if query else ""), rest

    def reply(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        name, target, rest = self.route()
        base = routes.get(name)
        if base is None:
            return self.reply(404, b"no route\n")
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        if base.startswith("http://"):
            u = urllib.parse.urlsplit(base)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "connection")}
            c.request(self.command, target, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        # Static files, never outside their directory.
        root = os.path.realpath(base)
        p = os.path.realpath(os.path.join(root, urllib.parse.unquote(rest).lstrip("/")))
        if not (p == root or p.startswith(root + os.sep)) or not os.path.isfile(p):
            return self.reply(404, b"not found\n")
        with open(p, "rb") as f:
            data = f.read()
        self.reply(200, data, "application/octet-stream")

    do_GET = do_POST = do_HEAD = handle_any


server = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
