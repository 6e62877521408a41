#!/usr/bin/env python3
"""Random Butane config generator (fcos, every version) for differential testing.

Usage:
  fuzzgen.py gen  [--seed S] [--count N] DIR
      write N configs DIR/case-NNNN.bu (deterministic for a given seed)
  fuzzgen.py run  [--seed S] [--count N] [--keep DIR] [--show K] REFERENCE CANDIDATE
      generate N configs in memory, run each through both binaries
      (`butane [--pretty] -d FILES config.bu`, cwd = a temp dir, NO_COLOR=1,
      stdin from /dev/null, argv[0] = "butane") and compare stdout, stderr and
      the exit code.  Prints the match rate and the mismatches grouped by a
      rough signature (the first differing line with digits and quoted text
      squashed); with --keep, mismatching configs are written to DIR; --show K
      prints one full example diff for the K largest groups.

The configs are "valid-ish": mostly well-formed, version-appropriate fields
with random values, plus occasional deliberate mistakes (a field from a newer
version, a decimal mode, a relative path, a duplicate path, a bad reference to
a local file).  No mapping ever gets more than one unknown key, because
upstream Butane reports several unused keys of one mapping in random order.
The fixture directory files/ next to this script is passed with -d.
"""
import argparse
import base64
import collections
import difflib
import json
import os
import random
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(HERE, "files")

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0",
            "1.8.0-experimental"]
IGN = {"1.0.0": "3.0.0", "1.1.0": "3.1.0", "1.2.0": "3.2.0", "1.3.0": "3.2.0",
       "1.4.0": "3.3.0", "1.5.0": "3.4.0", "1.6.0": "3.5.0", "1.7.0": "3.6.0",
       "1.8.0-experimental": "3.7.0-experimental"}
LOCAL_FILES = ["hello.txt", "motd.txt", "large.txt", "blob.bin", "script.sh", "ca.pem",
               "units/app.service", "units/override.conf", "ign/merge.ign"]
BAD_LOCAL = ["missing.txt", "../outside", "units", ""]
PATHS = ["/etc/a", "/etc/b", "/etc/motd", "/etc/hostname", "/var/lib/x", "/opt/t/a.txt",
         "/opt/p/y.conf", "/usr/local/bin/tool", "/etc/containers/systemd/users/web.container",
         "/boot/grub2/user.cfg", "/etc/tree/sub", "/var/data"]
WORDS = ["alpha", "beta", "gamma", "delta", "hello", "world", "foo", "bar", "x", "é", "ü",
         "a b", "50%", "key=value", "<tag>", "&amp", "#", ":", "quote\"d", "tab\t", "\\"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.used = set()

    def unique(self, fn, dup_prob=0.05):
        """fn() again until unused (a duplicate is allowed with dup_prob)."""
        for _ in range(20):
            v = fn()
            if v not in self.used or self.p(dup_prob):
                break
        self.used.add(v)
        return v

    # helpers -------------------------------------------------------------
    def p(self, prob):
        return self.r.random() < prob

    def choice(self, xs):
        return self.r.choice(xs)

    def ge(self, v):
        return VERSIONS.index(self.version) >= VERSIONS.index(v)

    def text(self):
        k = self.r.random()
        if k < 0.15:
            return ""
        if k < 0.35:
            return self.choice(WORDS)
        if k < 0.55:  # long compressible
            w = self.choice(["a", "ab", "line\n", "The quick brown fox. "])
            return w * self.r.randint(20, 200)
        if k < 0.65:  # non-ascii heavy
            return "".join(self.choice("éüñ漢字aé ") for _ in range(self.r.randint(5, 60)))
        n = self.r.randint(1, 12)
        sep = self.choice([" ", "\n"])
        s = sep.join(self.choice(WORDS) for _ in range(n))
        if self.p(0.5):
            s += "\n"
        return s

    def mode(self):
        k = self.r.random()
        if k < 0.6:
            return ("oct", self.choice([0o644, 0o600, 0o755, 0o700, 0o640, 0o444, 0o750, 0o4755]))
        if k < 0.8:
            return ("dec", self.choice([420, 384, 493]))
        return ("raw", self.choice(["644", "755", "600", "777"]))  # decimal-looking

    def path(self):
        return self.unique(self.path1)

    def path1(self):
        if self.p(0.02):
            return "etc/relative"
        if self.p(0.4):
            return self.choice(PATHS)
        return "/" + "/".join(self.choice(["etc", "var", "opt", "srv", "usr"]) if i == 0
                              else self.choice(["a", "b", "c", "d.conf", "e.d", "f-g"])
                              for i in range(self.r.randint(1, 4)))

    def maybe_unused(self, m, newer=None):
        """At most one unknown key per mapping."""
        if newer and self.p(0.5):
            k, v = newer
            m[k] = v
        elif self.p(0.03):
            m[self.choice(["bogus", "extra", "Path", "comment"])] = self.choice(["x", 1, True])
        return m

    # sections ------------------------------------------------------------
    def resource(self, where):
        r = {}
        v11 = self.ge("1.1.0")
        kinds = ["inline", "source"]
        if v11:
            kinds.append("local")
        if where in ("merge", "replace", "ca") and not v11:
            kinds = ["source"]
        k = self.choice(kinds)
        if k == "inline":
            if where in ("merge", "replace"):
                ver = IGN[self.version] if self.p(0.8) else self.choice(["3.0.0", "3.4.0", "2.2.0"])
                cfg = {"ignition": {"version": ver}}
                if self.p(0.4):
                    cfg["storage"] = {"files": [{"path": self.path()}]}
                r["inline"] = json.dumps(cfg) if self.p(0.95) else "{bad json"
            else:
                r["inline"] = self.text()
        elif k == "source":
            r["source"] = self.choice(["https://example.com/f", "http://example.com/x.ign",
                                       "data:,hello", "s3://bucket/key", "tftp://host/f",
                                       "gs://b/o", "data:;base64,aGVsbG8="])
        else:
            r["local"] = self.choice(LOCAL_FILES) if self.p(0.96) else self.choice(BAD_LOCAL)
        if self.p(0.02):  # conflict
            other = self.choice([x for x in kinds if x != k] or ["source"])
            r[other] = "https://example.com/c" if other == "source" else "hello.txt" if other == "local" else "c"
        if where == "file" and self.p(0.1):
            r["compression"] = self.choice(["gzip", ""])
        if self.p(0.1):
            r["verification"] = {"hash": "sha512-" + "0" * 128 if self.p(0.8) else "sha256-" + "a" * 64}
        if v11 and r.get("source", "").startswith("http") and self.p(0.2):
            r["http_headers"] = [{"name": "Authorization", "value": "Basic x"}]
        newer = None if v11 else ("http_headers", [{"name": "a", "value": "b"}])
        return self.maybe_unused(r, newer)

    def node(self, m):
        if self.p(0.2):
            m["overwrite"] = self.p(0.5)
        if self.p(0.15):
            m["user"] = {"name": "core"} if self.p(0.5) else {"id": self.r.randint(0, 2000)}
        if self.p(0.1):
            m["group"] = {"name": "wheel"} if self.p(0.5) else {"id": self.r.randint(0, 2000)}

    def file(self):
        f = {"path": self.path()}
        self.node(f)
        if self.p(0.6):
            f["mode"] = self.mode()
        if self.p(0.75):
            f["contents"] = self.resource("file")
        if self.p(0.15):
            f["append"] = [self.resource("file") for _ in range(self.r.randint(1, 2))]
        return self.maybe_unused(f)

    def directory(self):
        d = {"path": self.path()}
        self.node(d)
        if self.p(0.6):
            d["mode"] = self.mode()
        return self.maybe_unused(d)

    def link(self):
        l = {"path": self.path()}
        self.node(l)
        if self.p(0.9) or not self.ge("1.4.0"):
            l["target"] = self.choice(["/etc/a", "../usr/share/zoneinfo/UTC", "b", "/usr/bin/true"])
        if self.p(0.2):
            l["hard"] = self.p(0.5)
        return self.maybe_unused(l)

    def partition(self, i):
        pt = {}
        if self.p(0.7):
            pt["number"] = i + 1 if self.p(0.9) else self.r.randint(0, 6)
        if self.p(0.7):
            pt["label"] = self.choice(["root", "boot", "data", "var", "EFI-SYSTEM", "BIOS-BOOT",
                                       "log", f"p{i}"])
        if self.p(0.5):
            pt["size_mib"] = self.choice([0, 1, 100, 4096, 8192, 10240, 1000000])
        if self.p(0.3):
            pt["start_mib"] = self.choice([0, 1, 2048])
        if self.p(0.1):
            pt["type_guid"] = self.choice(["0FC63DAF-8483-4772-8E79-3D69D8477DE4", "linux", "bogus"])
        if self.p(0.05):
            pt["guid"] = "8A8F0AB9-8E52-4B33-9C0E-4C6B0A1C6B1E"
        if self.p(0.1):
            pt["wipe_partition_entry"] = self.p(0.5)
        if self.ge("1.2.0") and self.p(0.1):
            pt["resize"] = self.p(0.5)
        if self.ge("1.2.0") and self.p(0.1):
            pt["should_exist"] = self.p(0.5)
        newer = None if self.ge("1.2.0") else ("resize", True)
        return self.maybe_unused(pt, newer if self.p(0.3) else None)

    def disk(self):
        d = {"device": self.unique(lambda: self.choice(["/dev/vdb", "/dev/vdc", "/dev/sda", "/dev/sdb",
                                                        "/dev/disk/by-id/coreos-boot-disk"]))}
        if self.p(0.4):
            d["wipe_table"] = self.p(0.5)
        if self.p(0.8):
            d["partitions"] = [self.partition(i) for i in range(self.r.randint(1, 3))]
        return self.maybe_unused(d)

    def filesystem(self):
        formats = ["ext4", "xfs", "vfat"] + (["swap"] if self.ge("1.4.0") else []) + ["btrfs"]
        fs = {"device": self.unique(lambda: "fs:" + self.choice(
            ["/dev/vdb1", "/dev/vdc", "/dev/mapper/data", "/dev/disk/by-label/data",
             "/dev/disk/by-id/dm-name-data", "/dev/disk/by-partlabel/var"]))[3:]}
        if self.p(0.9):
            fs["format"] = self.choice(formats)
        if self.p(0.8) and fs.get("format") != "swap":
            fs["path"] = self.choice(["/var/lib/data", "/var", "/srv/data", "/etc/x", "/var/log",
                                      "/var/lib/my-data.d"])
        if self.p(0.3):
            fs["label"] = self.choice(["data", "var", "root"])
        if self.p(0.3):
            fs["wipe_filesystem"] = self.p(0.5)
        if self.p(0.2):
            fs["options"] = ["-L", "x"]
        if self.ge("1.1.0"):
            if self.p(0.3):
                fs["mount_options"] = self.r.sample(["noatime", "nodev", "ro", "pri=1"], self.r.randint(1, 2))
            if self.p(0.6):
                fs["with_mount_unit"] = self.p(0.85)
        return self.maybe_unused(fs, None if self.ge("1.1.0") else ("with_mount_unit", True))

    def tang(self):
        t = {"url": self.unique(lambda: self.choice(["https://tang.example.com", "http://t2.example.com",
                                                     "http://t3.example.com:7500"])),
             "thumbprint": self.choice(["abc", "REPLACE"])}
        if self.ge("1.5.0") and self.p(0.3):
            t["advertisement"] = '{"payload": "x"}'
        return t

    def luks(self):
        l = {"name": self.unique(lambda: "luks:" + self.choice(["data", "root", "swap", "enc"]))[5:],
             "device": self.choice(["/dev/vdb", "/dev/vdc", "/dev/md/data", "/dev/dasdb"])}
        if self.p(0.3):
            l["key_file"] = self.resource("key")
        if self.p(0.2):
            l["label"] = "luks-" + l["name"]
        if self.p(0.2):
            l["wipe_volume"] = self.p(0.5)
        if self.p(0.2):
            l["options"] = ["--type", "luks2"]
        if self.p(0.6):
            c = {}
            k = self.r.random()
            if k < 0.4:
                c["tpm2"] = self.p(0.8)
            elif k < 0.8:
                c["tang"] = [self.tang() for _ in range(self.r.randint(1, 2))]
                if self.p(0.4):
                    c["threshold"] = self.r.randint(1, 2)
            else:
                c["custom"] = {"pin": "sss", "config": '{"t":1}'}
                if self.p(0.3):
                    c["custom"]["needs_network"] = True
            l["clevis"] = c
        elif self.ge("1.6.0") and self.p(0.3):
            l["cex"] = {"enabled": True}
        if self.ge("1.5.0"):
            if self.p(0.2):
                l["discard"] = self.p(0.5)
            if self.p(0.2):
                l["open_options"] = ["--perf-no_read_workqueue"]
        return self.maybe_unused(l, None if self.ge("1.5.0") else ("discard", True))

    def raid(self):
        r = {"name": self.unique(lambda: "md:" + self.choice(["md0", "data"]))[3:],
             "devices": ["/dev/vdb", "/dev/vdc"]}
        if self.p(0.95) or not self.ge("1.4.0"):
            r["level"] = self.choice(["raid1", "raid0", "raid5", "linear"] if self.p(0.95) else ["raid42"])
        if self.p(0.2):
            r["spares"] = self.r.randint(0, 2)
        return self.maybe_unused(r)

    def tree(self):
        t = {"local": self.choice(["tree", "plaintree"]) if self.p(0.9)
             else self.choice(["hello.txt", "nope", "../tree"])}
        if self.p(0.7):
            t["path"] = self.choice(["/opt/t", "/opt/p", "/etc/tree", "/"])
        if self.ge("1.7.0"):
            if self.p(0.3):
                t["file_mode"] = self.mode()
            if self.p(0.3):
                t["dir_mode"] = self.choice([("oct", 0o755), ("oct", 0o700)])
            if self.p(0.2):
                t["user"] = {"name": "core"}
            if self.p(0.2):
                t["group"] = {"id": 1000}
        return self.maybe_unused(t, None if self.ge("1.7.0") else ("file_mode", ("oct", 0o644)))

    def unit(self):
        u = {"name": self.unique(lambda: "noext" if self.p(0.03) else self.choice(
            ["a.service", "b.service", "app.service", "var-lib-data.mount", "x.timer",
             "docker.socket", "c.path", "d.target"]))}
        if self.p(0.4):
            u["enabled"] = self.p(0.6)
        if self.p(0.1):
            u["mask"] = self.p(0.5)
        if self.ge("1.5.0") and self.p(0.2):
            u["contents_local"] = self.choice(["units/app.service", "units/missing.service"])
        elif self.p(0.6):
            u["contents"] = self.choice([
                "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n",
                "[Unit]\nDescription=no install\n", "[Service]\nType=oneshot\n"]
                if self.p(0.97) else ["[Unit\nbad"])
        if self.p(0.3):
            ds = []
            for _ in range(self.r.randint(1, 2)):
                d = {"name": self.unique(lambda: "dropin:" + u["name"] + ":" + self.choice(
                    ["10-a.conf", "override.conf", "20-b.conf"]) if self.p(0.97) else "noext").split(":")[-1]}
                if self.ge("1.5.0") and self.p(0.3):
                    d["contents_local"] = "units/override.conf"
                elif self.p(0.8):
                    d["contents"] = "[Service]\nEnvironment=A=1\n"
                ds.append(d)
            u["dropins"] = ds
        return self.maybe_unused(u, None if self.ge("1.5.0") else ("contents_local", "units/app.service"))

    def quadlet(self):
        q = {"name": self.choice(["web.container", "web@.container", "web@8080.container", "db.volume",
                                  "net.network", "k.kube", "bad.service"])}
        if self.p(0.5):
            q["rootful"] = self.p(0.5)
        if self.p(0.4):
            q["contents"] = "[Container]\nImage=quay.io/x/y\n"
        elif self.p(0.2):
            q["contents_local"] = "units/web.container"
        if self.p(0.3):
            q["dropins"] = [{"name": "port.conf", "contents": "[Container]\nPublishPort=80\n"}]
        return q

    def user(self):
        u = {"name": self.unique(lambda: "user:" + self.choice(["core", "alice", "bob"]))[5:]}
        if self.p(0.5):
            u["ssh_authorized_keys"] = self.r.sample(
                ["ssh-ed25519 AAAAone a@b", "ssh-rsa AAAAtwo c@d",
                 "ssh-ed25519 AAAAthree e@f"], self.r.randint(1, 2))
        if self.ge("1.5.0") and self.p(0.25):
            u["ssh_authorized_keys_local"] = self.r.sample(["keys.pub", "keys-crlf.pub", "missing.pub"],
                                                           self.r.randint(1, 2))
        for k, vals in (("uid", [1000, 1001, 0]), ("password_hash", ["$y$j9T$x", ""]),
                        ("home_dir", ["/home/x"]), ("shell", ["/bin/bash"]), ("gecos", ["G"]),
                        ("groups", [["wheel"], ["wheel", "docker"]]), ("system", [True]),
                        ("no_create_home", [True]), ("primary_group", ["users"])):
            if self.p(0.12):
                u[k] = self.choice(vals)
        if self.ge("1.2.0") and self.p(0.05):
            u["should_exist"] = self.p(0.5)
        return self.maybe_unused(u, None if self.ge("1.5.0") else ("ssh_authorized_keys_local", ["keys.pub"]))

    def boot_device(self):
        b = {}
        layouts = ["x86_64", "aarch64", "ppc64le"] + (["s390x-eckd", "s390x-zfcp", "s390x-virt"]
                                                     if self.ge("1.6.0") else [])
        if self.p(0.6):
            b["layout"] = self.choice(layouts + ["sparc"] if self.p(0.05) else layouts)
        if self.p(0.8):
            l = {}
            k = self.r.random()
            if k < 0.4:
                l["tpm2"] = self.p(0.9)
            elif k < 0.7:
                l["tang"] = [self.tang() for _ in range(self.r.randint(1, 2))]
                if self.p(0.3):
                    l["threshold"] = self.r.randint(1, 2)
            elif self.ge("1.6.0") and k < 0.85:
                l["cex"] = {"enabled": self.p(0.9)}
            if self.ge("1.5.0") and self.p(0.3):
                l["discard"] = self.p(0.5)
            if self.ge("1.6.0") and (b.get("layout", "").startswith("s390x-") and self.p(0.8) or self.p(0.1)):
                l["device"] = self.choice(["/dev/dasda", "/dev/sdb", "/dev/vda"])
            b["luks"] = l
        if self.p(0.4):
            b["mirror"] = {"devices": self.r.sample(["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/vda"],
                                                    self.choice([1, 2, 2, 3]))}
        return b

    def config(self):
        self.version = self.choice(VERSIONS)
        c = {"variant": "fcos", "version": self.version}
        if self.p(0.3):
            ig = {}
            if self.p(0.5):
                cfg = {}
                if self.p(0.6):
                    cfg["merge"] = [self.resource("merge") for _ in range(self.r.randint(1, 2))]
                if self.p(0.4):
                    cfg["replace"] = self.resource("replace")
                ig["config"] = cfg
            if self.p(0.3):
                ig["security"] = {"tls": {"certificate_authorities": [self.resource("ca")]}}
            if self.p(0.3):
                ig["timeouts"] = {"http_total": self.r.randint(1, 100)}
            if self.ge("1.1.0") and self.p(0.2):
                ig["proxy"] = {"http_proxy": "http://proxy:8080", "no_proxy": ["localhost"]}
            c["ignition"] = self.maybe_unused(ig, None if self.ge("1.1.0") else ("proxy", {"http_proxy": "http://p"}))
        st = {}
        for key, fn, prob in (("files", self.file, 0.6), ("directories", self.directory, 0.2),
                              ("links", self.link, 0.2), ("disks", self.disk, 0.25),
                              ("filesystems", self.filesystem, 0.3), ("raid", self.raid, 0.08)):
            if self.p(prob):
                st[key] = [fn() for _ in range(self.r.randint(1, 3))]
        if self.ge("1.2.0") and self.p(0.25):
            st["luks"] = [self.luks() for _ in range(self.r.randint(1, 2))]
        if self.ge("1.1.0") and self.p(0.2):
            st["trees"] = [self.tree() for _ in range(self.r.randint(1, 2))]
        if st:
            c["storage"] = self.maybe_unused(st, None if self.ge("1.1.0") else ("trees", [{"local": "tree"}]))
        if self.p(0.3):
            pw = {"users": [self.user() for _ in range(self.r.randint(1, 2))]}
            if self.p(0.2):
                pw["groups"] = [{"name": "g", "gid": 1500}]
            c["passwd"] = pw
        if self.p(0.4):
            sd = {"units": [self.unit() for _ in range(self.r.randint(1, 3))]}
            if self.ge("1.8.0-experimental") and self.p(0.5):
                sd["quadlets"] = [self.quadlet() for _ in range(self.r.randint(1, 2))]
            c["systemd"] = sd
        if self.ge("1.4.0") and self.p(0.15):
            c["kernel_arguments"] = {"should_exist": ["console=ttyS0"], "should_not_exist": ["quiet"]}
        if self.ge("1.3.0") and self.p(0.25):
            c["boot_device"] = self.boot_device()
        if self.ge("1.5.0") and self.p(0.15):
            users = [{"name": "root", "password_hash": "grub.pbkdf2.sha512.10000.AA.BB"}]
            if self.p(0.3):
                users.append({"name": "admin"} if self.p(0.3) else
                             {"name": "admin", "password_hash": "grub.pbkdf2.x"})
            c["grub"] = {"users": users}
        return c


# YAML emitter ------------------------------------------------------------------
PLAIN_OK = re.compile(r"^[A-Za-z/][A-Za-z0-9/._@=:+-]*$")
YAML_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def scalar(v, r, indent):
    if isinstance(v, tuple):  # mode
        kind, m = v
        if kind == "oct":
            return "0" + format(m, "o") if r.random() < 0.85 else "0o" + format(m, "o")
        return str(m)
    if isinstance(v, bool):
        k = r.random()
        if k < 0.9:
            return "true" if v else "false"
        return r.choice(["True", "yes", "on", "Y"] if v else ["False", "no", "off", "N"])
    if isinstance(v, int):
        k = r.random()
        if k < 0.9 or v < 0:
            return str(v)
        return hex(v) if k < 0.95 else f"{v}.0"
    s = v
    if s and indent and r.random() < 0.03:  # not for variant/version
        return "!!binary " + base64.b64encode(s.encode()).decode()
    if "\n" in s and s.endswith("\n") and not s.startswith((" ", "\n")) and "\t" not in s \
            and all(l == l.rstrip() for l in s.split("\n")) and r.random() < 0.6:
        pad = " " * (indent + 2)
        body = "\n".join(pad + l if l else "" for l in s[:-1].split("\n"))
        return "|\n" + body
    if PLAIN_OK.match(s) and s.lower() not in YAML_SPECIAL and ": " not in s and r.random() < 0.8:
        return s
    if "'" not in s and "\n" not in s and "\t" not in s and "\\" not in s and r.random() < 0.3:
        return "'" + s + "'"
    return json.dumps(s, ensure_ascii=r.random() < 0.3)


def emit(v, r, indent=0, anchors=None):
    """Block YAML for a dict; lines list.  Now and then a value is written
    as a null, a mapping gets an anchor, or a later mapping under the same
    key is written as an alias of an earlier one."""
    if anchors is None:
        anchors = collections.defaultdict(list)
    out = []
    pad = " " * indent
    items = list(v.items())
    if indent and r.random() < 0.3:  # key order does not matter below the root
        r.shuffle(items)
    for k, x in items:
        if r.random() < 0.02:
            out.append(f"{pad}# a comment")
        if isinstance(x, list) and x and all(isinstance(i, str) and PLAIN_OK.match(i) for i in x) \
                and r.random() < 0.3:  # flow sequence
            out.append(f"{pad}{k}: [" + ", ".join(x) + "]")
            continue
        if indent and r.random() < 0.01:
            out.append(f"{pad}{k}:" + r.choice(["", " ~", " null"]))
            continue
        if isinstance(x, dict):
            if not x:
                out.append(f"{pad}{k}: {{}}")
            elif anchors[k] and r.random() < 0.1:
                out.append(f"{pad}{k}: *{r.choice(anchors[k])}")
            else:
                anchor = ""
                if r.random() < 0.05:
                    name = f"a{sum(len(x) for x in anchors.values())}"
                    anchors[k].append(name)
                    anchor = " &" + name
                out.append(f"{pad}{k}:{anchor}")
                out.extend(emit(x, r, indent + 2, anchors))
        elif isinstance(x, list):
            if not x:
                out.append(f"{pad}{k}: []")
                continue
            out.append(f"{pad}{k}:")
            for item in x:
                if isinstance(item, dict) and item:
                    sub = emit(item, r, indent + 4, anchors)
                    out.append(f"{pad}  - " + sub[0].lstrip())
                    out.extend(sub[1:])
                elif isinstance(item, dict):
                    out.append(f"{pad}  - {{}}")
                else:
                    out.append(f"{pad}  - {scalar(item, r, indent + 2)}")
        else:
            out.append(f"{pad}{k}: {scalar(x, r, indent)}")
    return out


def generate(seed, i):
    g = Gen(f"{seed}-{i}")
    c = g.config()
    return "\n".join(emit(c, g.r)) + "\n", g.p(0.3)


def run(binary, text, pretty):
    argv = ["butane"] + (["--pretty"] if pretty else []) + ["-d", FILES, "config.bu"]
    env = dict(os.environ, NO_COLOR="1")
    with tempfile.TemporaryDirectory(prefix="butane-fuzz-") as d:
        with open(os.path.join(d, "config.bu"), "w", encoding="utf-8") as f:
            f.write(text)
        p = subprocess.run(argv, executable=binary, cwd=d, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
    dec = lambda b: b.decode("utf-8", "surrogateescape").replace(FILES, "FILESDIR")
    return dec(p.stdout), dec(p.stderr), p.returncode


def signature(want, got):
    for label, w, g in (("stderr", want[1], got[1]), ("stdout", want[0], got[0])):
        if w != g:
            wl, gl = w.split("\n"), g.split("\n")
            for a, b in zip(wl + [""] * len(gl), gl + [""] * len(wl)):
                if a != b:
                    first = a if a else "+" + b
                    first = re.sub(r'"(?:[^"\\]|\\.)*"', '"…"', first)
                    first = re.sub(r"\d+", "N", first)
                    return f"{label}: {first[:160]}"
    return f"exit {want[2]} vs {got[2]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["gen", "run"])
    ap.add_argument("args", nargs="+")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--keep")
    ap.add_argument("--show", type=int, default=0)
    a = ap.parse_args()
    if a.mode == "gen":
        os.makedirs(a.args[0], exist_ok=True)
        for i in range(a.count):
            text, _ = generate(a.seed, i)
            with open(os.path.join(a.args[0], f"case-{i:04d}.bu"), "w", encoding="utf-8") as f:
                f.write(text)
        return
    ref, cand = a.args
    groups = collections.defaultdict(list)
    ok = 0
    outcomes = collections.Counter()
    for i in range(a.count):
        text, pretty = generate(a.seed, i)
        want = run(ref, text, pretty)
        got = run(cand, text, pretty)
        outcomes["exit %d" % want[2]] += 1
        if want == got:
            ok += 1
            continue
        sig = signature(want, got)
        groups[sig].append((i, text, want, got))
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            with open(os.path.join(a.keep, f"case-{i:04d}.bu"), "w", encoding="utf-8") as f:
                f.write(text)
    print(f"reference outcomes: {dict(outcomes)}")
    print(f"{ok}/{a.count} matched ({100.0 * ok / a.count:.1f}%)")
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(items):4d}  {sig}   e.g. case {items[0][0]}")
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:a.show]:
        i, text, want, got = items[0]
        print(f"\n=== case {i} ({sig})\n{text}")
        for label, w, g in (("stdout", want[0], got[0]), ("stderr", want[1], got[1])):
            if w != g:
                print("\n".join(difflib.unified_diff(w.split("\n"), g.split("\n"),
                                                     "expected " + label, "actual " + label, lineterm="")))
        if want[2] != got[2]:
            print(f"exit: expected {want[2]}, got {got[2]}")
    sys.exit(0 if ok == a.count else 1)


if __name__ == "__main__":
    main()
