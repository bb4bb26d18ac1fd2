"""A training-step worker on N of 4 virtual JAX CPU devices, for
bench/test_distribution.py (device flags must precede JAX's start):

    python -m bench.distribution_worker N RECIPE_JSON

Reads a line per step from stdin, answers each with the step's loss once it
has finished (a Python float: the host copy synchronises the devices), and
first with the device count it runs on.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import keras  # noqa: E402

from bench.measure import random_batch  # noqa: E402
from flowerkit import Recipe, build_model  # noqa: E402
from flowerkit import distribution  # noqa: E402


def main():
    devices = int(sys.argv[1])
    recipe = Recipe.from_dict(json.loads(sys.argv[2])).replace(distribution=f"data_parallel:{devices}")
    plan = distribution.resolve(recipe)
    with plan.scope():
        model = build_model(recipe)
        images, labels = random_batch(recipe)
        print(json.dumps(plan.record()), flush=True)
        for _ in sys.stdin:
            loss = model.train_on_batch(images, labels)
            print(float(loss if not isinstance(loss, list) else loss[0]), flush=True)


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
