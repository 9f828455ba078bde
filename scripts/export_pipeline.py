"""Write a copy of a trained pipeline folder with its weights in another dtype (fp16 to ship).

    python scripts/export_pipeline.py runs/small/pipeline models/weights/small --dtype float16

Loading casts back: ``load_pipeline`` builds fp32 modules and copies the weights in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from shareverse_env.models.loading import load_pipeline, save_pipeline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="pipeline folder (e.g. RUN/pipeline)")
    parser.add_argument("target", type=Path, help="folder to write (replaced atomically)")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    args = parser.parse_args(argv)
    pipe = load_pipeline(args.source).to(dtype=getattr(torch, args.dtype))
    save_pipeline(pipe, args.target)
    size = sum(p.stat().st_size for p in args.target.rglob("*") if p.is_file())
    print(f"wrote {args.target} ({size / 1e6:.1f} MB, {args.dtype})")


if __name__ == "__main__":
    main()
