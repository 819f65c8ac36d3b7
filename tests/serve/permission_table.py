"""The documented permission table as data: every route of the app and the role it needs.

docs/architecture.md ("Permissions") lists the same routes per role; the
route walk (`test_serve_route_walk.py`) checks both against `app.routes`.
"""

from __future__ import annotations

# The scopes each role admits (admin, alias owner, implies every scope); None = no key needed.
ROLE_SCOPES: dict[str, frozenset[str] | None] = {
    "public": None,
    "chat": frozenset({"chat"}),
    "embeddings": frozenset({"embeddings"}),
    "reader": frozenset({"chat", "editor"}),
    "editor": frozenset({"editor"}),
    "admin": frozenset(),
}

ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/"): "public",
    ("GET", "/console"): "public",
    ("GET", "/console/static"): "public",
    ("GET", "/v1/models"): "chat",
    ("GET", "/v1/models/{model}"): "chat",
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "chat",
    ("POST", "/v1/project/playground"): "chat",
    ("POST", "/v1/project/feedback"): "chat",
    ("POST", "/v1/embeddings"): "embeddings",
    ("GET", "/v1/projects"): "reader",
    ("GET", "/v1/project"): "reader",
    ("GET", "/v1/project/scorecard"): "reader",
    ("PATCH", "/v1/project"): "editor",
    ("POST", "/v1/projects"): "editor",
    ("POST", "/v1/project/sources"): "editor",
    ("GET", "/v1/project/check"): "editor",
    ("POST", "/v1/project/report"): "editor",
    ("GET", "/v1/project/report"): "editor",
    ("POST", "/v1/project/plan"): "editor",
    ("GET", "/v1/project/plan"): "editor",
    ("POST", "/v1/project/builds"): "editor",
    ("GET", "/v1/project/builds"): "editor",
    ("GET", "/v1/project/builds/{build_id}"): "editor",
    ("POST", "/v1/project/builds/{build_id}/{action}"): "editor",
    ("GET", "/v1/project/scorecard/report"): "admin",
    ("GET", "/v1/project/feedback/pending"): "editor",
    ("POST", "/v1/project/feedback/{feedback_id}/{decision}"): "editor",
    ("POST", "/v1/files"): "editor",
    ("GET", "/v1/files"): "editor",
    ("GET", "/v1/files/{file_id}"): "editor",
    ("GET", "/v1/files/{file_id}/content"): "editor",
    ("DELETE", "/v1/files/{file_id}"): "editor",
    ("POST", "/v1/fine_tuning/jobs"): "editor",
    ("GET", "/v1/fine_tuning/jobs"): "editor",
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): "editor",
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): "editor",
    ("POST", "/v1/fine_tuning/jobs/{job_id}/pause"): "editor",
    ("POST", "/v1/fine_tuning/jobs/{job_id}/resume"): "editor",
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): "editor",
    ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints"): "editor",
    ("POST", "/v1/evals"): "editor",
    ("GET", "/v1/evals"): "editor",
    ("GET", "/v1/evals/{eval_id}"): "editor",
    ("POST", "/v1/evals/{eval_id}"): "editor",
    ("DELETE", "/v1/evals/{eval_id}"): "editor",
    ("POST", "/v1/evals/{eval_id}/runs"): "editor",
    ("GET", "/v1/evals/{eval_id}/runs"): "editor",
    ("GET", "/v1/evals/{eval_id}/runs/{run_id}"): "editor",
    ("POST", "/v1/evals/{eval_id}/runs/{run_id}/cancel"): "editor",
    ("DELETE", "/v1/evals/{eval_id}/runs/{run_id}"): "editor",
    ("GET", "/v1/evals/{eval_id}/runs/{run_id}/output_items"): "editor",
    ("GET", "/v1/evals/{eval_id}/runs/{run_id}/output_items/{output_item_id}"): "editor",
    ("POST", "/v1/admin/keys"): "admin",
    ("GET", "/v1/admin/keys"): "admin",
    ("POST", "/v1/admin/keys/{key_id}/revoke"): "admin",
    ("POST", "/v1/admin/keys/{key_id}/rotate"): "admin",
    ("GET", "/v1/admin/usage"): "admin",
    ("GET", "/metrics"): "admin",
}


# The owner's scope: `owner` is another name for `admin` (registry.keys.SCOPE_ALIASES).
OWNER = frozenset({"admin", "owner"})


def admits(role: str, scopes: frozenset[str] | None) -> bool:
    """Whether a key with `scopes` (None = no key) may call a route of `role`."""
    wanted = ROLE_SCOPES[role]
    if wanted is None:
        return True
    return scopes is not None and (bool(OWNER & scopes) or bool(wanted & scopes))
