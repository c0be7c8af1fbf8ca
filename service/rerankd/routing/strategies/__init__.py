"""How a route uses its targets: one `Strategy` per route, chosen by RouteConfig.strategy.

fallback  targets in priority order (weighted within a priority); the next after a failure
hedge     the same, but the next target is also started when an attempt is slow (hedge.py)
cascade   a cheap first stage scores everything, an expensive one reranks its best (cascade.py)
"""

from rerankd.routing.strategies.base import Strategy
from rerankd.routing.strategies.cascade import Cascade
from rerankd.routing.strategies.fallback import Fallback
from rerankd.routing.strategies.hedge import Hedge

__all__ = ["Cascade", "Fallback", "Hedge", "Strategy"]
