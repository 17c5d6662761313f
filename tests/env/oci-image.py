#!/usr/bin/env python3
"""Writes a one-layer OCI image, as an image-layout tar archive, from host files.

There is no image registry and no Docker daemon here: tests/env/images.sh uses
this to make the images a real kubelet runs, and `ctr images import` loads them
into containerd. Python 3 standard library only.

  oci-image.py --name ghcr.io/pixelpipe/pixelpipe-worker:0.1.0 --out worker.tar \\
      --entrypoint /usr/local/bin/pixelpipe-worker --user 65532:65532 --expose 9090 \\
      --file target/release/pixelpipe-worker:/usr/local/bin/pixelpipe-worker \\
      --libs-of /usr/local/bin/pixelpipe-worker --distroless-base

The archive is reproducible: the same inputs give the same bytes. Tar entries
are sorted, every mtime is 0, owners are 0:0 unless stated, modes are
normalized (0755 for a file with any execute bit, else 0644), the gzip header
has no name and mtime 0, the JSON is canonical, and the config's timestamps
are the epoch.

--distroless-base adds what the runtime stage of worker/Dockerfile and
operator/Dockerfile (gcr.io/distroless/cc-debian12:nonroot) has that the
binaries use: /etc/passwd and /etc/group with root, nobody and nonroot
(65532), /etc/nsswitch.conf, the host's CA bundle, /tmp (1777), /root and
/home/nonroot (owned by 65532). --libs-of adds the shared libraries an ELF
needs, as `ldd` on the host resolves them (the host is Debian 12, like
distroless' debian12), at the paths ldd prints, with the content of the file
behind any symlinks.

index.json names the image with the annotations `ctr images import` reads:
io.containerd.image.name (the full name) and org.opencontainers.image.ref.name
(the tag), so the import is named exactly --name.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

EPOCH = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SSL_ENV = "SSL_CERT_FILE=" + CA_BUNDLE

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

NONROOT = 65532

# As in distroless (base-debian12): root has no shell either.
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
# glibc 2.36 has the files and dns backends built in: no libnss_* to copy.
NSSWITCH = (
    "passwd:         files\n"
    "group:          files\n"
    "shadow:         files\n"
    "hosts:          files dns\n"
    "networks:       files\n"
    "protocols:      files\n"
    "services:       files\n"
)


def die(msg):
    print("oci-image.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self):
        self.out.flush()

    def digest(self):
        return "sha256:" + self.sha.hexdigest()


class Layer:
    """The entries of the layer, by absolute path; parents are implied."""

    def __init__(self):
        self.entries = {}

    def _norm(self, path):
        if not path.startswith("/"):
            die(f"image path {path!r} is not absolute")
        norm = os.path.normpath(path)
        if norm == "/":
            die("cannot add the root directory")
        return norm

    def _parents(self, path):
        parent = os.path.dirname(path)
        while parent != "/":
            if parent in self.entries:
                if self.entries[parent]["type"] != "dir":
                    die(f"{parent} is a file and the parent of another entry")
            else:
                self.entries[parent] = dict(type="dir", mode=0o755, uid=0, gid=0)
            parent = os.path.dirname(parent)

    def dir(self, path, mode=0o755, uid=0, gid=0):
        path = self._norm(path)
        self._parents(path)
        self.entries[path] = dict(type="dir", mode=mode, uid=uid, gid=gid)

    def file(self, path, src=None, data=None, mode=None, uid=0, gid=0):
        path = self._norm(path)
        old = self.entries.get(path)
        if old is not None and old["type"] == "dir":
            die(f"{path} is both a directory and a file")
        if src is not None:
            real = os.path.realpath(src)
            if not os.path.isfile(real):
                die(f"{src} is not a regular file")
            if mode is None:
                mode = 0o755 if os.stat(real).st_mode & 0o111 else 0o644
            entry = dict(type="file", src=real, size=os.path.getsize(real))
        else:
            entry = dict(type="file", data=data, size=len(data))
        entry.update(mode=0o644 if mode is None else mode, uid=uid, gid=gid)
        self._parents(path)
        self.entries[path] = entry

    def write(self, out):
        """Writes the uncompressed layer tar to the file object out."""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            # A parent sorts before its children: it is a prefix of them.
            for path in sorted(self.entries):
                e = self.entries[path]
                info = tarfile.TarInfo(path.lstrip("/"))
                info.mtime = 0
                info.mode = e["mode"]
                info.uid, info.gid = e["uid"], e["gid"]
                info.uname = info.gname = ""
                if e["type"] == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    continue
                info.type = tarfile.REGTYPE
                info.size = e["size"]
                if "data" in e:
                    tar.addfile(info, io.BytesIO(e["data"]))
                else:
                    with open(e["src"], "rb") as f:
                        tar.addfile(info, f)
                    if os.path.getsize(e["src"]) != e["size"]:
                        die(f"{e['src']} changed while it was read")


def shared_libs(src):
    """The paths `ldd` prints for the libraries of the ELF src, loader included."""
    proc = subprocess.run(
        ["ldd", src], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    if proc.returncode != 0:
        die(f"ldd {src} failed:\n{out}")
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("linux-vdso") or line.startswith("linux-gate"):
            continue
        if "not found" in line:
            die(f"ldd {src}: {line}")
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(
            r"^(/\S+) \(0x[0-9a-f]+\)$", line
        )
        if not m:
            die(f"ldd {src}: cannot parse {line!r}")
        libs.append(m.group(1))
    return libs


def parse_args():
    p = argparse.ArgumentParser(
        description="Write a one-layer OCI image-layout tar archive from host files."
    )
    p.add_argument("--name", required=True, help="full image name, registry/repo:tag")
    p.add_argument("--out", required=True, help="archive to write")
    p.add_argument(
        "--entrypoint",
        action="append",
        required=True,
        help="the program, then (repeated) its arguments",
    )
    p.add_argument("--cmd", action="append", default=[], help="config.Cmd (repeat)")
    p.add_argument("--user", default="", help="config.User, e.g. 65532:65532")
    p.add_argument("--workdir", default="", help="config.WorkingDir")
    p.add_argument(
        "--expose", action="append", default=[], help="a TCP port (repeat; PORT[/udp])"
    )
    p.add_argument("--env", action="append", default=[], help="extra KEY=VALUE (repeat)")
    p.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="HOST:IMAGE",
        help="copy the host file HOST to the absolute path IMAGE (repeat)",
    )
    p.add_argument(
        "--libs-of",
        action="append",
        default=[],
        metavar="IMAGE",
        help="add the shared libraries of the --file at IMAGE (repeat)",
    )
    p.add_argument(
        "--distroless-base",
        action="store_true",
        help="add the users, CA bundle and directories of distroless cc-debian12:nonroot",
    )
    return p.parse_args()


def main():
    args = parse_args()

    name = args.name
    # The tag: after the last ':' that is not part of a registry host:port.
    last = name.rsplit("/", 1)[-1]
    if "@" in name or ":" not in last:
        die(f"--name {name!r} needs a tag, as in registry/repository:tag")
    tag = last.rsplit(":", 1)[1]

    layer = Layer()
    if args.distroless_base:
        layer.file("/etc/passwd", data=PASSWD.encode())
        layer.file("/etc/group", data=GROUP.encode())
        layer.file("/etc/nsswitch.conf", data=NSSWITCH.encode())
        if os.path.isfile(CA_BUNDLE):
            layer.file(CA_BUNDLE, src=CA_BUNDLE, mode=0o644)
        else:
            print(f"oci-image.py: warning: no {CA_BUNDLE} on this host", file=sys.stderr)
        layer.dir("/tmp", mode=0o1777)
        layer.dir("/root", mode=0o700)
        layer.dir("/home/nonroot", mode=0o700, uid=NONROOT, gid=NONROOT)

    sources = {}
    for spec in args.file:
        src, sep, dest = spec.rpartition(":")
        if not sep or not src or not dest:
            die(f"--file {spec!r}: expected HOST:IMAGE")
        layer.file(dest, src=src)
        sources[os.path.normpath(dest)] = src

    for dest in args.libs_of:
        src = sources.get(os.path.normpath(dest))
        if src is None:
            die(f"--libs-of {dest}: not the image path of a --file")
        for lib in shared_libs(src):
            if os.path.normpath(lib) not in sources:
                layer.file(lib, src=lib)

    ports = {}
    for port in args.expose:
        if "/" not in port:
            port += "/tcp"
        if not re.match(r"^[0-9]+/(tcp|udp|sctp)$", port):
            die(f"--expose {port!r}: expected PORT or PORT/PROTO")
        ports[port] = {}

    out_dir = os.path.dirname(os.path.abspath(args.out))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".oci-image.") as tmp:
        layer_path = os.path.join(tmp, "layer.tar.gz")
        with open(layer_path, "wb") as raw:
            compressed = HashingWriter(raw)
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, compresslevel=6, mtime=0
            ) as gz:
                uncompressed = HashingWriter(gz)
                layer.write(uncompressed)
        layer_digest, layer_size = compressed.digest(), compressed.size
        diff_id = uncompressed.digest()

        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": EPOCH,
            "config": {
                "Env": [PATH_ENV, SSL_ENV] + args.env,
                "Entrypoint": args.entrypoint,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {
                    "created": EPOCH,
                    "created_by": "tests/env/oci-image.py "
                    + " ".join(os.path.normpath(d) for d in sorted(sources)),
                    "comment": "one layer from host files, no registry",
                }
            ],
        }
        if args.cmd:
            config["config"]["Cmd"] = args.cmd
        if args.user:
            config["config"]["User"] = args.user
        if args.workdir:
            config["config"]["WorkingDir"] = args.workdir
        if ports:
            config["config"]["ExposedPorts"] = ports
        config_bytes = canonical_json(config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()

        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {
                "mediaType": MT_CONFIG,
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": MT_LAYER, "digest": layer_digest, "size": layer_size}
            ],
        }
        manifest_bytes = canonical_json(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()

        index = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }

        def blob(digest):
            return "blobs/sha256/" + digest.split(":", 1)[1]

        members = {
            "blobs/": None,
            "blobs/sha256/": None,
            blob(config_digest): config_bytes,
            blob(manifest_digest): manifest_bytes,
            blob(layer_digest): layer_path,
            "index.json": canonical_json(index),
            "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        }
        tmp_out = os.path.join(tmp, "image.tar")
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            for member in sorted(members):
                content = members[member]
                info = tarfile.TarInfo(member.rstrip("/"))
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if content is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif isinstance(content, bytes):
                    info.mode, info.size = 0o644, len(content)
                    tar.addfile(info, io.BytesIO(content))
                else:
                    info.mode, info.size = 0o644, os.path.getsize(content)
                    with open(content, "rb") as f:
                        tar.addfile(info, f)
        os.chmod(tmp_out, 0o644)
        os.replace(tmp_out, args.out)

    print(f"{args.out}: {name} manifest {manifest_digest}", file=sys.stderr)


if __name__ == "__main__":
    main()
