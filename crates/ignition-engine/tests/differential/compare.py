#!/usr/bin/env python3
"""Differential test of the Ignition files stage: oxcore against upstream.

Generates random (seeded) Ignition 3.3.0 configs exercising files, directories,
links, users, groups and systemd units; applies each to two identical skeleton
roots, one with upstream Ignition (Debian's 2.14 build) and one with
`oxcore ignition apply`; and compares the resulting trees (type, mode with
special bits, uid, gid, file contents, link targets, hard-link groups) and the
exit status. Both failing counts as a match.

Needs root (the shadow tools and chown) and Python 3 stdlib only. Uses
target/debug/oxcore of this workspace unless --oxcore (build it first:
`cargo build -p oxcore`).

    sudo python3 compare.py --count 300 --seed 1
    sudo python3 compare.py --config repro/*.ign     # given configs
    sudo python3 compare.py --count 300 --keep /tmp/mismatches
    sudo python3 compare.py --count 300 --ignore special-bits,empty-dropin

Every mismatch is tagged with the known difference that explains it (CAUSES
below, "unexplained" if none fits) and the summary counts cases per cause;
--ignore counts the listed causes as matching. repro/ holds one minimal
config per cause (named after it), for the same skeleton.

The skeleton (make_skeleton) is a small /etc with users root, daemon, bin,
alice (1000, home /home/alice 0700) and nobody, groups incl. wheel, users,
docker; plus pre-existing nodes to conflict with or overwrite: files
/etc/existing.conf (1000:1000 0640), /etc/motd (with a second hard link
/srv/motd.hl), /opt/existing-dir/ (1000:100 0750, with a child), /srv
(0:100 0711), symlinks /var/existing-link -> /etc/existing.conf and
/opt/dirlink -> /opt/existing-dir, a unit pre.service enabled by a wants
link, and masked.service -> /dev/null. The generator never puts an entry
below a symlink that a config creates, so upstream (which writes through
symlinks it meets) cannot write outside the scratch root.

How upstream is run (it is built for an initramfs):
  * `-stage fetch-offline` with `-platform file` and IGNITION_CONFIG_FILE,
    then `-stage files -root DIR`; the config cache, state file and neednet
    flag are kept in the case's temp dir, so nothing is written to /run.
  * Upstream always relabels at the end of the files stage (SELinux support
    is compiled in; no content of /etc/selinux/config turns it off: it needs
    SELINUXTYPE= and then runs `setfiles`). The skeleton has an
    /etc/selinux/config and upstream runs with a do-nothing `setfiles` first
    on its PATH, so that a complete stage exits 0.
  * Enabling or disabling a template instance makes upstream ask the running
    systemd for its version over /run/systemd/private after the preset file
    is complete; with no systemd running that fails. That failure (and only
    it) is counted as success, and reported as an environment artefact.

Normalised before comparing: the "last password change" day in /etc/shadow
and /etc/shadow- (date dependent), and the order of the lines of the preset
file (upstream writes them in Go map order, which is random).
Ignored: /etc/.ignition-result.json, /etc/.pwd.lock, and (unless
--compare-backups) the shadow tools' backups /etc/passwd- group- shadow- gshadow-,
which hold the state before the last tool call.
"""

import argparse
import base64
import collections
import gzip
import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
DEFAULT_OXCORE = os.path.join(WORKSPACE, "target", "debug", "oxcore")
DEFAULT_IGNITION = "/usr/lib/dracut/modules.d/30ignition/ignition"

PRESET = "/etc/systemd/system-preset/20-ignition.preset"
IGNORED = {"/etc/.ignition-result.json", "/etc/.pwd.lock"}
# The shadow tools' backups hold the state before the *last* tool call, so
# they differ whenever the two sides make a different number of calls
# (upstream runs usermod a second time to set a password hash): ignored
# unless --compare-backups.
BACKUPS = {"/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-"}
SHADOWS = {"/etc/shadow", "/etc/shadow-"}
ENV_ARTEFACT = "dial unix /run/systemd/private"

# ---------------------------------------------------------------- skeleton

SKEL_PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
SKEL_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
wheel:x:10:alice
users:x:100:
docker:x:990:
alice:x:1000:
nogroup:x:65534:
"""
SKEL_SHADOW = """root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
bin:*:19000:0:99999:7:::
alice:$6$abc$xyz:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
"""
SKEL_GSHADOW = """root:*::
daemon:*::
bin:*::
wheel:*::alice
users:*::
docker:!::
alice:!::
nogroup:*::
"""

EXISTING_USERS = {"root": (0, 0, "/root"), "daemon": (1, 1, "/usr/sbin"),
                  "bin": (2, 2, "/bin"), "alice": (1000, 1000, "/home/alice"),
                  "nobody": (65534, 65534, "/nonexistent")}
EXISTING_GROUPS = {"root": 0, "daemon": 1, "bin": 2, "wheel": 10, "users": 100,
                   "docker": 990, "alice": 1000, "nogroup": 65534}

# Pre-existing nodes of every skeleton (conflicts and overwrite targets).
EXISTING_FILES = ["/etc/existing.conf", "/etc/motd", "/opt/existing-dir/child.txt",
                  "/etc/systemd/system/pre.service"]
EXISTING_DIRS = ["/opt/existing-dir", "/home/alice", "/srv"]
EXISTING_LINKS = ["/var/existing-link", "/opt/dirlink", "/etc/systemd/system/masked.service",
                  "/etc/systemd/system/multi-user.target.wants/pre.service"]
EXISTING_HARDLINKS = {"/srv/motd.hl": "/etc/motd"}
EXISTING_LINK_TARGETS = {"/var/existing-link": "/etc/existing.conf",
                         "/etc/systemd/system/masked.service": "/dev/null"}


def make_skeleton(root, extras):
    """Lays out one skeleton root; `extras` (from the generator) adds the
    optional pre-existing preset file."""
    def w(path, data, mode=0o644, uid=0, gid=0):
        full = root + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(full, mode)
        os.lchown(full, uid, gid)

    def d(path, mode=0o755, uid=0, gid=0):
        full = root + path
        os.makedirs(full, exist_ok=True)
        os.chmod(full, mode)
        os.lchown(full, uid, gid)

    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    d("/etc")
    w("/etc/passwd", SKEL_PASSWD)
    w("/etc/group", SKEL_GROUP)
    w("/etc/shadow", SKEL_SHADOW, 0o640, 0, 0)
    w("/etc/gshadow", SKEL_GSHADOW, 0o640, 0, 0)
    w("/etc/selinux/config", "SELINUX=disabled\nSELINUXTYPE=targeted\n")
    w("/etc/existing.conf", "old contents\n", 0o640, 1000, 1000)
    w("/etc/motd", "hello\n")
    d("/opt")
    d("/opt/existing-dir", 0o750, 1000, 100)
    w("/opt/existing-dir/child.txt", "child\n")
    d("/home")
    d("/home/alice", 0o700, 1000, 1000)
    d("/srv", 0o711, 0, 100)
    d("/var")
    os.symlink("/etc/existing.conf", root + "/var/existing-link")
    # a directory reached through a link (a parent of some generated paths)
    os.symlink("/opt/existing-dir", root + "/opt/dirlink")
    w("/etc/systemd/system/pre.service",
      "[Unit]\nDescription=pre\n\n[Install]\nWantedBy=multi-user.target\n")
    d("/etc/systemd/system/multi-user.target.wants")
    os.symlink("/etc/systemd/system/pre.service",
               root + "/etc/systemd/system/multi-user.target.wants/pre.service")
    os.symlink("/dev/null", root + "/etc/systemd/system/masked.service")
    # a second name for /etc/motd
    # (/srv exists: made above)
    os.link(root + "/etc/motd", root + "/srv/motd.hl")
    if extras.get("preset"):
        w(PRESET, "enable old.service\n")


# --------------------------------------------------------------- generator

WORDS = ["alpha", "beta", "gamma", "delta", "hello world", "x=1", "ünïcode",
         "line\nbreak", "tab\there", "#!/bin/sh\necho hi", ""]
FILE_DIRS = ["/etc", "/etc/app", "/opt/app", "/var/lib/app", "/srv/data", "/home/alice",
             "/opt/existing-dir", "/usr/local/bin", "/opt/dirlink"]
FILE_NAMES = ["a.conf", "b.txt", "run.sh", "data", "x", "config.json"]
DIR_PATHS = ["/etc/app", "/opt/app", "/opt/app/sub", "/var/lib/app", "/srv/data",
             "/srv/data/sub/deep", "/opt/existing-dir", "/home/alice", "/srv",
             "/var/cache/thing", "/etc/existing.conf"]
LINK_PATHS = ["/etc/links/l1", "/etc/links/l2", "/usr/local/bin/tool", "/opt/app/ln",
              "/var/lib/app/current", "/var/existing-link", "/etc/motd", "/srv/hl",
              "/srv/motd.hl", "/opt/existing-dir"]
MODES_FILE = [0o644, 0o600, 0o755, 0o640, 0o444, 0o400, 0, 0o777, 0o4755, 0o2755,
              0o1644, 0o6750, 0o7777, 0o660]
MODES_DIR = [0o755, 0o700, 0o750, 0o777, 0o1777, 0o2775, 0o4755, 0, 0o711, 0o555]
NEW_USERS = ["core", "svc1", "svc2", "dev"]
NEW_GROUPS = ["grp1", "grp2", "ops"]
UNIT_NAMES = ["app.service", "web.socket", "job.timer", "getty@tty1.service",
              "getty@tty2.service", "worker@.service", "worker@a.service", "pre.service",
              "masked.service", "db.service"]
HASH = "$6$rounds=4096$saltsalt$3MEaFIJwbUqGYL1A3vKkL/7Xxrs1qTQ/v1eDvg1Jl0bVX9Yxzc3X7yYkb9rGVVv.1tC5Y/OQ8c.7eRz1p1D/T."
KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC1 c@d",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= e@f"]


def chance(rng, p):
    return rng.random() < p


def data_url(rng, data):
    """A data URL for bytes; returns (source, compression)."""
    kind = rng.choice(["plain", "plain", "base64", "base64mime", "gzip"])
    if kind == "plain":
        return "data:," + urllib.parse.quote(data.decode("utf-8", "surrogateescape")), None
    if kind == "base64":
        return "data:;base64," + base64.b64encode(data).decode(), None
    if kind == "base64mime":
        return "data:text/plain;charset=utf-8;base64," + base64.b64encode(data).decode(), None
    gz = gzip.compress(data, mtime=0)
    return "data:;base64," + base64.b64encode(gz).decode(), "gzip"


def resource(rng, risky=False):
    text = rng.choice(WORDS)
    if chance(rng, 0.7):
        text += "\n"
    data = text.encode()
    src, comp = data_url(rng, data)
    r = {"source": src}
    if comp:
        r["compression"] = comp
    if chance(rng, 0.15):
        digest = hashlib.sha512(data).hexdigest()
        if risky and chance(rng, 0.3):
            digest = hashlib.sha512(data + b"tampered").hexdigest()
        r["verification"] = {"hash": "sha512-" + digest}
    return r


def owner(rng, users, groups, risky):
    """(user, group) node objects, or None each."""
    u = g = None
    r = rng.random()
    if r < 0.2:
        u = {"id": rng.choice([0, 1000, 1234, 65534])}
    elif r < 0.4:
        u = {"name": rng.choice(users + ["nosuchuser"] if risky and chance(rng, 0.2) else users)}
    r = rng.random()
    if r < 0.2:
        g = {"id": rng.choice([0, 100, 1000, 4321])}
    elif r < 0.4:
        g = {"name": rng.choice(groups + ["nosuchgroup"] if risky and chance(rng, 0.2) else groups)}
    return u, g


def with_owner(node, rng, users, groups, risky=False):
    u, g = owner(rng, users, groups, risky)
    if u is not None:
        node["user"] = u
    if g is not None:
        node["group"] = g
    return node


def gen_passwd(rng, risky):
    """Groups and users. Clean configs use fresh names and unique ids;
    risky ones may reuse existing names and ids."""
    gids = [3000, 3001, 3002, 3003, 3004, 5000 + rng.randint(0, 99)]
    rng.shuffle(gids)
    groups_cfg = []
    group_names = list(EXISTING_GROUPS)
    for name in rng.sample(NEW_GROUPS + (["docker", "wheel"] if risky else []), rng.randint(0, 3)):
        g = {"name": name}
        if chance(rng, 0.5):
            g["gid"] = 990 if risky and chance(rng, 0.3) else gids.pop()
        if chance(rng, 0.3):
            g["passwordHash"] = rng.choice([HASH, "", "!"])
        if chance(rng, 0.3):
            g["system"] = rng.choice([True, False])
        if chance(rng, 0.15):
            g["shouldExist"] = False
        else:
            group_names.append(name)
        groups_cfg.append(g)

    uids = [2000, 2001, 2002, 2003, 2004, 4000 + rng.randint(0, 99)]
    rng.shuffle(uids)
    users_cfg = []
    user_names = list(EXISTING_USERS)
    for name in rng.sample(NEW_USERS + ["alice"] + (["daemon"] if risky else []),
                           rng.randint(0, 3)):
        u = {"name": name}
        if chance(rng, 0.15):
            u["shouldExist"] = False
            users_cfg.append(u)
            user_names.remove(name) if name in user_names else None
            continue
        if chance(rng, 0.5):
            u["uid"] = 1000 if risky and chance(rng, 0.3) else uids.pop()
        if chance(rng, 0.3):
            u["gecos"] = rng.choice(["Some User", "svc,room 1", "ÜNÏ"])
        if chance(rng, 0.3):
            u["homeDir"] = rng.choice(["/home/" + name + "2", "/var/lib/" + name, "/srv/" + name])
        if chance(rng, 0.3):
            u["noCreateHome"] = rng.choice([True, False])
        if chance(rng, 0.3):
            u["shell"] = rng.choice(["/bin/bash", "/usr/sbin/nologin", "/bin/sh"])
        if chance(rng, 0.2):
            u["system"] = rng.choice([True, False])
        if chance(rng, 0.4):
            u["passwordHash"] = rng.choice([HASH, ""])
        if chance(rng, 0.3):
            u["groups"] = rng.sample([g for g in group_names if g != "root"], rng.randint(1, 2))
        if chance(rng, 0.15):
            u["primaryGroup"] = rng.choice(["users", "wheel"] + [g for g in group_names if g in NEW_GROUPS])
        if chance(rng, 0.1):
            u["noUserGroup"] = True
        if chance(rng, 0.1):
            u["noLogInit"] = True
        if chance(rng, 0.4):
            u["sshAuthorizedKeys"] = rng.sample(KEYS, rng.randint(1, 2))
        if name not in user_names:
            user_names.append(name)
        users_cfg.append(u)
    return groups_cfg, users_cfg, user_names, group_names


def resolved(path):
    """`path` with the skeleton's directory link in it resolved."""
    if path.startswith("/opt/dirlink/"):
        return "/opt/existing-dir/" + path[len("/opt/dirlink/"):]
    return path


def gen_config(rng):
    """A random config, and the skeleton's optional extras. About a fifth of
    the configs are "risky": they may use names, ids, hashes and paths that
    make one side or both fail; the others are meant to succeed."""
    config = {"ignition": {"version": "3.3.0"}}
    risky = chance(rng, 0.2)
    groups_cfg, users_cfg, user_names, group_names = gen_passwd(rng, risky)
    if groups_cfg or users_cfg:
        config["passwd"] = {}
        if users_cfg:
            config["passwd"]["users"] = users_cfg
        if groups_cfg:
            config["passwd"]["groups"] = groups_cfg

    used = set()
    files, dirs, links = [], [], []

    for _ in range(rng.randint(0, 6)):
        existing = chance(rng, 0.25 if risky else 0.12)
        if existing:
            path = rng.choice(EXISTING_FILES + (["/opt/existing-dir", "/var/existing-link"]
                                                if risky else []))
        else:
            path = rng.choice(FILE_DIRS) + "/" + rng.choice(FILE_NAMES)
        if path in used:
            continue
        used.add(path)
        f = {"path": path}
        if chance(rng, 0.75):
            f["contents"] = resource(rng, risky)
        if chance(rng, 0.3):
            f["append"] = [resource(rng, risky) for _ in range(rng.randint(1, 2))]
        if chance(rng, 0.6):
            f["mode"] = rng.choice(MODES_FILE)
        if existing and not risky and "contents" in f:
            f["overwrite"] = True
        elif chance(rng, 0.4):
            # overwrite without contents is invalid
            if "contents" in f or (risky and chance(rng, 0.1)):
                f["overwrite"] = rng.choice([True, True, False])
            else:
                f["overwrite"] = False
        files.append(with_owner(f, rng, user_names, group_names, risky))

    for _ in range(rng.randint(0, 4)):
        path = rng.choice(DIR_PATHS if risky else DIR_PATHS[:-1])
        if path in used:
            continue
        used.add(path)
        d = {"path": path}
        if chance(rng, 0.6):
            d["mode"] = rng.choice(MODES_DIR)
        if chance(rng, 0.3):
            d["overwrite"] = rng.choice([True, False])
        dirs.append(with_owner(d, rng, user_names, group_names, risky))

    file_paths = [f["path"] for f in files]
    for _ in range(rng.randint(0, 4)):
        path = rng.choice(LINK_PATHS)
        existing = path in ("/var/existing-link", "/etc/motd", "/srv/motd.hl")
        # A link must not be a parent of another entry (invalid), and the
        # harness never lets upstream write through a link.
        if path in used or any(resolved(p).startswith(path + "/") for p in used):
            continue
        used.add(path)
        link = {"path": path}
        hard = chance(rng, 0.3)
        if hard:
            link["hard"] = True
            cands = file_paths + ["/etc/existing.conf", "/etc/motd"]
            cands = [c for c in cands if c != path]
            t = rng.choice(cands)
            if chance(rng, 0.2):
                # relative target
                t = os.path.relpath(t, os.path.dirname(path)) if chance(rng, 0.5) else t.lstrip("/")
            if risky and chance(rng, 0.1):
                t = "/nonexistent/file"
            link["target"] = t
        else:
            r = rng.random()
            if r < 0.3 and file_paths:
                t = rng.choice(file_paths)
            elif r < 0.45:
                t = rng.choice(["/etc/existing.conf", "/etc/motd", "/opt/existing-dir"])
            elif r < 0.7:
                base = rng.choice(file_paths + ["/etc/existing.conf"])
                t = os.path.relpath(base, os.path.dirname(path))
            elif r < 0.8:
                t = rng.choice(["a.conf", "../x", "./data", "sub/../x"])
            elif r < 0.9:
                t = rng.choice(["/dev/null", "/nonexistent/target"])
            else:
                # exists on the machine running the test, owned root:shadow
                t = "/etc/gshadow"
            link["target"] = t
            with_owner(link, rng, user_names, group_names, risky)
        if existing and not risky:
            link["overwrite"] = True
        elif chance(rng, 0.3):
            link["overwrite"] = rng.choice([True, False])
        links.append(link)

    storage = {}
    if files:
        storage["files"] = files
    if dirs:
        storage["directories"] = dirs
    if links:
        storage["links"] = links
    if storage:
        config["storage"] = storage

    units = []
    for name in rng.sample(UNIT_NAMES, rng.randint(0, 4)):
        u = {"name": name}
        r = rng.random()
        if r < 0.5:
            body = "[Unit]\nDescription=%s\n" % name
            if chance(rng, 0.7):
                body += "\n[Service]\nExecStart=/bin/true\n" if name.endswith(".service") else ""
                body += "\n[Install]\nWantedBy=multi-user.target\n"
            u["contents"] = body
        elif r < 0.6:
            u["contents"] = ""
        if chance(rng, 0.3):
            u["dropins"] = []
            for dn in rng.sample(["10-a.conf", "20-b.conf", "30-c.conf"], rng.randint(1, 2)):
                dd = {"name": dn}
                rr = rng.random()
                if rr < 0.6:
                    dd["contents"] = "[Service]\nEnvironment=X=%d\n" % rng.randint(0, 9)
                elif rr < 0.8:
                    dd["contents"] = ""
                u["dropins"].append(dd)
        if chance(rng, 0.5):
            u["enabled"] = rng.choice([True, True, False])
        if chance(rng, 0.25):
            u["mask"] = rng.choice([True, False])
        units.append(u)
    if units:
        config["systemd"] = {"units": units}

    extras = {"preset": chance(rng, 0.3)}
    return config, extras


# ----------------------------------------------------------------- running

def run_upstream(ignition, case_dir, root, cfg_path, stub_bin):
    env = dict(os.environ)
    env["IGNITION_CONFIG_FILE"] = cfg_path
    env["PATH"] = stub_bin + ":" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    common = ["-platform", "file", "-config-cache", os.path.join(case_dir, "cache.json"),
              "-state-file", os.path.join(case_dir, "state"),
              "-neednet", os.path.join(case_dir, "neednet"), "-log-to-stdout"]
    out = ""
    p = subprocess.run([ignition, "-stage", "fetch-offline"] + common,
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out += p.stdout.decode(errors="replace")
    if p.returncode != 0:
        return False, out, False
    p = subprocess.run([ignition, "-stage", "files", "-root", root] + common,
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    text = p.stdout.decode(errors="replace")
    out += text
    if p.returncode == 0:
        return True, out, False
    crit = [l for l in text.splitlines() if l.startswith("CRITICAL")]
    if crit and ENV_ARTEFACT in crit[-1] and "failed to create units" in crit[-1]:
        return True, out, True
    return False, out, False


def run_ours(oxcore, root, cfg_path):
    p = subprocess.run([oxcore, "ignition", "apply", "--root", root, cfg_path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    return p.returncode == 0, p.stdout.decode(errors="replace")


def normalise(rel, data):
    if rel in SHADOWS:
        lines = []
        for line in data.decode(errors="replace").splitlines():
            f = line.split(":")
            if len(f) > 2 and f[2].isdigit():
                f[2] = "<day>"
            lines.append(":".join(f))
        return "\n".join(lines).encode()
    if rel == PRESET:
        return b"\n".join(sorted(data.splitlines()))
    return data


def snapshot(root, ignored=IGNORED):
    nodes = {}
    inodes = collections.defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(full, root)
            if rel in ignored:
                continue
            st = os.lstat(full)
            fmt = stat.S_IFMT(st.st_mode)
            rec = {"mode": "%04o" % (st.st_mode & 0o7777), "uid": st.st_uid, "gid": st.st_gid}
            if fmt == stat.S_IFREG:
                rec["type"] = "file"
                with open(full, "rb") as f:
                    rec["data"] = normalise(rel, f.read())
                if st.st_nlink > 1:
                    inodes[(st.st_dev, st.st_ino)].append(rel)
            elif fmt == stat.S_IFDIR:
                rec["type"] = "dir"
            elif fmt == stat.S_IFLNK:
                rec["type"] = "link"
                rec["target"] = os.readlink(full)
                del rec["mode"]
            else:
                rec["type"] = "other"
            nodes[rel] = rec
    hard = sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1)
    return nodes, hard


def short(b, n=120):
    s = repr(b)
    return s if len(s) <= n else s[:n] + "..."


def compare_trees(up_root, our_root, backups=False):
    """List of (kind, path, upstream, ours)."""
    ignored = IGNORED if backups else IGNORED | BACKUPS
    up, up_hard = snapshot(up_root, ignored)
    ours, our_hard = snapshot(our_root, ignored)
    diffs = []
    for p in sorted(set(up) | set(ours)):
        a, b = up.get(p), ours.get(p)
        if a is None:
            diffs.append(("only-ours", p, None, b["type"]))
            continue
        if b is None:
            diffs.append(("only-upstream", p, a["type"], None))
            continue
        if a["type"] != b["type"]:
            diffs.append(("type", p, a["type"], b["type"]))
            continue
        for k in ("mode", "uid", "gid", "target"):
            if a.get(k) != b.get(k):
                diffs.append((k, p, a.get(k), b.get(k)))
        if a.get("data") != b.get("data"):
            diffs.append(("data", p, a.get("data"), b.get("data")))
    if up_hard != our_hard:
        diffs.append(("hardlinks", "-", up_hard, our_hard))
    return diffs


def run_case(args, config, extras, work, stub_bin, index):
    case_dir = tempfile.mkdtemp(prefix="case%04d-" % index, dir=work)
    # Upstream writes SSH keys as the user: every directory above the root
    # must be searchable by anyone.
    os.chmod(case_dir, 0o755)
    cfg_path = os.path.join(case_dir, "config.ign")
    with open(cfg_path, "w") as f:
        json.dump(config, f, indent=1)
    with open(os.path.join(case_dir, "extras.json"), "w") as f:
        json.dump(extras, f)
    up_root = os.path.join(case_dir, "upstream")
    our_root = os.path.join(case_dir, "ours")
    make_skeleton(up_root, extras)
    make_skeleton(our_root, extras)
    up_ok, up_out, artefact = run_upstream(args.ignition, case_dir, up_root, cfg_path, stub_bin)
    our_ok, our_out = run_ours(args.oxcore, our_root, cfg_path)
    with open(os.path.join(case_dir, "upstream.log"), "w") as f:
        f.write(up_out)
    with open(os.path.join(case_dir, "ours.log"), "w") as f:
        f.write(our_out)
    result = {"index": index, "dir": case_dir, "up_ok": up_ok, "our_ok": our_ok,
              "artefact": artefact, "diffs": [], "up_err": "", "our_err": ""}
    if not up_ok:
        crit = [l for l in up_out.splitlines() if l.startswith("CRITICAL")]
        result["up_err"] = crit[-1] if crit else up_out.strip().splitlines()[-1:]
    if not our_ok:
        errs = [l for l in our_out.splitlines() if not l.startswith("warning")]
        result["our_err"] = "\n".join(errs).strip()[:600]
    if up_ok and our_ok:
        result["diffs"] = compare_trees(up_root, our_root, args.compare_backups)
    result["match"] = (up_ok == our_ok) and not result["diffs"]
    result["diff_causes"] = [classify_diff(d, config) for d in result["diffs"]]
    result["status_cause"] = classify_status(result, config)
    return result


# ------------------------------------------------------- known causes
#
# Each mismatch is tagged with the known difference that explains it (see
# the report of the differential run); "unexplained" ones need a look.

CAUSES = {
    "special-bits": "spec < 3.4.0: upstream masks setuid/setgid/sticky out of "
                    "`mode` (translation to 3.4 does mode & ~07000); oxcore applies them",
    "group-password-default": "group without passwordHash (or \"\"): Ignition 2.14 runs "
                              "groupadd --password '*'; 2.26 and oxcore pass nothing, so "
                              "gshadow gets '!'",
    "disable-only-when-enabled": "enabled: false: Ignition 2.14 writes `disable NAME` for every "
                                 "such unit; 2.26 and oxcore only for a unit enabled in the "
                                 "root (systemctl is-enabled), after disabling it",
    "user-password-default": "new user without passwordHash: upstream runs useradd "
                             "--password '*'; oxcore passes nothing, so shadow gets '!'",
    "existing-group": "group that already exists (shouldExist unset): upstream runs "
                      "groupadd and fails; oxcore leaves it alone and succeeds",
    "usermod-home-dir": "existing user with homeDir: oxcore passes `usermod --home-dir`, "
                        "which usermod rejects; upstream runs `usermod --home DIR --move-home`",
    "existing-owner-kept": "existing file/directory, no user/group given: upstream keeps "
                           "its owner; oxcore chowns it to 0:0",
    "existing-dir-mode-kept": "existing directory, no mode given: upstream keeps its mode; "
                              "oxcore sets 0755",
    "link-owner-from-target": "symlink without user/group: upstream chowns the link to the "
                              "owner of what it points to (stat follows it: relative targets "
                              "in the root, absolute ones on the machine running Ignition); "
                              "oxcore uses 0:0",
    "empty-dropin": "dropin with contents \"\": upstream writes an empty file; oxcore "
                    "writes nothing",
    "template-preset-space": "enabled/disabled template itself (foo@.service): upstream "
                             "takes it as instance \"\" and writes `enable foo@.service ` "
                             "(trailing space; `enable foo@.service  a` with instance a); "
                             "oxcore writes no empty instance",
    "hardlink-order": "upstream creates hard links after every other entry; oxcore "
                      "creates them in depth order, so a link to a deeper, later or "
                      "replaced file fails or points at the old inode",
    "hardlink-relative-target": "relative hard-link target: upstream resolves it against "
                                "the root (JoinPath), oxcore against the link's directory",
    "file-rewritten-new-inode": "existing file without new contents: upstream changes it "
                                "in place (chmod/chown/append); oxcore rewrites it to a new "
                                "inode, breaking its hard links",
    "dir-overwrite-removes": "directory with overwrite: true over an existing directory: "
                             "upstream removes it with everything in it first; oxcore keeps "
                             "the contents",
    "userdel-remove": "shouldExist: false for an existing user: upstream runs "
                      "userdel --remove (home deleted); oxcore plain userdel",
    "unmask": "mask: false on a masked unit: upstream removes the /dev/null link; oxcore "
              "ignores it",
    "ssh-keys-no-home": "sshAuthorizedKeys for a user whose home does not exist "
                        "(noCreateHome): upstream creates ~/.ssh as the user and fails "
                        "(permission denied); oxcore creates the home as root",
    "existing-user-missing-home": "user in the config that exists but whose home is "
                                  "missing in the root: upstream fails (lstat of the home "
                                  "for relabeling); oxcore succeeds",
    "link-already-there": "link without overwrite where the same link already exists "
                          "(symlink with that target, or hard link to that file): upstream "
                          "leaves it and succeeds; oxcore fails (\"A file exists there\")",
    "overwrite-replaces-dir": "file or link with overwrite: true where a directory is: "
                              "upstream removes the directory (and its contents) and writes; "
                              "oxcore fails (\"is a directory\" / \"Directory not empty\")",
    "same-path-via-link": "two entries that name the same node through a symlinked "
                          "parent (/opt/dirlink/x and /opt/existing-dir/x): upstream "
                          "rejects the config; oxcore writes both, the last one wins",
    "backup-files": "(--compare-backups) /etc/passwd- etc. hold the state before the "
                    "last shadow-tool call; upstream makes more calls (usermod again for "
                    "a password hash), and the password defaults differ",
    "disable-unlinks": "enabled: false: upstream also runs `systemctl --root ROOT disable "
                       "UNIT`, removing existing enablement symlinks (and emptied .wants "
                       "directories); oxcore only writes the preset line",
    "file-replaces-link": "file without contents (and without overwrite) at the path of "
                          "an existing symlink: upstream fails (\"a non regular file exists "
                          "there\"); oxcore replaces the link with an empty file",
    "systemd-path-conflict": "storage node at the path of a unit/dropin the config writes: "
                             "oxcore rejects the config (newer upstream does too); "
                             "Ignition 2.14 accepts it and the unit wins",
}


def _nodes(config):
    s = config.get("storage", {})
    out = {}
    for kind in ("files", "directories", "links"):
        for n in s.get(kind, []):
            out[n["path"]] = (kind, n)
    return out


def _dropins(config):
    out = {}
    for u in config.get("systemd", {}).get("units", []):
        for d in u.get("dropins", []):
            out["/etc/systemd/system/%s.d/%s" % (u["name"], d["name"])] = d
    return out


SKELETON_NODES = set(EXISTING_FILES) | set(EXISTING_DIRS) | set(EXISTING_LINKS) | {
    "/etc", "/opt", "/home", "/var", "/etc/passwd", "/etc/group", "/etc/shadow",
    "/etc/gshadow"}


def classify_diff(d, config):
    kind, path, up, ours = d
    nodes = _nodes(config)
    entry = nodes.get(path)
    pw = config.get("passwd", {})
    for u in pw.get("users", []):
        home = EXISTING_USERS.get(u["name"], (0, 0, None))[2]
        if u.get("shouldExist") is False and home and \
                (path == home or path.startswith(home + "/")):
            return "userdel-remove"
    if kind == "gid" and any(k == "directories" and n.get("mode", 0) & 0o2000
                             and path.startswith(p + "/") for p, (k, n) in nodes.items()):
        # created under a directory that is setgid on oxcore's side only
        return "special-bits"
    if entry and entry[0] == "links" and entry[1].get("hard") and kind != "only-ours":
        return ("hardlink-relative-target" if not entry[1]["target"].startswith("/")
                else "hardlink-order")
    if kind in ("mode", "uid", "gid") and path in EXISTING_HARDLINKS:
        t = nodes.get(EXISTING_HARDLINKS[path])
        if t and t[0] == "files" and "contents" not in t[1]:
            return "file-rewritten-new-inode"
    if kind == "mode" and up and ours:
        u, o = int(up, 8), int(ours, 8)
        if (u & 0o777) == (o & 0o777) and (o & 0o7000) and not (u & 0o7000):
            return "special-bits"
        if entry and entry[0] == "directories" and "mode" not in entry[1] and path in SKELETON_NODES:
            return "existing-dir-mode-kept"
    if kind in ("uid", "gid") and entry:
        key = "user" if kind == "uid" else "group"
        if entry[0] == "links" and not entry[1].get("hard") and key not in entry[1]:
            return "link-owner-from-target"
        if path in SKELETON_NODES and key not in entry[1]:
            return "existing-owner-kept"
    if path in BACKUPS:
        return "backup-files"
    if kind == "data" and path in ("/etc/gshadow", "/etc/shadow"):
        up_l = dict(l.split(":", 1) for l in up.decode().splitlines() if ":" in l)
        our_l = dict(l.split(":", 1) for l in ours.decode().splitlines() if ":" in l)
        causes = set()
        for name in set(up_l) | set(our_l):
            if up_l.get(name) == our_l.get(name):
                continue
            a = (up_l.get(name) or "").split(":")[0]
            b = (our_l.get(name) or "").split(":")[0]
            if path == "/etc/gshadow" and a == "*" and b in ("!", ""):
                causes.add("group-password-default")
            elif path == "/etc/shadow" and a == "*" and b == "!":
                causes.add("user-password-default")
            else:
                causes.add("unexplained")
        return "+".join(sorted(causes))
    if kind == "data" and path == PRESET:
        if [b" ".join(l.split()) for l in up.splitlines()] == \
                [b" ".join(l.split()) for l in ours.splitlines()]:
            return "template-preset-space"
        keep = lambda data: sorted(b" ".join(l.split()) for l in data.splitlines()
                                   if not l.startswith(b"disable "))
        if keep(up) == keep(ours):
            return "disable-only-when-enabled"
    if kind == "only-upstream" and path in (PRESET, os.path.dirname(PRESET)):
        return "disable-only-when-enabled"
    if kind in ("only-upstream",):
        dropins = _dropins(config)
        if path in dropins and dropins[path].get("contents") == "":
            return "empty-dropin"
        if path.endswith(".d") and any(p.startswith(path + "/") and dropins[p].get("contents") == ""
                                       for p in dropins):
            return "empty-dropin"
    if kind == "only-ours":
        for p, (k, n) in nodes.items():
            if k == "directories" and n.get("overwrite") and path.startswith(p + "/"):
                return "dir-overwrite-removes"
        for u in config.get("systemd", {}).get("units", []):
            if u.get("mask") is False and path == "/etc/systemd/system/" + u["name"]:
                return "unmask"
            if u.get("enabled") is False and path.endswith(".wants") or \
                    path.endswith(".wants/" + u["name"]):
                return "disable-unlinks"
    if kind in ("hardlinks", "data") or (kind in ("uid", "gid", "mode") and entry
                                         and entry[0] == "links"):
        hard = [n for k, n in nodes.values() if k == "links" and n.get("hard")]
        if kind == "hardlinks":
            ups = set(map(tuple, up))
            ourss = set(map(tuple, ours))
            involved = {p for g in ups ^ ourss for p in g}
        else:
            involved = {path}
        for p, (k, n) in nodes.items():
            if k == "directories" and n.get("overwrite") and \
                    any(q.startswith(p + "/") for q in involved):
                return "dir-overwrite-removes"
        for a, b in EXISTING_HARDLINKS.items():
            if {a, b} & involved:
                for q in (a, b):
                    t = nodes.get(q)
                    if t and t[0] == "files" and "contents" not in t[1]:
                        return "file-rewritten-new-inode"
        hard = [n for n in hard if n["path"] in involved or n["target"] in involved] or hard
        if hard:
            for n in hard:
                t = nodes.get(n["target"])
                if t and t[0] == "files" and "contents" not in t[1] and n["target"] in SKELETON_NODES:
                    return "file-rewritten-new-inode"
            if any(not n["target"].startswith("/") for n in hard):
                return "hardlink-relative-target"
            return "hardlink-order"
    return "unexplained"


def classify_status(r, config):
    links = config.get("storage", {}).get("links", [])
    if r["up_ok"] and not r["our_ok"]:
        e = r["our_err"]
        if "unrecognized option '--home-dir'" in e:
            return "usermod-home-dir"
        if "path conflicts with systemd unit" in e:
            return "systemd-path-conflict"
        if "is a directory" in e or "Directory not empty" in e:
            return "overwrite-replaces-dir"
        if "$.storage.links." in e:
            i = int(e.split("$.storage.links.")[1].split(":")[0].split(".")[0])
            l = links[i]
            if "A file exists there already" in e and (
                    EXISTING_LINK_TARGETS.get(l["path"]) == os.path.normpath(l["target"]) and not l.get("hard")
                    or l.get("hard") and EXISTING_HARDLINKS.get(l["path"]) == l["target"]):
                return "link-already-there"
            if links[i].get("hard"):
                if not links[i]["target"].startswith("/"):
                    return "hardlink-relative-target"
                return "hardlink-order"
        return "unexplained"
    if r["our_ok"] and not r["up_ok"]:
        e = str(r["up_err"])
        if "groupadd" in e and "already exists" in e:
            return "existing-group"
        if "after symlink chasing, but another entry" in e:
            return "same-path-via-link"
        if "failed to add keys" in e and "permission denied" in e:
            return "ssh-keys-no-home"
        if "failed to create users/groups: lstat" in e:
            return "existing-user-missing-home"
        if "failed to create link" in e and any(
                l.get("hard") and not l["target"].startswith("/") for l in links):
            return "hardlink-relative-target"
        if "A non regular file exists there already" in e and any(
                f["path"] in EXISTING_LINKS and "contents" not in f
                for f in config.get("storage", {}).get("files", [])):
            return "file-replaces-link"
        return "unexplained"
    return None


def status_signature(r):
    if r["up_ok"] and not r["our_ok"]:
        return "status: upstream succeeds, oxcore fails"
    if r["our_ok"] and not r["up_ok"]:
        return "status: oxcore succeeds, upstream fails"
    return None


def diff_signature(d):
    kind, path = d[0], d[1]
    if kind in ("mode", "uid", "gid", "target", "type", "hardlinks"):
        return "%s differs" % kind
    if kind == "data":
        if path in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
                    "/etc/shadow-", "/etc/gshadow-", "/etc/passwd-", "/etc/group-", PRESET):
            return "data of %s" % path
        return "file contents differ"
    return kind


def print_result(r, config, verbose):
    print("=== case %d: %s" % (r["index"], "MATCH" if r["match"] else "MISMATCH"), flush=True)
    if r["match"] and not verbose:
        return
    if r.get("name"):
        print("    config file: %s" % r["name"])
    print("    upstream: %s%s" % ("ok" if r["up_ok"] else "FAILED: %s" % r["up_err"],
                                   " (systemd version probe failed: counted as success)" if r["artefact"] else ""))
    print("    oxcore:   %s" % ("ok" if r["our_ok"] else "FAILED: %s" % r["our_err"]))
    for d, cause in zip(r["diffs"], r["diff_causes"]):
        up, ours = d[2], d[3]
        if d[0] == "data":
            up, ours = short(up), short(ours)
        print("    %-14s %-45s upstream=%s ours=%s  [%s]" % (d[0], d[1], up, ours, cause))
    if r["status_cause"]:
        print("    status mismatch  [%s]" % r["status_cause"])
    if verbose or not r["match"]:
        if not r.get("name"):
            print("    config: %s" % json.dumps(config))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--oxcore", default=DEFAULT_OXCORE)
    ap.add_argument("--ignition", default=DEFAULT_IGNITION)
    ap.add_argument("--config", nargs="+",
                    help="run these config files (e.g. repro/*.ign) instead of generated ones")
    ap.add_argument("--preset", action="store_true",
                    help="with --config: pre-populate the preset file")
    ap.add_argument("--keep", help="copy mismatching cases into this directory")
    ap.add_argument("--workdir", help="where to make the scratch roots (default: /dev/shm or TMPDIR)")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--compare-backups", action="store_true",
                    help="also compare /etc/passwd- /etc/group- /etc/shadow- /etc/gshadow-")
    ap.add_argument("--ignore", default="",
                    help="comma-separated known causes (see CAUSES) to count as matching, "
                         "e.g. to measure what is left once some are fixed")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("needs root: the shadow tools and chown run against the scratch roots")
    for tool, what in ((args.ignition, "upstream Ignition"), (args.oxcore, "oxcore")):
        if not os.access(tool, os.X_OK):
            sys.exit("%s not found at %s" % (what, tool))
    os.umask(0o022)

    base = args.workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    work = tempfile.mkdtemp(prefix="ign-diff-", dir=base)
    os.chmod(work, 0o755)
    stub_bin = os.path.join(work, "stub-bin")
    os.makedirs(stub_bin)
    with open(os.path.join(stub_bin, "setfiles"), "w") as f:
        f.write("#!/bin/sh\n# relabeling stand-in for upstream Ignition: reads the list, does nothing\ncat >/dev/null\nexit 0\n")
    os.chmod(os.path.join(stub_bin, "setfiles"), 0o755)

    if args.config:
        cases = []
        for path in args.config:
            with open(path) as f:
                cases.append((json.load(f), {"preset": args.preset}))
    else:
        rng = random.Random(args.seed)
        cases = [gen_config(rng) for _ in range(args.count)]

    results = []
    sigs = collections.defaultdict(list)
    by_cause = collections.defaultdict(list)
    artefacts = 0
    try:
        for i, (config, extras) in enumerate(cases):
            r = run_case(args, config, extras, work, stub_bin, i)
            r["name"] = args.config[i] if args.config else None
            ignore = set(filter(None, args.ignore.split(",")))
            if ignore:
                left = [c for c in r["diff_causes"] + [r["status_cause"]]
                        if c and not set(c.split("+")) <= ignore]
                r["match"] = r["match"] or not left
            results.append(r)
            artefacts += r["artefact"]
            print_result(r, config, args.verbose)
            s = status_signature(r)
            if s:
                sigs[s].append(i)
            for d in r["diffs"]:
                sig = diff_signature(d)
                if i not in sigs[sig]:
                    sigs[sig].append(i)
            for c in r["diff_causes"] + [r["status_cause"]]:
                for c1 in (c or "").split("+"):
                    if c1 and i not in by_cause[c1]:
                        by_cause[c1].append(i)
            if not r["match"] and args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copytree(r["dir"], os.path.join(args.keep, os.path.basename(r["dir"])),
                                symlinks=True)
            shutil.rmtree(r["dir"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(results)
    matches = sum(r["match"] for r in results)
    both_fail = sum((not r["up_ok"]) and (not r["our_ok"]) for r in results)
    print()
    print("match rate: %d/%d (%.1f%%); both failed in %d; upstream's systemd "
          "version probe failure counted as success in %d"
          % (matches, n, 100.0 * matches / max(n, 1), both_fail, artefacts))
    print("by what differs:")
    for sig, idx in sorted(sigs.items(), key=lambda kv: -len(kv[1])):
        print("  %-45s %3d cases: %s" % (sig, len(idx), " ".join(map(str, idx[:15]))
                                          + (" ..." if len(idx) > 15 else "")))
    print("by cause (a case can have several):")
    for cause, idx in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
        print("  %-28s %3d cases: %s" % (cause, len(idx), " ".join(map(str, idx[:12]))
                                         + (" ..." if len(idx) > 12 else "")))
        if cause in CAUSES:
            print("      %s" % CAUSES[cause])
    only = {}
    for r in results:
        cs = set()
        for c in r["diff_causes"] + [r["status_cause"]]:
            cs.update(x for x in (c or "").split("+") if x)
        if len(cs) == 1:
            c = cs.pop()
            only[c] = only.get(c, 0) + 1
    print("cases with a single cause: " + ", ".join("%s %d" % kv for kv in sorted(only.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results,
                       "configs": [c for c, _ in cases]}, f, indent=1, default=str)
    return 0 if matches == n else 1


if __name__ == "__main__":
    sys.exit(main())
