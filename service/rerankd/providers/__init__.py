"""Provider adapters: one module per provider kind, registered in `registry.REGISTRY`."""
