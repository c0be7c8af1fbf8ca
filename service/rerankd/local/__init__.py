"""The embedded cross-encoder: model files, tokenising, scoring and the `local` provider."""
