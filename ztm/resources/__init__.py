"""Observers of a deployment, testinfra-style: each resource returns facts, never verdicts.

Controls (controls/) ask these for what is there and assert it against the policy
(ztm.policy). A resource reads through the admin path (pymysql), a login session, or the
database host (a testinfra host, ``host.file``/``host.run``/``host.socket``).
"""
