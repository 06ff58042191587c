"""The database host named by a target's ``[host].spec``, opened with testinfra and proven reachable.

Host checks go only to that spec: ``ssh://root@db1?ssh_config=…`` on a VM, ``local://`` only
when the target says so. Nothing here falls back to the assessor's machine.

    >>> host = open_host("ssh://root@10.77.0.10?ssh_config=lab/host/ssh/ssh_config")
    >>> host.run("hostname").stdout
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ztm.errors import UserError


class HostUnreachable(UserError):
    """The database host named by the target could not be reached (or refused the assessor)."""


def describe(spec: str) -> str:
    """The spec without its query and without a password: ``ssh://root@10.0.0.5:22``."""
    parts = urlsplit(spec)
    if not parts.scheme:
        return spec.split("?", 1)[0]
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:  # user[:password]@host: the password never goes into a message
        netloc = [netloc[0].split(":", 1)[0], netloc[1]]
    return f"{parts.scheme}://{'@'.join(netloc)}"


def _reason(exc: BaseException) -> str:
    # testinfra's ssh backend raises RuntimeError(CommandResult) when ssh itself fails (exit 255).
    result = exc.args[0] if exc.args else None
    stderr = getattr(result, "stderr", None)
    text = (stderr if isinstance(stderr, str) and stderr.strip() else str(exc)).strip()
    return (text.splitlines()[-1] if text else type(exc).__name__)[-300:]


def open_host(spec: str):
    """A testinfra host for ``spec`` that has answered a command, or HostUnreachable."""
    import testinfra

    where = describe(spec)
    if spec.startswith("ssh://"):
        # testinfra's plain ssh backend takes a remote command's exit status 255 (fail2ban-client
        # when fail2ban is down) for a failure of ssh itself and raises; its safe-ssh backend,
        # same client and options, reads the real status back. An ssh failure still raises.
        spec = "safe-" + spec
    try:
        host = testinfra.get_host(spec)
        done = host.run("true")
    except Exception as exc:  # any backend failure is "could not reach", named, never a traceback
        raise HostUnreachable(f"could not reach the database host at {where}: {_reason(exc)}") from None
    if done.rc != 0:
        raise HostUnreachable(f"could not reach the database host at {where}: 'true' exited {done.rc} "
                              f"({(done.stderr or done.stdout).strip()[-200:]})")
    return host
