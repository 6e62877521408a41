#!/usr/bin/env bash
# Hostile inputs against Butane and ignition-validate, each under a memory
# cap (ulimit -v) and a time bound: YAML alias bombs (the 371-byte 9x9 one
# and others), huge numbers of block scalars, deep nesting in YAML and in
# JSON, endless duplicate keys, lone surrogates. For each: the exit code,
# the peak RSS (/usr/bin/time -f %M), the wall time and the first line of
# the diagnostics. Exits non-zero when an input gets through: the process
# is killed, crashes, exceeds the cap or runs past the bound.
# Usage: bench/attacks/butane.sh PATH/TO/oxcore   (a release build)
set -euo pipefail
ox=$(realpath "${1:?usage: $0 PATH/TO/oxcore}")
cap_mb=${CAP_MB:-512}     # virtual memory per process (ulimit -v)
bound_s=${BOUND_S:-10}    # wall time per process
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$ox" "$work/butane"
ln -s "$ox" "$work/ignition-validate"
cd "$work"

python3 - <<'PY'
H = "variant: fcos\nversion: 1.5.0\n"
def w(name, text):
    with open(name, "w") as f:
        f.write(text)

# The 371-byte bomb: nine levels of nine aliases under unknown keys
# (387 million nodes if copied).
s = H + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
prev = "a"
for c in "bcdefghi":
    s += f"{c}: &{c} [" + ",".join(["*" + prev] * 9) + "]\n"
    prev = c
w("bomb-9x9-unused.bu", s)
# The same nine levels used as kernel arguments (decoded: a list of lists).
w("bomb-9x9-kargs.bu", s + "kernel_arguments:\n  should_exist: *i\n")
# Ten levels of ten in flow style, 301 bytes of aliases.
s = H + "x0: &x0 [a,a,a,a,a,a,a,a,a,a]\n"
for i in range(1, 10):
    s += f"x{i}: &x{i} [" + ",".join([f"*x{i-1}"] * 10) + "]\n"
w("bomb-10x10-unused.bu", s + "storage: {files: *x9}\n")
# Expanded through fields: files -> append -> http_headers, 40 wide.
def schema(n):
    return (H + "x:\n  h: &h {name: a, value: b}\n  hs: &hs [" + ",".join(["*h"] * n) + "]\n"
            "  r: &r {source: 'http://x', http_headers: *hs}\n  rs: &rs [" + ",".join(["*r"] * n) + "]\n"
            "  f: &f {path: /a, append: *rs}\n  fs: &fs [" + ",".join(["*f"] * n) + "]\n"
            "storage:\n  files: *fs\n")
w("bomb-through-fields.bu", schema(40))
# Merge keys of merge keys.
s = H + "m0: &m0 {path: /a, mode: 420}\n"
for i in range(1, 12):
    s += f"m{i}: &m{i} {{<<: [" + ",".join([f"*m{i-1}"] * 8) + "]}\n"
w("bomb-merge-keys.bu", s + "storage:\n  files:\n    - *m11\n")
# A megabyte of text aliased 10,000 times (10 GB if copied).
w("bomb-big-scalar.bu", H + "x: &big '" + "A" * (1 << 20) + "'\nkernel_arguments:\n  should_exist: ["
  + ",".join(["*big"] * 10000) + "]\n")
# An anchor that contains its own alias, decoded through.
w("alias-cycle.bu", H + "storage:\n  directories: &d [{path: /a, user: {name: *d}}]\n")
# 100,000 block scalars.
s = [H, "systemd:\n  units:\n"]
for i in range(100000):
    s.append(f"    - name: u{i}.service\n      contents: |\n        [Service]\n        ExecStart=/bin/true {i}\n")
w("block-scalars-100k.bu", "".join(s))
# 20,000 copies of one key (200 million duplicate pairs for yaml.v3).
w("duplicate-keys-20k.bu", H + "storage:\n  files:\n    - " + "\n      ".join(["path: /a"] * 20000) + "\n")
# 100,000 unused keys, each a finding to locate.
w("unused-keys-100k.bu", H + "".join(f"k{i}: {i}\n" for i in range(100000)))
# Deep nesting: flow, block, JSON inside YAML.
w("yaml-flow-100k.bu", H + "x: " + "[" * 100000 + "]" * 100000 + "\n")
w("yaml-block-20k.bu", H + "x:\n  " + "- " * 20000 + "a\n")
w("yaml-inline-json-100k.bu", H + "ignition:\n  config:\n    merge:\n      - inline: '" + "[" * 100000 + "'\n")
# JSON for ignition-validate.
hdr = '{"ignition":{"version":"3.5.0"}'
w("json-deep-100k.ign", hdr + ',"x":' + "[" * 100000 + "]" * 100000 + "}")
w("json-deep-9999.ign", hdr + ',"x":' + "[" * 9999 + "]" * 9999 + "}")
w("json-deep-objects-9999.ign", hdr + ',"x":' + '{"a":' * 9999 + "1" + "}" * 9999 + "}")
w("json-surrogates-1m.ign", hdr + ',"x":"' + "\\ud800" * 1000000 + '"}')
w("json-unused-keys-100k.ign", hdr + "".join(f',"k{i}":{i}' for i in range(100000)) + "}")
w("json-overlapping-partitions-20k.ign", hdr + ',"storage":{"disks":[{"device":"/dev/vda","partitions":['
  + ",".join(f'{{"number":{i+1},"startMiB":{20000-i},"sizeMiB":2}}' for i in range(20000)) + "]}]}}")
PY

failed=0
printf '%-36s %4s %10s %8s  %s\n' input exit peak_RSS time diagnostic
for f in *.bu *.ign; do
    case $f in
        *.bu) tool=./butane ;;
        *.ign) tool=./ignition-validate ;;
    esac
    set +e
    (
        ulimit -v $((cap_mb * 1024))
        exec timeout -s KILL "$bound_s" /usr/bin/time -f '%M %e' -o "$f.time" "$tool" "$f" >"$f.out" 2>"$f.err"
    )
    rc=$?
    set -e
    # Killed at the bound, time(1) wrote nothing.
    rss='?' secs="${bound_s}+"
    last=$(tail -n 1 "$f.time" 2>/dev/null || true)
    if [[ $last =~ ^([0-9]+)\ ([0-9.]+)$ ]]; then
        rss=${BASH_REMATCH[1]} secs=${BASH_REMATCH[2]}
    fi
    # ignition-validate reports on stdout, Butane on stderr.
    first=$( (cat "$f.out" "$f.err" | grep -v '^\s*$' | grep -v '^Command exited' | grep -v '^{' |
        head -n 1 | cut -c1-90) || true)
    verdict=ok
    # 0 and 1 are answers (1: the input was refused); 137 is the time
    # bound, 134/139 a crash (an allocation over the cap aborts).
    if [ "$rc" -gt 1 ]; then
        verdict="GOT THROUGH (exit $rc)"
        failed=1
    elif [ "$rss" != "?" ] && [ "$rss" -gt $((cap_mb * 1024)) ]; then
        verdict="GOT THROUGH (RSS over the cap)"
        failed=1
    fi
    printf '%-36s %4s %8s kB %7ss  %s\n' "$f" "$rc" "$rss" "$secs" "${first:-(no diagnostics)}"
    [ "$verdict" = ok ] || echo "  ^ $verdict"
done
if [ "$failed" -ne 0 ]; then
    echo "FAILED: an input got past the bounds (cap ${cap_mb} MB virtual, ${bound_s} s)"
    exit 1
fi
echo "all inputs answered within ${cap_mb} MB and ${bound_s} s"
