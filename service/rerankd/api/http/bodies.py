"""The JSON bodies of the HTTP front door as pydantic models: what each dialect accepts (unknown
fields are ignored) and what it answers (the dialects render plain dicts; these models describe
them for the OpenAPI document and the tests).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, WithJsonSchema

# -- Request bodies -----------------------------------------------------------------------------


def _string_or_object(value: Any) -> Any:
    if isinstance(value, str | dict):
        return value
    raise ValueError("must be a string or an object")


def _object_or_string(value: Any) -> Any:
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, dict):
        return value
    raise ValueError("must be an object (or a string, taken as its text)")


_DOCUMENT_SCHEMA = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "description": "`text` plus any other fields; rank_fields name the ones scored.",
            "additionalProperties": True,
        },
    ]
}
StringOrObject = Annotated[Any, AfterValidator(_string_or_object), WithJsonSchema(_DOCUMENT_SCHEMA)]
ObjectDocument = Annotated[Any, AfterValidator(_object_or_string), WithJsonSchema(_DOCUMENT_SCHEMA)]
_Model = Field(None, description="Model name, alias or provider/model; empty or absent: `default`.")
_TopN = Field(None, ge=1, description="Return only the best N; absent: all.")


class _Body(BaseModel):
    # strict: a JSON value of the wrong type is a 400 naming the field, never coerced ("3" or true
    # as top_n, "yes" as return_documents, "false" as TEI's truncate); numbers stay numbers (an
    # integer is a valid float). Unknown fields are ignored (newer SDKs send fields rerankd skips).
    model_config = ConfigDict(extra="ignore", strict=True)


class CohereV1Request(_Body):
    """Cohere's v1 rerank request (max_chunks_per_doc is accepted; long documents are truncated)."""

    model: str | None = _Model
    query: str
    documents: list[StringOrObject]
    top_n: int | None = _TopN
    rank_fields: list[str] | None = None
    return_documents: bool | None = Field(None, description="true: results carry `document`.")
    max_chunks_per_doc: int | None = Field(None, ge=1)


class CohereV2Request(_Body):
    """Cohere's v2 rerank request (objects are accepted as documents too, as in v1)."""

    model: str | None = _Model
    query: str
    documents: list[StringOrObject]
    top_n: int | None = _TopN
    max_tokens_per_doc: int | None = Field(None, ge=1)
    priority: int | None = Field(None, description="Accepted and ignored.")
    return_documents: bool | None = Field(None, description="Older v2 field: results carry `document`.")


class PortkeyRequest(_Body):
    """Portkey's unified rerank request (CreateRerankRequest)."""

    model: str | None = _Model
    query: str
    documents: list[StringOrObject]
    top_n: int | None = _TopN
    return_documents: bool | None = Field(None, description="true: results carry `document`.")
    max_tokens_per_doc: int | None = Field(None, ge=1)
    priority: float | None = Field(None, description="Accepted and ignored.")
    rank_fields: list[str] | None = None
    truncation: bool | None = Field(None, description="false: refuse over-long pairs instead of cutting.")
    parameters: dict[str, Any] | None = None


class PineconeRequest(_Body):
    """Pinecone Inference's rerank request (documents are objects; a string is taken as its text)."""

    model: str | None = _Model
    query: str
    documents: list[ObjectDocument]
    rank_fields: list[str] | None = Field(None, description='Fields scored; default ["text"].')
    top_n: int | None = _TopN
    return_documents: bool | None = Field(None, description="Default true: data[] carry `document`.")
    parameters: dict[str, Any] | None = Field(None, description='e.g. {"truncate": "END" | "NONE"}')


class TeiRequest(_Body):
    """text-embeddings-inference's rerank request; `model` is a rerankd extension."""

    query: str
    texts: list[str]
    truncate: bool | None = Field(None, description="absent or true: cut at the limit; false: refuse.")
    truncation_direction: Literal["right", "Right", "left", "Left"] | None = None
    raw_scores: bool | None = Field(None, description="true: the embedded model's logit (docs/http-api.md).")
    return_text: bool | None = None
    model: str | None = _Model


# -- Response bodies (the renderers build plain dicts; these describe them and tests check them) -


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassageOut(_Out):
    """rerankd's extra field on a result scored as passages: the window that won (code points)."""

    start: int
    end: int
    index: int
    count: int


class CohereResult(_Out):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None
    passage: PassageOut | None = None


class CohereApiVersion(_Out):
    version: str


class CohereBilledUnits(_Out):
    search_units: int


class CohereTokens(_Out):
    input_tokens: int


class CohereMeta(_Out):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    tokens: CohereTokens | None = None


class CohereResponse(_Out):
    id: str
    results: list[CohereResult]
    meta: CohereMeta


class CohereError(_Out):
    message: str


class PortkeyUsage(_Out):
    search_units: int


class PortkeyResponse(_Out):
    id: str
    object: Literal["list"]
    results: list[CohereResult]
    model: str
    usage: PortkeyUsage
    provider: str


class PortkeyErrorDetail(_Out):
    message: str
    type: str | None
    param: str | None
    code: str | None


class PortkeyError(_Out):
    error: PortkeyErrorDetail
    provider: str


class PineconeRanked(_Out):
    index: int
    score: float
    document: dict[str, Any] | None = None
    passage: PassageOut | None = None


class PineconeUsage(_Out):
    rerank_units: int


class PineconeResponse(_Out):
    model: str
    data: list[PineconeRanked]
    usage: PineconeUsage


class PineconeErrorDetail(_Out):
    code: str
    message: str
    details: dict[str, Any] | None = None


class PineconeError(_Out):
    error: PineconeErrorDetail
    status: int


class TeiRank(_Out):
    index: int
    text: str | None = None
    score: float


class TeiResponse(RootModel[list[TeiRank]]):
    pass


class TeiError(_Out):
    error: str
    error_type: str


class TeiClassifierModel(_Out):
    """TEI's ClassifierModel: the head's labels (a reranker has one)."""

    id2label: dict[str, str]
    label2id: dict[str, int]


class TeiModelType(_Out):
    """TEI's ModelType as rerankd serves it: always a reranker."""

    reranker: TeiClassifierModel


class TeiInfo(_Out):
    """TEI's `GET /info` (router/src/lib.rs `Info`), describing what the `default` route tries first
    (docs/http-api.md, "TEI on its own paths"); null where rerankd does not know the value."""

    model_id: str
    model_sha: str | None
    model_dtype: str
    served_model_name: str
    model_type: TeiModelType
    max_concurrent_requests: int
    max_input_length: int | None
    max_batch_tokens: int | None
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int | None
    version: str
    sha: str | None
    docker_label: str | None
