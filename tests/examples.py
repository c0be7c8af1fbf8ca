"""The seed examples every front door and provider test ranks (query, documents, expected best)."""

APPLE_QUERY = "The tech company Apple is known for its innovative products like the iPhone."
APPLE_DOCS = [
    "Apple is a popular fruit known for its sweetness and crisp texture.",
    "Apple Inc. has revolutionized the tech industry with its sleek designs and user-friendly interfaces.",
    "Many people enjoy eating apples as a healthy snack.",
    "An apple a day keeps the doctor away, as the saying goes.",
]
APPLE_BEST = 1

FRANCE_QUERY = "What is the capital of France?"
FRANCE_DOCS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital of France.",
    "Madrid is the capital of Spain.",
]
FRANCE_BEST = 1
