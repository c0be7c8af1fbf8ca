"""Server reflection as both `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

grpcio-reflection implements v1alpha only; tools that speak v1 alone (`buf curl
--reflect-protocol grpc-v1`, newer grpcurl and Postman) get UNIMPLEMENTED from it. The two protocols
are the same messages under another package name, so the v1alpha servicer serves v1 too: the v1
method is registered with the v1alpha message codecs (identical on the wire), and the v1 file is
added to the descriptor pool so reflection can describe itself under both names.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA = reflection.SERVICE_NAME  # "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable(server: grpc.aio.Server, services: Iterable[str]) -> None:
    """Serve reflection (v1 and v1alpha) for `services` (full names) and for itself."""
    _add_v1_descriptor()
    names = (*services, V1, V1ALPHA)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (V1, V1ALPHA):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),)
        )


def _add_v1_descriptor() -> None:
    """The v1 reflection file (v1alpha's, renamed) in the default pool, once."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.options.Clear()
    for message in proto.message_type:
        for item in message.field:
            if item.type_name.startswith(".grpc.reflection.v1alpha."):
                item.type_name = item.type_name.replace(
                    ".grpc.reflection.v1alpha.", ".grpc.reflection.v1.", 1
                )
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".v1alpha.", ".v1.", 1)
            method.output_type = method.output_type.replace(".v1alpha.", ".v1.", 1)
    pool.Add(proto)
