"""LearnHub's own JupyterHub scope: who may use the exchange and the grades API with a token.

Any valid Hub token used to be enough at the exchange, so a token minted for something else —
the identify-only OAuth token JupyterHub hands a server when another member opens it, or a
self-made token with only ``read:users:name`` — acted there as its owner. The exchange and the
grades API now require :data:`LEARNHUB_SCOPE` on the token itself. Members hold it through the
``user`` role and course servers' tokens request it (:data:`SERVER_TOKEN_SCOPES`); the
operator's admin service holds it through its own role. OAuth tokens issued to servers for
visitors never include it, because they carry only the identify and access scopes.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The custom scope (JupyterHub ``custom_scopes``) the exchange and the grades API require.
LEARNHUB_SCOPE = "custom:learnhub:exchange"

#: ``JupyterHub.custom_scopes``: LearnHub's scope with the description JupyterHub shows.
CUSTOM_SCOPES = {
    LEARNHUB_SCOPE: {
        "description": (
            "Use LearnHub's assignments as yourself: fetch and submit in your courses; release, "
            "collect, grade and return feedback in the courses you teach."
        ),
    },
}

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
