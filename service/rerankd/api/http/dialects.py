"""The dialects the HTTP front door speaks: one instance of each, and the one table the routes and
/openapi.json are generated from: which dialects a listener serves, each under which prefix.

    SHARED_PORT   the HTTP port (http_port): every dialect, each under its `prefix` (TEI's paths
                  are under /tei, Portkey's under /portkey: their own paths are Pinecone's and
                  Cohere v1's)
    TEI_PORT      tei_port: TEI's own paths, so a TEI client only changes the host
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerankd.api.http.base import Dialect
from rerankd.api.http.cohere import CohereV1, CohereV2, Portkey
from rerankd.api.http.pinecone import Pinecone
from rerankd.api.http.tei import Tei

PORTKEY, PINECONE, TEI = Portkey(), Pinecone(), Tei()
COHERE_V1, COHERE_V2 = CohereV1(portkey=PORTKEY), CohereV2(portkey=PORTKEY)
DIALECTS: tuple[Dialect[Any], ...] = (COHERE_V1, COHERE_V2, PORTKEY, PINECONE, TEI)

Layout = Sequence[tuple[Dialect[Any], str]]
"""What one listener serves: (dialect, the prefix before each of its own paths)."""

SHARED_PORT: Layout = tuple((dialect, dialect.prefix) for dialect in DIALECTS)
TEI_PORT: Layout = ((TEI, ""),)
