#!/usr/bin/env python3
"""One guest connection, relayed: QEMU's `guestfwd=...-cmd:` runs this for
each TCP connection the guest opens to the forwarded address, with the
connection on stdin and stdout; it is copied to and from 127.0.0.1:PORT.
(`guestfwd=...-tcp:HOST:PORT` would instead open ONE host connection at
start and push every guest connection through it.)

usage: relay.py PORT"""
import os
import select
import socket
import sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.settimeout(None)
fds = {0: s.fileno(), s.fileno(): 1}
open_in = True
while True:
    r, _, _ = select.select([0, s.fileno()] if open_in else [s.fileno()], [], [], 600)
    if not r:
        break  # idle for 10 minutes
    if 0 in r:
        data = os.read(0, 65536)
        if data:
            s.sendall(data)
        else:
            open_in = False
            s.shutdown(socket.SHUT_WR)
    if s.fileno() in r:
        data = s.recv(65536)
        if not data:
            break
        os.write(1, data)
