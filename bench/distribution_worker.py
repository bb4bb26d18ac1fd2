"""Training steps on 1, 2 or 4 of 4 virtual JAX CPU devices, for
bench/test_distribution.py (device flags must precede JAX's start):

    python -m bench.distribution_worker RECIPE_JSON

Each stdin line "N" runs one step on N devices (the model for N is built on
first use, and the first line prints the plan's record) and answers with the
step's loss once it has finished: a Python float, whose host copy
synchronises the devices.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import keras  # noqa: E402

from bench.measure import random_batch  # noqa: E402
from flowerkit import Recipe, build_model  # noqa: E402
from flowerkit.distribute import plan as distribution  # noqa: E402


class Trainer:
    def __init__(self, recipe, devices):
        self.plan = distribution.resolve(recipe.replace(distribution=f"data_parallel:{devices}"))
        keras.utils.set_random_seed(0)
        with self.plan.scope():
            self.model = build_model(recipe, plan=self.plan)
        self.images, self.labels = random_batch(recipe)

    def step(self):
        with self.plan.scope():
            logs = self.model.train_on_batch(self.images, self.labels)
        return float(logs[0] if isinstance(logs, list) else logs)


def main():
    recipe = Recipe.from_dict(json.loads(sys.argv[1]))
    trainers = {}
    for line in sys.stdin:
        devices = int(line)
        if devices not in trainers:
            trainers[devices] = Trainer(recipe, devices)
            print(json.dumps(trainers[devices].plan.record()), flush=True)
        print(trainers[devices].step(), flush=True)


if __name__ == "__main__":
    main()
