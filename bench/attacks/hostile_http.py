#!/usr/bin/env python3
"""A hostile HTTP server for the attack replays (bench/attacks/*.sh).
Serves files under ROOT as they are, except these paths:
  /endless             an endless chunked body of 'x'
  /huge-length[/…]     Content-Length: 1 TiB, then a few bytes and close
  /zeros/N             N bytes of zeros, chunked (a large legitimate file)
  /gzip-bomb/N         a gzip stream of N zeros (made once, then sent)
  /lie/<path>          the file at <path> with the 8-byte size in its
                       OSTree archive header replaced by 2 GiB
  /endless-object/<p>  for any <p> ending in .commit or .dirtree: endless
  /bomb-object/<p>     for any <p> ending in .filez: its header claiming
                       2 GiB, then a deflate stream of 2 GiB zeros
Prints its port. Usage: hostile_http.py ROOT"""
import http.server, os, sys, zlib

ROOT = sys.argv[1]


_bombs = {}


def deflated_zeros(n, wbits=-15):
    """A deflate stream of n zeros (about n/1000 bytes), made once: raw
    (wbits -15) or gzip (31)."""
    if (n, wbits) not in _bombs:
        z = zlib.compressobj(1, zlib.DEFLATED, wbits)
        block = b"\0" * (1 << 20)
        parts = [z.compress(block[: min(len(block), n - i)]) for i in range(0, n, len(block))]
        _bombs[(n, wbits)] = b"".join(parts) + z.flush()
    return _bombs[(n, wbits)]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def stream(self, gen):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for data in gen:
                if data:
                    self.chunk(data)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def file(self, path, patch=None):
        try:
            with open(os.path.join(ROOT, path.lstrip("/")), "rb") as f:
                data = f.read()
        except OSError:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if patch:
            data = patch(data)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        p = self.path
        block = b"\0" * (1 << 20)
        if p == "/endless" or (p.startswith("/endless-object/") and p.endswith((".commit", ".dirtree"))):
            self.stream(iter(lambda: b"x" * 65536, None))
        elif p.startswith("/endless-object/"):
            self.file(p[len("/endless-object"):])
        elif p.startswith("/huge-length"):
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True
        elif p.startswith("/zeros/"):
            n = int(p.split("/")[2])
            self.stream(block[: min(len(block), n - i)] for i in range(0, n, len(block)))
        elif p.startswith("/gzip-bomb/"):
            body = deflated_zeros(int(p.split("/")[2]), 31)
            self.stream(body[i:i + len(block)] for i in range(0, len(body), len(block)))
        elif p.startswith("/bomb-object/") and p.endswith(".filez"):
            try:
                with open(os.path.join(ROOT, p[len("/bomb-object/"):]), "rb") as f:
                    d = f.read()
            except OSError:
                return self.file("/nonexistent")
            n = 2 << 30
            hlen = int.from_bytes(d[:4], "big")
            head = d[:8] + n.to_bytes(8, "big") + d[16:8 + hlen]
            body = deflated_zeros(n)
            chunks = [head] + [body[i:i + len(block)] for i in range(0, len(body), len(block))]
            self.stream(iter(chunks))
        elif p.startswith("/bomb-object/"):
            self.file(p[len("/bomb-object"):])
        elif p.startswith("/lie/"):
            def lie(d):
                return d[:8] + (2 << 30).to_bytes(8, "big") + d[16:] if p.endswith(".filez") else d
            self.file(p[len("/lie"):], lie)
        else:
            self.file(p)


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


s = Server(("127.0.0.1", 0), Handler)
print(f"port {s.server_address[1]}", flush=True)
s.serve_forever()
