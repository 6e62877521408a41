#!/usr/bin/env python3
"""Golden corpus for the `butane` personality of oxcore.

Usage:
  regenerate.py BUTANE             run every case in inputs.txt with BUTANE (the
                                   reference: upstream Butane) and rewrite cases.txt
  regenerate.py --compare BINARY   run every case with BINARY and compare with the
                                   expectations recorded in cases.txt; prints a diff
                                   per failing case and a final "N passed, M failed"
                                   line (exit 1 if any case failed)
Options:
  --only SUBSTR    only cases whose name contains SUBSTR (repeatable)
  --quiet          with --compare: list failing names only, no diffs

inputs.txt format (one case after another):
  === NAME
  args: ARGS         optional; shell-split, placed BEFORE the input file name.
                     The token FILESDIR means the absolute path of files/.
  <YAML input, verbatim, up to the next "=== " line; trailing blank lines
   are dropped and the text gets exactly one final newline; an input with no
   lines is an empty file>

How a case is run: the input is written to `config.bu` in a fresh temporary
directory, the binary is run with that directory as cwd as
`butane ARGS config.bu` (argv[0] is the literal `butane`, so usage texts do
not depend on the binary's path), with NO_COLOR=1 set and stdin from
/dev/null.  In stdout and stderr the absolute path of files/ is replaced by
the token FILESDIR.

cases.txt format (one block per case, in inputs.txt order):
  === NAME
  args: ARGS         only if the case has args
  <input, verbatim>
  --- stdout
  <encoded stdout>
  --- stderr
  <encoded stderr>
  --- exit N

Output encoding: the output is split on "\\n"; every line is written as
"| " + line, except an empty line, which is written as a lone "|" (so that
no line of cases.txt ends in an added space; lines that really end in spaces
keep them).  If the output ends with "\\n" (the usual case) nothing else is
written; otherwise the last line is followed by a line
"\\ no newline at end".  Empty output is no lines at all.  Bytes that are
not UTF-8 are kept via Python's surrogateescape.
"""
import difflib
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(HERE, "files")
NO_EOL = "\\ no newline at end"


def parse_inputs(path):
    """Returns [(name, args or None, input text)]."""
    out = []
    name, lines = None, []

    def flush():
        args = None
        body = list(lines)
        if body and body[0].startswith("args:"):
            args = body.pop(0)[len("args:"):].strip()
        while body and body[-1] == "":
            body.pop()
        text = "\n".join(body) + "\n" if body else ""
        out.append((name, args, text))

    with open(path, encoding="utf-8", newline="") as f:
        for line in f.read().split("\n"):
            if line.startswith("=== "):
                if name is not None:
                    flush()
                name, lines = line[4:].strip(), []
            elif name is not None:
                lines.append(line)
    if name is not None:
        flush()
    names = [c[0] for c in out]
    dups = {n for n in names if names.count(n) > 1}
    if dups:
        sys.exit(f"duplicate case names: {sorted(dups)}")
    return out


def encode(data):
    text = data.decode("utf-8", "surrogateescape")
    if not text:
        return []
    lines = text.split("\n")
    trailing_nl = lines[-1] == ""
    if trailing_nl:
        lines.pop()
    enc = ["|" if l == "" else "| " + l for l in lines]
    if not trailing_nl:
        enc.append(NO_EOL)
    return enc


def run_case(binary, args, text):
    argv = ["butane"]
    if args:
        argv += [a.replace("FILESDIR", FILES) for a in shlex.split(args)]
    argv.append("config.bu")
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    with tempfile.TemporaryDirectory(prefix="butane-golden-") as d:
        with open(os.path.join(d, "config.bu"), "w", encoding="utf-8", newline="") as f:
            f.write(text)
        p = subprocess.run(argv, executable=binary, cwd=d, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    fix = lambda b: b.replace(FILES.encode(), b"FILESDIR")
    return encode(fix(p.stdout)), encode(fix(p.stderr)), p.returncode


def block(name, args, text, result):
    stdout, stderr, rc = result
    out = [f"=== {name}"]
    if args:
        out.append(f"args: {args}")
    if text:
        out.extend(text[:-1].split("\n"))
    out.append("--- stdout")
    out.extend(stdout)
    out.append("--- stderr")
    out.extend(stderr)
    out.append(f"--- exit {rc}")
    return out


def parse_cases(path):
    """Returns {name: (stdout lines, stderr lines, exit)} from cases.txt."""
    res = {}
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("=== "):
            i += 1
            continue
        name = lines[i][4:].strip()
        i += 1
        while lines[i] != "--- stdout":
            i += 1
        i += 1
        stdout = []
        while lines[i] != "--- stderr":
            stdout.append(lines[i])
            i += 1
        i += 1
        stderr = []
        while not lines[i].startswith("--- exit "):
            stderr.append(lines[i])
            i += 1
        rc = int(lines[i][len("--- exit "):])
        i += 1
        res[name] = (stdout, stderr, rc)
    return res


def main():
    argv = sys.argv[1:]
    compare, only, quiet, binary = None, [], False, None
    while argv:
        a = argv.pop(0)
        if a == "--compare":
            compare = argv.pop(0)
        elif a == "--only":
            only.append(argv.pop(0))
        elif a == "--quiet":
            quiet = True
        elif binary is None and not a.startswith("-"):
            binary = a
        else:
            sys.exit(__doc__)
    if (compare is None) == (binary is None):
        sys.exit(__doc__)
    exe = compare or binary
    if not os.access(exe, os.X_OK):
        sys.exit(f"not an executable: {exe}")
    cases = parse_inputs(os.path.join(HERE, "inputs.txt"))
    if only:
        cases = [c for c in cases if any(s in c[0] for s in only)]

    if compare is None:
        if only:
            sys.exit("--only cannot be used when regenerating")
        out = []
        for name, args, text in cases:
            r = run_case(binary, args, text)
            if run_case(binary, args, text) != r:
                print(f"warning: case {name} is not deterministic", file=sys.stderr)
            out.extend(block(name, args, text, r))
        with open(os.path.join(HERE, "cases.txt"), "w", encoding="utf-8",
                  errors="surrogateescape", newline="") as f:
            f.write("\n".join(out) + "\n")
        print(f"wrote {len(cases)} cases")
        return

    expected = parse_cases(os.path.join(HERE, "cases.txt"))
    passed, failed = 0, []
    for name, args, text in cases:
        if name not in expected:
            print(f"=== {name}: no expectation in cases.txt (regenerate it)")
            failed.append(name)
            continue
        want = expected[name]
        got = run_case(compare, args, text)
        if got == want:
            passed += 1
            continue
        failed.append(name)
        print(f"=== FAIL {name}")
        if quiet:
            continue
        if got[2] != want[2]:
            print(f"exit: expected {want[2]}, got {got[2]}")
        for label, w, g in (("stdout", want[0], got[0]), ("stderr", want[1], got[1])):
            if w != g:
                for l in difflib.unified_diff(w, g, f"expected {label}", f"actual {label}",
                                              lineterm="", n=2):
                    print(l)
    print(f"{passed} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
