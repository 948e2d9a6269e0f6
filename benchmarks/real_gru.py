"""A published GRU encoder-decoder that no one here wrote, ported with
`converters.from_torch`: its greedy decode in tflstm, torch and LiteRT against
the checkpoint's own reference code.

    python benchmarks/real_gru.py [--out benchmarks/real_gru.json]

g2p_en 2.1.0's grapheme-to-phoneme model (`g2p_en/checkpoint20.npz` in its
wheel, downloaded with pip into benchmarks/.cache/, read with
`allow_pickle=False`): embeddings of 29 graphemes, a GRU encoder and a GRUCell
decoder (256 -> 256) fed its last phoneme's embedding, a linear layer to 74
phonemes; greedy from <s> (id 2) to </s> (id 3), at most 20 steps. Its numpy
code (`G2p.gru`, `grucell`, `predict`) is PyTorch's GRU formula, so the npz
maps to `nn.GRU(256, 256, batch_first=True)` and `nn.GRUCell(256, 256)`.

Each word (mostly ones CMUdict lacks, which g2p_en hands to the network) is
decoded by g2p_en's `predict`, by its `gru`/`grucell` steps (for the hidden
states), by torch and tflstm (`from_torch` on the numpy state_dict) in float32
and float64, and by the float32 layers' `.tflite` exports in LiteRT (the
encoder as the loop graph of dynamic length, the cell as one step). The tokens
must all be the same (the exit status). Hidden states against torch float64:
float32 by the project's rule (`_tflstm.tolerance.float32_error_bound`,
"inference", next to torch's own float32 error on the word), float64 by
`ATOL["float64"]`. Writes the JSON (`--out`) and a markdown summary next to it,
with the weights' max and median |w| (tests/test_gru_real.py mimics them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import types
import zipfile
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from greedy_decode import greedy  # noqa: E402
from quantize_real import CACHE, PACKAGES, _version, wheel  # noqa: E402

import tflstm  # noqa: E402
from _tflstm.tolerance import ATOL, float32_error_bound  # noqa: E402
from converters import from_torch  # noqa: E402
from tflstm.tflite import export_tflite, run_tflite  # noqa: E402

PACKAGES["g2p_en"] = "g2p_en==2.1.0"  # quantize_real's download helper
TENSORS = ("output", "h_n", "decoder")  # decoder: h at every decoding step
WORDS = [
    "activationist", "tflstm", "kubernetes", "tensorflow", "pytorch", "keras",
    "zeitgeist", "quixotically", "xylophone", "onomatopoeia", "a", "hello",
    "bioluminescence", "supercalifragilistic", "antidisestablishment",
    "counterrevolutionaries", "pneumonoultramicroscopic", "floccinaucinihilipil",
]  # fmt: skip


def torch_names(npz: dict) -> dict:
    """The recurrent tensors under torch's names: "encoder." an nn.GRU's
    (`enc_w_ih` -> `encoder.weight_ih_l0`), "decoder." an nn.GRUCell's."""
    state = {}
    for src, dst, layer in (("enc", "encoder", "_l0"), ("dec", "decoder", "")):
        for kind, name in (("w", "weight"), ("b", "bias")):
            for gates in ("ih", "hh"):
                state[f"{dst}.{name}_{gates}{layer}"] = npz[f"{src}_{kind}_{gates}"]
    return state


def unpack() -> Path:
    """The wheel's g2p_en/ folder, extracted once into the cache."""
    folder = CACHE / "g2p_en-2.1.0"
    if not (folder / "g2p_en" / "checkpoint20.npz").exists():
        with zipfile.ZipFile(wheel("g2p_en")) as archive:
            members = [n for n in archive.namelist() if n.startswith("g2p_en/")]
            assert all(".." not in n for n in members), members
            archive.extractall(folder, members)
    return folder


def reference(folder: Path):
    """g2p_en's own `G2p`, built by its own `__init__`. Its modules import nltk
    (and download nltk data at import) and inflect (number spelling);
    `predict` uses numpy only and needs neither, so stand-ins take their place
    while it imports: an empty CMUdict, nltk data that is "found", a tagger,
    tokenizer and inflect engine that `predict` never calls."""
    nltk = types.ModuleType("nltk")
    nltk.pos_tag = lambda words: [(w, "NN") for w in words]
    nltk.data = types.SimpleNamespace(find=lambda name: name)
    nltk.download = lambda name: None
    corpus = types.ModuleType("nltk.corpus")
    corpus.cmudict = types.SimpleNamespace(dict=dict)
    tokenize = types.ModuleType("nltk.tokenize")
    tokenize.TweetTokenizer = lambda: types.SimpleNamespace(tokenize=str.split)
    inflect = types.ModuleType("inflect")
    inflect.engine = types.SimpleNamespace
    stubs = {"nltk": nltk, "nltk.corpus": corpus, "nltk.tokenize": tokenize}
    path = [str(folder), *sys.path]
    with (
        mock.patch.dict(sys.modules, {**stubs, "inflect": inflect}),
        mock.patch.object(sys, "path", path),
    ):
        from g2p_en.g2p import G2p
    return G2p()


def implementations(g2p, state: dict) -> dict:
    """(encode, step) of every run, by name (see `greedy_decode.greedy`)."""
    enc = [g2p.enc_w_ih, g2p.enc_w_hh, g2p.enc_b_ih, g2p.enc_b_hh]
    dec = [g2p.dec_w_ih, g2p.dec_w_hh, g2p.dec_b_ih, g2p.dec_b_hh]
    h0 = np.zeros((1, 256), "float32")
    run = {
        "g2p_en (numpy)": (
            lambda x: (out := g2p.gru(x, x.shape[1], *enc, h0=h0), out[None, :, -1]),
            lambda x, h: g2p.grucell(x, h, *dec),
        )
    }
    for dtype in ("float32", "float64"):
        model = torch.nn.Module()
        model.encoder = torch.nn.GRU(256, 256, batch_first=True)
        model.decoder = torch.nn.GRUCell(256, 256)
        model.load_state_dict({k: torch.from_numpy(w) for k, w in state.items()})
        model.to(getattr(torch, dtype))
        run[f"torch {dtype}"] = (
            lambda x, m=model: m.encoder(torch.from_numpy(x)),
            lambda x, h, m=model: m.decoder(torch.from_numpy(x), torch.from_numpy(h)),
        )
        encoder = from_torch(state, prefix="encoder", batch_first=True, dtype=dtype)
        decoder = from_torch(state, prefix="decoder", dtype=dtype)
        run[f"tflstm {dtype}"] = (encoder, decoder)
    # The float32 layers exported: batch 1, the encoder of dynamic length (the
    # loop graph: TFLite has no builtin GRU op), the cell as one step.
    files = [export_tflite(run["tflstm float32"][i]) for i in (0, 1)]
    configs = [run["tflstm float32"][i].get_config() for i in (0, 1)]
    run["LiteRT float32"] = (
        lambda x: run_tflite(files[0], configs[0], x),
        lambda x, h: run_tflite(files[1], configs[1], x, h),
    )
    return run


def compare(got: dict, word: str, idx2p: dict, predicted: list) -> dict:
    """The word's outcome: whether every run decoded torch float64's tokens,
    and each other run's (error, bound, difference from g2p_en's numpy) per
    hidden-state tensor."""
    ref, own = got["torch float64"], got["torch float32"]
    same = {name: r["tokens"] == ref["tokens"] for name, r in got.items()}
    same["g2p_en predict"] = predicted == [idx2p[i] for i in ref["tokens"]]
    errors = {}
    for name, r in got.items():
        if name == "torch float64" or not same[name]:
            continue
        for key in TENSORS:
            error = float(np.abs(r["hidden"][key] - ref["hidden"][key]).max())
            bound = ATOL["float64"]
            if "float64" not in name:
                torch_error = float(
                    np.abs(own["hidden"][key] - ref["hidden"][key]).max()
                )
                bound = float32_error_bound(
                    torch_error, ref["hidden"][key], "inference"
                )
            numpy_ref = got["g2p_en (numpy)"]["hidden"][key]
            g2p = float(np.abs(r["hidden"][key] - numpy_ref).max())
            errors[f"{name}: {key}"] = (error, bound, g2p)
    return {"word": word, "phonemes": " ".join(predicted),
            "differ": [n for n, ok in same.items() if not ok],
            "min_top2_logit_gap": ref["gap"], "errors": errors}  # fmt: skip


def summary(words: list[dict]) -> dict:
    """Per run and tensor, the worst over the words."""
    out = {}
    for key in words[0]["errors"]:
        rows = [(w["word"], *w["errors"][key]) for w in words if key in w["errors"]]
        out[key] = {
            "max_abs_vs_torch64": max(r[1] for r in rows),
            "max_error_over_bound": max(r[1] / r[2] for r in rows),
            "max_abs_vs_g2p_numpy": max(r[3] for r in rows),
            "over_bound": {r[0]: [r[1], r[2]] for r in rows if r[1] > r[2]},
        }
    return out


def markdown(r: dict) -> str:
    equal = sum(not w["differ"] for w in r["words"])
    over = "; ".join(
        f"{k}: {w} ({a:.2e} > {b:.2e})"
        for k, e in r["errors"].items()
        for w, (a, b) in e["over_bound"].items()
    )
    gap = min(w["min_top2_logit_gap"] for w in r["words"])
    lines = [
        "# A published GRU: g2p_en 2.1.0's grapheme-to-phoneme model",
        "",
        f"`python benchmarks/real_gru.py` on {r['machine']}, {r['date']}; "
        f"{r['versions']}. Source: {r['source']}; what runs is in the script's "
        "docstring.",
        "",
        "Greedy decodes the same in every run (g2p_en's `predict`, its numpy "
        "steps, torch float32/float64, tflstm float32/float64, LiteRT float32): "
        f"**{equal}/{len(r['words'])} words**. Smallest gap between the two "
        f"largest logits at any step (torch float64): {gap:.3f}.",
        "",
        "| word | phonemes | same tokens | min top-2 logit gap |",
        "|---|---|---|---|",
    ]
    for w in r["words"]:
        same = "**no**: " + ", ".join(w["differ"]) if w["differ"] else "yes"
        lines.append(
            f"| {w['word']} | {w['phonemes']} | {same} | "
            f"{w['min_top2_logit_gap']:.3f} |"
        )
    lines += [
        "",
        "Hidden states (`decoder`: h at every decoding step), worst over the "
        "words: max |error| against torch float64; that error over its bound "
        "(float32: `float32_error_bound(torch float32's error on the word, "
        "reference, 'inference')`, float64: `ATOL['float64']`); max |difference| "
        "from g2p_en's numpy float32 steps.",
        "",
        f"Over the bound (error > bound): {over or 'none'}.",
        "",
        "| run: tensor | vs torch float64 | / bound | vs g2p_en numpy |",
        "|---|---|---|---|",
    ]
    for key, e in r["errors"].items():
        lines.append(
            f"| {key} | {e['max_abs_vs_torch64']:.2e} | "
            f"{e['max_error_over_bound']:.2f} | {e['max_abs_vs_g2p_numpy']:.2e} |"
        )
    lines += ["", "Weights (|w| per tensor; tests/test_gru_real.py mimics them):", ""]
    for name, s in r["weights"].items():
        lines.append(
            f"- `{name}` {tuple(s['shape'])}: a max of {s['max']:.3f} over a median "
            f"of {s['median']:.4f} ({s['max'] / s['median']:.1f}x)"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/real_gru.json"))
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    folder = unpack()
    with np.load(folder / "g2p_en/checkpoint20.npz", allow_pickle=False) as data:
        v32 = {k: data[k] for k in data.files}
    v64 = {k: w.astype("float64") for k, w in v32.items()}
    g2p = reference(folder)

    def ids(word: str) -> list[int]:
        return [g2p.g2idx.get(c, 1) for c in word] + [2]  # 1: <unk>, 2: </s>

    def tables(v: dict) -> tuple:
        return v["enc_emb"], v["dec_emb"], v["fc_w"], v["fc_b"]

    run = implementations(g2p, torch_names(v32))
    words = []
    for word in WORDS:
        got = {
            name: greedy(*fns, tables(v64 if "float64" in name else v32), ids(word))
            for name, fns in run.items()
        }
        words.append(compare(got, word, g2p.idx2p, g2p.predict(word)))
        print(f"{word:26s} {words[-1]['phonemes']}  differ: {words[-1]['differ']}")
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}",
        "versions": f"tflstm {tflstm.__version__}, TensorFlow {tf.__version__}, "
        f"torch {torch.__version__}, ai-edge-litert {_version('ai-edge-litert')}, "
        f"numpy {np.__version__}",
        "source": "g2p_en==2.1.0 (PyPI wheel), g2p_en/checkpoint20.npz",
        "words": [{k: v for k, v in w.items() if k != "errors"} for w in words],
        "errors": summary(words),
    }
    result["weights"] = {
        k: {"shape": list(w.shape), "max": float(np.abs(w).max()),
            "median": float(np.median(np.abs(w)))} for k, w in v32.items()
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    differ = [w["word"] for w in words if w["differ"]]
    print(f"{len(words) - len(differ)}/{len(words)} words decode the same in every "
          f"run; wrote {args.out} and its .md")  # fmt: skip
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
