"""An artifact as an ONNX graph (the optional extra `onnx`): raw layer outputs in, logits out.

    features (N × d, float32) ─ Gather(indices, axis 1)
        ─[ Sub(offset) ─ MatMul(projection) ]─ MatMul(weight) ─ Add(bias) ─ logits (N × C)

The bracketed part is there for projection artifacts (pca, random_projection) only. A retrieval artifact
(no head) stops before the head: its output `embedding` (N × k) is the kept dimensions. Opset `OPSET`
(ai.onnx), IR version `IR_VERSION`; built with `onnx.helper` and validated by `onnx.checker` (full
check, shape inference included). The weights are stored in float32, so the graph's logits match the
float64 numpy head (`Artifact.logits`) to float32 rounding; the model's metadata carries the method, k,
d, the classes and the artifact's own metadata.
"""

from __future__ import annotations

import json

import numpy as np

from redundancy.deploy.artifact import Artifact

OPSET = 17
IR_VERSION = 8  # the IR of opset 17, readable by onnxruntime ≥ 1.12
INPUT, OUTPUT, EMBEDDING = "features", "logits", "embedding"


def to_onnx(artifact: Artifact) -> bytes:
    """The serialised, checked ONNX model of `artifact`."""
    import onnx  # lazy: an optional extra (`pip install .[onnx]`)
    from onnx import TensorProto, helper, numpy_helper  # lazy: as above

    def init(name: str, value: np.ndarray, dtype: type = np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name)

    c = len(artifact.classes)
    inits = [init("indices", artifact.indices, np.int64)]
    nodes = [helper.make_node("Gather", [INPUT, "indices"], ["kept"], axis=1, name="gather")]
    head_in = "kept"
    if artifact.projection is not None:
        inits.append(init("projection", artifact.projection))
        if artifact.offset is not None:
            inits.append(init("offset", artifact.offset))
            nodes.append(helper.make_node("Sub", ["kept", "offset"], ["centred"], name="centre"))
            head_in = "centred"
        nodes.append(helper.make_node("MatMul", [head_in, "projection"], ["reduced"], name="project"))
        head_in = "reduced"
    if artifact.weight is None or artifact.bias is None:  # retrieval: the kept dimensions are the output
        nodes.append(helper.make_node("Identity", [head_in], [EMBEDDING], name="kept_dims"))
        output = helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["N", artifact.k])
    else:
        inits += [init("weight", artifact.weight), init("bias", artifact.bias)]
        nodes += [
            helper.make_node("MatMul", [head_in, "weight"], ["scores"], name="head"),
            helper.make_node("Add", ["scores", "bias"], [OUTPUT], name="bias"),
        ]
        output = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", c])
    graph = helper.make_graph(
        nodes, f"redundancy_{artifact.method}_k{artifact.k}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", artifact.d])],
        [output],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="redundancy-advisor", doc_string=__doc__.splitlines()[0])
    meta = {"method": artifact.method, "k": str(artifact.k), "d": str(artifact.d),
            "classes": json.dumps(artifact.classes), "redundancy.artifact": json.dumps(artifact.metadata,
                                                                                       sort_keys=True)}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())
