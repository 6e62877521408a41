#!/usr/bin/env python3
"""A static HTTP server for benchmarks and tests: threaded, with a listen
backlog large enough for parallel pulls (http.server's default of 5 makes
extra connections wait for SYN retransmits), quiet, and printing its port.
Usage: serve.py DIRECTORY [PORT]"""
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
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
