"""LearnHub's own JupyterHub scope: who may use the exchange and the grades API with a token.

Any valid Hub token used to be enough at the exchange, so a token minted for something else —
the identify-only OAuth token JupyterHub hands a server when another member opens it, or a
self-made token with only ``read:users:name`` — acted there as its owner. The exchange and the
grades API now require :data:`LEARNHUB_SCOPE` on the token itself. Members hold it through the
``user`` role and course servers' tokens request it (:data:`SERVER_TOKEN_SCOPES`); the
operator's tokens hold it through their own roles. OAuth tokens issued to servers for
visitors never include it, because they carry only the identify and access scopes.

:data:`OPERATOR_SCOPE` says who is LearnHub's operator: the exchange treats a service token with it
as an operator of every course, and the Hub's account activation requires it. JupyterHub's
``admin:users`` used to be that sign, which also lets its holder make anyone an admin; the CLI's
token (:data:`CLI_SCOPES`) holds LearnHub's scopes and only the Hub scopes its commands use.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The custom scope (JupyterHub ``custom_scopes``) the exchange and the grades API require.
LEARNHUB_SCOPE = "custom:learnhub:exchange"

#: The custom scope of LearnHub's operator: every course at the exchange, account activation.
OPERATOR_SCOPE = "custom:learnhub:operate"

#: ``JupyterHub.custom_scopes``: LearnHub's scopes with the descriptions JupyterHub shows.
CUSTOM_SCOPES = {
    LEARNHUB_SCOPE: {
        "description": (
            "Use LearnHub's assignments as yourself: fetch and submit in your courses; release, "
            "collect, grade and return feedback in the courses you teach."
        ),
    },
    OPERATOR_SCOPE: {
        "description": (
            "Operate LearnHub: release, collect, grade and return feedback in every course; "
            "activate reserved accounts."
        ),
    },
}

#: What the Hub API calls of `learnhub grant`, `revoke` and `reconcile` need (read from every
#: call they make; docs/security.md, "Hub API paging and the operator token").
MEMBERSHIP_SCOPES = (
    "read:users",
    "list:groups",
    "read:groups",
    "admin:groups",
    "groups",
    "delete:servers",
)

#: The role of the CLI's token (`LEARNHUB_CLI_TOKEN`): the membership commands' Hub scopes, and
#: LearnHub's own for `learnhub grader` (the exchange) and account activation. No `admin:users`,
#: no `tokens`, no `admin:servers`, no `shutdown`.
CLI_SCOPES = (*MEMBERSHIP_SCOPES, LEARNHUB_SCOPE, OPERATOR_SCOPE)

#: ``Spawner.server_token_scopes``: JupyterHub's own for a server (its ``server`` role), plus
#: LearnHub's scope for the server's nbgrader client.
SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server", LEARNHUB_SCOPE]


def carries_learnhub_scope(scopes: Iterable[str]) -> bool:
    """Whether a token's expanded scopes (``GET /hub/api/user``'s ``scopes``) include ours."""
    return LEARNHUB_SCOPE in set(scopes)


def missing_scope_message() -> str:
    """What a caller whose token lacks the scope is told (and what to do)."""
    return (
        f"this token lacks LearnHub's scope {LEARNHUB_SCOPE}: use your course server's own "
        "token, or create a token with that scope on the Hub's token page"
    )


def is_operator(scopes: Iterable[str]) -> bool:
    """Whether a token's expanded scopes make it LearnHub's operator (:data:`OPERATOR_SCOPE`)."""
    return OPERATOR_SCOPE in set(scopes)
