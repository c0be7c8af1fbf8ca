"""Front doors: the gRPC servicer (and the HTTP/JSON API), both over the same router."""
