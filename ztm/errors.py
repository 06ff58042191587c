"""Errors a user can cause. The CLI prints these as one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix (bad file, bad certificate, unreachable target, not root).

    ``exit_code`` lets commands distinguish kinds of failure (documented per command).
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotRootError(UserError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs root (network namespaces, firewall, server processes); run it as root")
