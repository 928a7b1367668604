"""Runs distillations in a fresh process for tests/test_distribute.py; prints one JSON line per run.

Usage: python distill_job.py '<json>' with keys ``targets``, ``logical_cpus`` (0: leave the CPU
as it is) and ``runs`` (a list of distill keyword arguments, ``out_dir`` included). A fresh
process is needed: logical devices and the multiworker runtime are set before TensorFlow starts.
"""

import json
import sys

job = json.loads(sys.argv[1])
if job.get("logical_cpus"):
    from trillsson_tf._keras import tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * job["logical_cpus"])

from trillsson_tf._keras import keras  # noqa: E402
from trillsson_tf.train.distill import distill  # noqa: E402
from trillsson_tf.errors import TrillssonError  # noqa: E402

SMALL = {"stem_filters": 8, "filters": (16, 24), "strides": (2, 2)}
for run in job["runs"]:
    keras.utils.set_random_seed(0)  # the same initial weights in every run, whatever the strategy
    try:
        record = distill(targets=job["targets"], student_options=SMALL, validation_fraction=0.0, **run)
    except TrillssonError as error:
        print("RESULT " + json.dumps({"error": str(error)}), flush=True)
        continue
    print(
        "RESULT "
        + json.dumps(
            {
                "losses": record["loss_history"],
                "replicas": record["training"]["replicas"],
                "strategy": record["training"]["strategy"],
                "export": record["export"],
                "resumed_from_step": record["resumed_from_step"],
                "shards_read": record["data"]["shards_read"],
                "input_pipelines": record["training"]["input_pipelines"],
            }
        ),
        flush=True,
    )
