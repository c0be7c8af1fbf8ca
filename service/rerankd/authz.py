"""Per-caller authorization: which model names a caller may use and how many documents it may send.

Off unless the settings list `callers` (the YAML config, or RERANKD_CALLERS as JSON):

    callers:
      search-api:                       # a caller name from the token file or a client certificate
        models: [default, "co/rerank-*"] # glob patterns of RerankRequest.model; '*' = any, [] = none
        max_documents: 1000             # per request (default: the server's max_documents)
        rate_limit_rps: 20              # fed to rerankd.ratelimit (default: rate_limit_rps)
      "*":                              # every caller not listed; without it they may use nothing
        models: [default]

Patterns match the name a request uses, as it uses it: a route alias (`default`), a model served
under its own name, or `provider/model` (an empty model is `default`). Granting an alias grants
whatever it routes to; `co/*` grants provider `co`'s models named that way, not an alias that
happens to route there. Authentication (rerankd.auth) builds each `Caller` with its `Permissions`
from the `Policy`; `check()` is the one decision, made where the model and the document count are
known (api/pipeline.py), and `visible()` trims ListModels to what the caller may use. A refusal is
errors.PermissionDenied (PERMISSION_DENIED, HTTP 403) naming the model or the cap, counted in
`rerankd_permission_denied_total{caller,reason}`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from rerankd import errors, metrics

if TYPE_CHECKING:
    from rerankd.config import Settings

OTHERS = "*"
DEFAULT_MODEL = "default"
MODEL_NOT_ALLOWED = "MODEL_NOT_ALLOWED"
TOO_MANY_DOCUMENTS = "TOO_MANY_DOCUMENTS"
_SHOWN_MODEL_CHARS = 80


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_T = TypeVar("_T", bound=_Named)


@dataclass(frozen=True, slots=True)
class Permissions:
    """What one caller may do: model-name patterns, and a document cap per request (None = none)."""

    models: tuple[str, ...] = (OTHERS,)
    max_documents: int | None = None
    _matcher: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if OTHERS not in self.models:  # one compiled alternation: a single match per call
            alternatives = "|".join(fnmatch.translate(p) for p in self.models) or r"(?!)"
            object.__setattr__(self, "_matcher", re.compile(alternatives))

    @property
    def any_model(self) -> bool:
        return self._matcher is None

    def allows(self, model: str) -> bool:
        """Whether a request naming `model` (empty = the default alias) is within these permissions."""
        return self._matcher is None or self._matcher.match(model or DEFAULT_MODEL) is not None

    def refusal(self, caller: str, model: str, documents: int) -> errors.PermissionDenied | None:
        """The PermissionDenied a request of `caller` for `model` with `documents` documents gets,
        or None when it is allowed. Pure: no state is read or changed."""
        if not self.allows(model):
            allowed = ", ".join(self.models) or "none"
            return errors.PermissionDenied(
                f"caller {caller!r} may not use model {_shown(model or DEFAULT_MODEL)}"
                f" (its models: {allowed})",
                reason=MODEL_NOT_ALLOWED,
            )
        if self.max_documents is not None and documents > self.max_documents:
            return errors.PermissionDenied(
                f"caller {caller!r} may send at most {self.max_documents} documents per request;"
                f" this one has {documents}",
                reason=TOO_MANY_DOCUMENTS,
            )
        return None


ALLOW_ALL = Permissions()
NOTHING = Permissions(models=())


class _Caller(_Named, Protocol):
    @property
    def permissions(self) -> Permissions: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """Callers' permissions by name; `others` for callers not listed. The empty policy allows all."""

    callers: Mapping[str, Permissions] = field(default_factory=dict)
    others: Permissions = ALLOW_ALL

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        if not settings.callers:
            return cls()
        by_name = {
            name: Permissions(tuple(entry.models), entry.max_documents)
            for name, entry in settings.callers.items()
        }
        others = by_name.pop(OTHERS, NOTHING)
        return cls(by_name, others)

    def permissions(self, caller: str) -> Permissions:
        """The permissions of the caller named `caller`."""
        return self.callers.get(caller, self.others)


def check(caller: _Caller | None, model: str, documents: int) -> None:
    """Refuse (errors.PermissionDenied, counted by caller and reason) a request `caller` may not
    make. No caller (nothing authenticated this call, e.g. in-process use) means no restriction."""
    if caller is None:
        return
    refused = caller.permissions.refusal(caller.name, model, documents)
    if refused is not None:
        metrics.child(metrics.PERMISSION_DENIED, caller.name, refused.reason).inc()
        raise refused


def visible(caller: _Caller | None, names: Iterable[_T]) -> list[_T]:
    """The entries of `names` (anything with a `.name`) that `caller` may use, for ListModels."""
    entries = list(names)
    if caller is None or caller.permissions.any_model:
        return entries
    return [entry for entry in entries if caller.permissions.allows(entry.name)]


def _shown(model: str) -> str:
    """A model name as messages show it: quoted, and cut (a caller chose it, it may be huge)."""
    if len(model) <= _SHOWN_MODEL_CHARS:
        return repr(model)
    return repr(model[:_SHOWN_MODEL_CHARS]) + f"... ({len(model)} characters)"
