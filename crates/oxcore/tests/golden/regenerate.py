#!/usr/bin/env python3
"""Regenerates cases.txt from inputs.txt by running a validator on each input.

Usage: regenerate.py VALIDATOR  (e.g. target/debug/ignition-validate link)

The expected outputs in cases.txt are reviewed by hand; the test
`ignition_validate_golden` checks oxcore against them, and
`ignition_validate_oracle` checks them against upstream's ignition-validate
where the Debian package can read the spec version.
"""
import subprocess, sys, tempfile, os

def cases(path):
    name, lines = None, []
    for line in open(path, encoding="utf-8").read().split("\n"):
        if line.startswith("=== "):
            if name is not None:
                yield name, "\n".join(lines)
            name, lines = line[4:], []
        else:
            lines.append(line)
    if name is not None:
        while lines and lines[-1] == "":
            lines.pop()
        yield name, "\n".join(lines)

def main():
    validator = sys.argv[1]
    out = []
    for name, text in cases(os.path.join(os.path.dirname(__file__), "inputs.txt")):
        text = text.rstrip("\n") if text.strip() else text.strip("\n")
        with tempfile.NamedTemporaryFile("wb", suffix=".ign", delete=False) as f:
            f.write(text.encode())
        p = subprocess.run([validator, f.name], capture_output=True)
        os.unlink(f.name)
        out.append(f"=== {name}")
        if text:
            out.append(text)
        out.append("--- stdout")
        out.extend(l for l in p.stdout.decode().split("\n") if l)
        out.append("--- stderr")
        out.extend(l for l in p.stderr.decode().split("\n") if l)
        out.append(f"--- exit {p.returncode}")
    open(os.path.join(os.path.dirname(__file__), "cases.txt"), "w", encoding="utf-8").write("\n".join(out) + "\n")

main()
