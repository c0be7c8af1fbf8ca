"""The gRPC health service: grpc_health's asyncio servicer plus what rerankd needs of it.

- `List` answers every service's status (the library leaves it unimplemented).
- A drain ends open `Watch` streams once they have been sent NOT_SERVING (`end_watches`), so a
  watching client (a sidecar proxy, a mesh) does not hold the server for the whole grace period.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2

_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health.aio.HealthServicer):
    """Check and Watch as in grpc_health, List, and watches that end with a drain."""

    def __init__(self) -> None:
        super().__init__()
        self._ending = False

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        statuses = {
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in self._server_status.items()
        }
        return health_pb2.HealthListResponse(statuses=statuses)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, _UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._ending and status in (_NOT_SERVING, _UNKNOWN):
                        return  # the watcher has seen the drain: the stream ends OK
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]

    def serving(self, service: str) -> bool:
        """Whether `service` is SERVING now (TEI's /health asks for "readiness")."""
        return self._server_status.get(service) == health_pb2.HealthCheckResponse.SERVING

    async def end_watches(self) -> None:
        """Every service NOT_SERVING for good, and every open Watch stream ended once it has sent
        that status. Called at the start of a drain."""
        await self.enter_graceful_shutdown()
        self._ending = True
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()
        await asyncio.sleep(0)  # let the watchers write NOT_SERVING and return
