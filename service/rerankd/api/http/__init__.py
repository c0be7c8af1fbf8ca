"""The HTTP/JSON front door, module by module; `rerankd.api.http_api` is its entry point and
re-exports the public names.

    bodies.py     request and response body models (pydantic), one set per dialect
    base.py       the Dialect contract and the helpers every dialect shares
    cohere.py     Cohere v1, Cohere v2 and Portkey's unified shape (a Cohere superset)
    pinecone.py   Pinecone Inference
    tei.py        Hugging Face text-embeddings-inference
    dialects.py   the one instance of each dialect, and DIALECTS
    app.py        the auth seam, RerankHttpApi (routes, one handler for every dialect), create_app
    openapi.py    the OpenAPI 3.1 document served at /openapi.json
    serving.py    HttpServer: uvicorn embedded in rerankd's event loop
"""
