"""The dialects the HTTP front door speaks: one instance of each, and all of them in route order."""

from __future__ import annotations

from typing import Any

from rerankd.api.http.base import Dialect
from rerankd.api.http.cohere import CohereV1, CohereV2, Portkey
from rerankd.api.http.pinecone import Pinecone
from rerankd.api.http.tei import Tei

COHERE_V1, COHERE_V2, PORTKEY, PINECONE, TEI = CohereV1(), CohereV2(), Portkey(), Pinecone(), Tei()
DIALECTS: tuple[Dialect[Any], ...] = (COHERE_V1, COHERE_V2, PORTKEY, PINECONE, TEI)
