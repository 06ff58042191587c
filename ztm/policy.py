"""The policy a run judges against: a built-in profile, tailored by the target's [policy].

Every value a control compares with lives here as data (``schemas/policy.schema.json``),
never as a constant in a control. A target selects a profile and may override single
values::

    [policy]
    profile = "nist-800-52r2"
    [policy.network]
    allowed_listen_ports = ["tcp/3306", "tcp/22"]

Profiles are TOML files in ``ztm/profiles/`` (they ship in the wheel); each cites, per
value, the section of its source in ``[source]``. Values a profile does not set are the
zero-trust ones (the schema's defaults).

    >>> policy = load_policy({"profile": "cnsa"})
    >>> policy.tls["tls13_suites"]
    ['TLS_AES_256_GCM_SHA384']
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from ztm.errors import UserError
from ztm.schemas import load_schema, validate

SCHEMA = "policy.schema.json"
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "zero-trust"
# Keys of a profile file that describe it rather than set a value.
_META = ("title", "source")


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def schema_defaults() -> dict[str, Any]:
    """The schema's defaults, section by section: the zero-trust values."""
    props = load_schema(SCHEMA)["properties"]
    doc: dict[str, Any] = {}
    for name, spec in props.items():
        if spec.get("type") == "object" and "properties" in spec:
            doc[name] = {key: copy.deepcopy(sub["default"]) for key, sub in spec["properties"].items()}
        else:
            doc[name] = copy.deepcopy(spec["default"])
    return doc


@cache
def _profile_file(name: str) -> dict[str, Any]:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown policy profile {name!r}; built-in profiles: {', '.join(builtin_profiles())}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"policy profile {path} is not valid TOML: {exc}") from None


def _leaves(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value; a value that is a map of strings (hardened variables, grants per
    role) is split one level further, so one variable or one role can be overridden alone."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path.count(".") < 2:
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


def _source_of(dotted: str, sources: dict[str, str]) -> str | None:
    """The citation of a value, or of the map it belongs to ('variables.hardened.x' -> 'variables.hardened')."""
    while dotted:
        if dotted in sources:
            return sources[dotted]
        dotted = dotted.rpartition(".")[0]
    return None


class Policy:
    """The resolved policy: a validated document with one property per section."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def __getattr__(self, section: str) -> Any:
        try:
            return self.__dict__["doc"][section]
        except KeyError:
            raise AttributeError(section) from None

    @property
    def name(self) -> str:
        return self.doc["profile"]

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.doc)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON (sorted keys, no spaces): what run.json records."""
        canonical = json.dumps(self.doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def parameters(self) -> dict[str, Any]:
        """Dotted key -> value of every judged value (no profile metadata)."""
        return {k: v for k, v in _leaves({s: v for s, v in self.doc.items()
                                          if isinstance(v, dict) and s != "source"}).items()}

    # -- typed helpers the controls use --------------------------------------------------
    def allowed_grants(self) -> dict[str, set[tuple[str, str, str]]]:
        """Login role -> {(privilege, kind, object)}."""
        return {role: {parse_grant(g) for g in grants} for role, grants in self.grants["allowed"].items()}

    def definer_audit_grants(self) -> set[tuple[str, str]]:
        return {(priv, obj) for priv, _, obj in map(parse_grant, self.grants["definer_audit"])}

    def mode(self, key: str) -> int:
        return int(self.files[key], 8)


def parse_grant(text: str) -> tuple[str, str, str]:
    """'EXECUTE PROCEDURE app_transfer' -> ('EXECUTE', 'PROCEDURE', 'app_transfer')."""
    privilege, kind, obj = text.rsplit(" ", 2)
    return privilege, kind, obj


def load_policy(section: dict[str, Any] | None = None, *, where: str = "the target's [policy]") -> Policy:
    """The policy for a target's ``[policy]`` section (None or {}: zero-trust, untailored)."""
    section = dict(section or {})
    name = section.pop("profile", DEFAULT_PROFILE)
    if not isinstance(name, str):
        raise UserError(f"{where}: profile must be a profile name, one of {', '.join(builtin_profiles())}")
    base, profile = _profile_file(DEFAULT_PROFILE), _profile_file(name)
    doc = schema_defaults()
    sources = dict(base.get("source", {}))
    for layer in ([base] if name == DEFAULT_PROFILE else [base, profile]):
        for dotted, value in _leaves({k: v for k, v in layer.items() if k not in _META}).items():
            _set(doc, dotted, value)
    if name != DEFAULT_PROFILE:
        sources = {k: f"as {DEFAULT_PROFILE}: {v}" for k, v in sources.items()}
        sources.update(profile.get("source", {}))
    reserved = [key for key in section if key in (*_META, "overridden")]
    if reserved:
        raise UserError(f"{where}: {', '.join(reserved)} cannot be set; only 'profile' and policy values can")
    overridden = sorted(_leaves(section))
    for dotted in overridden:
        _set(doc, dotted, _leaves(section)[dotted])
    doc["profile"], doc["title"], doc["overridden"] = name, profile.get("title", ""), overridden
    leaves = _leaves({k: v for k, v in doc.items() if isinstance(v, dict) and k != "source"})
    doc["source"] = {key: (f"overridden by {where}" if key in overridden else _source_of(key, sources) or "")
                     for key in sorted(leaves)}
    validate(doc, SCHEMA, f"policy (profile {name}, tailored by {where})")
    _check_consistent(doc, where)
    return Policy(doc)


def _check_consistent(doc: dict[str, Any], where: str) -> None:
    """What the schema cannot say: a required value must also be allowed."""
    tls = doc["tls"]
    for required, allowed in (("required_versions", "versions"), ("required_tls13_suites", "tls13_suites")):
        extra = [v for v in tls[required] if v not in tls[allowed]]
        if extra:
            raise UserError(f"policy (profile {doc['profile']}, tailored by {where}): tls.{required} names "
                            f"{', '.join(extra)}, which tls.{allowed} does not allow")
    if tls["require_pq_kex"] and tls["groups"] and not any("mlkem" in g.lower() for g in tls["groups"]):
        raise UserError(f"policy (profile {doc['profile']}, tailored by {where}): tls.require_pq_kex needs a hybrid "
                        f"group (e.g. X25519MLKEM768) among tls.groups, which names only {', '.join(tls['groups'])}")


def policy_for(target: Any) -> Policy:
    """The policy of a loaded target (ztm.target.Target)."""
    return load_policy(target.section("policy"), where=f"target file {target.path}")
