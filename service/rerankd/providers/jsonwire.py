"""Pure helpers shared by the JSON rerank adapters (jsonspec.JsonProvider and its hooks), both ways."""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from typing import Any

from rerankd import errors
from rerankd.domain import Document, Scored, render_text
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpReply, check_indices


def texts(call: ProviderCall) -> list[str]:
    """Each document as the one string a text-only API scores: `rank_fields` rendered by render_text."""
    if not call.rank_fields:  # the common case: the text itself (validation refused blank texts)
        return [doc.text for doc in call.documents]
    return [render_text(doc, call.rank_fields) or "" for doc in call.documents]


def field_object(doc: Document, rank_fields: tuple[str, ...]) -> dict[str, str]:
    """The named fields of `doc` that hold text ("text" is Document.text unless a field says otherwise)."""
    found: dict[str, str] = {}
    for name in rank_fields:
        value = doc.text if name == "text" and "text" not in doc.fields else doc.fields.get(name)
        if value is not None and value.strip():
            found[name] = value
    return found


def top_n(call: ProviderCall) -> int | None:
    """The call's top_n clamped to the number of documents; None asks for every result."""
    return None if call.top_n is None else min(call.top_n, len(call.documents))


def unsupported(provider: str, field: str, why: str) -> errors.UnsupportedByProvider:
    """An honest refusal of a unified request field this provider cannot honour."""
    return errors.UnsupportedByProvider(
        f"{field}: not supported by {provider}: {why}",
        field_violations=[(field, f"not supported by {provider}: {why}")],
        provider=provider,
    )


def with_parameters(
    provider: str, body: dict[str, Any], parameters: Mapping[str, Any], reserved: Set[str]
) -> dict[str, Any]:
    """`body` plus the caller's pass-through `parameters`; keys rerankd maps itself are refused."""
    clash = sorted(set(parameters) & (set(reserved) | set(body)))
    if clash:
        raise unsupported(provider, "parameters", f"keys {clash} are set from the request's own fields")
    return {**body, **parameters}


def scores(
    provider: str, items: Any, count: int, score_key: str = "relevance_score", index_key: str = "index"
) -> list[Scored]:
    """[{<index_key>, <score_key>}, ...] as Scored, in the provider's order; anything odd is BadResponse."""
    if not isinstance(items, list):
        raise errors.BadResponse(f"{provider}: answer has no result list", provider=provider)
    # What JSON parsers give for a well-formed answer, checked a column at a time (about a third of
    # the per-item loop's cost); anything else takes the careful path, which names the fault.
    try:
        indices = [item[index_key] for item in items]
        values = [item[score_key] for item in items]
        well_formed = (
            {type(index) for index in indices} <= _INT
            and {type(value) for value in values} <= _JSON_NUMBERS_SET
            and (not indices or (min(indices) >= 0 and max(indices) < count))
            and all(map(math.isfinite, values))
            and len(set(indices)) == len(indices)
        )
    except (TypeError, KeyError, IndexError, OverflowError):
        well_formed = False
    if not well_formed:
        return _scores_checked(provider, items, count, score_key, index_key)
    return [Scored(index, float(value)) for index, value in zip(indices, values, strict=True)]


def _scores_checked(
    provider: str, items: list[Any], count: int, score_key: str, index_key: str = "index"
) -> list[Scored]:
    """`scores`, one item at a time: the first malformed item raises BadResponse."""
    pairs: list[tuple[int, float]] = []
    for item in items:
        index = item.get(index_key) if isinstance(item, dict) else None
        score = item.get(score_key) if isinstance(item, dict) else None
        try:
            if not (isinstance(index, int) and _is_number(index) and _is_number(score)):
                raise OverflowError
            pairs.append((index, float(score)))  # type: ignore[arg-type]  # _is_number checked it
        except OverflowError:  # not a number, or one past float's range
            raise errors.BadResponse(
                f"{provider}: answer has a malformed result", provider=provider
            ) from None
    check_indices(provider, pairs, count)
    if len({index for index, _ in pairs}) != len(pairs):
        raise errors.BadResponse(f"{provider}: answer scores a document twice", provider=provider)
    return [Scored(index, score) for index, score in pairs]


def json_object(provider: str, body: Any) -> dict[str, Any]:
    """`body` if the provider answered a JSON object; BadResponse (a provider bug) otherwise."""
    if not isinstance(body, dict):
        raise errors.BadResponse(f"{provider}: answer is not a JSON object", provider=provider)
    return body


def count_at(body: Any, *path: str) -> int:
    """A billed count at `path` in nested JSON objects (rounded up); 0 when absent or not a number."""
    value = body
    for key in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(key)
    if not _is_number(value) or not math.isfinite(value):
        return 0
    return max(math.ceil(value), 0)


def answered_model(body: Any, call: ProviderCall) -> str:
    """The model the provider says answered, else the one asked for."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else call.model


def error_text(reply: HttpReply, keys: tuple[str, ...]) -> str | None:
    """The first error text under `keys` (a string, {"message"} or a FastAPI list of {"loc","msg"})."""
    try:
        body = reply.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in keys:
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value:
            # FastAPI validation errors; keep loc + msg only (their "input" may echo document text).
            parts = [_loc_msg(item) for item in value if isinstance(item, dict)]
            if any(parts):
                return "; ".join(part for part in parts if part)
    return None


def _loc_msg(item: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in item.get("loc") or [] if part != "body")
    msg = str(item.get("msg") or "")
    return f"{loc}: {msg}" if loc and msg else msg


_INT = frozenset({int})
_JSON_NUMBERS_SET = frozenset({float, int})  # exact types: bool (an int subclass) is not a score


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
