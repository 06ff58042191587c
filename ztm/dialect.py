"""Engine dialects: every MariaDB/MySQL difference lives here, nowhere else.

Callers ask the dialect (``target.dialect``) instead of testing ``engine ==``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ztm.policy import Policy, load_policy


@dataclass(frozen=True)
class Dialect:
    name: str
    # Server variable that carries the TLS 1.3 suite list.
    tls13_suites_variable: str
    # Errors a server returns when a TCP login arrives without TLS under
    # require_secure_transport=ON (what makes a refusal "because plaintext").
    insecure_transport_errors: frozenset[int]
    # Variables that can only be read from the on-disk config after a restart.
    persisted_config_supported: bool
    # The mysqld binary name inside its install.
    server_binary: str
    # Option name for the TLS 1.3 suites in my.cnf.
    tls13_suites_option: str
    # (variable, a value that logs failed logins, a value that does not): fail2ban reads those lines.
    failed_login_log: tuple[str, str, str]
    # How privileges reach an account beyond its own grants (ZTM-AUD-1 follows them all):
    # MariaDB roles have no host part and 10.11 has the PUBLIC pseudo-role; MySQL roles
    # are user@host accounts and the roles in mandatory_roles are granted to everyone.
    role_has_host: bool = False
    public_role: bool = False
    mandatory_roles_variable: str | None = None
    # The my.cnf groups the server reads (plus '<group>-X.Y' for its own version series).
    option_groups: tuple[str, ...] = ("mysqld", "server")
    versioned_option_groups: tuple[str, ...] = ("mysqld",)
    # TLS suites/ciphers the server refuses to be configured with (a policy may approve them:
    # the server is then configured with the rest, and TLS-1 judges what it accepts).
    blocked_ciphers: frozenset[str] = frozenset()

    def tls_settings(self, policy: Policy) -> dict[str, str]:
        """tls_version and the suites of the policy, as the server's variables/options name them."""
        tls = policy.tls
        return {"tls_version": ",".join(tls["versions"]),
                **self.cipher_options(tls["tls13_suites"], tls["tls12_suites"])}

    def server_settings(self, *, crl: str, secure_file_priv: str, policy: Policy | None = None) -> dict[str, str]:
        """The hardened variables (ZTM-CFG-1) as my.cnf [mysqld] options (default: the zero-trust policy)."""
        policy = policy or load_policy()
        paths = {"ssl_crl": crl, "secure_file_priv": secure_file_priv}
        return {**policy.variables["hardened"], **self.tls_settings(policy),
                **{name: paths.get(name, "") for name in policy.variables["nonempty"]}}

    def cipher_options(self, tls13_suites: tuple[str, ...] | list[str],
                       tls12_ciphers: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
        """my.cnf options allowing exactly these suites. MariaDB takes both kinds in
        ssl_cipher; MySQL keeps TLS 1.3 suites in tls_ciphersuites and refuses to start
        if ssl_cipher names them."""
        tls13_suites = [suite for suite in tls13_suites if suite not in self.blocked_ciphers]
        tls12_ciphers = [cipher for cipher in tls12_ciphers if cipher not in self.blocked_ciphers]
        if self.tls13_suites_option == "ssl_cipher":
            return {"ssl_cipher": ":".join([*tls13_suites, *tls12_ciphers])}
        options = {self.tls13_suites_option: ":".join(tls13_suites)}
        if tls12_ciphers:
            options["ssl_cipher"] = ":".join(tls12_ciphers)
        return options

    def expected_live_variables(self, policy: Policy) -> dict[str, str]:
        """What SHOW GLOBAL VARIABLES must say on a server hardened to ``policy``.

        Values are compared normalised (ztm.resources.variables.normalise_value).
        """
        return {**policy.variables["hardened"], **self.tls_settings(policy)}

    @property
    def accounts_query(self) -> str:
        """user, host, ssl_type, x509_subject, x509_issuer, locked ('Y'/'N') of every account."""
        if self.name == "mysql":
            return ("SELECT user, host, ssl_type, x509_subject, x509_issuer, account_locked "
                    "FROM mysql.user ORDER BY user, host")
        # MariaDB's mysql.user is a view without the lock flag; it lives in global_priv's JSON.
        # Roles (and PUBLIC) are rows there too, but nobody can log in as one.
        return ("SELECT u.User, u.Host, u.ssl_type, u.x509_subject, u.x509_issuer, "
                "IF(JSON_VALUE(g.Priv, '$.account_locked') IN ('true', '1'), 'Y', 'N') "
                "FROM mysql.user u JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host "
                "WHERE u.is_role <> 'Y' ORDER BY u.User, u.Host")

    def account_lock_clause(self) -> str:
        return "ACCOUNT LOCK"

    def uuid_to_bin(self, expr: str) -> str:
        """SQL turning a textual UUID into BINARY(16)."""
        if self.name == "mysql":
            return f"UUID_TO_BIN({expr})"
        return f"UNHEX(REPLACE({expr}, '-', ''))"

    def bin_to_uuid(self, expr: str) -> str:
        if self.name == "mysql":
            return f"BIN_TO_UUID({expr})"
        h = f"LOWER(HEX({expr}))"
        return (
            f"CONCAT_WS('-', SUBSTR({h},1,8), SUBSTR({h},9,4), SUBSTR({h},13,4), "
            f"SUBSTR({h},17,4), SUBSTR({h},21))"
        )


MARIADB = Dialect(
    name="mariadb",
    tls13_suites_variable="ssl_cipher",
    tls13_suites_option="ssl_cipher",
    insecure_transport_errors=frozenset({1045, 3159}),
    persisted_config_supported=False,
    server_binary="mariadbd",
    public_role=True,
    option_groups=("mysqld", "server", "mariadb", "mariadbd", "client-server"),
    versioned_option_groups=("mysqld", "mariadb", "mariadbd"),
    failed_login_log=("log_warnings", "2", "1"),
)

MYSQL = Dialect(
    name="mysql",
    tls13_suites_variable="tls_ciphersuites",
    tls13_suites_option="tls_ciphersuites",
    insecure_transport_errors=frozenset({3159}),
    persisted_config_supported=True,
    server_binary="mysqld",
    role_has_host=True,
    mandatory_roles_variable="mandatory_roles",
    failed_login_log=("log_error_verbosity", "3", "2"),
    # MySQL 9.7 will not start with these in tls_ciphersuites / ssl_cipher ("cipher ... is blocked").
    blocked_ciphers=frozenset({"TLS_AES_128_CCM_8_SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384"}),
)

_DIALECTS = {d.name: d for d in (MARIADB, MYSQL)}


def dialect_for(engine: str) -> Dialect:
    try:
        return _DIALECTS[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; expected one of {sorted(_DIALECTS)}") from None
