#!/usr/bin/env python3
"""Writes a synthetic GPT-NeoX checkpoint (Hugging Face layout) for bench_neox load:

    /usr/bin/python3 benchmarks/perf/write_neox_checkpoint.py DIR [--dtype F32|F16|BF16] [--shards N] [--bin]

--bin writes PyTorch's pytorch_model.bin (torch.save of the state dict; needs Debian's
python3-torch) instead of model.safetensors: one file, the same values.

Pythia-160M shapes (12 layers, hidden 768, vocab 50304): ~650 MB of float32 weights,
~325 MB as F16/BF16 on disk. Values are random (fixed seed); never committed."""
import json
import os
import struct
import sys

import numpy as np


def tensors():
    D, M, V, L = 768, 3072, 50304, 12
    shapes = {"gpt_neox.embed_in.weight": (V, D), "embed_out.weight": (V, D),
              "gpt_neox.final_layer_norm.weight": (D,), "gpt_neox.final_layer_norm.bias": (D,)}
    for l in range(L):
        h = f"gpt_neox.layers.{l}."
        shapes.update({h + "input_layernorm.weight": (D,), h + "input_layernorm.bias": (D,),
                       h + "post_attention_layernorm.weight": (D,), h + "post_attention_layernorm.bias": (D,),
                       h + "attention.query_key_value.weight": (3 * D, D), h + "attention.query_key_value.bias": (3 * D,),
                       h + "attention.dense.weight": (D, D), h + "attention.dense.bias": (D,),
                       h + "mlp.dense_h_to_4h.weight": (M, D), h + "mlp.dense_h_to_4h.bias": (M,),
                       h + "mlp.dense_4h_to_h.weight": (D, M), h + "mlp.dense_4h_to_h.bias": (D,)})
    return shapes


def encode(a, dtype):
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    u = a.astype("<f4").view("<u4")
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()  # round to nearest even


def write(path, names, shapes, dtype, rng):
    header, off, sizes = {}, 0, []
    esz = 4 if dtype == "F32" else 2
    for n in names:
        cnt = int(np.prod(shapes[n]))
        header[n] = {"dtype": dtype, "shape": list(shapes[n]), "data_offsets": [off, off + cnt * esz]}
        off += cnt * esz
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for n in names:
            f.write(encode((rng.standard_normal(shapes[n], dtype=np.float32) * 0.02), dtype))


def main():
    out = sys.argv[1]
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "F32"
    shards = int(sys.argv[sys.argv.index("--shards") + 1]) if "--shards" in sys.argv else 1
    os.makedirs(out, exist_ok=True)
    cfg = {"architectures": ["GPTNeoXForCausalLM"], "hidden_act": "gelu", "hidden_size": 768,
           "intermediate_size": 3072, "layer_norm_eps": 1e-5, "max_position_embeddings": 2048,
           "model_type": "gpt_neox", "num_attention_heads": 12, "num_hidden_layers": 12,
           "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False,
           "use_parallel_residual": True, "vocab_size": 50304}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shapes = tensors()
    names = sorted(shapes)
    rng = np.random.default_rng(0)
    if "--bin" in sys.argv:
        import torch
        tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
        sd = {n: torch.from_numpy(rng.standard_normal(shapes[n], dtype=np.float32) * 0.02).to(tdt)
              for n in names}
        torch.save(sd, os.path.join(out, "pytorch_model.bin"))
        return
    if shards == 1:
        write(os.path.join(out, "model.safetensors"), names, shapes, dtype, rng)
        return
    wmap = {}
    for i in range(shards):
        part = names[i::shards]
        fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write(os.path.join(out, fn), part, shapes, dtype, rng)
        wmap.update({n: fn for n in part})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f, indent=2)


if __name__ == "__main__":
    main()
