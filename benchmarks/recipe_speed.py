"""What cuts the full SegNet's training step on a CPU: bfloat16 compute and a frozen encoder.

Each row is one ``train_on_batch`` step of the model ``segnet-tf train`` builds (AdamW, the
weighted cross entropy) on the same batch of synthetic street scenes, timed round-robin
(:func:`benchmarks.timing.interleaved`), so a busy minute of a shared machine lands on every row:

- ``float32``;
- ``mixed_bfloat16`` (bfloat16 compute, float32 variables: what ``--precision auto`` picks on a
  CPU with AMX or AVX-512 BF16; elsewhere oneDNN emulates it and it is slower);
- ``mixed_bfloat16, encoder frozen`` (``--freeze-encoder-epochs``: no backward pass through the
  encoder, its batch norms in inference mode).

    python -m benchmarks.recipe_speed --model segnet --input-size 180x240 --batch-size 8 \\
        --out benchmarks/results/recipe-speed.json

The result file holds the rows, the ratios to float32 and the machine (CPU flags included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

from benchmarks.timing import environment, interleaved
from benchmarks.training import scene_batch
from segnet_tf.config import parse_size
from segnet_tf.losses import WeightedSparseCategoricalCrossentropy
from segnet_tf.models import build_model
from segnet_tf.training import global_dtype_policy, set_encoder_trainable

ROWS = {
    "float32": ("float32", False),
    "mixed_bfloat16": ("mixed_bfloat16", False),
    "mixed_bfloat16, encoder frozen": ("mixed_bfloat16", True),
}


def training_step(model_name: str, size: tuple[int, int], batch: int, policy: str, frozen: bool):
    """A function running one training step of a freshly built, compiled model."""
    images, labels = scene_batch(size, batch)
    with global_dtype_policy(policy):
        keras.utils.set_random_seed(0)
        model = build_model(model_name, (*size, 3), 11)
        if frozen:
            set_encoder_trainable(model, False)
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-4),
            loss=WeightedSparseCategoricalCrossentropy([1.0] * 11),
            jit_compile=False,
        )
        model.optimizer.build(model.trainable_variables)
    return lambda: model.train_on_batch(images, labels)


def run(model_name: str, size: tuple[int, int], batch: int, rounds: int) -> dict:
    steps = {row: training_step(model_name, size, batch, *spec) for row, spec in ROWS.items()}
    stats = interleaved(steps, rounds, warmup=1)
    base = stats["float32"].median_ms
    return {
        "model": model_name,
        "input_size": list(size),
        "batch_size": batch,
        "rows": {
            row: {**s.to_dict(), "speedup_vs_float32": base / s.median_ms}
            for row, s in stats.items()
        },
        "environment": environment(threads=0),
    }


def table(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"{result['model']}, {result['input_size'][0]}x{result['input_size'][1]}, batch "
        f"{result['batch_size']}; {env['cpu']} ({' '.join(env['cpu_flags'])}), {env['cores']} "
        f"cores, {env['date']}",
        "",
        "| step | ms (median) | x float32 |",
        "| --- | --- | --- |",
    ]
    for row, s in result["rows"].items():
        lines.append(f"| {row} | {s['median_ms']:.0f} | {s['speedup_vs_float32']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="segnet")
    parser.add_argument("--input-size", type=parse_size, default=(180, 240))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = run(args.model, args.input_size, args.batch_size, args.rounds)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
