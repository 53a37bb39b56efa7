"""`bench bench`: each method's training and evaluation images/s against the naive path, on
ViT-B/16 shapes with random weights (see bench.engine.speed)::

    bench bench --method coop maple --classes 100 1000          # CPU: batch 4, 2 steps
    bench bench --method all --device cuda --json speed.json     # GPU: batch 128, 20 steps, bf16
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from bench.core.errors import BenchError

from .common import add_plugin_option, parse_overrides, whole, write_output


def describe_machine(device, setup) -> str:
    import torch

    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        where = f"{torch.cuda.get_device_name(device)} ({memory:.0f} GiB)"
    else:
        where = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    return (f"{setup.model}, random weights, {where}; batch {setup.batch_size}, {setup.steps} timed steps "
            f"after {setup.warmup} warm-up; fast path {setup.precision} (fp32 on a CPU), naive path fp32")


def table(rows) -> str:
    """A markdown table: images/s of both paths and their ratio, peak memory, largest logit difference."""
    import pandas as pd

    from bench.engine.speed import ratio

    def figure(value, digits=1):
        return "–" if value is None else f"{value:.{digits}f}"

    out = []
    for row in rows:
        fast, slow = row.get("fast", {}), row.get("naive", {})
        out.append({
            "method": row["method"], "classes": row["classes"],
            "train img/s": figure(fast.get("train_images_per_second"), 2),
            "naive train": figure(slow.get("train_images_per_second"), 2),
            "train ×": figure(ratio(row, "train_images_per_second"), 2),
            "eval img/s": figure(fast.get("eval_images_per_second"), 2),
            "naive eval": figure(slow.get("eval_images_per_second"), 2),
            "eval ×": figure(ratio(row, "eval_images_per_second"), 2),
            "peak MiB": figure(fast.get("peak_memory_mb"), 0), "naive peak": figure(slow.get("peak_memory_mb"), 0),
            "max |Δ logit|": "–" if "max_logit_difference" not in row else f"{row['max_logit_difference']:.1e}",
            "note": "; ".join([*(f"{path}: {part['skipped']}" for path, part in (("fast", fast), ("naive", slow))
                                 if "skipped" in part), *filter(None, [row.get("skipped"), row.get("timed_as")])]),
        })
    return pd.DataFrame(out).to_markdown(index=False, disable_numparse=True)


def cmd_bench(args) -> int:
    import torch

    from bench.engine.usage import resolve_device
    from bench.engine.loading import loader_workers
    from bench.engine.speed import SpeedSetup, check_methods, decode_rate, measure
    from bench.engine.usage import usable_cpus

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads or usable_cpus())  # nothing else of ours runs meanwhile
    gpu = device.type == "cuda"
    if any(item.startswith("protocol.") for item in args.set):
        raise BenchError("bench bench takes the model from --model and recipes from --protocol; "
                         "its --set takes method fields only (coop.n_ctx=4)")
    overrides = parse_overrides(args.set)
    setup = SpeedSetup(model=args.model, classes=args.classes, batch_size=args.batch_size or (128 if gpu else 4),
                       steps=args.steps or (20 if gpu else 2), warmup=args.warmup if args.warmup is not None else
                       (3 if gpu else 1), precision=args.precision, naive=not args.no_naive, overrides=overrides,
                       protocol=args.protocol)
    methods = check_methods(args.method, overrides)
    print(describe_machine(device, setup), flush=True)
    decoding = decode_rate(args.image_size)
    workers = loader_workers(None, device)
    limit = f", x {workers} loader workers = {decoding * workers:.0f} images/s" if workers else ""
    print(f"JPEG decoding + train transform: {decoding:.0f} images/s per core (500 x 375 JPEGs){limit}", flush=True)
    rows = measure(methods, setup, device, log=lambda line: print(line, flush=True))
    print()
    print(table(rows))
    memory = "GPU max allocated" if gpu else "process peak RSS (VmHWM, reset per path)"
    print(f"\npeak MiB: {memory}; ×: fast images/s over naive images/s; max |Δ logit|: fast against naive logits")
    if args.json:
        info = {"machine": describe_machine(device, setup), "torch": torch.__version__,
                "jpeg_decode_images_per_second_per_core": decoding, "rows": rows}
        write_output(args.json, json.dumps(info, indent=1) + "\n", Path("results"))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="training and evaluation images/s of each method against the naive path")
    p.add_argument("--method", nargs="+", default=["coop", "maple"], metavar="NAME",
                   help="methods to measure, or 'all' (default: coop maple)")
    p.add_argument("--classes", nargs="+", type=whole(2, 100_000), default=[100, 1000], metavar="N",
                   help="label-space sizes (default: 100 1000)")
    p.add_argument("--model", default="ViT-B-16", help="open_clip model, built with random weights (default: ViT-B-16)")
    p.add_argument("--batch-size", type=whole(1, 100_000), help="images per step (default: 128 on a GPU, 4 on a CPU)")
    p.add_argument("--steps", type=whole(1, 100_000), help="timed steps per path (default: 20 on a GPU, 2 on a CPU)")
    p.add_argument("--warmup", type=whole(0, 100_000), help="untimed steps first (default: 3 on a GPU, 1 on a CPU)")
    p.add_argument("--image-size", type=whole(16, 4096), default=224, help="crop side for the JPEG decoding figure")
    p.add_argument("--precision", choices=("amp", "fp32"), default="amp", help="the fast path's precision on a GPU")
    p.add_argument("--no-naive", action="store_true", help="time only the fast path")
    p.add_argument("--protocol", metavar="NAME", help="take each method's options and training recipe from this "
                   "protocol (default: the long-tailed family's recipes); the model stays --model")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="override a method option or METHOD.train.FIELD, as in bench run")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=whole(1, 4096), help="torch CPU threads (default: every usable CPU)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every figure as JSON")
    add_plugin_option(p)
    p.set_defaults(func=cmd_bench)
