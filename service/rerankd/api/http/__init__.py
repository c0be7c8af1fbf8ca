"""The HTTP/JSON front door, module by module; `rerankd.api.http_api` is its entry point and
re-exports the public names.

    bodies.py     request and response body models (pydantic), one set per dialect
    base.py       the Dialect contract (paths and body models declared once) and shared helpers
    cohere.py     Cohere v1, Cohere v2 and Portkey's unified shape (a Cohere superset)
    pinecone.py   Pinecone Inference
    tei.py        Hugging Face text-embeddings-inference (rerank, /info, /health)
    dialects.py   the one instance of each dialect, DIALECTS, and each listener's layout
    app.py        the auth seam, RerankHttpApi (routes from a layout, one handler for every
                  dialect's rerank, one for its GET endpoints), create_app
    openapi.py    the OpenAPI 3.1 document served at /openapi.json, from the same layout
    serving.py    HttpServer: uvicorn embedded in rerankd's event loop
"""
