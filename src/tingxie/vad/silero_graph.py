"""Cut silero_vad.onnx into its encoder and its recurrent decoder, without the onnx package.

The encoder (STFT and convolutions) does not depend on the LSTM state, so it can run on many
frames in one call; only the small decoder must go frame by frame. The file is read as
protobuf (google.protobuf comes with onnxruntime) through the few ONNX fields the cut needs;
every other field passes through untouched as an unknown field. vad_model checks on load
that the two parts compute exactly what the whole model does, and uses the whole model if not.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_MESSAGE, _STRING, _INT32 = (descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                             descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                             descriptor_pb2.FieldDescriptorProto.TYPE_INT32)
_FLOAT = 1  # ONNX TensorProto.FLOAT
# The subset of onnx.proto used here: message -> (field, number, type, repeated, message type)
_SCHEMA = {
    "ModelProto": [("graph", 7, _MESSAGE, False, "GraphProto")],
    "GraphProto": [("node", 1, _MESSAGE, True, "NodeProto"), ("input", 11, _MESSAGE, True, "ValueInfoProto"),
                   ("output", 12, _MESSAGE, True, "ValueInfoProto")],
    "NodeProto": [("output", 2, _STRING, True, None), ("op_type", 4, _STRING, False, None),
                  ("attribute", 5, _MESSAGE, True, "AttributeProto")],
    "AttributeProto": [("name", 1, _STRING, False, None), ("g", 6, _MESSAGE, False, "GraphProto")],
    "ValueInfoProto": [("name", 1, _STRING, False, None), ("type", 2, _MESSAGE, False, "TypeProto")],
    "TypeProto": [("tensor_type", 1, _MESSAGE, False, "TensorType")],
    "TensorType": [("elem_type", 1, _INT32, False, None)],  # TypeProto.Tensor
}


@functools.cache
def _messages() -> dict[str, type]:
    file = descriptor_pb2.FileDescriptorProto(name="tingxie_onnx_subset.proto", package="tingxie_onnx", syntax="proto2")
    for name, fields in _SCHEMA.items():
        message = file.message_type.add(name=name)
        for field, number, kind, repeated, type_name in fields:
            message.field.add(name=field, number=number, type=kind, type_name=f".tingxie_onnx.{type_name}" if type_name else None,
                              label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated
                              else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tingxie_onnx.{name}")) for name in _SCHEMA}


def cut_encoder(model_bytes: bytes) -> tuple[bytes, bytes, str]:
    """(encoder, decoder, features): encoder maps 'input' (frames, 64 + 512) to features;
    decoder maps features and 'state' to (probability, state), like the whole model at 16 kHz."""
    messages = _messages()
    model = messages["ModelProto"].FromString(model_bytes)
    (branch_node,) = [node for node in model.graph.node if node.op_type == "If"]  # on sr: 16 kHz, 8 kHz
    branch = next(attribute.g for attribute in branch_node.attribute if attribute.name == "then_branch")
    nodes = list(branch.node)
    last = max(i for i, node in enumerate(nodes) if node.op_type == "Relu" and "/encoder/" in node.output[0])
    features = nodes[last].output[0]
    inputs = {value.name: value for value in model.graph.input}

    def tensor(name: str):
        value = messages["ValueInfoProto"](name=name)
        value.type.tensor_type.elem_type = _FLOAT
        return value

    def part(part_nodes, part_inputs, part_outputs) -> bytes:
        cut = messages["ModelProto"]()
        cut.CopyFrom(model)  # the IR version and opsets, as unknown fields
        graph = cut.graph
        for field, values in (("node", part_nodes), ("input", part_inputs), ("output", part_outputs)):
            del getattr(graph, field)[:]
            getattr(graph, field).extend(values)
        return cut.SerializeToString()

    encoder = part(nodes[: last + 1], [inputs["input"]], [tensor(features)])
    # The decoder keeps every constant: the branch's nested graphs read some of them.
    decoder = part([node for i, node in enumerate(nodes) if node.op_type == "Constant" or i > last],
                   [tensor(features), inputs["state"]], [tensor(value.name) for value in branch.output])
    return encoder, decoder, features
