"""Test helper: a real evidence PKI, a real TSA, a genuine bundle and a corpus of hostile ones, made at test time.

The PKI is the project's own (provision.pki: a database CA with client certificates, a separate
evidence CA with its signer, CRL and the TSA's certificate); the TSA is provision.tsa on loopback
(``openssl ts`` behind HTTP). Each forgery is what an attacker (or a broken tool) could hand an
auditor; ``Case.expect`` is a word both verifiers' reasons must contain.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evidence import timestamp
from evidence.bundle import json_bytes, write_bundle
from provision import pki

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "evidence" / "offline-verify.sh"
USERS = {"app": "app_user", "auditor": "auditor"}


@dataclass
class Lab:
    """What an auditor holds (evidence CA, CRL) and what the signing side holds (keys, TSA)."""
    layout: pki.PkiLayout
    tsa_url: str
    work: Path

    @property
    def ca(self) -> Path:
        return self.layout.evidence_ca_cert

    def signer_key(self) -> ed25519.Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.layout.signer("key").read_bytes(), None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key

    def stamp(self, signature: bytes) -> bytes:
        return timestamp.request(signature, self.tsa_url)


def start_tsa(layout: pki.PkiLayout) -> tuple[subprocess.Popen[str], str]:
    cert, key = pki.issue_tsa(layout)
    proc = subprocess.Popen([sys.executable, "-m", "provision.tsa", "--listen", "127.0.0.1:0", "--cert", str(cert),
                             "--key", str(key), "--dir", str(layout.root / "tsa-state")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), f"the TSA did not start: {line!r}"
    return proc, f"http://127.0.0.1:{int(line.rsplit(':', 1)[1])}/"


def make_pki(root: Path) -> pki.PkiLayout:
    layout = pki.PkiLayout(root)
    pki.issue_all(layout, server_name="db.ztm.lab", server_address="10.77.9.10", users=USERS)
    return layout


def content() -> dict[str, bytes]:
    """The files of a small but complete-looking bundle (every file kind an auditor reads)."""
    return {
        "run.json": json_bytes({"schema_version": 1, "finished": "2026-01-01T00:00:00Z", "exit_status": 1}),
        "results.json": json_bytes({"tests": [{"nodeid": "controls/test_tls.py::test_only_tls13",
                                               "outcome": "failed"}], "controls": [{"id": "ZTM-TLS-1",
                                                                                   "status": "failed"}]}),
        "catalog.json": json_bytes({"controls": [{"id": "ZTM-TLS-1"}]}),
        "oscal/assessment-results.json": json_bytes({"assessment-results": {"uuid": "x"}}),
        "report.html": b"<html><body>ZTM-TLS-1 failed</body></html>\n",
        "junit.xml": b'<?xml version="1.0"?><testsuites><testsuite name="x"/></testsuites>\n',
        "evidence/ZTM-TLS-1/test_only_tls13/scan-matrix.json": json_bytes({"data": {"tls1.2": "accepted"}}),
        "evidence/ZTM-TLS-1/test_only_tls13/note.txt": b"scanned from the assessor host\n",
    }


def sign(lab: Lab, out: Path, files: dict[str, bytes] | None = None, *, key: ed25519.Ed25519PrivateKey | None = None,
         cert_pem: bytes | None = None, stamp: bool = True) -> Path:
    write_bundle(out, content() if files is None else files, key or lab.signer_key(),
                 lab.layout.signer("pem").read_bytes() if cert_pem is None else cert_pem,
                 lab.stamp if stamp else None)
    return out


# -- raw archive surgery ---------------------------------------------------------------------------------
def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]


def pack(out: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info = _copy(info)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def _copy(info: tarfile.TarInfo) -> tarfile.TarInfo:
    new = tarfile.TarInfo(info.name)
    for attr in ("size", "mtime", "mode", "type", "linkname", "uid", "gid", "devmajor", "devminor"):
        setattr(new, attr, getattr(info, attr))
    return new


def entry(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 5
    return info, data


def replaced(genuine: Path, out: Path, name: str, data: bytes) -> Path:
    return pack(out, [(m, data if m.name == f"bundle/{name}" else d) for m, d in members(genuine)])


def flipped(data: bytes, at: int | None = None) -> bytes:
    raw = bytearray(data)
    raw[len(raw) // 2 if at is None else at] ^= 0x01
    return bytes(raw)


def resigned_manifest(genuine: Path, out: Path, lab: Lab, manifest: bytes,
                      key: ed25519.Ed25519PrivateKey | None = None) -> Path:
    """A bundle whose manifest is ``manifest``, correctly signed (and time-stamped) by ``key``."""
    signature = (key or lab.signer_key()).sign(manifest)
    files = {m.name: d for m, d in members(genuine)}
    files["bundle/MANIFEST.sha256"], files["bundle/MANIFEST.sha256.sig"] = manifest, signature
    files["bundle/MANIFEST.sha256.tsr"] = lab.stamp(signature)
    return pack(out, [entry(n, d) for n, d in sorted(files.items())])


# -- certificates an attacker can get -------------------------------------------------------------------
def _leaf(issuer: x509.Certificate, issuer_key, public, *, eku=ExtendedKeyUsageOID.CODE_SIGNING,
          days: tuple[float, float] = (-1, 30), ca: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, pki.SIGNER_NAME)]))
            .issuer_name(issuer.subject).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, ca, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False)
            .sign(issuer_key, hashes.SHA256() if not isinstance(issuer_key, ed25519.Ed25519PrivateKey) else None))


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def evidence_issuer(lab: Lab) -> pki.Issuer:
    return pki.ensure_evidence_ca(lab.layout)


def database_issuer(lab: Lab) -> pki.Issuer:
    return pki.ensure_ca(lab.layout)


# -- the corpus -----------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    make: Callable[[Lab, Path, Path], Path]  # (lab, genuine bundle, folder) -> hostile bundle
    expect: str  # a word both verifiers' reasons contain
    ca: Callable[[Lab], Path] = field(default=lambda lab: lab.ca)
    extra: Callable[[Lab, Path], list[str]] = field(default=lambda lab, folder: [])  # (lab, case folder)
    code: int = 1

    def folder(self, lab: Lab) -> Path:
        return lab.work / f"case{CASES.index(self):02d}"


def _forge_public_key_block(lab: Lab, genuine: Path, d: Path) -> Path:
    forger = ed25519.Ed25519PrivateKey.generate()
    files = content()
    files["results.json"] = files["results.json"].replace(b'"failed"', b'"passed"')
    block = forger.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return sign(lab, d / "b.tar.gz", files, key=forger, cert_pem=block + lab.layout.signer("pem").read_bytes())


def _client_minted_signer(lab: Lab, genuine: Path, d: Path) -> Path:
    """An app client-certificate holder mints a 'signer' under its own certificate (checked against the CA
    that issued the client certificate, as an auditor given the wrong CA would)."""
    client_cert = x509.load_pem_x509_certificate(lab.layout.client("app", "pem").read_bytes())
    client_key = serialization.load_pem_private_key(lab.layout.client("app", "key").read_bytes(), None)
    forger = ed25519.Ed25519PrivateKey.generate()
    return sign(lab, d / "b.tar.gz", key=forger, cert_pem=pem(_leaf(client_cert, client_key, forger.public_key()),
                                                              client_cert))


def _database_ca_signer(lab: Lab, genuine: Path, d: Path) -> Path:
    db = database_issuer(lab)
    forger = ed25519.Ed25519PrivateKey.generate()
    return sign(lab, d / "b.tar.gz", key=forger, cert_pem=pem(_leaf(db.cert, db.key, forger.public_key())))


def _expired_no_timestamp(lab: Lab, genuine: Path, d: Path) -> Path:
    ev = evidence_issuer(lab)
    key = ed25519.Ed25519PrivateKey.generate()
    return sign(lab, d / "b.tar.gz", key=key, cert_pem=pem(_leaf(ev.cert, ev.key, key.public_key(), days=(-30, -1))),
                stamp=False)


def _expired_at_timestamp(lab: Lab, genuine: Path, d: Path) -> Path:
    ev = evidence_issuer(lab)
    key = ed25519.Ed25519PrivateKey.generate()
    return sign(lab, d / "b.tar.gz", key=key, cert_pem=pem(_leaf(ev.cert, ev.key, key.public_key(), days=(-30, -1))))


def _revoked(lab: Lab, genuine: Path, d: Path) -> Path:
    """Signed by the lab signer, which is then rotated out (revoked as superseded on the evidence CRL)."""
    out = sign(lab, d / "b.tar.gz")
    shutil.copytree(lab.layout.root, d / "pki")
    pki.rotate_signer(pki.PkiLayout(d / "pki"))
    return out


def _wrong_eku(lab: Lab, genuine: Path, d: Path) -> Path:
    ev = evidence_issuer(lab)
    key = ed25519.Ed25519PrivateKey.generate()
    return sign(lab, d / "b.tar.gz", key=key,
                cert_pem=pem(_leaf(ev.cert, ev.key, key.public_key(), eku=ExtendedKeyUsageOID.CLIENT_AUTH)))


def _manifest_of(genuine: Path) -> bytes:
    return next(d for m, d in members(genuine) if m.name == "bundle/MANIFEST.sha256") or b""


def _duplicate_manifest_line(lab: Lab, genuine: Path, d: Path) -> Path:
    lines = _manifest_of(genuine).decode().splitlines(keepends=True)
    victim = next(i for i, ln in enumerate(lines) if ln.endswith("  results.json\n"))
    lines.insert(victim, "0" * 64 + "  results.json\n")
    return resigned_manifest(genuine, d / "b.tar.gz", lab, "".join(lines).encode())


def _crlf_manifest(lab: Lab, genuine: Path, d: Path) -> Path:
    return resigned_manifest(genuine, d / "b.tar.gz", lab, _manifest_of(genuine).replace(b"\n", b"\r\n"))


def _dot_slash_manifest(lab: Lab, genuine: Path, d: Path) -> Path:
    return resigned_manifest(genuine, d / "b.tar.gz", lab, _manifest_of(genuine).replace(b"  ", b"  ./"))


def _unsorted_manifest(lab: Lab, genuine: Path, d: Path) -> Path:
    lines = _manifest_of(genuine).splitlines(keepends=True)
    return resigned_manifest(genuine, d / "b.tar.gz", lab, b"".join(reversed(lines)))


def _duplicate_member(lab: Lab, genuine: Path, d: Path) -> Path:
    entries = members(genuine)
    forged = entry("bundle/results.json", b'{"tests": [], "controls": "all passed"}\n')
    at = next(i for i, (m, _) in enumerate(entries) if m.name == "bundle/results.json")
    return pack(d / "b.tar.gz", [*entries[:at], forged, *entries[at:]])


def _with(extra: tuple) -> Callable[[Lab, Path, Path], Path]:
    return lambda lab, genuine, d: pack(d / "b.tar.gz", [*members(genuine), extra])


def _sparse(lab: Lab, genuine: Path, d: Path) -> Path:
    """A GNU sparse member: 100 GB apparent size in a few KiB (tar --sparse)."""
    tree = d / "tree"
    with tarfile.open(genuine) as tar:
        tar.extractall(tree, filter="data")
    with open(tree / "bundle" / "huge.bin", "wb") as handle:
        handle.truncate(100 * 2**30)
    out = d / "b.tar.gz"
    subprocess.run(["tar", "--sparse", "-czf", str(out), "-C", str(tree), "bundle"], check=True)
    return out


def _gzip_bomb(lab: Lab, genuine: Path, d: Path) -> Path:
    """Over 256 MiB of tar from a small file (the genuine members, then a member full of zeros)."""
    out = d / "b.tar.gz"
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for info, data in members(genuine):
            tar.addfile(info, io.BytesIO(data or b""))
    head = tar_bytes.getvalue()[:-1024]  # without the end-of-archive blocks
    info = tarfile.TarInfo("bundle/zeros.bin")
    info.size = 300 * 2**20
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(out, "wb") as handle:
        handle.write(compressor.compress(head + info.tobuf(format=tarfile.GNU_FORMAT)))
        zeros = bytes(2**20)
        for _ in range(300):
            handle.write(compressor.compress(zeros))
        handle.write(compressor.flush())
    return out


def _truncated(lab: Lab, genuine: Path, d: Path) -> Path:
    out = d / "b.tar.gz"
    out.write_bytes(genuine.read_bytes()[: genuine.stat().st_size * 2 // 3])
    return out


def _trailing_garbage(lab: Lab, genuine: Path, d: Path) -> Path:
    out = d / "b.tar.gz"
    out.write_bytes(genuine.read_bytes() + b"not gzip")
    return out


def _added(lab: Lab, genuine: Path, d: Path) -> Path:
    return pack(d / "b.tar.gz", [*members(genuine), entry("bundle/evidence/ZTM-TLS-1/test_only_tls13/extra.txt",
                                                          b"planted\n")])


def _removed(lab: Lab, genuine: Path, d: Path) -> Path:
    return pack(d / "b.tar.gz", [(m, x) for m, x in members(genuine) if m.name != "bundle/junit.xml"])


def _flip(name: str) -> Callable[[Lab, Path, Path], Path]:
    def make(lab: Lab, genuine: Path, d: Path) -> Path:
        data = next(x for m, x in members(genuine) if m.name == f"bundle/{name}") or b""
        at = 100 if name == "signer.pem" else None  # inside the certificate's base64
        return replaced(genuine, d / "b.tar.gz", name, flipped(data, at) if name != "signer.pem"
                        else data[:at] + (b"A" if data[at:at + 1] != b"A" else b"B") + data[at + 1:])
    return make


def _other_key(lab: Lab, genuine: Path, d: Path) -> Path:
    manifest = _manifest_of(genuine)
    manifest = manifest.replace(manifest[:64], b"f" * 64, 1)
    return resigned_manifest(genuine, d / "b.tar.gz", lab, manifest, key=ed25519.Ed25519PrivateKey.generate())


def _foreign_token(lab: Lab, genuine: Path, d: Path) -> Path:
    return replaced(genuine, d / "b.tar.gz", "MANIFEST.sha256.tsr", lab.stamp(b"another signature"))


def _outside(lab: Lab, genuine: Path, d: Path) -> Path:
    return pack(d / "b.tar.gz", [*members(genuine), entry("evil.txt", b"outside bundle/\n")])


def _missing_signer(lab: Lab, genuine: Path, d: Path) -> Path:
    files = content()
    write_bundle(d / "b.tar.gz", files, lab.signer_key(), None, lab.stamp)
    return d / "b.tar.gz"


CASES: list[Case] = [
    Case("public-key block in front of the certificate, re-signed", _forge_public_key_block, "certificates only"),
    Case("signer minted with a client certificate", _client_minted_signer, "not a valid signer",
         ca=lambda lab: lab.layout.ca_cert, extra=lambda lab, folder: ["--tsa-ca", str(lab.ca)]),
    Case("signer from the database CA", _database_ca_signer, "not a valid signer"),
    Case("expired signer without a timestamp", _expired_no_timestamp, "not a valid signer"),
    Case("signer expired before its timestamp", _expired_at_timestamp, "not a valid signer"),
    Case("revoked (rotated-out) signer, with the CRL", _revoked, "revoked",
         extra=lambda lab, folder: ["--crl", str(pki.PkiLayout(folder / "pki").evidence_crl)]),
    Case("signer certificate without the code-signing EKU", _wrong_eku, "not a valid signer"),
    Case("duplicate manifest line (first wrong, second right)", _duplicate_manifest_line, "not canonical"),
    Case("CRLF manifest", _crlf_manifest, "not canonical"),
    Case("./ paths in the manifest", _dot_slash_manifest, "not canonical"),
    Case("unsorted manifest", _unsorted_manifest, "not canonical"),
    Case("duplicate archive member (unsigned copy first)", _duplicate_member, "duplicate member"),
    Case("symlink member", _with(entry("bundle/os-release", None, tarfile.SYMTYPE, "/etc/os-release")), "symlink"),
    Case("hardlink member", _with(entry("bundle/link", None, tarfile.LNKTYPE, "bundle/run.json")), "hardlink"),
    Case("FIFO member", _with(entry("bundle/fifo", None, tarfile.FIFOTYPE)), "FIFO"),
    Case("device member", _with(entry("bundle/zero", None, tarfile.CHRTYPE)), "device"),
    Case("sparse member (100 GB apparent)", _sparse, "sparse"),
    Case("gzip bomb", _gzip_bomb, "size limit"),
    Case("truncated archive", _truncated, "damaged"),
    Case("data after the gzip stream", _trailing_garbage, "damaged"),
    Case("added file", _added, "added"),
    Case("removed file", _removed, "missing"),
    Case("member outside bundle/", _outside, "bad name"),
    Case("member with a newline in its name", _with(entry("bundle/x\nverified: all good", b"x")), "bad name"),
    Case("member with '..'", _with(entry("bundle/../escape", b"x")), "bad name"),
    *(Case(f"flipped byte in {name}", _flip(name), "content changed") for name in
      ("results.json", "run.json", "report.html", "junit.xml", "oscal/assessment-results.json",
       "evidence/ZTM-TLS-1/test_only_tls13/scan-matrix.json", "evidence/ZTM-TLS-1/test_only_tls13/note.txt",
       "signer.pub.pem")),
    Case("flipped byte in signer.pem", _flip("signer.pem"), "signer.pem"),
    Case("flipped byte in the manifest", _flip("MANIFEST.sha256"), "signature"),
    Case("flipped byte in the signature", _flip("MANIFEST.sha256.sig"), "timestamp"),
    Case("manifest re-signed with another key", _other_key, "signature"),
    Case("timestamp token over something else", _foreign_token, "timestamp"),
    Case("no signer certificate", _missing_signer, "signer.pem is missing"),
]


def build_corpus(lab: Lab, genuine: Path) -> dict[str, tuple[Path, list[str], list[str]]]:
    """case name -> (hostile bundle, arguments of ztm evidence verify, arguments of offline-verify.sh)."""
    made = {}
    for case in CASES:
        folder = case.folder(lab)
        folder.mkdir(parents=True)
        bundle, ca, extra = case.make(lab, genuine, folder), str(case.ca(lab)), case.extra(lab, folder)
        made[case.name] = (bundle, ["--ca", ca, *extra], [ca, *extra])
    return made


def run_python(bundle: Path, args: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "evidence", "verify", str(bundle), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ))
    return done.returncode, done.stdout + done.stderr


def run_offline(bundle: Path, args: list[str]) -> tuple[int, str]:
    done = subprocess.run(["sh", str(SCRIPT), str(bundle), *args], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def gunzipped(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())
