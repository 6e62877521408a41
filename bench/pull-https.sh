#!/usr/bin/env bash
# OSTree pull over HTTPS of a 20,000-object commit (20,000 small files in
# 400 directories) from nginx on 127.0.0.1 (keep-alive, TLS 1.3, a CA made
# here), into a fresh bare-user repository each run: oxcore, the `ostree`
# command (libcurl) as the peer, and optionally an earlier oxcore binary
# (OLD=path) to measure a change. Prints the median of REPS runs (default
# 3) and each tool's ratio to ostree, plus the TLS connections nginx
# accepted per pull.
# Usage: bench/pull-https.sh [WORKDIR, default /dev/shm/oxcore-pull]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/dev/shm/oxcore-pull}
for c in ostree nginx openssl; do
    command -v $c >/dev/null || { echo "SKIP: $c is not installed (apt-get install ostree nginx-light openssl)" >&2; exit 0; }
done
cargo build --release --locked -q -p oxcore
ox=$PWD/target/release/oxcore
rm -rf "$work" && mkdir -p "$work" && cd "$work"

python3 - <<'PY'
import os, random
r = random.Random(7)
for i in range(20000):
    d = f"tree/usr/share/d{i % 400:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(r.randbytes(r.randint(100, 4000)))
PY
"$ox" ostree --repo=served init --mode=archive
"$ox" ostree --repo=served commit -b main --tree=dir=tree --no-bindings --timestamp=2024-01-01T00:00:00Z >/dev/null
"$ox" ostree --repo=served summary -u
objects=$(find served/objects -type f | wc -l)

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" >ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out srv.pem 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p nginx
cat >nginx/nginx.conf <<CONF
daemon off;
worker_processes 1;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log $work/nginx/access.log;
    log_format c '\$connection';
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $work/srv.pem;
        ssl_certificate_key $work/srv.key;
        access_log $work/nginx/conns.log c;
        root $work/served;
    }
}
CONF
nginx -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
ngx=$!
trap 'kill $ngx 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

pull() { # label command...
    local label=$1; shift
    rm -rf node && "$ox" ostree --repo=node init --mode=bare-user
    "$ox" ostree --repo=node remote add --no-gpg-verify --set=tls-ca-path="$work/ca.pem" origin "https://127.0.0.1:$port"
    : >nginx/conns.log
    local s e
    s=$(date +%s.%N)
    "$@" --repo=node pull origin main >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$e - $s" | bc >>"times-$label"
    sort -u nginx/conns.log | wc -l >>"conns-$label"
    "$ox" ostree --repo=node fsck -q >/dev/null
}
reps=${REPS:-3}
tools=(ostree oxcore)
[ -n "${OLD:-}" ] && tools+=(old)
for _ in $(seq "$reps"); do
    for t in "${tools[@]}"; do
        case $t in
            ostree) pull ostree ostree ;;
            oxcore) pull oxcore "$ox" ostree ;;
            old) pull old "$OLD" ostree ;;
        esac
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(median times-ostree)
echo "pull over HTTPS, $objects objects, median of $reps (s), TLS connections per pull:"
for t in "${tools[@]}"; do
    m=$(median "times-$t")
    printf "  %-8s %7.2f s  %s connections  (ostree/%s = %.2fx)\n" "$t" "$m" "$(median "conns-$t")" "$t" "$(echo "$base / $m" | bc -l)"
done
