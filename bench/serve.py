#!/usr/bin/env python3
"""A static HTTP server for benchmarks and tests: threaded, with a listen
backlog large enough for parallel pulls (http.server's default of 5 makes
extra connections wait for SYN retransmits), quiet, and printing its port.
With CERT and KEY (PEM) it serves HTTPS.
Usage: serve.py DIRECTORY [PORT [CERT KEY]]"""
import functools
import http.server
import sys


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


handler = functools.partial(Quiet, directory=sys.argv[1])
server = Server(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0), handler)
if len(sys.argv) > 4:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
