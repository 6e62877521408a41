#!/usr/bin/env bash
# Hostile clients against the update graph server (`oxcore graph serve`),
# on 127.0.0.1, each attack with a bound it must not cross; exits non-zero
# when one gets through (a figure over its bound, a refused check):
#   1. 32,000 distinct os_version values, then the dashboard while another
#      client times /v1/graph requests (the dashboard must not hold them);
#   2. UUIDS (default 1,000,000) distinct node_uuid values: RSS (from
#      /proc) and store size before and after must stay flat;
#   3. 3,000 requests with a 30 KB os_version, and 60 KB ones: memory and
#      store flat, the 60 KB ones refused (431);
#   4. a tab-injected os_version, read back after a restart;
#   5. 60 slowloris connections (half-sent heads) and 60 silent ones: all
#      closed within the header timeout (10 s) plus slack;
#   6. 12,000-parameter (56 KB) queries at 4/s from one client while another
#      times /v1/graph;
#   7. SIGTERM during dashboard requests: prompt exit, statistics kept;
#   8. descriptors exhausted (ulimit -n 64, 300 connections): the server's
#      CPU time while accepts fail, then recovery.
# The server runs under `ulimit -v` (4 GiB) so a regression cannot take
# the machine down, and its RSS is checked against RSS_CAP_KB.
# Usage: bench/attacks/graph.sh [PATH/TO/release/oxcore]   (built if absent)
#        UUIDS=100000 bench/attacks/graph.sh ...            (a quicker run)
#        ATTACKS=5,6 bench/attacks/graph.sh ...             (some of them)
set -euo pipefail
cd "$(dirname "$0")/../.."
ox=${1:-}
if [ -z "$ox" ]; then
    cargo build --release --locked -q -p oxcore
    ox=${CARGO_TARGET_DIR:-$PWD/target}/release/oxcore
fi
[ -x "$ox" ] || { echo "no oxcore binary at $ox" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OX="$ox" WORK="$work" ATTACKS="${ATTACKS:-}" UUIDS="${UUIDS:-1000000}" RSS_CAP_KB="${RSS_CAP_KB:-65536}"

python3 - <<'PY'
import json, os, signal, socket, subprocess, sys, threading, time

OX, WORK = os.environ["OX"], os.environ["WORK"]
UUIDS, RSS_CAP_KB = int(os.environ["UUIDS"]), int(os.environ["RSS_CAP_KB"])
failures = []

def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)

# Metadata: a stable stream of 150 releases (as bench/graph.sh).
meta = f"{WORK}/meta"
os.makedirs(f"{meta}/prod/streams/stable"); os.makedirs(f"{meta}/updates")
versions = [f"{40 + i // 40}.{20240101 + (i % 28)}.3.{i}" for i in range(150)]
json.dump({"stream": "stable", "releases": [
    {"commits": [{"architecture": "x86_64", "checksum": f"{i:064x}"}], "version": v, "metadata": ""}
    for i, v in enumerate(versions)]}, open(f"{meta}/prod/streams/stable/releases.json", "w"))
json.dump({"stream": "stable", "releases": [
    {"version": versions[i], "metadata": {"barrier": {"reason": "r"}}} for i in range(3, 150, 7)]},
    open(f"{meta}/updates/stable.json", "w"))

running = []

class Server:
    def __init__(self, name, nofile=None, extra=""):
        running.append(self)
        self.db = f"{WORK}/{name}.redb"
        conf = f"{WORK}/{name}.toml"
        open(conf, "w").write(f'metadata = "{meta}"\nlisten = ["127.0.0.1:0"]\nstreams = ["stable"]\n'
                              f'architectures = ["x86_64"]\nstats_db = "{self.db}"\n{extra}')
        limits = "ulimit -v 4194304" + (f" && ulimit -n {nofile}" if nofile else "")
        self.log = open(f"{WORK}/{name}.log", "a")
        self.p = subprocess.Popen(["sh", "-c", f'{limits} && exec "$0" graph serve --config {conf}', OX],
                                  stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("listening on "), line
        host, port = line.split()[-1].rsplit(":", 1)
        self.addr = (host, int(port))

    def rss_kb(self):
        for l in open(f"/proc/{self.p.pid}/status"):
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
        return 0

    def cpu_s(self):
        f = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def store_kb(self):
        return os.path.getsize(self.db) // 1024 if os.path.exists(self.db) else 0

    def stop(self, timeout=30):
        t = time.monotonic()
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill(); self.p.wait()
            return None
        return time.monotonic() - t

G = "/v1/graph?basearch=x86_64&stream=stable"

def request(addr, path, timeout=120):
    """(status, body, seconds) of one GET on its own connection."""
    t = time.monotonic()
    s = socket.create_connection(addr, timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    raw = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            raw += b
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if len(head.split()) > 1 else 0
    return status, body, time.monotonic() - t

def pipelined(addr, paths, extra="", code=b"304"):
    """Sends every path on one kept-alive connection (a thread writes while
    this one reads); returns how many were answered with `code`."""
    s = socket.create_connection(addr, timeout=120)
    def send():
        for i in range(0, len(paths), 500):
            s.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode() for p in paths[i:i + 500]))
    w = threading.Thread(target=send); w.start()
    got = ok = pos = 0
    buf = b""
    while got < len(paths):
        b = s.recv(1 << 20)
        if not b:
            break
        buf += b
        while True:
            i = buf.find(b"HTTP/1.1 ", pos)
            if i < 0 or i + 12 > len(buf):
                break
            got += 1
            ok += buf[i + 9:i + 12] == code
            pos = i + 12
        cut = max(pos, len(buf) - 11)
        buf, pos = buf[cut:], max(0, pos - cut)
    w.join()
    s.close()
    return ok

def etag(addr):
    s = socket.create_connection(addr)
    s.sendall(f"GET {G} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    raw = b""
    while b := s.recv(65536):
        raw += b
    for l in raw.split(b"\r\n\r\n")[0].decode().split("\r\n"):
        if l.lower().startswith("etag:"):
            return l.split(":", 1)[1].strip()
    raise RuntimeError("no ETag")

def load(addr, paths, clients=4):
    """`paths` split over `clients` connections in threads, each request
    with the graph's ETag (answers are 304: the client reads no bodies,
    the server does all its work)."""
    extra = f"If-None-Match: {etag(addr)}\r\n"
    results = [0] * clients
    def run(k):
        results[k] = pipelined(addr, paths[k::clients], extra)
    ts = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return sum(results)

class Timer(threading.Thread):
    """Times /v1/graph requests from another client until stopped."""
    def __init__(self, addr):
        super().__init__(); self.addr, self.times, self.done = addr, [], threading.Event()
    def run(self):
        while not self.done.is_set():
            st, _, dt = request(self.addr, "/v1/graph?basearch=x86_64&stream=stable&node_uuid=ffff&rollout_wariness=0.5")
            self.times.append(dt if st == 200 else float("inf"))
            time.sleep(0.02)
    def stop(self):
        self.done.set(); self.join()
        t = sorted(self.times)
        return (t[len(t) // 2], t[-1], len(t)) if t else (float("inf"),) * 2 + (0,)

def attack_1():
    print("1. 32,000 distinct os_version values, then the dashboard")
    srv = Server("versions")
    n = load(srv.addr, [f"{G}&node_uuid={i:032x}&os_version=41.{i}.3.0&platform=metal" for i in range(32000)])
    timer = Timer(srv.addr); timer.start(); time.sleep(0.3)
    dash = [request(srv.addr, "/") for _ in range(5)]
    med, worst, count = timer.stop()
    check(n == 32000, f"{n:,} of 32,000 requests answered")
    dmax = max(d[2] for d in dash)
    check(all(d[0] == 200 for d in dash) and dmax < 2, f"dashboard: {dmax * 1000:.0f} ms at most over 5, {max(len(d[1]) for d in dash) // 1024} KiB")
    check(worst < 0.5, f"/v1/graph meanwhile: median {med * 1000:.1f} ms, worst {worst * 1000:.1f} ms over {count}")
    srv.stop()

def attack_2():
    print(f"2. {UUIDS:,} distinct node_uuid values")
    srv = Server("uuids")
    request(srv.addr, f"{G}&node_uuid=0&os_version={versions[-1]}&platform=metal")
    time.sleep(6)  # the first statistics write
    rss0, store0 = srv.rss_kb(), srv.store_kb()
    t = time.monotonic()
    done = 0
    for start in range(0, UUIDS, 100_000):
        end = min(UUIDS, start + 100_000)
        done += load(srv.addr, [f"{G}&node_uuid={i:032x}&os_version={versions[i % 150]}&platform={('metal', 'aws', 'qemu')[i % 3]}"
                                for i in range(start, end)])
        if end % 200_000 == 0 or end == UUIDS:
            print(f"  after {end:>9,}: RSS {srv.rss_kb():,} kB, store {srv.store_kb():,} KiB", flush=True)
    elapsed = time.monotonic() - t
    time.sleep(6)
    rss1, store1 = srv.rss_kb(), srv.store_kb()
    _, body, _ = request(srv.addr, "/v1/stats")
    est = json.loads(body)["weeks"][-1]["nodes"]
    print(f"  {done:,} requests in {elapsed:.1f} s ({done / elapsed:,.0f}/s); estimated nodes {est:,}")
    check(done == UUIDS, f"{done:,} answered")
    check(abs(est - UUIDS) / UUIDS < 0.05, f"estimate {est:,} within 5% of {UUIDS:,}")
    check(rss1 - rss0 < 16384 and rss1 < RSS_CAP_KB, f"RSS {rss0:,} kB before, {rss1:,} kB after")
    check(store1 < 10240, f"store {store0:,} KiB before, {store1:,} KiB after")
    srv.stop()

def attack_3():
    print("3. huge os_version values")
    srv = Server("huge")
    request(srv.addr, f"{G}&node_uuid=0&os_version=x")
    time.sleep(6)
    rss0, store0 = srv.rss_kb(), srv.store_kb()
    t = time.monotonic()
    n = load(srv.addr, [f"{G}&node_uuid={i:032x}&os_version={i:08d}{'9' * 30000}" for i in range(3000)], clients=2)
    st60, _, _ = request(srv.addr, f"{G}&node_uuid=1&os_version={'9' * 60000}")
    time.sleep(6)
    rss1, store1 = srv.rss_kb(), srv.store_kb()
    check(n == 3000, f"3,000 requests of 30 KB in {time.monotonic() - t:.1f} s")
    check(st60 == 431, f"a 60 KB os_version is refused: {st60}")
    check(rss1 - rss0 < 16384, f"RSS {rss0:,} kB before, {rss1:,} kB after")
    check(store1 - store0 < 1024, f"store {store0:,} KiB before, {store1:,} KiB after")
    srv.stop()

def attack_4():
    print("4. a tab-injected os_version, after a restart")
    srv = Server("tab")
    request(srv.addr, f"{G}&node_uuid=2&os_version=evil%09injected%09stream&platform=metal%09x")
    srv.stop()
    srv = Server("tab")
    _, body, _ = request(srv.addr, "/v1/stats")
    text = body.decode()
    check("injected" not in text and "\\t" not in text, f"read back: {text[:160]}")
    srv.stop()

def attack_5():
    print("5. 60 slowloris and 60 silent connections")
    srv = Server("slowloris")
    conns = []
    for i in range(60):
        s = socket.create_connection(srv.addr)
        s.sendall(f"GET {G} HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode())
        conns.append(s)
    conns += [socket.create_connection(srv.addr) for _ in range(60)]
    t = time.monotonic()
    closed = 0
    for s in conns:
        try:
            while True:
                s.settimeout(max(0.1, 30 - (time.monotonic() - t)))
                b = s.recv(4096)
                if not b:
                    closed += 1
                    break
        except ConnectionResetError:
            closed += 1
        except socket.timeout:
            pass
        s.close()
    check(closed == 120, f"{closed} of 120 closed, the last after {time.monotonic() - t:.1f} s (header timeout 10 s)")
    st, _, dt = request(srv.addr, G)
    check(st == 200, f"served afterwards in {dt * 1000:.1f} ms")
    srv.stop()

def attack_6():
    print("6. 12,000-parameter queries at 4/s")
    srv = Server("params")
    # 12,000 distinct three-letter parameters: 56 KB, under hyper's URI
    # limit (64 KiB, 414 beyond), over the server's head limit (32 KiB).
    abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    big = G + "&" + "&".join(abc[i // 3844] + abc[i // 62 % 62] + abc[i % 62] + "=" for i in range(12000))
    timer = Timer(srv.addr); timer.start()
    answers, times = [], []
    for _ in range(40):
        st, _, dt = request(srv.addr, big)
        answers.append(st); times.append(dt)
        time.sleep(0.25)
    small = G + "&" + "a=&" * 5000
    st_small, _, dt_small = request(srv.addr, small)
    med, worst, count = timer.stop()
    check(set(answers) == {431}, f"{len(big):,}-byte query answered {sorted(set(answers))}, {max(times) * 1000:.1f} ms at most")
    check(st_small == 400, f"5,000 parameters in {len(small):,} bytes answered {st_small} in {dt_small * 1000:.1f} ms")
    check(worst < 0.5, f"/v1/graph meanwhile: median {med * 1000:.1f} ms, worst {worst * 1000:.1f} ms over {count}")
    srv.stop()

def attack_7():
    print("7. SIGTERM during dashboard requests")
    srv = Server("sigterm")
    load(srv.addr, [f"{G}&node_uuid={i:032x}&os_version={versions[i % 150]}" for i in range(20000)])
    stop = threading.Event()
    def dashboards():
        while not stop.is_set():
            try:
                request(srv.addr, "/", timeout=5)
            except OSError:
                return
    ts = [threading.Thread(target=dashboards) for _ in range(4)]
    [t.start() for t in ts]
    time.sleep(1)
    took = srv.stop(timeout=30)
    stop.set(); [t.join() for t in ts]
    check(took is not None and took < 5, f"exited {took if took is None else round(took, 2)} s after SIGTERM")
    srv = Server("sigterm")
    _, body, _ = request(srv.addr, "/v1/stats")
    est = json.loads(body)["weeks"][-1]["nodes"]
    check(abs(est - 20000) / 20000 < 0.05, f"statistics kept: {est:,} nodes of 20,000")
    srv.stop()

def attack_8():
    print("8. descriptors exhausted (ulimit -n 64, 300 connections)")
    srv = Server("emfile", nofile=64, extra="max_connections = 1000\nheader_read_timeout_secs = 30\n")
    held = [socket.create_connection(srv.addr) for _ in range(300)]
    time.sleep(0.5)
    cpu0 = srv.cpu_s(); time.sleep(5); cpu1 = srv.cpu_s()
    check(cpu1 - cpu0 < 1.0, f"{cpu1 - cpu0:.2f} s of CPU in 5 s while accepts fail")
    for s in held:
        s.close()
    ok = False
    for _ in range(50):
        try:
            st, body, _ = request(srv.addr, "/metrics", timeout=5)
            if st == 200:
                ok = True
                break
        except OSError:
            pass
        time.sleep(0.2)
    errors = next((l.split()[-1] for l in body.decode().splitlines() if l.startswith("oxcore_graph_accept_errors_total ")), "?") if ok else "?"
    check(ok, f"served again after the connections closed ({errors} failed accepts counted)")
    srv.stop()

only = os.environ.get("ATTACKS")
for attack in [attack_1, attack_2, attack_3, attack_4, attack_5, attack_6, attack_7, attack_8]:
    if only and attack.__name__.split("_")[1] not in only.split(","):
        continue
    try:
        attack()
    except Exception as e:
        check(False, f"{attack.__name__} stopped: {type(e).__name__}: {e}")
    finally:
        for srv in running:
            if srv.p.poll() is None:
                srv.p.kill()
                srv.p.wait()
        running.clear()

print()
if failures:
    print(f"{len(failures)} attack(s) got through:")
    for f in failures:
        print("  - " + f)
    sys.exit(1)
print("every attack was contained")
PY
