"""Front-door-independent checks of a RerankQuery: precise INVALID_ARGUMENT with the field named."""

from __future__ import annotations

from rerankd import errors
from rerankd.domain import RerankQuery, render_text

MAX_DOCUMENTS = 10_000


def validate(query: RerankQuery, *, max_documents: int = MAX_DOCUMENTS) -> None:
    """Raise errors.InvalidArgument listing every field at fault."""
    violations: list[tuple[str, str]] = []
    if not query.query.strip():
        violations.append(("query", "must not be empty or only whitespace"))
    if not query.documents:
        violations.append(("documents", "must hold at least one document"))
    elif len(query.documents) > max_documents:
        violations.append(
            ("documents", f"has {len(query.documents)} documents; at most {max_documents} allowed")
        )
    for index, name in enumerate(query.rank_fields):
        if not name.strip():
            violations.append((f"rank_fields[{index}]", "must not be empty"))
    if len(set(query.rank_fields)) != len(query.rank_fields):
        violations.append(("rank_fields", "names a field twice"))
    for index, doc in enumerate(query.documents):
        if render_text(doc, query.rank_fields) is None:
            what = f"none of rank_fields {list(query.rank_fields)}" if query.rank_fields else "no text"
            violations.append((f"documents[{index}]", f"has {what} to rank"))
            if len(violations) >= 20:
                break
    if violations:
        first_field, first_text = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise errors.InvalidArgument(f"{first_field}: {first_text}{more}", field_violations=violations)
