"""Runs exported models in a process that cannot import tflstm or converters.

    python serving_loader.py JOBS.npz RESULTS.npz

JOBS.npz holds, for job `j`: `j/path` (a SavedModel directory), `j/signature`
and the inputs as `j/in/NAME` (`j/in/_` for a signature's only
input). RESULTS.npz gets `j/out/NAME` for each output.
"""

import importlib.abc
import sys

BLOCKED = ("tflstm", "converters")  # (TensorFlow itself imports keras)


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} must not be needed to serve the model")
        return None


def main(jobs_path: str, results_path: str) -> None:
    sys.meta_path.insert(0, _Block())
    import numpy as np
    import tensorflow as tf

    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} is importable: the check would be void")
    jobs = np.load(jobs_path)
    ids = sorted({k.split("/")[0] for k in jobs.files})
    results, loaded = {}, {}
    for job in ids:
        path = str(jobs[f"{job}/path"])
        if path not in loaded:
            loaded[path] = tf.saved_model.load(path)
        fn = loaded[path].signatures[str(jobs[f"{job}/signature"])]
        prefix = f"{job}/in/"
        inputs = {
            k[len(prefix) :]: tf.constant(jobs[k])
            for k in jobs.files
            if k.startswith(prefix)
        }
        if list(inputs) == ["_"]:  # the signature's only input, whatever its name
            (only,) = fn.structured_input_signature[1]
            inputs = {only: inputs["_"]}
        for key, value in fn(**inputs).items():
            results[f"{job}/out/{key}"] = value.numpy()
    np.savez(results_path, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
